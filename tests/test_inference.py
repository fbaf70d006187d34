"""Inference: validation scoring, guards (stale features, old models, out of distribution), history, hindcast."""

import numpy as np
import pandas as pd
import pytest
from builders import feature_frame, local_store, simulated_prices

from cryptosentinel import inference
from cryptosentinel import pipelines as steps
from cryptosentinel.bundle import ModelIntegrityError
from cryptosentinel.config import Settings
from cryptosentinel.fitting import train_horizon
from cryptosentinel.registry import ModelBundle, ModelNotFoundError
from cryptosentinel.training import dead_band

pytestmark = pytest.mark.model

T0 = pd.Timestamp("2024-03-01", tz="UTC")


def forecast(coin, pred, lo80=-0.01, hi80=0.03, lo95=-0.05, hi95=0.05, made_at=T0, direction=None):
    shown = direction or ("up" if pred > 0 else "down" if pred < 0 else inference.NO_CALL)
    return {"coin": coin, "made_at": made_at, "horizon": 24, "price": 100.0, "pred_return": pred, "direction": shown,
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
    """Just what `Predictor` asks of a registry: the regression champion built here, and optionally the champion of
    other tasks (`classification=bundle`, `volatility=bundle`, or an exception that loading it raises)."""

    def __init__(self, bundle, created, **others):
        self.bundle, self.created, self.others = bundle, created, others

    def champion(self, horizon, task="regression"):
        if task != "regression":
            return None
        return {"name": "ridge_reg_24h", "family": "ridge_reg", "version": 1, "is_random_walk": False,
                "created": self.created}

    def load_champion(self, horizon, task="regression"):
        if task == "regression":
            return self.bundle
        found = self.others.get(task)
        if found is None:
            raise ModelNotFoundError(f"no {task} champion")
        if isinstance(found, Exception):
            raise found
        return found


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


# --- issue 9: the direction shown is the one scored; risk columns -------------------------------------------------

RW = ModelBundle("random_walk", 24, "regression", None, ["vol_24"], "v", constant=0.0, interval_scale="vol_24",
                 interval_quantiles={"80": 1.0, "95": 2.0}, version=1)
MAJORITY = ModelBundle("majority", 24, "classification", None, [], "v", constant=0.47, version=1)


def up_classifier(p_up=0.8):
    """A real (non-constant) classifier whose P(up) is `p_up` on every row."""
    from sklearn.dummy import DummyClassifier
    n_up = round(p_up * 10)
    model = DummyClassifier(strategy="prior").fit(pd.DataFrame({"vol_24": np.zeros(10)}), [1] * n_up + [0] * (10 - n_up))
    return ModelBundle("hgb_clf", 24, "classification", model, ["vol_24"], "v", version=2)


def served_and_validated(tmp_path, **champions):
    """Forecasts made 48 h before the end of a stored simulated history, recorded and validated."""
    prices = simulated_prices(["bitcoin", "ethereum"], "2024-01-01", "2024-02-20")
    feats = feature_frame(prices, with_close=True)
    made_at = feats["ts"].max() - pd.Timedelta(hours=48)
    vectors = feats[feats["ts"] == made_at].reset_index(drop=True)
    settings = Settings(_env_file=None, coins=["bitcoin", "ethereum"], horizons=[24])
    predictor = inference.Predictor(FakeRegistry(RW, made_at.isoformat(), **champions), settings)
    forecasts, refused = predictor.predict(vectors, live={"bitcoin": False, "ethereum": False}, now=made_at)
    assert not refused
    with local_store(tmp_path / "s.sqlite", prices=prices) as store:
        inference.record_predictions(store, forecasts)
        scored = inference.validate_history(store, 24, 0.0)  # no dead band: every move is up or down
        status = inference.prediction_status(store, [24])
    return forecasts, scored, status


def test_no_call_is_shown_with_the_base_rate_and_never_scored_as_a_hit_or_miss(tmp_path):
    forecasts, scored, status = served_and_validated(tmp_path, classification=MAJORITY)
    assert set(forecasts["direction"]) == {inference.NO_CALL}  # not "down p=0.47"
    assert forecasts["p_up"].isna().all() and (forecasts["p_up_base_rate"] == 0.47).all()
    assert len(scored) == 2 and set(scored["direction_outcome"]) == {inference.NO_CALL}
    assert status["horizons"]["24h"]["rolling"]["direction_accuracy"] is None  # nothing called: no hit rate
    assert inference.direction_text(forecasts.iloc[0]) == "no call (no classifier beat the base rate P(up) 0.47)"


def test_a_shown_up_is_scored_as_up_whatever_the_point_forecast(tmp_path):
    forecasts, scored, _ = served_and_validated(tmp_path, classification=up_classifier(0.8))
    assert (forecasts["pred_return"] == 0).all()  # the random walk calls nothing ...
    assert set(forecasts["direction"]) == {"up"} and np.allclose(forecasts["p_up"], 0.8)  # ... the classifier does
    assert forecasts["p_up_base_rate"].isna().all()
    expected = np.where(scored["actual_return"] > 0, "right", "wrong")
    assert list(scored["direction_outcome"]) == list(expected)


def test_without_a_classifier_a_zero_forecast_makes_no_call(tmp_path):
    forecasts, scored, _ = served_and_validated(tmp_path)
    assert set(forecasts["direction"]) == {inference.NO_CALL} and forecasts["p_up_base_rate"].isna().all()
    assert set(scored["direction_outcome"]) == {inference.NO_CALL}


def test_score_predictions_uses_the_stored_direction_not_the_forecast_sign():
    preds = pd.DataFrame([forecast("shown_up", -0.01, direction="up"), forecast("shown_down", 0.0, direction="down"),
                          forecast("no_call", 0.03, direction=inference.NO_CALL),
                          forecast("old_none", 0.0, direction="none")])  # histories written before "no call"
    prices = pd.DataFrame([realised(c, 0.04) for c in preds["coin"]])
    scored = inference.score_predictions(preds, prices, dead_band=0.0025).set_index("coin")["direction_outcome"]
    assert scored.to_dict() == {"shown_up": "right", "shown_down": "wrong", "no_call": inference.NO_CALL,
                                "old_none": inference.NO_CALL}


def test_the_volatility_champion_is_loaded_and_the_risk_function_fills_the_risk_columns(vectors_and_bundle):
    latest, bundle = vectors_and_bundle
    vol = ModelBundle("ridge_reg", 24, "regression", None, [], "v", constant=1e-4, version=7)  # a stand-in
    seen = {}

    def risk(m, X):
        seen["volatility"] = m.volatility
        sd = np.full(len(X), 0.03)
        return {"vol_forecast": sd, "p_move_5": np.full(len(X), 0.2), "p_move_10": np.full(len(X), 0.02),
                "interval_method": "vol_conformal", "lo_80": -sd, "hi_80": sd, "lo_95": -2 * sd, "hi_95": 2 * sd}

    settings = Settings(_env_file=None, coins=["bitcoin", "ethereum"], horizons=[24])
    now = latest["ts"].max()
    predictor = inference.Predictor(FakeRegistry(bundle, now.isoformat(), volatility=vol), settings, risk=risk)
    assert predictor.models[24].volatility is vol
    forecasts, _ = predictor.predict(latest, live={"bitcoin": True, "ethereum": True}, now=now)
    assert seen["volatility"] is vol
    assert np.allclose(forecasts["vol_forecast"], 0.03) and np.allclose(forecasts["p_move_5"], 0.2)
    assert np.allclose(forecasts["hi_80"], 0.03) and np.allclose(forecasts["lo_95"], -0.06)  # replaced intervals
    assert set(forecasts["interval_method"]) == {"vol_conformal"}
    assert inference.risk_text(forecasts.iloc[0]) == ("vol ±3.0%  P(|move|>5%) 0.20  P(|move|>10%) 0.02  "
                                                      "intervals: vol_conformal")


def test_without_a_volatility_champion_the_risk_columns_stay_empty_and_other_registry_errors_propagate(
        vectors_and_bundle, caplog):
    latest, bundle = vectors_and_bundle
    settings = Settings(_env_file=None, coins=["bitcoin", "ethereum"], horizons=[24])
    now = latest["ts"].max()
    with caplog.at_level("INFO", logger="cryptosentinel.inference"):
        predictor = inference.Predictor(FakeRegistry(bundle, now.isoformat()), settings)
    assert predictor.models[24].volatility is None and "no volatility champion for 24 h" in caplog.text
    forecasts, _ = predictor.predict(latest, live={"bitcoin": True, "ethereum": True}, now=now)
    assert forecasts[["vol_forecast", "p_move_5", "p_move_10", "p_up_base_rate"]].isna().all().all()
    assert set(forecasts["interval_method"]) == {""}
    with pytest.raises(ModelIntegrityError):  # a corrupted champion is refused, not skipped
        inference.Predictor(FakeRegistry(bundle, now.isoformat(), volatility=ModelIntegrityError("bad checksum")),
                            settings)
    bad = inference.Predictor(FakeRegistry(bundle, now.isoformat()), settings, risk=lambda m, X: {"lo_80": [0.0]})
    with pytest.raises(ValueError, match="lo_80 and hi_80 together"):
        bad.predict(latest, live={"bitcoin": True, "ethereum": True}, now=now)


def test_new_columns_are_added_to_an_older_history_without_losing_its_rows(tmp_path, caplog):
    X = pd.DataFrame({"coin": ["bitcoin"], "ts": [T0], "close": [100.0]})
    ivals = {"80": ([-0.01], [0.01]), "95": ([-0.02], [0.02])}
    rows = inference.forecast_rows(X, 24, [0.0], ivals, [np.nan], "random_walk@1", "forecast", p_up_base_rate=0.48,
                                   vol_forecast=[0.02], p_move_5=[0.1], p_move_10=[0.01], interval_method="vol_conformal")
    with local_store(tmp_path / "new.sqlite") as store:
        inference.record_predictions(store, rows)
        stored = store.read("predictions_h24")
        assert stored.loc[0, "vol_forecast"] == 0.02 and stored.loc[0, "interval_method"] == "vol_conformal"
    added = [*inference.RISK_COLUMNS, "p_up_base_rate"]
    old_layout = rows.drop(columns=added)
    with local_store(tmp_path / "old.sqlite") as store:
        inference.record_predictions(store, old_layout)  # a history written before the risk columns
        before = store.read("predictions_h24")
        assert not set(added) & set(before.columns)
        later = rows.assign(made_at=T0 + pd.Timedelta(hours=1))
        with caplog.at_level("INFO", logger="cryptosentinel.inference"):
            assert inference.record_predictions(store, later)[24]["inserted"] == 1
        assert "adding them" in caplog.text and all(c in caplog.text for c in added)
        history = store.read("predictions_h24")
        assert len(history) == 2 and set(added) <= set(history.columns)
        old, new = history.iloc[0], history.iloc[1]
        pd.testing.assert_series_equal(old[before.columns], before.iloc[0], check_names=False)  # kept as it was
        assert np.isnan([old["vol_forecast"], old["p_move_5"], old["p_move_10"], old["p_up_base_rate"]]).all()
        assert old["interval_method"] in (None, "")  # a NULL text reads as empty
        assert (new["vol_forecast"], new["p_move_5"], new["interval_method"], new["p_up_base_rate"]) == \
            (0.02, 0.1, "vol_conformal", 0.48)
        # the old layout's writers still work: the columns they lack are filled with defaults
        assert inference.record_predictions(store, old_layout.assign(made_at=T0 + pd.Timedelta(hours=2))
                                            )[24]["inserted"] == 1
        assert store.read("predictions_h24").iloc[2]["interval_method"] == ""
