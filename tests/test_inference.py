"""Inference: validation scoring, guards (stale features, old models, out of distribution), history, hindcast."""

import numpy as np
import pandas as pd
import pytest
from builders import feature_frame, local_store, simulated_prices

from cryptosentinel import inference
from cryptosentinel import pipelines as steps
from cryptosentinel.config import Settings
from cryptosentinel.fitting import train_horizon
from cryptosentinel.registry import ModelBundle
from cryptosentinel.training import dead_band

pytestmark = pytest.mark.model

T0 = pd.Timestamp("2024-03-01", tz="UTC")


def forecast(coin, pred, lo80=-0.01, hi80=0.03, lo95=-0.05, hi95=0.05, made_at=T0):
    return {"coin": coin, "made_at": made_at, "horizon": 24, "price": 100.0, "pred_return": pred,
            "lo_80": lo80, "hi_80": hi80, "lo_95": lo95, "hi_95": hi95}


def realised(coin, ret, made_at=T0):
    return {"coin": coin, "ts": made_at + pd.Timedelta(hours=24), "close": 100.0 * np.exp(ret)}


def test_validation_scores_hits_misses_flats_and_intervals():
    preds = pd.DataFrame([forecast("hit", 0.02), forecast("miss", 0.02), forecast("flat", 0.01),
                          forecast("out80", 0.01), forecast("out95", 0.01), forecast("later", 0.01,
                                                                                    made_at=T0 + pd.Timedelta(hours=5))])
    prices = pd.DataFrame([realised("hit", 0.025), realised("miss", -0.02), realised("flat", 0.001),
                           realised("out80", 0.04), realised("out95", -0.06)])
    scored = inference.score_predictions(preds, prices, dead_band=0.0025).set_index("coin")
    assert "later" not in scored.index  # its target bar is not stored yet: not scored
    assert scored["direction_outcome"].to_dict() == {"hit": "right", "miss": "wrong", "flat": "flat",
                                                     "out80": "right", "out95": "wrong"}
    assert scored["inside_80"].to_dict() == {"hit": True, "miss": False, "flat": True, "out80": False, "out95": False}
    assert scored["inside_95"].to_dict() == {"hit": True, "miss": True, "flat": True, "out80": True, "out95": False}
    assert scored.loc["hit", "abs_error"] == pytest.approx(0.005)
    assert scored.loc["miss", "rw_abs_error"] == pytest.approx(0.02)


class FakeRegistry:
    """Just what `Predictor` asks of a registry, with constant-free bundles built here."""

    def __init__(self, bundle, created):
        self.bundle, self.created = bundle, created

    def champion(self, horizon, task="regression"):
        if task != "regression":
            return None
        return {"name": "ridge_reg_24h", "family": "ridge_reg", "version": 1, "is_random_walk": False,
                "created": self.created}

    def load_champion(self, horizon, task="regression"):
        if task != "regression":
            from cryptosentinel.registry import ModelNotFoundError
            raise ModelNotFoundError("no classifier")
        return self.bundle


@pytest.fixture(scope="module")
def vectors_and_bundle():
    from sklearn.linear_model import Ridge
    prices = simulated_prices(["bitcoin", "ethereum"], "2024-01-01", "2024-03-01")
    feats = feature_frame(prices, with_close=True)
    names = ["ret_1", "ret_24", "vol_24", "rsi_14"]
    model = Ridge().fit(feats[names], feats["ret_1"].shift(-1).fillna(0))
    bundle = ModelBundle("ridge_reg", 24, "regression", model, names, "v", interval_scale="vol_24",
                         interval_quantiles={"80": 1.0, "95": 2.0},
                         lineage={"feature_ranges": inference.feature_ranges(feats[names])}, version=1)
    latest = feats.sort_values("ts").groupby("coin").tail(1).reset_index(drop=True)
    return latest, bundle


def test_stale_live_features_are_refused_and_snapshots_are_served_as_of_their_last_bar(vectors_and_bundle):
    latest, bundle = vectors_and_bundle
    settings = Settings(_env_file=None, coins=["bitcoin", "ethereum"], monitoring={"stale_data_hours": 3})
    now = latest["ts"].max() + pd.Timedelta(hours=10)
    predictor = inference.Predictor(FakeRegistry(bundle, now.isoformat()), settings)
    forecasts, refused = predictor.predict(latest, live={"bitcoin": True, "ethereum": False}, now=now)
    assert [r["coin"] for r in refused] == ["bitcoin"] and "stale" in refused[0]["reason"]
    assert list(forecasts["coin"]) == ["ethereum"] and not forecasts["live"].iloc[0]
    assert forecasts["made_at"].iloc[0] == latest.loc[latest.coin == "ethereum", "ts"].iloc[0]  # "as of"


def test_an_old_champion_is_refused(vectors_and_bundle):
    latest, bundle = vectors_and_bundle
    settings = Settings(_env_file=None, coins=["bitcoin", "ethereum"], max_model_age_days=30)
    now = latest["ts"].max()
    predictor = inference.Predictor(FakeRegistry(bundle, (now - pd.Timedelta(days=45)).isoformat()), settings)
    forecasts, refused = predictor.predict(latest, live={"bitcoin": True, "ethereum": True}, now=now)
    assert forecasts.empty and len(refused) == 2 and all("days old" in r["reason"] for r in refused)


def test_out_of_distribution_inputs_are_flagged_not_silently_served(vectors_and_bundle):
    latest, bundle = vectors_and_bundle
    settings = Settings(_env_file=None, coins=["bitcoin", "ethereum"], ood_threshold=0.2)
    now = latest["ts"].max()
    predictor = inference.Predictor(FakeRegistry(bundle, now.isoformat()), settings)
    odd = latest.copy()
    odd.loc[odd.coin == "bitcoin", ["ret_1", "ret_24", "vol_24"]] = [0.5, 0.9, 0.2]  # far outside training
    forecasts, _ = predictor.predict(odd, live={"bitcoin": True, "ethereum": True}, now=now)
    flags = forecasts.set_index("coin")
    assert flags.loc["bitcoin", "ood_flag"] and flags.loc["bitcoin", "ood_score"] >= 0.75
    assert not flags.loc["ethereum", "ood_flag"]
    lo, hi = flags[["lo_80", "hi_80"]].T.to_numpy()
    assert (lo < flags["pred_return"].to_numpy()).all() and (flags["pred_return"].to_numpy() < hi).all()


def test_recording_the_same_forecasts_twice_adds_nothing_and_validation_fills_in(tmp_path):
    prices = simulated_prices(["bitcoin"], "2024-03-01", "2024-03-03")
    with local_store(tmp_path / "s.sqlite", prices=prices) as store:
        rows = pd.DataFrame([forecast("bitcoin", 0.01, made_at=T0)]).assign(
            price=float(prices["close"].iloc[0]), pred_price=1.0, direction="up", p_up=np.nan, model="m@1",
            is_random_walk=False, challenger="", challenger_return=np.nan, feature_version="v", ood_score=0.0,
            ood_flag=False, live=True, top_features="[]", explained_by="m@1", kind="forecast", regime="")
        assert inference.record_predictions(store, rows)[24]["inserted"] == 1
        assert inference.record_predictions(store, rows)[24]["inserted"] == 0
        scored = inference.validate_history(store, 24, dead_band(24))
        assert len(scored) == 1 and scored["validated"].all()
        assert inference.prediction_status(store, [24])["validated"] == 1
        assert inference.validate_history(store, 24, dead_band(24)).empty  # nothing left to score


def test_hindcast_uses_no_data_from_after_each_prediction_time():
    prices = simulated_prices(["bitcoin", "ethereum"], "2024-01-01", "2024-04-01")
    frame = feature_frame(prices, with_close=True)
    run = train_horizon(frame, 24, n_folds=3, models=["ridge_reg"])
    rows = steps.hindcast(run, "ridge_reg")
    last = run.folds[run.folds["fold"] == run.folds["fold"].max()].iloc[0]
    horizon = pd.Timedelta(hours=24)
    # the model behind every hindcast row was trained only on rows whose labels ended before the row's time
    assert (rows["made_at"] >= pd.Timestamp(last["test_start"])).all()
    assert pd.Timestamp(last["train_end"]) + horizon <= rows["made_at"].min()
    # its intervals were calibrated on earlier folds only: widths are those folds' conformal quantiles
    assert (rows["hi_80"] > rows["pred_return"]).all() and (rows["hi_95"] >= rows["hi_80"]).all()
    assert set(rows["kind"]) == {"hindcast"} and not rows["live"].any()
