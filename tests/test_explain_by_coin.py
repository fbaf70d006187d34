"""Explanations per coin (issue 10): on a store trained by the pipeline, every coin gets an `explain_coin` record of
the served model's mean |SHAP| over its last week, once a day (the drift step's due rule). The Dask equality of the
inference flow's records is checked in tests/test_drift_by_coin.py."""

import time

import pandas as pd
import pytest

from cryptosentinel.alerts import DRIFT_EVERY, coin_due
from cryptosentinel.config import DEFAULT_COINS, Settings
from cryptosentinel.explain_outputs import (
    EXPLAIN_COIN_KIND,
    coin_explain_records,
    explain_by_coin,
    explainable_model,
)
from cryptosentinel.store import features_group
from cryptosentinel.store_local import LocalStore

COINS = list(DEFAULT_COINS)  # the 8 coins of the shared data, simulated


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    "A simulated store of 8 coins with features, and a registry trained on it (24 h)."
    from cryptosentinel.pipelines import ingest_to_store, train, update_features
    from cryptosentinel.registry_hopsworks import open_registry
    folder = tmp_path_factory.mktemp("explain_by_coin")
    settings = Settings(_env_file=None, data_dir=folder, coins=COINS, horizons=[24])
    with LocalStore(folder / "store.sqlite") as store:
        ingest_to_store(store, "synthetic", coins=COINS, start="2024-01-01", end="2024-03-31", settings=settings)
        update_features(store, settings=settings)
        train(store, open_registry(settings), coins=COINS, settings=settings, n_folds=2)
        as_of = store.latest(features_group(store), coins=COINS, columns=["coin", "ts"])["ts"].max()
    return settings, as_of


@pytest.mark.slow
@pytest.mark.model
def test_every_coin_gets_the_served_models_importances_once_a_day(trained):
    from cryptosentinel.registry_hopsworks import open_registry
    settings, as_of = trained
    registry = open_registry(settings)
    bundle, role = explainable_model(registry, 24)
    champion = registry.champion(24)
    if champion["is_random_walk"]:  # the forecasts are explained with the best challenger: so are the coins
        assert role == "best_challenger" and bundle.name == champion["best_challenger"]["name"].removesuffix("_24h")
    else:
        assert role == "champion" and (bundle.registered_name, bundle.version) == (champion["name"], champion["version"])
    with LocalStore(settings.data_dir / "store.sqlite") as store:
        t0 = time.perf_counter()
        got = explain_by_coin(store, registry, COINS, as_of, settings, due=coin_due)
        seconds = time.perf_counter() - t0
        assert sorted(got) == sorted(COINS) and all(r is not None for r in got.values())
        for coin, r in got.items():
            assert (r["coin"], r["horizon"], r["model"], r["version"], r["role"]) == (
                coin, 24, bundle.registered_name, bundle.version, role)
            shown = [f["mean_abs_shap"] for f in r["top_features"]]
            assert len(shown) == settings.top_features
            assert {f["feature"] for f in r["top_features"]} <= set(bundle.feature_names)
            assert all(v >= 0 for v in shown) and shown == sorted(shown, reverse=True)
            assert 0 < sum(shown) <= r["total_mean_abs_shap"] + 1e-12  # the top features are part of the whole
            assert 100 <= r["rows"] <= 168 and r["current"]["last"] == as_of.isoformat()  # a week of hourly rows
        assert coin_explain_records(store) == got
        # the same day again: nothing due, nothing recorded; a day of new data later every coin is due again
        again = explain_by_coin(store, registry, COINS, as_of + pd.Timedelta(hours=3), settings, due=coin_due)
        assert set(again.values()) == {None}
        assert len(store.runs(EXPLAIN_COIN_KIND, limit=100)) == len(COINS)
        later = explain_by_coin(store, registry, COINS[:2], as_of + DRIFT_EVERY, settings, due=coin_due)
        assert all(r is not None for r in later.values())
    print(f"explain_by_coin: {len(COINS)} coins in {seconds:.2f} s ({bundle.registered_name}, {role})")
