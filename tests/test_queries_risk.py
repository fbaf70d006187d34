"""Query layer (issue 9): forecasts carry the direction shown, P(up) or the base rate, and the risk columns; the
model listing shows the volatility champion beside the price models (`models.models["vol-24h"]`)."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

from cryptosentinel import inference, queries
from cryptosentinel.config import Settings
from cryptosentinel.registry import ModelBundle
from cryptosentinel.registry_mlflow import LocalRegistry

pytestmark = pytest.mark.model

T0 = pd.Timestamp("2024-03-01", tz="UTC")
IVALS = {"80": ([-0.01, -0.02], [0.01, 0.02]), "95": ([-0.02, -0.04], [0.02, 0.04])}
VOL_METRICS = {"qlike": 0.41, "qlike_skill_unconditional": 0.32, "qlike_skill_ewma": 0.21,
               "qlike_skill_best_baseline": 0.21, "mz_r2": 0.5, "n": 1000}


@pytest.fixture
def settings(tmp_path):
    return Settings(_env_file=None, data_dir=tmp_path / "data", coins=["bitcoin", "ethereum"], horizons=[24])


def rows(made_at, **columns):
    X = pd.DataFrame({"coin": ["bitcoin", "ethereum"], "ts": [made_at] * 2, "close": [100.0, 10.0]})
    return inference.forecast_rows(X, 24, [0.0, 0.0], IVALS, [np.nan, np.nan], "random_walk@1", "forecast", **columns)


def test_forecast_records_carry_the_direction_shown_and_the_risk_columns(store, settings):
    inference.record_predictions(store, rows(T0, p_up_base_rate=0.47, vol_forecast=[0.03, 0.05],
                                             p_move_5=[0.1, 0.3], p_move_10=[0.01, 0.05], interval_method="vol_conformal"))
    latest = {f.coin: f for f in queries.latest_forecasts(store, settings=settings)}
    btc = latest["bitcoin"]
    assert (btc.direction, btc.p_up, btc.p_up_base_rate) == (inference.NO_CALL, None, 0.47)
    assert (btc.vol_forecast, btc.p_move_5, btc.p_move_10, btc.interval_method) == (0.03, 0.1, 0.01, "vol_conformal")
    page = queries.prediction_history(store, 24, coin="ethereum", settings=settings)
    assert page.rows[0].vol_forecast == 0.05 and page.rows[0].p_move_5 == 0.3
    fields = queries.Forecast.model_fields
    assert "probability of an up move beyond the dead band" in fields["p_up"].description
    assert all(fields[c].description for c in ("direction", "p_up_base_rate", *inference.RISK_COLUMNS))
    assert "no call" in json.dumps(queries.Forecast.model_json_schema())  # the API's documentation says it


def test_a_history_from_before_the_risk_columns_still_answers(store, settings):
    old = rows(T0).drop(columns=[*inference.RISK_COLUMNS, "p_up_base_rate"]).assign(direction="none")
    inference.record_predictions(store, old)
    inference.record_predictions(store, rows(T0 + pd.Timedelta(hours=1), vol_forecast=[0.03, 0.05]))
    page = queries.prediction_history(store, 24, settings=settings)
    assert page.total == 4
    assert {r.direction for r in page.rows} == {inference.NO_CALL}  # the older "none" reads as "no call"
    older = [r for r in page.rows if r.made_at == T0]
    newer = [r for r in page.rows if r.made_at != T0]
    assert all(r.vol_forecast is None and r.interval_method == "" for r in older)  # columns added later: empty
    assert sorted(r.vol_forecast for r in newer) == [0.03, 0.05]  # the history gained the columns


@pytest.fixture
def registry_with_volatility(settings):
    registry = LocalRegistry.from_settings(settings)
    rw = ModelBundle("random_walk", 24, "regression", None, [], "v1", constant=0.0, interval_scale="vol_24",
                     interval_quantiles={"80": 1.3, "95": 2.0}, metrics={"overall": {"mae": 0.02}})
    registry.register(rw)
    registry.set_champion(24, "random_walk", 1, "baseline")
    X = pd.DataFrame({"vol_24": np.linspace(0.01, 0.05, 20)})
    har = ModelBundle("har", 24, "volatility", LinearRegression().fit(X, X["vol_24"] ** 2), ["vol_24"], "v1",
                      metrics={"overall": dict(VOL_METRICS)})
    version = registry.register(har)
    registry.set_champion(24, "har", version, "beat every volatility baseline")
    return registry


def test_the_volatility_champion_is_listed_beside_the_price_models(registry_with_volatility, store, settings):
    listing = queries.champions(registry_with_volatility)
    assert {"24h", "vol-24h"} <= set(listing["models"])
    vol = listing["models"]["vol-24h"]
    assert (vol["name"], vol["task"]) == ("har_24h", "volatility")
    assert {k: vol["metrics"][k] for k in VOL_METRICS} == VOL_METRICS  # the headline numbers, flat
    assert listing["models"]["24h"]["name"] == "random_walk_24h"  # the price champion stays where it was
    report = queries.status_report(store, registry_with_volatility, settings).model_dump(mode="json")
    assert report["models"]["models"]["vol-24h"]["metrics"]["mz_r2"] == 0.5
