"""Drift per coin (issue 10): a planted drift in one coin is found in that coin only, and the inference flow's
per-coin drift stage stores the same records (drift and explanations per coin) on a local Dask cluster (in parts)
as locally (one task)."""

import shutil

import numpy as np
import pandas as pd
import pytest

from cryptosentinel.alerts import DRIFT_COIN_KIND, coin_drift_records, drift_by_coin, stored_alerts
from cryptosentinel.config import Settings, get_settings
from cryptosentinel.explain_outputs import coin_explain_records
from cryptosentinel.features import build_features
from cryptosentinel.sources import simulate_prices
from cryptosentinel.store import PRICES, features_group
from cryptosentinel.store_local import LocalStore

COINS = ["bitcoin", "ethereum", "solana"]
VOLATILE = {"created_at", "duration_s", "json_path", "html_path"}  # times and file stamps differ between runs


def planted_prices(coin: str, factor: float, days: int = 120, seed: int = 7) -> pd.DataFrame:
    "Simulated prices whose `coin` moves `factor` times as much in its last week."
    calm = simulate_prices(COINS, "2022-08-18", pd.Timestamp("2022-08-18", tz="UTC") + pd.Timedelta(days=days),
                           seed=seed)
    wild = calm["coin"].eq(coin) & (calm["ts"] > calm["ts"].max() - pd.Timedelta(days=7))
    log_close = np.log(calm["close"])
    moves = log_close.groupby(calm["coin"]).diff().fillna(0.0)
    scaled = np.exp(log_close.groupby(calm["coin"]).transform("first")
                    + moves.where(~wild, factor * moves).groupby(calm["coin"]).cumsum())
    ratio = scaled / calm["close"]
    return calm.assign(**{c: calm[c] * ratio for c in ("open", "high", "low", "close")})


def comparable(store, records=coin_drift_records) -> dict[str, dict]:
    return {c: {k: v for k, v in r.items() if k not in VOLATILE} for c, r in records(store).items()}


@pytest.mark.data
def test_drift_by_coin_finds_the_planted_coin_only_alerts_it_and_is_repeatable(tmp_path):
    prices = planted_prices("solana", 5.0)
    features = build_features(prices)
    as_of = features["ts"].max()
    lineage = {"data_end": (as_of - pd.Timedelta(days=8)).isoformat()}
    got = []
    for name in ("a", "b"):
        settings = Settings(_env_file=None, data_dir=tmp_path / name)
        with LocalStore(tmp_path / name / "store.sqlite") as store:
            store.upsert(PRICES, prices)
            store.upsert(features_group(store), features)
            reports = drift_by_coin(store, lineage, 24, COINS, as_of, settings, now=as_of)
            assert {c: r.drift_detected for c, r in reports.items()} == {"bitcoin": False, "ethereum": False,
                                                                        "solana": True}
            alerts = [a for a in stored_alerts(store, as_of - pd.Timedelta(days=1)) if a.rule == "feature_drift_coin"]
            assert [(a.coin, a.severity) for a in alerts] == [("solana", "warning")]
            # not due again before a day of new data; then due, and the cooldown keeps the alert from repeating
            assert set(drift_by_coin(store, lineage, 24, COINS, as_of + pd.Timedelta(hours=3), settings).values()) == {None}
            assert len(store.runs(DRIFT_COIN_KIND, limit=10)) == 3
            got.append(comparable(store))
            record = got[-1]["solana"]
            assert record["coin"] == "solana" and record["horizon"] == 24 and record["current"]["coins"] == ["solana"]
    assert got[0] == got[1]  # seeded: the same windows give the same records


@pytest.mark.data
def test_without_the_plant_no_coin_drifts_and_a_lineage_without_data_end_checks_nothing(tmp_path):
    prices = planted_prices("solana", 1.0)
    features = build_features(prices)
    as_of = features["ts"].max()
    settings = Settings(_env_file=None, data_dir=tmp_path)
    with LocalStore(tmp_path / "store.sqlite") as store:
        store.upsert(PRICES, prices)
        store.upsert(features_group(store), features)
        assert set(drift_by_coin(store, {}, 24, COINS, as_of, settings).values()) == {None}
        reports = drift_by_coin(store, {"data_end": (as_of - pd.Timedelta(days=8)).isoformat()}, 24, COINS, as_of,
                                settings)
    assert {c: r.drift_detected for c, r in reports.items()} == dict.fromkeys(COINS, False)


@pytest.fixture(scope="module")
def prefect_api():
    from prefect.testing.utilities import prefect_test_harness
    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.mark.slow
@pytest.mark.model
def test_the_inference_flow_on_a_local_dask_cluster_stores_the_local_runs_per_coin_drift(tmp_path, monkeypatch,
                                                                                        prefect_api):
    import time

    from distributed import LocalCluster

    from cryptosentinel import flows
    from cryptosentinel.pipelines import ingest_to_store, train, update_features
    from cryptosentinel.registry_hopsworks import open_registry
    monkeypatch.setenv("CRYPTOSENTINEL_COINS", ",".join(COINS))
    monkeypatch.setenv("CRYPTOSENTINEL_HORIZONS", "24")
    monkeypatch.setenv("CRYPTOSENTINEL_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("CRYPTOSENTINEL_ORCHESTRATION__RETRY_DELAY_S", "0")
    monkeypatch.delenv("CRYPTOSENTINEL_ORCHESTRATION__DASK_ADDRESS", raising=False)
    get_settings.cache_clear()
    settings = get_settings().model_copy(update={"data_dir": tmp_path / "local"})
    with LocalStore(tmp_path / "local" / "store.sqlite") as store:
        ingest_to_store(store, "synthetic", coins=COINS, start="2024-01-01", end="2024-04-30", settings=settings)
        update_features(store, settings=settings)
        train(store, open_registry(settings), coins=COINS, settings=settings, n_folds=2)
    shutil.copytree(tmp_path / "local", tmp_path / "dask")  # the same store and champion for both runs
    now = "2024-04-30T01:00:00+00:00"
    t0 = time.perf_counter()
    local = flows.run_flow("inference_pipeline", data_dir=str(tmp_path / "local"), now=now)
    local_s = time.perf_counter() - t0
    assert [t["task"] for t in local["tasks"]] == ["predict", "drift"]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", protocol="tcp://",
                      dashboard_address=None) as cluster:
        monkeypatch.setenv("CRYPTOSENTINEL_ORCHESTRATION__DASK_ADDRESS", cluster.scheduler_address)
        get_settings.cache_clear()
        dask = flows.run_flow("inference_pipeline", data_dir=str(tmp_path / "dask"), now=now)
    get_settings.cache_clear()
    assert [t["task"] for t in dask["tasks"]] == ["predict", "drift-1of3", "drift-2of3", "drift-3of3"]
    assert [t["parameters"]["part"] for t in dask["tasks"][1:]] == [[c] for c in COINS]
    with LocalStore(tmp_path / "local" / "store.sqlite") as a, LocalStore(tmp_path / "dask" / "store.sqlite") as b:
        one, parts = comparable(a), comparable(b)
        explained, explained_parts = comparable(a, coin_explain_records), comparable(b, coin_explain_records)
    assert sorted(one) == COINS and one == parts
    assert sorted(explained) == COINS and explained == explained_parts
    assert dask["figures"]["coins_drifting"] == local["figures"]["coins_drifting"]
    assert dask["figures"]["coins_explained"] == local["figures"]["coins_explained"] == COINS
    print(f"inference flow: local {local_s:.1f} s; drift stage local "
          f"{local['tasks'][1]['duration_s']} s, on Dask {[t['duration_s'] for t in dask['tasks'][1:]]} s")
