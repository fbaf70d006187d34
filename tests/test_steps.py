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
