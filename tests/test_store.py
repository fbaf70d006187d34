"""The local feature store: round trips, idempotent upserts, rejected batches, reads, staleness, runs."""

import json
import re
import threading

import numpy as np
import pandas as pd
import pytest

from cryptosentinel.config import DataValidationError, Settings, StoreError, get_settings
from cryptosentinel.store import (
    FEATURES,
    PRICES,
    BatchRejectedError,
    FeatureGroupSpec,
    StaleDataError,
    Store,
    UpsertResult,
    features_group,
)
from cryptosentinel.store_hopsworks import open_store
from cryptosentinel.store_local import LocalStore

pytestmark = pytest.mark.code

COINS = ("bitcoin", "ethereum", "solana")


def make_prices(coins=COINS, n=48, start="2024-01-01", seed=0) -> pd.DataFrame:
    """An hourly frame shaped like ingest's raw prices."""
    rng = np.random.default_rng(seed)
    frames = []
    for i, coin in enumerate(coins):
        close = 100.0 * (i + 1) * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
        frames.append(pd.DataFrame({
            "coin": coin,
            "ts": pd.date_range(start, periods=n, freq="h", tz="UTC"),
            "open": close * 0.999, "high": close * 1.01, "low": close * 0.99, "close": close,
            "volume": rng.uniform(0, 10, n),
            "market_cap": np.where(rng.uniform(size=n) < 0.3, np.nan, close * 1e6),
            "source": "synthetic", "granularity": "1h"}))
    return pd.concat(frames, ignore_index=True)


def test_round_trip(store):
    df = make_prices()
    result = store.upsert(PRICES, df)
    assert result == UpsertResult(inserted=len(df), updated=0, unchanged=0)
    back = store.read("prices")
    assert str(back.ts.dtype) == "datetime64[ns, UTC]"
    pd.testing.assert_frame_equal(back, df.sort_values(["coin", "ts"]).reset_index(drop=True))
    assert back.market_cap.isna().any()  # nullable column keeps its NaNs


def test_upsert_twice_is_idempotent(store):
    df = make_prices()
    store.upsert(PRICES, df)
    before = store.read("prices")
    again = store.upsert(PRICES, df)
    assert again == UpsertResult(inserted=0, updated=0, unchanged=len(df))
    pd.testing.assert_frame_equal(store.read("prices"), before)


def test_overlapping_window_adds_no_duplicates_and_loses_nothing(store):
    first = make_prices(n=48)
    store.upsert(PRICES, first)
    overlap = first[first.ts >= "2024-01-02"]  # last 24 hours of each coin
    new = make_prices(n=24, start="2024-01-03", seed=1)
    second = pd.concat([overlap, new], ignore_index=True)
    changed = second.index[(second.coin == "ethereum") & (second.ts == pd.Timestamp("2024-01-02 05:00", tz="UTC"))]
    second.loc[changed, "close"] += 5.0
    second.loc[changed[0] + 1, "market_cap"] = np.nan if not np.isnan(second.loc[changed[0] + 1, "market_cap"]) else 1.0

    result = store.upsert(PRICES, second)
    assert result == UpsertResult(inserted=len(new), updated=2, unchanged=len(overlap) - 2)

    back = store.read("prices")
    assert not back.duplicated(["coin", "ts"]).any()
    assert len(back) == len(first) + len(new)
    expected = (pd.concat([first[first.ts < "2024-01-02"], second])
                .sort_values(["coin", "ts"]).reset_index(drop=True))
    pd.testing.assert_frame_equal(back, expected)


def _bad_batches():
    df = make_prices(n=6)
    null_key = df.copy()
    null_key.loc[2, "coin"] = None
    dup_key = pd.concat([df, df.iloc[[3]]], ignore_index=True)
    naive = df.assign(ts=df.ts.dt.tz_localize(None))
    inf = df.copy()
    inf.loc[4, "high"] = np.inf
    wrong_dtype = df.assign(close=df.close.astype(str))
    missing_col = df.drop(columns="volume")
    extra_col = df.assign(extra=1.0)
    upper = df.rename(columns={"close": "Close"})
    subsecond = df.assign(ts=df.ts + pd.Timedelta("1ms"))
    no_key = df.drop(columns="ts")
    return {"null_key": null_key, "duplicate_key": dup_key, "naive_ts": naive, "inf": inf,
            "dtype": wrong_dtype, "columns": missing_col, "columns ": extra_col,
            "column_names": upper, "ts_subsecond": subsecond, "key_columns": no_key}


@pytest.mark.parametrize("check", list(_bad_batches()))
def test_bad_batch_is_rejected_whole_and_store_unchanged(store, check):
    good = make_prices(n=6)
    store.upsert(PRICES, good)
    before = store.read("prices")
    bad = _bad_batches()[check]
    with pytest.raises(BatchRejectedError) as info:
        store.upsert(PRICES, bad)
    assert check.strip() in info.value.failures
    assert isinstance(info.value, DataValidationError)
    assert "nothing written" in str(info.value)
    pd.testing.assert_frame_equal(store.read("prices"), before)


def test_rejection_names_every_failing_check_and_rows(store):
    bad = make_prices(n=6)
    bad.loc[1, "coin"] = None
    bad.loc[7, "volume"] = -np.inf
    bad.loc[8, "ts"] = bad.loc[9, "ts"]
    with pytest.raises(BatchRejectedError) as info:
        store.upsert(PRICES, bad)
    assert set(info.value.failures) == {"null_key", "inf", "duplicate_key"}
    assert "rows [1]" in info.value.failures["null_key"]
    assert "volume: rows [7]" in info.value.failures["inf"]
    assert "rows [8, 9]" in info.value.failures["duplicate_key"]


def test_bad_first_batch_creates_nothing(store):
    bad = make_prices(n=4)
    bad.loc[0, "close"] = np.inf
    with pytest.raises(BatchRejectedError):
        store.upsert(PRICES, bad)
    assert store.read("prices").empty
    assert store.feature_groups() == []
    assert store.status()["tables"] == {}


def test_validator_runs_first(store):
    df = make_prices(n=4)

    def refuse(frame):
        raise ValueError("close looks wrong")

    with pytest.raises(BatchRejectedError, match=r"\[validate\] refuse: ValueError: close looks wrong"):
        store.upsert(PRICES, df, validate=refuse)

    def own_error(frame):
        raise DataValidationError("prices: close <= 0 in rows [1]")

    with pytest.raises(DataValidationError, match="close <= 0"):
        store.upsert(PRICES, df, validate=own_error)
    assert store.read("prices").empty

    def buggy(frame):
        return frame.no_such_column  # a bug in the validator is not a rejected batch

    with pytest.raises(AttributeError, match="no_such_column"):
        store.upsert(PRICES, df, validate=buggy)

    seen = []
    store.upsert(PRICES, df, validate=lambda frame: seen.append(len(frame)))  # returning None keeps the frame
    assert seen == [len(df)] and len(store.read("prices")) == len(df)


def test_int_batch_into_float_column_and_null_object_column(store):
    df = make_prices(n=4)
    store.upsert(PRICES, df)
    later = make_prices(n=4, start="2024-02-01").assign(volume=3, market_cap=None)
    assert later.volume.dtype.kind == "i" and later.market_cap.dtype == object
    store.upsert(PRICES, later)
    back = store.read("prices", start="2024-02-01")
    assert back.volume.dtype == float and (back.volume == 3.0).all() and back.market_cap.isna().all()


def test_generic_group_keeps_kinds(store):
    spec = FeatureGroupSpec("events", 1, primary_key=("coin", "ts"), description="mixed kinds")
    df = pd.DataFrame({"coin": ["a", "a", "b"],
                       "ts": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-01"], utc=True),
                       "n": [1, 2, 3], "flag": [True, False, True], "note": ["x", None, "z"],
                       "seen_at": pd.to_datetime(["2024-01-05", None, "2024-01-06"], utc=True)})
    store.upsert(spec, df)
    back = store.read("events")
    assert back.n.dtype == np.int64 and back.flag.dtype == bool
    assert back.note.tolist() == ["x", None, "z"]
    assert str(back.seen_at.dtype) == "datetime64[ns, UTC]" and back.seen_at.isna().sum() == 1
    assert store.feature_groups()[0]["columns"] == {"coin": "str", "ts": "datetime", "n": "int", "flag": "bool",
                                                    "note": "str", "seen_at": "datetime"}


def test_group_registry_and_conflicts(store):
    features = FeatureGroupSpec("features", 1, description="engineered", parent="prices")
    assert store.get_or_create_feature_group(features) == features
    assert store.get_or_create_feature_group(features) == features
    with pytest.raises(StoreError, match="use a new version"):
        store.get_or_create_feature_group(FeatureGroupSpec("features", 1, parent=None))
    groups = {g["name"]: g for g in store.feature_groups()}
    assert groups["features"]["parent"] == "prices"
    assert groups["features"]["primary_key"] == ["coin", "ts"]
    assert groups["features"]["event_time"] == "ts"
    assert groups["features"]["created_at"]
    with pytest.raises(StoreError, match="unknown feature group 'nope'"):
        store.read("nope")


def test_reads_by_coin_range_and_columns(store):
    store.upsert(PRICES, make_prices())
    part = store.read("prices", coins=["solana", "bitcoin"], start="2024-01-01 10:00",
                      end=pd.Timestamp("2024-01-01 20:00", tz="UTC"), columns=["close", "volume"])
    assert list(part.columns) == ["coin", "ts", "close", "volume"]
    assert part.coin.unique().tolist() == ["bitcoin", "solana"]
    assert part.ts.min() == pd.Timestamp("2024-01-01 10:00", tz="UTC")
    assert part.ts.max() == pd.Timestamp("2024-01-01 19:00", tz="UTC")  # end is exclusive
    assert len(part) == 20
    assert part.equals(part.sort_values(["coin", "ts"]).reset_index(drop=True))
    with pytest.raises(StoreError, match="no columns"):
        store.read("prices", columns=["nope"])
    assert store.read("prices", coins=["dogecoin"]).empty


def test_latest(store):
    df = make_prices()
    store.upsert(PRICES, df.sample(frac=1, random_state=1))  # order of arrival does not matter
    last = store.latest("prices")
    expected = df.sort_values("ts").groupby("coin").tail(1).sort_values("coin").reset_index(drop=True)
    pd.testing.assert_frame_equal(last, expected)
    one = store.latest("prices", coins=["ethereum", "dogecoin"], columns=["close"])
    assert one.coin.tolist() == ["ethereum"] and list(one.columns) == ["coin", "ts", "close"]


def test_staleness(store):
    store.upsert(PRICES, make_prices(n=10))
    newest = pd.Timestamp("2024-01-01 09:00", tz="UTC")
    st = store.staleness("prices", now="2024-01-01 12:30")
    assert st.newest == {c: newest for c in COINS}
    assert st.seconds == {c: 3.5 * 3600 for c in COINS}
    assert st.max_age == pd.Timedelta("3.5h")
    assert st.check("4h") is st
    with pytest.raises(StaleDataError, match="bitcoin"):
        st.check("1h")
    some = store.staleness("prices", coins=["bitcoin", "dogecoin"], now=newest)
    assert some.missing == ("dogecoin",) and some.is_stale("1d")
    assert json.dumps(some.to_dict())
    assert store.staleness("features").newest == {}


def test_summary_and_status(store):
    df = make_prices(n=5)
    store.upsert(PRICES, df)
    summary = store.summary("prices")
    assert summary == {"rows": 15, "coins": {c: {"rows": 5, "first": "2024-01-01T00:00:00+00:00",
                                                  "last": "2024-01-01T04:00:00+00:00"} for c in COINS}}
    assert store.summary("features") == {"rows": 0, "coins": {}}
    status = store.status()
    json.dumps(status)
    assert status["backend"] == "local"
    assert status["path"] == str(store.path)
    assert status["journal_mode"] == "wal"
    prices = status["tables"]["prices"]
    assert (prices["rows"], prices["coins"], prices["version"], prices["columns"]) == (15, 3, 1, 10)
    assert prices["first"] == "2024-01-01T00:00:00+00:00" and prices["last"] == "2024-01-01T04:00:00+00:00"


def test_run_records(store):
    ingest = {"source": "csv", "coins": ["bitcoin"], "rows": 10,
              "span": [pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-01-02", tz="UTC")],
              "gaps": [], "http_status": {"200": 3}, "retries": np.int64(1), "duration_s": 0.25}
    first = store.record_run("ingest", ingest)
    store.record_run("features", {"rows": 5})
    store.record_run("ingest", {"rows": 11})
    runs = store.runs()
    assert [r["kind"] for r in runs] == ["ingest", "features", "ingest"]
    ingests = store.runs("ingest", limit=5)
    assert [r["record"]["rows"] for r in ingests] == [11, 10]
    assert ingests[1]["id"] == first
    assert ingests[1]["record"]["span"] == ["2024-01-01T00:00:00+00:00", "2024-01-02T00:00:00+00:00"]
    assert ingests[1]["record"]["retries"] == 1
    assert pd.Timestamp(ingests[0]["created_at"]).tzinfo is not None
    assert len(store.runs(limit=1)) == 1
    with pytest.raises(StoreError, match="JSON"):
        store.record_run("bad", {"x": object()})
    nan_id = store.record_run("metrics", {"mae": float("nan"), "skill": np.float64(np.inf), "n": 3})
    assert store.runs("metrics")[0] == {**store.runs("metrics")[0], "id": nan_id,
                                        "record": {"mae": None, "skill": None, "n": 3}}


def test_failure_inside_transaction_leaves_previous_state(store):
    store.upsert(PRICES, make_prices(n=5))
    before = store.read("prices")

    def boom():
        raise RuntimeError("crash before commit")

    store._before_commit = boom
    with pytest.raises(RuntimeError):
        store.upsert(PRICES, make_prices(n=10, seed=3))
    store._before_commit = None
    pd.testing.assert_frame_equal(store.read("prices"), before)
    assert store.upsert(PRICES, make_prices(n=10, seed=3)).rows == 30  # the store still takes writes


def test_threads_share_a_store(store):
    store.upsert(PRICES, make_prices(n=24))
    errors, lengths = [], []

    def reader():
        try:
            for _ in range(20):
                lengths.append(len(store.read("prices", coins=["bitcoin"])))
                store.latest("prices")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for day in range(2, 6):
        store.upsert(PRICES, make_prices(n=24, start=f"2024-01-0{day}", seed=day))
    for t in threads:
        t.join()
    assert not errors
    assert set(lengths) <= {24 * k for k in range(1, 6)}


def test_open_store_uses_settings(tmp_path):
    store = open_store()
    try:
        assert isinstance(store, Store)
        assert store.backend == "local"
        assert store.status()["path"] == str(get_settings().store_path)
        assert get_settings().store_path == tmp_path / "data" / "store.sqlite"
    finally:
        store.close()
    other = open_store(Settings(_env_file=None, data_dir=tmp_path / "x", store_backend="local"))
    assert other.status()["path"] == str(tmp_path / "x" / "store.sqlite")
    other.close()


def test_corrupt_file_is_a_store_error(tmp_path):
    path = tmp_path / "store.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="store"):
        LocalStore(path)


def test_other_datetime_units_and_timezones_are_accepted(store):
    df = make_prices(n=4)
    store.upsert(PRICES, df.assign(ts=df.ts.astype("datetime64[us, UTC]")))
    result = store.upsert(PRICES, df.assign(ts=df.ts.dt.tz_convert("Asia/Tokyo")))  # same instants
    assert result.unchanged == len(df)
    pd.testing.assert_frame_equal(store.read("prices"), df.sort_values(["coin", "ts"]).reset_index(drop=True))


def test_features_group_versions_follow_the_feature_set(store, monkeypatch):
    import cryptosentinel.features as features

    first = features_group(store)
    assert (first.name, first.version, first.parent) == (FEATURES.name, 1, PRICES.name)
    assert f"feature_version={features.FEATURE_VERSION}" in first.description
    assert features_group(store) == first
    real = features.FEATURE_VERSION
    monkeypatch.setattr(features, "FEATURE_VERSION", "something-else")
    assert features_group(store).version == 2
    monkeypatch.setattr(features, "FEATURE_VERSION", real)
    assert features_group(store).version == 1
    assert features_group(store, feature_version="something-else").version == 2
    assert [g["version"] for g in store.feature_groups() if g["name"] == "features"] == [1, 2]


def test_times_may_be_unix_seconds(store):
    store.upsert(PRICES, make_prices(n=4))
    start = int(pd.Timestamp("2024-01-01 02:00", tz="UTC").timestamp())
    assert store.read("prices", coins=["bitcoin"], start=start)["ts"].dt.hour.tolist() == [2, 3]
    with pytest.raises(StoreError, match="start: cannot read"):
        store.read("prices", start="not a time")


# --- schema evolution: a group gains nullable columns --------------------------------------------------

def _wider(df: pd.DataFrame) -> pd.DataFrame:
    """The rows with one new column of every storable kind."""
    return df.assign(spread=0.25, trades=7, halted=False, venue="sim",
                     listed_at=pd.Timestamp("2023-06-01", tz="UTC"))


def _table_columns(store: LocalStore, spec: FeatureGroupSpec) -> list[str]:
    with store._read() as conn:
        return [r[1] for r in conn.execute(f'PRAGMA table_info("{spec.table}")')]


def test_add_columns_keeps_stored_rows_and_reads_them_as_null(store, tmp_path):
    old = make_prices(n=4)
    store.upsert(PRICES, old)
    new = _wider(make_prices(n=2, start="2024-02-01"))
    with pytest.raises(BatchRejectedError, match=r"unexpected \['spread'.*add_columns=True"):
        store.upsert(PRICES, new)  # without the flag the schema stays fixed
    assert store.upsert(PRICES, new, add_columns=True) == UpsertResult(len(new), 0, 0)

    back = store.read("prices")
    assert len(back) == len(old) + len(new)
    was = back[back.ts < "2024-02-01"]
    pd.testing.assert_frame_equal(was[list(old.columns)].reset_index(drop=True),
                                  old.sort_values(["coin", "ts"]).reset_index(drop=True))  # untouched
    assert was.spread.isna().all() and was.trades.isna().all() and was.halted.isna().all()
    assert was.venue.tolist() == [None] * len(was) and was.listed_at.isna().all()  # as a stored NULL reads
    now = back[back.ts >= "2024-02-01"]
    assert (now.spread == 0.25).all() and (now.trades == 7).all() and (~now.halted.astype(bool)).all()
    assert (now.venue == "sim").all() and (now.listed_at == pd.Timestamp("2023-06-01", tz="UTC")).all()
    columns = store.feature_groups()[0]["columns"]
    assert list(columns)[-5:] == ["spread", "trades", "halted", "venue", "listed_at"]
    assert [columns[c] for c in ["spread", "trades", "halted", "venue", "listed_at"]] == \
        ["float", "int", "bool", "str", "datetime"]
    assert _table_columns(store, PRICES) == list(columns)

    # the stored rows can be filled later (an update), and a second process sees the wider group
    assert store.upsert(PRICES, old.assign(spread=0.5, trades=1, halted=True, venue="x",
                                           listed_at=pd.Timestamp("2023-01-01", tz="UTC"))).updated == len(old)
    with LocalStore(store.path) as other:
        assert other.read("prices", columns=["spread"]).spread.notna().all()
    with pytest.raises(BatchRejectedError, match="missing"):
        store.upsert(PRICES, make_prices(n=1, start="2024-03-01"), add_columns=True)  # columns never drop


@pytest.mark.parametrize("column,why", [
    ("note", "note (a new column): all null"),
    ("blob", "blob (a new column): cannot store"),
])
def test_add_columns_refuses_columns_without_a_storable_kind(store, column, why):
    store.upsert(PRICES, make_prices(n=3))
    before, json_before = store.read("prices"), store.feature_groups()[0]["columns"]
    df = make_prices(n=2, start="2024-02-01").assign(spread=1.0)
    df[column] = None if column == "note" else [{"a": 1}] * len(df)
    with pytest.raises(BatchRejectedError, match=re.escape(why)) as info:
        store.upsert(PRICES, df, add_columns=True)
    assert "dtype" in info.value.failures
    assert store.feature_groups()[0]["columns"] == json_before and _table_columns(store, PRICES) == list(json_before)
    pd.testing.assert_frame_equal(store.read("prices"), before)


def test_key_columns_are_never_added():
    from cryptosentinel.store import check_batch
    df = make_prices(n=2)
    _, schema = check_batch(PRICES, df)
    without_ts = {c: k for c, k in schema.items() if c != "ts"}
    with pytest.raises(BatchRejectedError, match=r"key columns \['ts'\] cannot be added") as info:
        check_batch(PRICES, df, without_ts, add_columns=True)
    assert "add_columns" in info.value.failures


def test_added_columns_roll_back_with_a_failed_batch(store):
    store.upsert(PRICES, make_prices(n=5))
    before, json_before = store.read("prices"), store.feature_groups()[0]["columns"]

    def boom():
        raise RuntimeError("crash after the ALTER TABLE, before commit")

    store._before_commit = boom
    with pytest.raises(RuntimeError):
        store.upsert(PRICES, _wider(make_prices(n=3, start="2024-02-01")), add_columns=True)
    store._before_commit = None
    assert store.feature_groups()[0]["columns"] == json_before  # the JSON ...
    assert _table_columns(store, PRICES) == list(json_before)  # ... and the table are as they were
    pd.testing.assert_frame_equal(store.read("prices"), before)
    with pytest.raises(BatchRejectedError, match="unexpected"):
        store.upsert(PRICES, _wider(make_prices(n=3, start="2024-02-01")))
    assert store.upsert(PRICES, _wider(make_prices(n=3, start="2024-02-01")), add_columns=True).inserted == 9
