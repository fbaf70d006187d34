"""Pipeline steps: incremental features, idempotence, resumable backfill, status of the features table."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cryptosentinel import features as features_mod
from cryptosentinel import pipelines as steps
from cryptosentinel.features import FEATURE_VERSION, build_features
from cryptosentinel.store import PRICES, features_group
from cryptosentinel.store_local import LocalStore

pytestmark = pytest.mark.data

COINS = ["bitcoin", "ethereum"]


def test_incremental_update_equals_a_full_recompute(store, tmp_path):
    steps.ingest_to_store(store, "synthetic", coins=COINS, start="2024-01-01", end="2024-02-01")
    steps.update_features(store, coins=COINS)
    steps.ingest_to_store(store, "synthetic", coins=COINS, start="2024-01-25", end="2024-02-05")
    run = steps.update_features(store, coins=COINS)
    assert run["store"]["inserted"] == 2 * 4 * 24 and run["store"]["updated"] == 0
    group = features_group(store)
    stored = store.read(group, coins=COINS).reset_index(drop=True)
    full = build_features(store.read(PRICES, coins=COINS))
    full = full.sort_values(["coin", "ts"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(stored[full.columns], full, check_dtype=False, rtol=1e-9, atol=1e-12)


def test_features_twice_and_full_recompute_change_nothing(store):
    steps.ingest_to_store(store, "synthetic", coins=COINS, start="2024-01-01", end="2024-02-01")
    first = steps.update_features(store, coins=COINS)
    assert first["store"]["inserted"] > 0
    for full in (False, True):
        again = steps.update_features(store, coins=COINS, full=full)
        assert again["store"]["inserted"] == again["store"]["updated"] == 0


def test_a_corrected_price_updates_the_features_that_saw_it(store):
    steps.ingest_to_store(store, "synthetic", coins=COINS, start="2024-01-01", end="2024-02-01")
    steps.update_features(store, coins=COINS)
    prices = store.read(PRICES, coins=["ethereum"])
    last = prices.tail(1).copy()
    last["close"] *= 1.01
    last["high"] = last[["high", "close"]].max(axis=1)
    store.upsert(PRICES, last)
    run = steps.update_features(store, coins=COINS)
    assert run["store"]["updated"] >= 1 and run["store"]["inserted"] == 0


def test_features_without_prices_is_a_clear_error(store):
    with pytest.raises(Exception, match="run `cryptosentinel ingest` first"):
        steps.update_features(store, coins=COINS)


def test_a_changed_feature_set_gets_a_new_group_version(store, monkeypatch):
    steps.ingest_to_store(store, "synthetic", coins=COINS, start="2024-01-01", end="2024-02-01")
    steps.update_features(store, coins=COINS)
    assert features_group(store).version == 1
    monkeypatch.setattr(features_mod, "FEATURE_VERSION", "something-else")
    assert features_group(store).version == 2
    monkeypatch.setattr(features_mod, "FEATURE_VERSION", FEATURE_VERSION)
    assert features_group(store).version == 1


def test_interrupted_backfill_resumes_and_matches_an_uninterrupted_one(store, tmp_path, monkeypatch):
    real = steps.ingest_to_store
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("interrupted")
        return real(*args, **kwargs)

    monkeypatch.setattr(steps, "ingest_to_store", flaky)
    with pytest.raises(KeyboardInterrupt):
        steps.backfill(store, days=200, source="synthetic", coins=COINS)
    monkeypatch.setattr(steps, "ingest_to_store", real)
    resumed = steps.backfill(store, days=200, source="synthetic", coins=COINS)
    assert resumed["chunks_skipped"] == 2
    total = resumed["chunks_skipped"] + resumed["chunks_fetched"]
    assert total == len(steps.backfill_windows(*_span(200))) * len(COINS)

    with LocalStore(tmp_path / "other.sqlite") as other:
        steps.backfill(other, days=200, source="synthetic", coins=COINS)
        pd.testing.assert_frame_equal(store.read(PRICES), other.read(PRICES))
        assert store.summary(features_group(store)) == other.summary(features_group(other))
    again = steps.backfill(store, days=200, source="synthetic", coins=COINS)
    assert again["chunks_fetched"] <= len(COINS)  # at most the newest chunk, if the hour turned meanwhile


def _span(days):
    from cryptosentinel.ingest import last_full_bar
    end = last_full_bar("1h")
    return end - pd.Timedelta(days=days), end


def test_coingecko_backfill_without_a_pro_key_is_cut_to_365_days(store, monkeypatch):
    seen = []
    monkeypatch.setattr(steps, "ingest_to_store", lambda store, source, coins, start, end, settings: seen.append(start))
    monkeypatch.setattr(steps, "update_features", lambda *a, **k: {"store": {}})
    run = steps.backfill(store, days=500, source="coingecko", coins=["bitcoin"])
    assert "365" in run["notes"][0]
    assert min(seen) >= _span(365)[0] - pd.Timedelta(hours=1)


@pytest.mark.shared_data
def test_csv_ingest_then_features_fill_the_feature_group_and_status_shows_it(shared_data: Path):
    def cli(*args):
        result = subprocess.run([sys.executable, "-m", "cryptosentinel.cli", *args], capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stderr
        return result.stdout

    cli("ingest", "--source", "csv", "--path", str(shared_data / "hourly_binance_spot"))
    cli("features")
    report = json.loads(cli("status", "--json"))
    features = report["store"]["tables"]["features"]
    assert set(features["coins"]) == set(report["store"]["tables"]["prices"]["coins"])
    assert len(features["coins"]) == 8
    assert features["feature_version"] == FEATURE_VERSION
    for coin, summary in features["coins"].items():
        prices = report["store"]["tables"]["prices"]["coins"][coin]
        assert summary["last"] <= prices["last"] and summary["rows"] > 20_000
    assert features["staleness"]["max_age_s"] > 0
    assert "0 new, 0 updated" in cli("features")


def test_incremental_update_after_a_gap_misses_no_rows(store):
    from cryptosentinel.sources import simulate_prices
    prices = simulate_prices(COINS, "2024-01-01", "2024-02-05")
    gap = (prices["ts"] >= "2024-01-20") & (prices["ts"] < "2024-01-20 12:00")  # a 12-hour outage
    prices = prices[~gap]
    store.upsert(PRICES, prices[prices["ts"] < "2024-02-01"])
    steps.update_features(store, coins=COINS)
    store.upsert(PRICES, prices[prices["ts"] >= "2024-02-01"])
    steps.update_features(store, coins=COINS)
    stored = store.read(features_group(store), coins=COINS)
    full = build_features(store.read(PRICES, coins=COINS))
    assert len(stored) == len(full)


# --- the hindcast (issue 9, item 7): purged calibration, causal regimes, what the record says ------------------

H = 24


@pytest.fixture(scope="module")
def hindcast_frame():
    from builders import feature_frame, simulated_prices
    return feature_frame(simulated_prices(COINS, "2024-01-01", "2024-04-15", seed=5), with_close=True)


@pytest.fixture(scope="module")
def baseline_run(hindcast_frame):
    from cryptosentinel.fitting import train_horizon
    return train_horizon(hindcast_frame, H, n_folds=3, models=[])


def _last_start(run) -> pd.Timestamp:
    return pd.Timestamp(run.lineage["folds"][-1]["test_start"])


def test_hindcast_calibration_is_purged_as_training_is(baseline_run):
    """Rows of earlier folds whose label window reaches the last fold (t + horizon >= its test start) do not
    calibrate the hindcast's intervals: poisoning their outcomes changes no interval; poisoning an earlier
    row does (so the test can see a leak)."""
    import copy

    import numpy as np
    run = copy.copy(baseline_run)
    p = baseline_run.predictions
    start = _last_start(run)
    reaching = (p["fold"] < p["fold"].max()) & (p["ts"] + H * pd.Timedelta(hours=1) >= start)
    assert reaching.sum() == len(COINS) * H  # the last horizon of the previous fold, every coin
    clean = steps.hindcast(run, "random_walk")
    run.predictions = p.assign(y_ret=np.where(reaching, 1e3 * p["scale"], p["y_ret"]))
    poisoned = steps.hindcast(run, "random_walk")
    for col in ("lo_80", "hi_80", "lo_95", "hi_95"):
        np.testing.assert_array_equal(poisoned[col].to_numpy(), clean[col].to_numpy())
    assert (clean["made_at"] >= start).all()
    earlier = (p["fold"] < p["fold"].max()) & ~reaching
    run.predictions = p.assign(y_ret=np.where(earlier, 1e3 * p["scale"], p["y_ret"]))
    assert (steps.hindcast(run, "random_walk")["hi_80"] > 10 * clean["hi_80"]).all()


def test_hindcast_regimes_are_causal(hindcast_frame, baseline_run):
    """The hindcast's regime model sees only rows before the last fold's test start: changing the data after
    that start changes neither the model nor the label of any row whose own features did not change."""
    start = _last_start(baseline_run)
    labels, model = steps.hindcast_regimes(hindcast_frame, baseline_run)
    assert pd.Timestamp(model.fit_window["end"]) < start
    assert labels["ts"].min() >= start and len(labels) == (hindcast_frame["ts"] >= start).sum()
    late = hindcast_frame["ts"] >= start + (hindcast_frame["ts"].max() - start) / 2
    vol = [c for c in hindcast_frame.columns if c.startswith("vol_")]
    changed = hindcast_frame.copy()
    changed.loc[late, vol] = changed.loc[late, vol] * 5  # a wild second half of the last fold
    again, model2 = steps.hindcast_regimes(changed, baseline_run)
    assert model2.to_dict() == model.to_dict()
    keep = ~late[hindcast_frame["ts"] >= start].to_numpy()
    pd.testing.assert_frame_equal(again[keep], labels[keep])
    # the model fitted on the whole frame (what labels live forecasts) does see those rows
    from cryptosentinel.regimes import fit_regimes
    assert fit_regimes(changed, seed=42).to_dict()["centres"] != fit_regimes(hindcast_frame, seed=42).to_dict()["centres"]


@pytest.mark.model
def test_train_seeds_a_causally_labelled_hindcast_and_says_what_it_is(store, tmp_path):
    from cryptosentinel.config import Settings
    from cryptosentinel.registry_mlflow import LocalRegistry
    settings = Settings(_env_file=None, data_dir=tmp_path, coins=COINS, horizons=[H])
    steps.ingest_to_store(store, "synthetic", start="2024-01-01", end="2024-03-20", settings=settings)
    steps.update_features(store, settings=settings)
    out = steps.train(store, LocalRegistry.from_settings(settings), settings=settings, n_folds=2)
    seeded = out["horizons"][f"{H}h"]["hindcast"]
    assert seeded["seeded"] > 0 and seeded["track_record"] == steps.TRACK_RECORD
    assert "walk-forward out-of-sample from the last training fold" in steps.TRACK_RECORD
    assert pd.Timestamp(seeded["regimes_fit_window"]["end"]) < pd.Timestamp(seeded["from"])
    record = store.runs("train")[0]["record"]
    assert record["track_record"] == steps.TRACK_RECORD and record["hindcast"][f"{H}h"]["seeded"] == seeded["seeded"]
    rows = store.read(store.get_or_create_feature_group(steps.inference.predictions_group(H)))
    assert set(rows["kind"]) == {"hindcast"} and rows["model"].str.contains("@walk-forward-fold-").all()
