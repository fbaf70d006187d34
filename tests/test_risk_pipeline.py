"""Issue 9 end to end: training registers price, direction and volatility champions with the risk metrics; a forecast
carries the volatility forecast, intervals standardised by it, move probabilities and the shown direction; a store
whose only recent coins are solana and binancecoin, a year after the rest of its history, builds features, trains and
evaluates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from builders import simulated_prices

from cryptosentinel import pipelines, queries
from cryptosentinel.alerts import predictions_group
from cryptosentinel.config import Settings
from cryptosentinel.fitting import evaluate_bundle
from cryptosentinel.inference import NO_CALL
from cryptosentinel.registry_mlflow import LocalRegistry
from cryptosentinel.risk import evaluate_intervals, evaluate_volatility, price_bars
from cryptosentinel.store import PRICES
from cryptosentinel.store_local import LocalStore

pytestmark = [pytest.mark.model, pytest.mark.slow]

PRICE_KEYS = ("relative_mae", "mase", "avg_rel_mae", "interval_score_80", "interval_score_95", "interval_skill_80",
              "interval_skill_95", "coverage_80_by_vol_tercile")
VOL_KEYS = ("qlike", "qlike_skill_unconditional", "qlike_skill_ewma", "qlike_skill_best_baseline", "mz_r2")


def _trained(tmp_path, prices: pd.DataFrame, coins: list[str]):
    settings = Settings(data_dir=tmp_path, coins=coins, horizons=[24])
    store = LocalStore(tmp_path / "store.sqlite")
    store.upsert(PRICES, prices)
    pipelines.update_features(store, settings=settings)
    registry = LocalRegistry(tmp_path / "registry")
    out = pipelines.train(store, registry, settings=settings, n_folds=3)
    return settings, store, registry, out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    coins = ["bitcoin", "ethereum", "solana"]
    prices = simulated_prices(coins, "2024-01-01", "2024-07-01")
    return _trained(tmp_path_factory.mktemp("risk"), prices, coins)


def test_train_registers_price_direction_and_volatility_champions_with_their_metrics(trained):
    settings, store, registry, out = trained
    listed = queries.champions(registry)["models"]
    assert {"24h", "vol-24h", "vol-168h"} <= set(listed)
    for key in ("vol-24h", "vol-168h"):
        assert listed[key]["task"] == "volatility" and listed[key]["version"] is not None
        for metric in VOL_KEYS:
            assert metric in listed[key]["metrics"], (key, metric)
    price = registry.load_champion(24)
    for metric in PRICE_KEYS:
        assert metric in price.metrics["overall"], metric
    assert len(price.metrics["overall"]["coverage_80_by_vol_tercile"]) == 3
    assert registry.champion(24, "classification") is not None
    vol = registry.champion(24, "volatility")
    assert price.lineage["interval_sigma"] == {"family": vol["family"], "horizon": 24}
    assert out["horizons"]["24h"]["intervals"]["attached"]


def test_predict_shows_volatility_intervals_from_it_move_probabilities_and_the_shown_direction(trained):
    settings, store, registry, _ = trained
    run = pipelines.predict(store, registry, settings=settings, explain=lambda bundle, X: [[] for _ in range(len(X))],
                            now="2024-07-01")  # the clock just after the last simulated bar
    rows = pd.DataFrame(run["forecasts"])
    assert len(rows) == 3
    assert (rows["vol_forecast"] > 0).all()
    assert (rows["p_move_10"] <= rows["p_move_5"]).all() and rows["p_move_5"].between(0, 1).all()
    assert set(rows["interval_method"]) <= {"vol_conformal", "unconditional"} and (rows["interval_method"] != "").all()
    assert (rows["lo_95"] < rows["lo_80"]).all() and (rows["hi_80"] < rows["hi_95"]).all()
    clf = registry.champion(24, "classification")
    if clf["family"] == "majority":  # no classifier beat the majority: no call, with the base rate
        assert (rows["direction"] == NO_CALL).all() and rows["p_up"].isna().all()
        assert rows["p_up_base_rate"].between(0, 1).all()
    stored = store.read(predictions_group(24))
    latest = stored[stored["kind"] == "forecast"]
    assert (latest["vol_forecast"] > 0).all()


def test_served_risk_evaluates_on_a_later_window(trained):
    settings, store, registry, _ = trained
    prices = price_bars(store, settings.coins)
    start = prices["ts"].max() - pd.Timedelta(days=20)
    vol = evaluate_volatility(registry, prices, 24, start=start)
    assert vol["overall"]["n"] > 0 and set(vol["coins"]) == set(settings.coins)
    frame = pipelines.training_view(store).training_data(start)
    intervals = evaluate_intervals(registry.load_champion(24), registry.load_champion(24, "volatility"), frame, prices)
    assert 0 < intervals["overall"]["coverage_80"] <= 1 and "interval_skill_95" in intervals["overall"]


def test_a_store_with_only_solana_and_binancecoin_a_year_later_builds_features_and_evaluates(tmp_path):
    old = simulated_prices(["bitcoin", "ethereum", "solana", "binancecoin"], "2022-01-01", "2022-03-01")
    recent = simulated_prices(["solana", "binancecoin"], "2023-03-01", "2023-08-01")
    settings, store, registry, out = _trained(tmp_path, pd.concat([old, recent], ignore_index=True),
                                              ["solana", "binancecoin"])
    feats = store.read("features", coins=["solana", "binancecoin"], start="2023-03-01")
    assert len(feats) > 0 and set(feats["coin"]) == {"solana", "binancecoin"}
    assert feats["ts"].min() >= pd.Timestamp("2023-03-01", tz="UTC")  # no window straddles the year-long gap
    assert np.isfinite(feats["mkt_ret_24"]).all()  # a market without bitcoin
    frame = pipelines.training_view(store).training_data(pd.Timestamp("2023-06-01", tz="UTC"))
    report = evaluate_bundle(registry.load_champion(24), frame)
    assert report["overall"]["n"] > 0 and set(report["coins"]) == {"solana", "binancecoin"}
    assert "vol-24h" in queries.champions(registry)["models"]
