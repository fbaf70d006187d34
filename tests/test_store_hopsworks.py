"""Feature views on both backends, and the Hopsworks backend against tests/fake_hopsworks.py."""

import inspect
import json
import sys

import numpy as np
import pandas as pd
import pytest
from fake_hopsworks import FakeHopsworks, FeatureStoreException, RestAPIError
from fake_hopsworks import Feature as FakeFeature
from fake_hopsworks import FeatureGroup as FakeFeatureGroup
from fake_hopsworks import FeatureStore as FakeFeatureStore
from fake_hopsworks import FeatureView as FakeFeatureView
from fake_hopsworks import Project as FakeProject
from fake_hopsworks import Query as FakeQuery
from test_store import make_prices

from cryptosentinel.config import Settings, StoreError, get_settings
from cryptosentinel.store import (
    FEATURES,
    PRICES,
    BatchRejectedError,
    FeatureGroupSpec,
    FeatureView,
    Store,
    UpsertResult,
)
from cryptosentinel.store_hopsworks import HopsworksStore, hopsworks_errors, hopsworks_login, open_store
from cryptosentinel.store_local import LocalStore

pytestmark = pytest.mark.code

HOUR = pd.Timedelta("1h")


@pytest.fixture
def fake():
    return FakeHopsworks(api_key="k", project="cs")


@pytest.fixture(params=["local", "hopsworks"])
def store(request, tmp_path, fake):
    if request.param == "local":
        s = LocalStore(tmp_path / "store.sqlite")
    else:
        s = HopsworksStore(api_key="k", project="cs", host="example.hopsworks.ai", login=fake.login)
    yield s
    s.close()


def features_from(prices: pd.DataFrame) -> pd.DataFrame:
    """A causal features frame (lower-case float columns) keyed like the prices."""
    g = prices.groupby("coin").close
    return prices[["coin", "ts"]].assign(ret_1=g.pct_change(), sma_3=g.transform(lambda s: s.rolling(3).mean()),
                                         vol_6=g.transform(lambda s: s.pct_change().rolling(6).std()))


# --- the fake keeps the real signatures -------------------------------------------------------------

def _real():
    hopsworks = pytest.importorskip("hopsworks")
    from hopsworks import project
    from hsfs import feature, feature_group, feature_store, feature_view
    from hsfs.constructor import query
    return {
        FakeHopsworks.login: hopsworks.login,
        FakeProject.get_feature_store: project.Project.get_feature_store,
        FakeFeatureStore.get_or_create_feature_group: feature_store.FeatureStore.get_or_create_feature_group,
        FakeFeatureStore.get_feature_group: feature_store.FeatureStore.get_feature_group,
        FakeFeatureStore.get_or_create_feature_view: feature_store.FeatureStore.get_or_create_feature_view,
        FakeFeatureStore.get_feature_view: feature_store.FeatureStore.get_feature_view,
        FakeFeatureGroup.insert: feature_group.FeatureGroup.insert,
        FakeFeatureGroup.append_features: feature_group.FeatureGroup.append_features,
        FakeFeatureGroup.select_all: feature_group.FeatureGroup.select_all,
        FakeFeatureGroup.select: feature_group.FeatureGroup.select,
        FakeFeatureGroup.get_feature: feature_group.FeatureGroup.get_feature,
        FakeFeatureGroup.read: feature_group.FeatureGroup.read,
        FakeQuery.join: query.Query.join,
        FakeQuery.filter: query.Query.filter,
        FakeQuery.read: query.Query.read,
        FakeFeature.isin: feature.Feature.isin,
        FakeFeatureView.training_data: feature_view.FeatureView.training_data,
        FakeFeatureView.train_test_split: feature_view.FeatureView.train_test_split,
        FakeFeatureView.get_batch_data: feature_view.FeatureView.get_batch_data,
        FakeFeatureView.init_serving: feature_view.FeatureView.init_serving,
        FakeFeatureView.get_feature_vectors: feature_view.FeatureView.get_feature_vectors,
    }


def test_fake_keeps_the_real_signatures():
    for fake_fn, real_fn in _real().items():
        fake_params = {n: p for n, p in inspect.signature(fake_fn).parameters.items() if n != "self"}
        real_params = {n: p for n, p in inspect.signature(real_fn).parameters.items() if n != "self"}
        name = fake_fn.__qualname__
        for pname, p in fake_params.items():
            assert pname in real_params, f"{name}: the real one has no parameter {pname!r}"
            if p.kind is p.POSITIONAL_OR_KEYWORD:  # positional use must reach the same parameter
                assert list(real_params).index(pname) == list(fake_params).index(pname), f"{name}: {pname} moved"
            real_default = real_params[pname].default
            assert p.default == real_default, f"{name}({pname}): default {p.default!r} != {real_default!r}"
        required = [n for n, p in real_params.items() if p.default is inspect.Parameter.empty
                    and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        assert set(required) <= set(fake_params), f"{name}: misses required {required}"


def test_features_are_built_as_the_real_feature_class_takes_them():
    pytest.importorskip("hopsworks")
    from hsfs.feature import Feature

    from cryptosentinel.store_hopsworks import _HOPS_TYPE_OF, _HOPS_TYPES, _feature_class
    assert _feature_class() is Feature  # no stand-in client: the real class
    assert _feature_class(FakeHopsworks().login) is FakeFeature
    real = Feature(name="spread", type=_HOPS_TYPE_OF["float"])  # the call HopsworksStore makes
    assert (real.name, real.type) == ("spread", "double")
    assert all(_HOPS_TYPES[t] == k for k, t in _HOPS_TYPE_OF.items())  # the round trip keeps the kind


# --- login and backend choice ------------------------------------------------------------------------

def test_login_uses_the_settings(fake, monkeypatch):
    monkeypatch.setenv("HOPSWORKS_API_KEY", "k")
    monkeypatch.setenv("HOPSWORKS_PROJECT", "cs")
    monkeypatch.setenv("HOPSWORKS_HOST", "my.cluster.ai")
    get_settings.cache_clear()
    store = open_store(login=fake.login)
    assert isinstance(store, HopsworksStore) and isinstance(store, Store)
    assert fake.logins == [{"host": "my.cluster.ai", "project": "cs", "api_key_value": "k"}]
    assert store.status() == {"backend": "hopsworks", "project": "cs", "host": "my.cluster.ai", "tables": {}}


def test_default_login_is_hopsworks_login(fake, monkeypatch):
    monkeypatch.setitem(sys.modules, "hopsworks", fake)  # what `import hopsworks` then finds
    store = open_store(Settings(_env_file=None, hopsworks_api_key="k", hopsworks_project="cs"))
    assert store.backend == "hopsworks" and fake.logins[0]["api_key_value"] == "k"


def test_bad_key_is_a_store_error(fake):
    with pytest.raises(StoreError, match="cannot open the Hopsworks feature store.*401"):
        HopsworksStore(api_key="wrong", project="cs", login=fake.login)


# --- the Hopsworks backend on the fake ---------------------------------------------------------------

@pytest.fixture
def hops(fake):
    return HopsworksStore(api_key="k", project="cs", login=fake.login)


def _fg(fake, name, version=1):
    return fake.projects["cs"].get_feature_store().get_feature_group(name, version)


def test_feature_groups_are_created_as_hopsworks_wants(fake, hops):
    hops.upsert(PRICES, make_prices(n=4))
    hops.upsert(FEATURES, features_from(make_prices(n=4)))
    prices, features = _fg(fake, "prices"), _fg(fake, "features")
    assert prices.primary_key == ["coin"] and prices.event_time == "ts"  # offline: keyed by coin + ts
    assert prices.online_enabled and prices.description == PRICES.description
    assert features.parents == [prices]
    assert [f.name for f in prices.features] == ["coin", "ts", "open", "high", "low", "close", "volume",
                                                 "market_cap", "source", "granularity"]
    assert {g["name"]: g["parent"] for g in hops.feature_groups()} == {"prices": None, "features": "prices"}


def test_round_trip_and_idempotent_upsert(fake, hops, tmp_path):
    df = make_prices()
    assert hops.upsert(PRICES, df) == UpsertResult(len(df), 0, 0)
    back = hops.read("prices")
    pd.testing.assert_frame_equal(back, df.sort_values(["coin", "ts"]).reset_index(drop=True))
    inserts = _fg(fake, "prices").inserts
    assert hops.upsert(PRICES, df) == UpsertResult(0, 0, len(df))
    assert _fg(fake, "prices").inserts == inserts  # nothing to write, nothing written

    # the same overlapping window gives the same counts and rows as the local backend
    second = pd.concat([df[df.ts >= "2024-01-02"], make_prices(n=5, start="2024-01-03", seed=2)], ignore_index=True)
    second.loc[0, "close"] *= 1.01
    with LocalStore(tmp_path / "local.sqlite") as local:
        local.upsert(PRICES, df)
        assert hops.upsert(PRICES, second) == local.upsert(PRICES, second) == UpsertResult(15, 1, 71)
        pd.testing.assert_frame_equal(hops.read("prices"), local.read("prices"))
        for coins, start, end, cols in [(["solana"], "2024-01-01 05:00", "2024-01-02", ["close"]),
                                        (None, None, "2024-01-01 03:00", None)]:
            pd.testing.assert_frame_equal(hops.read("prices", coins, start, end, cols),
                                          local.read("prices", coins, start, end, cols))
        pd.testing.assert_frame_equal(hops.latest("prices"), local.latest("prices"))
        assert hops.summary("prices") == local.summary("prices")
        assert hops.staleness("prices", now="2024-01-04") == local.staleness("prices", now="2024-01-04")


@pytest.mark.parametrize("mutate,check", [
    (lambda d: d.assign(high=np.where(d.index == 2, np.inf, d.high)), "inf"),
    (lambda d: d.assign(volume=d.volume.astype(str)), "dtype"),
    (lambda d: d.drop(columns=["market_cap"]), "columns"),
    (lambda d: d.rename(columns={"close": "Close"}), "column_names"),
    (lambda d: d.assign(ts=d.ts.dt.tz_localize(None)), "naive_ts"),
])
def test_bad_batch_rejected_and_hopsworks_unchanged(fake, hops, mutate, check):
    hops.upsert(PRICES, make_prices(n=6))
    before, inserts = hops.read("prices"), _fg(fake, "prices").inserts
    with pytest.raises(BatchRejectedError) as info:
        hops.upsert(PRICES, mutate(make_prices(n=6, start="2024-02-01")))
    assert check in info.value.failures
    assert _fg(fake, "prices").inserts == inserts
    pd.testing.assert_frame_equal(hops.read("prices"), before)


def test_runs_and_status_on_hopsworks(hops):
    assert hops.runs() == []
    first = hops.record_run("ingest", {"rows": 3, "span": [pd.Timestamp("2024-01-01", tz="UTC")]})
    hops.record_run("training", {"rmse": 1.5})
    runs = hops.runs()
    assert [r["kind"] for r in runs] == ["training", "ingest"]
    assert hops.runs("ingest") == [{"id": first, "kind": "ingest", "created_at": runs[1]["created_at"],
                                    "record": {"rows": 3, "span": ["2024-01-01T00:00:00+00:00"]}}]
    hops.upsert(PRICES, make_prices(n=3))
    status = hops.status()
    json.dumps(status)
    assert status["tables"]["prices"]["rows"] == 9 and status["tables"]["prices"]["coins"] == 3
    assert "runs" in status["tables"]


# --- feature views, on both backends -----------------------------------------------------------------

def _pit_data(seed=0):
    """Prices with gaps and a close that encodes its own bar time; features partly off the price grid."""
    rng = np.random.default_rng(seed)
    prices = make_prices(n=72, seed=seed)
    prices = prices[rng.uniform(size=len(prices)) > 0.2].reset_index(drop=True)  # gaps
    prices["close"] = (prices.ts - pd.Timestamp("2024-01-01", tz="UTC")) / HOUR + 1.0  # close = hour number + 1
    feats = features_from(make_prices(n=72, seed=seed))
    shift = pd.to_timedelta(rng.choice([0, 0, 0, 20, 40], size=len(feats)), unit="min")
    feats["ts"] = feats.ts + shift  # some feature rows sit between price bars
    return prices, feats.drop_duplicates(["coin", "ts"])


def test_point_in_time_training_rows(store):
    prices, feats = _pit_data()
    store.upsert(PRICES, prices)
    store.upsert(FEATURES, feats)
    fv = store.get_or_create_feature_view("price_features", 1, FEATURES, join=("prices", ["close"]))
    assert isinstance(fv, FeatureView)
    rows = fv.training_data()
    assert len(rows) == len(feats)
    assert list(rows.columns) == ["coin", "ts", "ret_1", "sma_3", "vol_6", "close"]
    source_ts = pd.Timestamp("2024-01-01", tz="UTC") + (rows.close - 1.0) * HOUR  # the price bar each row used
    used = rows.close.notna()
    assert (source_ts[used] <= rows.ts[used]).all()  # no input from after the row's time
    # and it is the newest bar at or before the row's time, per coin
    for (coin, ts), src in zip(rows[["coin", "ts"]].itertuples(index=False), source_ts, strict=True):
        bars = prices.ts[(prices.coin == coin) & (prices.ts <= ts)]
        assert (pd.isna(src) and bars.empty) or src == bars.max()


def test_train_test_split_and_batch_by_time(store):
    prices = make_prices(n=72)
    store.upsert(PRICES, prices)
    store.upsert(FEATURES, features_from(prices))
    fv = store.get_or_create_feature_view("price_features", 1, FEATURES)
    train, test = fv.train_test_split("2024-01-01", "2024-01-02", "2024-01-02 12:00", "2024-01-03 12:00")
    assert train.ts.min() == pd.Timestamp("2024-01-01", tz="UTC")
    assert train.ts.max() == pd.Timestamp("2024-01-01 23:00", tz="UTC")
    assert test.ts.min() == pd.Timestamp("2024-01-02 12:00", tz="UTC")
    assert test.ts.max() == pd.Timestamp("2024-01-03 11:00", tz="UTC")  # end is exclusive
    assert len(train) == 24 * 3 and len(test) == 24 * 3
    expected = prices[(prices.ts >= "2024-01-01") & (prices.ts < "2024-01-02")].close.to_numpy()
    np.testing.assert_allclose(np.sort(train.close.to_numpy()), np.sort(expected))
    batch = fv.batch_data("2024-01-02 12:00", "2024-01-03 12:00")
    pd.testing.assert_frame_equal(batch, test)
    with pytest.raises(StoreError, match="train_end <= test_start"):
        fv.train_test_split("2024-01-01", "2024-01-02", "2024-01-01 12:00", "2024-01-03")
    with pytest.raises(StoreError, match="all four times"):
        fv.train_test_split("2024-01-01", None, "2024-01-02", "2024-01-03")


def test_latest_vectors_and_staleness(store):
    prices = make_prices(n=30)
    store.upsert(PRICES, prices)
    feats = features_from(prices)
    store.upsert(FEATURES, feats[~((feats.coin == "solana") & (feats.ts > "2024-01-01 20:00"))])  # solana lags
    fv = store.get_or_create_feature_view("price_features", 1, FEATURES, join=("prices", ["close"]))
    vectors, staleness = fv.latest_vectors(now="2024-01-02 07:00")
    assert vectors.coin.tolist() == ["bitcoin", "ethereum", "solana"]
    assert vectors.ts.tolist() == [pd.Timestamp(t, tz="UTC") for t in
                                   ("2024-01-02 05:00", "2024-01-02 05:00", "2024-01-01 20:00")]
    last_close = prices.set_index(["coin", "ts"]).close
    current = vectors[vectors.coin != "solana"]
    assert current.close.tolist() == [last_close[(c, t)] for c, t in zip(current.coin, current.ts, strict=True)]
    # solana's features lag its prices: locally close is as of the features row (20:00); the Hopsworks
    # online store holds each group's newest row, so there it is the newest close. Staleness flags it.
    solana_close = vectors.close.iloc[2]
    expected_ts = "2024-01-01 20:00" if store.backend == "local" else "2024-01-02 05:00"
    assert solana_close == last_close[("solana", pd.Timestamp(expected_ts, tz="UTC"))]
    assert staleness.seconds == {"bitcoin": 7200.0, "ethereum": 7200.0, "solana": 11 * 3600.0}
    assert staleness.stale_coins("3h") == ["solana"]
    one, st = fv.latest_vectors(coins=["ethereum"], now="2024-01-02 07:00")
    assert one.coin.tolist() == ["ethereum"] and st.seconds == {"ethereum": 7200.0}
    assert fv.staleness(now="2024-01-02 07:00").seconds == staleness.seconds


def test_view_definitions_are_checked(store):
    prices = make_prices(n=5)
    store.upsert(PRICES, prices)
    store.upsert(FEATURES, features_from(prices))
    with pytest.raises(StoreError, match="no columns"):
        store.get_or_create_feature_view("v", 1, FEATURES, join=("prices", ["nope"]))
    with pytest.raises(StoreError, match="key columns"):
        store.get_or_create_feature_view("v", 1, FEATURES, join=("prices", ["ts"]))
    with pytest.raises(StoreError, match="lower-case"):
        store.get_or_create_feature_view("View", 1, FEATURES)


def test_backends_agree_on_views(tmp_path, fake):
    prices, feats = _pit_data(seed=3)
    frames = {}
    for s in (LocalStore(tmp_path / "s.sqlite"), HopsworksStore(api_key="k", project="cs", login=fake.login)):
        s.upsert(PRICES, prices)
        s.upsert(FEATURES, feats)
        fv = s.get_or_create_feature_view("price_features", 1, FEATURES)
        frames[s.backend] = (fv.training_data("2024-01-01 06:00", "2024-01-02 18:00"),
                             *fv.train_test_split("2024-01-01", "2024-01-02", "2024-01-02", "2024-01-04"),
                             fv.latest_vectors(now="2024-01-04")[0])
        s.close()
    for local, hops in zip(frames["local"], frames["hopsworks"], strict=True):
        pd.testing.assert_frame_equal(local, hops)


# --- errors: the client's own become StoreError, bugs keep their traceback ---------------------------

def test_client_errors_are_the_declared_ones(fake):
    assert hopsworks_errors(fake.login) == (FeatureStoreException, RestAPIError)
    pytest.importorskip("hopsworks_common")
    real = {c.__name__ for c in hopsworks_errors()}
    assert {"RestAPIError", "FeatureStoreException", "RequestException"} <= real


def test_a_client_refusal_is_a_store_error_naming_the_call(fake, hops):
    offline = FeatureGroupSpec("offline_feats", 1, parent="prices")
    hops.upsert(offline, features_from(make_prices(n=12)))
    view = hops.get_or_create_feature_view("offline_view", 1, offline, join=None)
    with pytest.raises(StoreError, match="online vectors of feature view offline_view v1 failed: "
                                         "FeatureStoreException: .*not online enabled") as info:
        view.latest_vectors()
    assert isinstance(info.value.__cause__, FeatureStoreException)


def test_a_bug_inside_a_client_call_keeps_its_traceback(fake, hops, monkeypatch):
    hops.upsert(PRICES, make_prices(n=4))
    fg = hops._fg(PRICES)[1]

    def broken(*args, **kwargs):
        raise KeyError("a bug, not a refusal")

    monkeypatch.setattr(fg, "select_all", broken)
    with pytest.raises(KeyError, match="a bug"):
        hops.read(PRICES)


def test_login_bug_is_not_a_store_error(fake):
    def login(api_key_value=None, project=None, host=None):
        raise TypeError("unexpected keyword")  # e.g. a client whose signature changed

    with pytest.raises(TypeError, match="unexpected keyword"):
        hopsworks_login("k", "cs", None, login, "get_feature_store", "the feature store", StoreError)


# --- schema evolution: a group gains nullable columns --------------------------------------------------

def test_add_columns_on_both_backends(store):
    old = make_prices(n=4)
    store.upsert(PRICES, old)
    new = make_prices(n=2, start="2024-02-01").assign(spread=0.25, venue="sim", trades=3)
    with pytest.raises(BatchRejectedError, match="unexpected"):
        store.upsert(PRICES, new)
    assert store.upsert(PRICES, new, add_columns=True) == UpsertResult(len(new), 0, 0)
    back = store.read("prices")
    was, now = back[back.ts < "2024-02-01"], back[back.ts >= "2024-02-01"]
    assert len(was) == len(old) and was.spread.isna().all() and was.venue.isna().all() and was.trades.isna().all()
    assert (now.spread == 0.25).all() and (now.venue == "sim").all() and (now.trades == 3).all()
    columns = {g["name"]: g["columns"] for g in store.feature_groups()}["prices"]
    assert list(columns)[-3:] == ["spread", "venue", "trades"]
    assert [columns[c] for c in ("spread", "venue", "trades")] == ["float", "str", "int"]
    # the same batch again writes nothing; filling an old row is an update
    assert store.upsert(PRICES, new) == UpsertResult(0, 0, len(new))
    assert store.upsert(PRICES, old.iloc[:1].assign(spread=1.0, venue="x", trades=1)) == UpsertResult(0, 1, 0)
    with pytest.raises(BatchRejectedError, match=r"note \(a new column\): all null"):
        store.upsert(PRICES, new.assign(note=None), add_columns=True)


def test_add_columns_on_hopsworks_appends_typed_features(fake, hops):
    hops.upsert(PRICES, make_prices(n=3))
    fg = _fg(fake, "prices")
    before = [(f.name, f.type) for f in fg.features]
    with pytest.raises(BatchRejectedError):  # a refused batch appends nothing
        hops.upsert(PRICES, make_prices(n=2, start="2024-02-01").assign(spread=1.0, note=None), add_columns=True)
    assert [(f.name, f.type) for f in fg.features] == before
    hops.upsert(PRICES, make_prices(n=2, start="2024-02-01").assign(
        spread=1.0, flag=True, at=pd.Timestamp("2024-01-01", tz="UTC")), add_columns=True)
    assert [(f.name, f.type) for f in fg.features] == before + [("spread", "double"), ("flag", "boolean"),
                                                                ("at", "timestamp")]
    assert hops.read("prices", columns=["at"])["at"].isna().sum() == 9


def test_a_refused_append_is_a_store_error(fake, hops, monkeypatch):
    hops.upsert(PRICES, make_prices(n=3))

    def refuse(self, features):
        raise RestAPIError("HTTP code: 400, feature name invalid")

    monkeypatch.setattr(FakeFeatureGroup, "append_features", refuse)
    with pytest.raises(StoreError, match=r"adding columns \['spread'\] to prices v1 failed"):
        hops.upsert(PRICES, make_prices(n=2, start="2024-02-01").assign(spread=1.0), add_columns=True)
