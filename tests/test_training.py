"""Training: metric units, labels, reproducibility, evaluate_bundle, and the model-behaviour tests:
the null test (pure random walk: no skill, no promotion), the leak canary, and a planted signal."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from builders import feature_frame

from cryptosentinel.bundle import ModelBundle
from cryptosentinel.config import ConfigError, DataValidationError
from cryptosentinel.features import FEATURE_NAMES
from cryptosentinel.fitting import (
    BASELINES,
    MODELS,
    TrainingRun,
    evaluate_bundle,
    last_fold_forecasts,
    train_horizon,
)
from cryptosentinel.registry import promote
from cryptosentinel.registry_mlflow import LocalRegistry
from cryptosentinel.training import (
    Fold,
    conformal_fold_quantiles,
    conformal_quantile,
    dead_band,
    diebold_mariano,
    direction_accuracy,
    interval_coverage,
    make_labels,
    mase,
    relative_mae,
    score_forecasts,
)

pytestmark = pytest.mark.model

H = 24
HOUR = pd.Timedelta(hours=1)


# --- synthetic data -------------------------------------------------------------------------------

def null_prices(coins=("bitcoin", "ethereum", "solana", "cardano"), days=150, seed=7, vol=0.01):
    """Raw hourly prices whose log returns are iid normal: nothing to predict."""
    rng = np.random.default_rng(seed)
    n = days * 24
    ts = pd.date_range("2023-01-01", periods=n, freq="h", tz="UTC")
    frames = []
    for i, coin in enumerate(coins):
        close = 50.0 * (i + 1) * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
        open_ = np.r_[close[0], close[:-1]]
        wick = np.abs(rng.normal(0.0, vol / 2, (2, n)))
        frames.append(pd.DataFrame({
            "coin": coin, "ts": ts, "open": open_, "high": np.maximum(open_, close) * (1 + wick[0]),
            "low": np.minimum(open_, close) * (1 - wick[1]), "close": close,
            "volume": rng.lognormal(10, 0.3, n), "market_cap": np.nan, "source": "test", "granularity": "1h"}))
    return pd.concat(frames, ignore_index=True)


def view_frame(prices: pd.DataFrame) -> pd.DataFrame:
    """What the feature view hands to training: the features joined with close."""
    return feature_frame(prices, with_close=True)


def planted_frame(coins=("bitcoin", "ethereum", "solana"), days=100, seed=3, h=H, c=0.006, vol=0.01):
    """A hand-made feature-view frame with a known signal.

    News x_s ~ N(0, 1) arrives every bar and moves the price c * x_s exactly h bars later, so the
    forward h-bar return is c * signal_t + noise with signal_t = x_{t-h+1} + ... + x_t (known at t).
    The other features are noise; vol_24 is the (constant) volatility scale.
    """
    rng = np.random.default_rng(seed)
    n = days * 24
    ts = pd.date_range("2023-01-01", periods=n, freq="h", tz="UTC")
    frames = []
    for coin in coins:
        x = rng.normal(size=n)
        cum = np.cumsum(x)
        lagged = np.r_[np.zeros(h), cum[:-h]]  # S_{t-h}
        logp = np.cumsum(rng.normal(0.0, vol, n)) + c * lagged + math.log(100.0)
        signal = cum - np.r_[np.zeros(h), cum[:-h]]  # S_t - S_{t-h}
        frames.append(pd.DataFrame({
            "coin": coin, "ts": ts, "signal": signal, "noise_a": rng.normal(size=n), "noise_b": rng.normal(size=n),
            "vol_24": vol, "close": np.exp(logp)}).iloc[h:])
    return pd.concat(frames, ignore_index=True)


PLANTED_FEATURES = ["signal", "noise_a", "noise_b"]


def synthetic_run(hours_per_fold=500, n_folds=4, coins=("bitcoin", "ethereum"), seed=0, h=H) -> TrainingRun:
    """A walk-forward run made by hand: errors scale * N(0, 1), so a scaled conformal interval at level a
    should cover a of the rows. Only what `last_fold_forecasts` reads is filled in."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-03-01", tz="UTC")
    ts = start + pd.to_timedelta(np.arange(hours_per_fold * n_folds), "h")
    fold = np.repeat(np.arange(1, n_folds + 1), hours_per_fold)
    rows = []
    for i, coin in enumerate(coins):
        scale = rng.lognormal(-4.5, 0.5, len(ts))
        y = scale * rng.normal(size=len(ts))
        rows.append(pd.DataFrame({"coin": coin, "ts": ts, "fold": fold, "close": 100.0 * (i + 1), "y_ret": y,
                                  "scale": scale, "random_walk": 0.0, "ridge_reg": 0.0,
                                  "hgb_clf": rng.uniform(0.4, 0.6, len(ts))}))
    predictions = pd.concat(rows, ignore_index=True)
    starts = [start + k * hours_per_fold * HOUR for k in range(n_folds)]
    folds = [Fold(k + 1, t0 - h * HOUR, t0, t0 + hours_per_fold * HOUR) for k, t0 in enumerate(starts)]
    empty = pd.DataFrame()
    return TrainingRun(h, empty, empty, empty, empty, predictions, {},
                       {"folds": [f.to_dict() for f in folds], "bar": str(HOUR)})


@pytest.fixture(scope="module")
def null_frame() -> pd.DataFrame:
    return view_frame(null_prices())


@pytest.fixture(scope="module")
def null_run(null_frame):
    return train_horizon(null_frame, H, seed=42, n_folds=4)


# --- metric units ----------------------------------------------------------------------------------

def test_random_walk_relative_mae_is_one_and_halving_errors_halves_it():
    y = np.array([0.02, -0.01, 0.03, -0.04, 0.005])
    assert relative_mae(y, np.zeros_like(y)) == 1.0
    assert relative_mae(y, y / 2) == pytest.approx(0.5)


def test_true_mase_scales_by_the_in_sample_naive_error():
    y = np.array([0.02, -0.01, 0.03, -0.04, 0.005])
    in_sample = 0.0105  # the random walk's MAE on (other) training rows
    assert mase(y, np.zeros_like(y), in_sample) == pytest.approx(np.mean(np.abs(y)) / in_sample)
    assert mase(y, np.zeros_like(y), in_sample) != 1.0


def test_dm_on_identical_forecasts_finds_no_difference():
    e = np.random.default_rng(1).normal(size=300)
    res = diebold_mariano(e**2 - e**2, H)
    assert res.stat == 0.0 and res.pvalue_two_sided == 1.0 and res.pvalue == 0.5


def test_dm_detects_a_clearly_better_forecast_and_is_symmetric():
    rng = np.random.default_rng(2)
    y = rng.normal(size=2000)
    good, bad = y + rng.normal(0, 0.5, 2000), y + rng.normal(0, 1.5, 2000)
    d = (y - good) ** 2 - (y - bad) ** 2
    better, worse = diebold_mariano(d, 1), diebold_mariano(-d, 1)
    assert better.stat < 0 and better.pvalue < 1e-6
    assert worse.stat == pytest.approx(-better.stat) and worse.pvalue > 1 - 1e-6


def test_dm_overlap_widens_the_variance():
    """An MA(h-1) loss differential (overlapping h-step errors): lag h-1 gives a smaller |statistic|."""
    rng = np.random.default_rng(3)
    shocks = rng.normal(0.05, 1.0, 3000)
    d = np.convolve(shocks, np.ones(H), mode="valid")  # overlapping sums, like h-step forecast errors
    assert abs(diebold_mariano(d, H).stat) < abs(diebold_mariano(d, 1, bandwidth=0).stat)


def test_dm_bandwidth_is_at_least_the_horizon_and_grows_with_clustering():
    """Overlapping, volatility-clustered losses need more lags than h - 1: the automatic bandwidth finds them."""
    rng = np.random.default_rng(4)
    white = rng.normal(size=4000)
    assert diebold_mariano(white, H).bandwidth == H  # white noise: the horizon's floor
    vol = np.exp(np.convolve(rng.normal(0, 0.3, 4100), np.ones(100) / 10, mode="valid")[:4000])
    clustered = vol * rng.normal(size=4000) ** 2  # squared returns with slowly moving volatility
    assert diebold_mariano(clustered, 1).bandwidth > 10


def test_coverage_and_conformal_quantile_on_a_hand_made_case():
    y = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    lo = np.array([-1.0, 1.0, 2.5, 0.0, 4.0])
    hi = np.array([1.0, 2.0, 3.0, 2.0, 4.0])
    assert interval_coverage(y, lo, hi) == pytest.approx(3 / 5)  # rows 0, 1 (on the edge) and 4 (a point)
    scores = np.arange(1.0, 20.0)  # 19 scores
    assert conformal_quantile(scores, 0.8) == 16.0  # ceil(20 * 0.8) = 16th smallest
    assert conformal_quantile(scores, 0.95) == 19.0
    assert conformal_quantile(scores[:10], 0.95) == math.inf


def test_conformal_fold_quantiles_use_only_earlier_folds_with_finished_labels():
    ts = pd.date_range("2024-01-01", periods=40, freq="h", tz="UTC")
    fold_of = np.repeat([0, 1, 2], [10, 15, 15])
    f2 = Fold(2, ts[25] - 3 * HOUR, ts[25], ts[39] + HOUR)
    y = np.r_[np.full(10, 99.0), np.arange(1.0, 13.0), np.full(3, 50.0), np.full(15, 77.0)]
    q, calib = conformal_fold_quantiles(y, np.zeros(40), None, ts.asi8, fold_of, f2, 3 * HOUR.value,
                                        levels={"50": 0.5})
    assert calib.sum() == 12 and calib[10:22].all()  # fold 1 minus its last 3 bars (labels end in fold 2)
    assert q == {"50": 7.0}  # ceil(13 * 0.5) = 7th smallest of 1..12
    scaled, _ = conformal_fold_quantiles(y, np.zeros(40), np.full(40, 2.0), ts.asi8, fold_of, f2, 3 * HOUR.value,
                                         levels={"50": 0.5})
    assert scaled == {"50": 3.5}


def test_last_fold_forecasts_cover_near_nominal_on_a_synthetic_run():
    run = synthetic_run()
    out = last_fold_forecasts(run, "ridge_reg", "hgb_clf")
    assert out["fold"] == 4 and out["model"] == "ridge_reg@walk-forward-fold-4"
    rows = out["rows"]
    assert len(rows) == 1000 and list(rows.columns) == ["coin", "ts", "close", "y_ret", "scale"]
    assert rows["ts"].min() == pd.Timestamp(run.lineage["folds"][-1]["test_start"])
    y = rows["y_ret"].to_numpy()
    for key, level, tol in (("80", 0.80, 0.04), ("95", 0.95, 0.025)):
        lo, hi = out["intervals"][key]
        assert abs(np.mean((y >= lo) & (y <= hi)) - level) < tol, key
        np.testing.assert_allclose(hi - lo, 2 * out["quantiles"][key] * rows["scale"])  # scaled by volatility
    assert out["quantiles"]["80"] == pytest.approx(1.2816, abs=0.06)  # |N(0, 1)|'s 80% quantile
    assert ((out["p_up"] >= 0.4) & (out["p_up"] <= 0.6)).all()
    assert np.isnan(last_fold_forecasts(run, "random_walk")["p_up"]).all()
    with pytest.raises(ConfigError, match="not a regression family"):
        last_fold_forecasts(run, "hgb_clf")
    with pytest.raises(ConfigError, match="not a classification family"):
        last_fold_forecasts(run, "ridge_reg", "random_walk")
    with pytest.raises(ConfigError, match="not a regression family"):
        last_fold_forecasts(run, "xgb_reg")  # a family the run did not train


def test_direction_accuracy_ignores_flat_moves_and_zero_forecasts():
    y = np.array([0.01, -0.01, 0.001, -0.02, 0.03])
    pred = np.array([0.002, 0.003, 0.5, 0.0, 0.01])
    acc, n = direction_accuracy(y, pred, band=0.0025)
    assert (acc, n) == (pytest.approx(2 / 3), 3)  # the flat 0.1% move and the zero forecast are not scored


def test_score_forecasts_of_the_random_walk():
    y = np.array([0.01, -0.02, 0.03, -0.001])
    ts = pd.date_range("2024-01-01", periods=4, freq="h", tz="UTC").asi8
    m = score_forecasts(y, np.zeros(4), "regression", ts, 1, 0.0025, halfwidth={"80": np.full(4, 0.015)})
    assert m["relative_mae"] == 1.0 and m["direction_accuracy"] is None and m["coverage_80"] == 0.5
    json.dumps(m)


def test_dead_band_rule():
    assert dead_band(24) == pytest.approx(0.0025)
    assert dead_band(96) == pytest.approx(0.005)


# --- labels ------------------------------------------------------------------------------------------

def test_labels_use_the_timestamp_not_the_row():
    ts = pd.date_range("2024-01-01", periods=8, freq="h", tz="UTC")
    frame = pd.DataFrame({"coin": "bitcoin", "ts": ts, "close": np.exp(np.arange(8) / 100)})
    frame = frame.drop(index=[4])  # a gap at 04:00
    lab = make_labels(frame, horizon=3).set_index("ts")["y_ret"]
    assert lab[ts[0]] == pytest.approx(0.03)
    assert math.isnan(lab[ts[1]])  # 01:00 + 3 h = 04:00 is missing: no label, not the row 3 ahead
    assert lab[ts[2]] == pytest.approx(0.03)  # 02:00 -> 05:00, two rows ahead after the gap
    assert lab[ts[5:]].isna().all()


def test_labels_per_coin_and_bad_input():
    prices = null_prices(("bitcoin", "ethereum"), days=3)
    lab = make_labels(prices, 24)
    btc = prices[prices.coin == "bitcoin"].reset_index(drop=True)
    assert lab.loc[0, "y_ret"] == pytest.approx(math.log(btc.close[24] / btc.close[0]))
    assert lab.groupby("coin")["y_ret"].apply(lambda s: s.isna().sum()).tolist() == [24, 24]
    assert set(lab["direction"].dropna()) <= {"up", "down", "flat"}
    with pytest.raises(DataValidationError, match="close"):
        make_labels(prices.assign(close=-1.0), 24)
    with pytest.raises(DataValidationError, match="duplicate"):
        make_labels(pd.concat([prices, prices.head(2)]), 24)
    with pytest.raises(ConfigError):
        make_labels(prices, 0)


# --- the run: shape, keys, reproducibility -------------------------------------------------------------

@pytest.mark.slow
def test_run_reports_every_model_and_baseline(null_run):
    table = null_run.table
    assert set(table.index) == set(MODELS) | set(BASELINES)
    assert table.loc["random_walk", "relative_mae"] == 1.0
    for col in ("mae", "rmse", "relative_mae", "mase", "r2_oos", "direction_accuracy", "f1", "roc_auc", "brier", "dm_pvalue",
                "coverage_80", "coverage_95", "train_mae", "mae_gap_pct"):
        assert col in table.columns
    assert table.loc[["hgb_clf", "xgb_clf"], "brier"].between(0, 1).all()
    assert set(null_run.by_vol["vol_bucket"]) == {"low", "mid", "high"}
    assert set(null_run.by_coin["coin"]) == {"bitcoin", "ethereum", "solana", "cardano"}
    json.dumps(null_run.to_dict())
    # coverage is measured on folds 2..K only, each calibrated on earlier folds: the pooled figure is
    # the row-weighted mean of the per-fold ones
    folds = null_run.folds[null_run.folds.model == "xgb_reg"].set_index("fold")
    assert folds.loc[1, ["coverage_80", "coverage_95"]].isna().all()
    later = folds.loc[2:]
    for level in ("80", "95"):
        pooled = (later[f"coverage_{level}"] * later["n_test"]).sum() / later["n_test"].sum()
        assert table.loc["xgb_reg", f"coverage_{level}"] == pytest.approx(pooled)
    assert table.loc["xgb_reg", "n_coverage"] == later["n_test"].sum()


@pytest.mark.slow
def test_last_fold_forecasts_match_the_runs_own_calibration(null_run):
    """The hindcast's intervals are the ones training measured on its last fold: one calibration."""
    folds = null_run.folds.set_index(["model", "fold"])
    for family in ("xgb_reg", "random_walk"):
        out = last_fold_forecasts(null_run, family)
        y = out["rows"]["y_ret"].to_numpy()
        for key in ("80", "95"):
            lo, hi = out["intervals"][key]
            assert out["quantiles"][key] == pytest.approx(folds.loc[(family, 4), f"q_{key}"])
            assert interval_coverage(y, lo, hi) == pytest.approx(folds.loc[(family, 4), f"coverage_{key}"])
            assert abs(interval_coverage(y, lo, hi) - int(key) / 100) < 0.1


@pytest.mark.slow
def test_bundle_metrics_carry_the_random_walk_on_the_same_folds(null_run):
    for name, bundle in null_run.bundles.items():
        assert isinstance(bundle, ModelBundle) and bundle.name == name and bundle.horizon == H
        m = bundle.metrics
        assert m["baseline"]["random_walk"]["n"] == m["overall"]["n"]
        assert m["baseline"]["random_walk"]["relative_mae"] == 1.0
        assert len(m["folds"]) == 4
        for f in m["folds"]:
            assert f["random_walk_mae"] > 0 and f["n_test"] > 0
            if bundle.task == "regression":
                assert f["mae"] > 0
        lin = bundle.lineage
        for key in ("data_start", "data_end", "rows_used", "feature_names", "feature_version", "code_version",
                    "training_time_s", "seed", "folds"):
            assert key in lin
        json.dumps(m)
    xgb = null_run.bundles["xgb_reg"]
    assert xgb.interval_scale == "vol_24" and set(xgb.interval_quantiles) == {"80", "95"}
    assert 0 < xgb.interval_quantiles["80"] < xgb.interval_quantiles["95"]


@pytest.mark.slow
def test_same_data_and_seed_give_the_same_metrics():
    frame = view_frame(null_prices(("bitcoin", "ethereum"), days=70, seed=11))
    a = train_horizon(frame, H, seed=5, n_folds=2)
    b = train_horizon(frame, H, seed=5, n_folds=2)
    pd.testing.assert_frame_equal(a.table, b.table)
    pd.testing.assert_frame_equal(a.predictions, b.predictions)
    for name in a.bundles:
        assert a.bundles[name].metrics == b.bundles[name].metrics
        assert a.bundles[name].interval_quantiles == b.bundles[name].interval_quantiles


def test_bad_requests_fail_with_clear_messages(null_frame):
    with pytest.raises(ConfigError, match="unknown models"):
        train_horizon(null_frame, H, models=["lstm"])
    with pytest.raises(DataValidationError, match="lacks columns"):
        train_horizon(null_frame.drop(columns="close"), H)
    with pytest.raises(DataValidationError, match="no training rows|too few"):
        train_horizon(null_frame[null_frame.ts < null_frame.ts.min() + pd.Timedelta(days=2)], H, n_folds=4,
                      test_fraction=0.9)


# --- evaluate_bundle ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_evaluate_bundle_scores_without_refitting(null_run):
    later = view_frame(null_prices(days=60, seed=99))
    bundle = null_run.bundles["ridge_reg"]
    before = bundle.estimator[-1].coef_.copy()
    report = evaluate_bundle(bundle, later)
    assert np.array_equal(before, bundle.estimator[-1].coef_)
    json.dumps(report)
    assert report["model"] == "ridge_reg" and report["horizon"] == H
    assert set(report["coins"]) == {"bitcoin", "ethereum", "solana", "cardano"}
    for block in (report["overall"], *report["coins"].values()):
        for key in ("mae", "rmse", "relative_mae", "mase", "direction_accuracy", "coverage_80", "coverage_95", "dm_pvalue", "n"):
            assert key in block
        base = block["baseline"]
        assert base["relative_mae"] == 1.0 and base["n"] == block["n"]
        assert block["relative_mae"] == pytest.approx(block["mae"] / base["mae"])
    assert sum(b["n"] for b in report["coins"].values()) == report["overall"]["n"]
    # the intervals were calibrated on another random walk with the same volatility: they should roughly hold
    assert 0.7 < report["overall"]["coverage_80"] < 0.9
    assert 0.9 < report["overall"]["coverage_95"] <= 1.0
    rw = evaluate_bundle(null_run.bundles["random_walk"], later)
    assert rw["overall"]["mae"] == rw["overall"]["baseline"]["mae"]
    assert rw["overall"]["coverage_80"] == rw["overall"]["baseline"]["coverage_80"]
    clf = evaluate_bundle(null_run.bundles["xgb_clf"], later)
    assert clf["overall"]["mae"] is None and 0 <= clf["overall"]["brier"] <= 1
    with pytest.raises(ConfigError, match="24 bars ahead"):
        evaluate_bundle(bundle, later, horizon=12)


# --- model behaviour ------------------------------------------------------------------------------

@pytest.mark.slow
def test_null_no_skill_on_a_pure_random_walk(null_run):
    """iid returns: direction accuracy within 50% +- 2 standard errors, no DM evidence for any model.

    h-step labels overlap, so the standard error counts one independent outcome per horizon:
    se = 0.5 / sqrt(n_direction / h)."""
    table = null_run.table
    for name in [*MODELS, "hist_mean", "majority"]:
        row = table.loc[name]
        se = 0.5 / math.sqrt(row["n_direction"] / H)
        assert abs(row["direction_accuracy"] - 0.5) <= 2 * se, (name, row["direction_accuracy"], se)
        assert row["dm_pvalue"] > 0.05 or (row["task"] == "regression" and row["relative_mae"] > 1), name
    regressors = [m for m, (task, _) in MODELS.items() if task == "regression"]
    assert (table.loc[regressors, "r2_oos"] < 0.02).all()
    assert "No model beats the random walk" in null_run.summary()


@pytest.mark.slow
def test_null_the_gate_refuses_every_model(null_frame, null_run, tmp_path):
    registry = LocalRegistry(tmp_path / "registry")
    for name, (task, _) in MODELS.items():
        baseline = null_run.bundles["random_walk" if task == "regression" else "majority"]
        decision = promote(registry, null_run.bundles[name], baseline,
                           metric="mae" if task == "regression" else "brier")
        assert not decision.promoted, (name, decision.reason)
        # what the registry stored predicts what training fitted
        loaded = registry.load(decision.name, decision.version)
        rows = null_frame.iloc[-200:]
        np.testing.assert_allclose(loaded.predict(rows), null_run.bundles[name].predict(rows), rtol=1e-6)
        assert loaded.metrics["baseline"]["random_walk"] == null_run.bundles[name].metrics["baseline"]["random_walk"]
    assert registry.champion(H)["family"] == "random_walk"


@pytest.mark.slow
def test_leak_canary_a_planted_future_feature_lights_up(null_frame, null_run):
    """The same run with one leaky feature (the future return plus noise): skill jumps."""
    y = make_labels(null_frame, H)["y_ret"]
    rng = np.random.default_rng(0)
    leaky = null_frame.assign(leak=y + rng.normal(0, 0.5 * np.nanstd(y), len(y)))
    run = train_horizon(leaky, H, seed=42, n_folds=4, features=[*FEATURE_NAMES, "leak"],
                        models=["ridge_reg", "xgb_reg", "hgb_clf"])
    for name in ("ridge_reg", "xgb_reg"):
        assert run.table.loc[name, "relative_mae"] < 0.8 * null_run.table.loc[name, "relative_mae"]
        assert run.table.loc[name, "dm_pvalue"] < 1e-3
    for name in ("ridge_reg", "xgb_reg", "hgb_clf"):
        assert run.table.loc[name, "direction_accuracy"] > null_run.table.loc[name, "direction_accuracy"] + 0.2


@pytest.mark.slow
def test_planted_signal_models_beat_the_baselines(tmp_path):
    run = train_horizon(planted_frame(), H, seed=42, n_folds=3, features=PLANTED_FEATURES)
    t = run.table
    for name, (task, _) in MODELS.items():
        if task == "regression":
            assert t.loc[name, "relative_mae"] < 0.95 and t.loc[name, "dm_pvalue"] < 0.01, name
            assert t.loc[name, "r2_oos"] > 0.1, name
        else:
            assert t.loc[name, "brier"] < t.loc["majority", "brier"] and t.loc[name, "dm_pvalue"] < 0.01, name
        assert t.loc[name, "direction_accuracy"] > 0.6, name
    assert "lower MAE than the random walk" in run.summary()
    registry = LocalRegistry(tmp_path / "registry")
    decision = promote(registry, run.bundles["ridge_reg"], run.bundles["random_walk"])
    assert decision.promoted, decision.reason
