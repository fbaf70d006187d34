"""Leakage: labels shifted by the horizon lose the skill; folds never let a training label window reach
a test row; and on the real hourly coins, skill that looks too good (accuracy >= 60%, R2 >= 5%) fails."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from builders import feature_frame, shared_prices
from hypothesis import given, settings
from hypothesis import strategies as st
from test_training import PLANTED_FEATURES, planted_frame, synthetic_run

from cryptosentinel.fitting import MODELS, last_fold_forecasts, train_horizon
from cryptosentinel.training import conformal_quantile, walk_forward_folds

pytestmark = pytest.mark.model

H = 24
QUICK = ["ridge_reg", "xgb_reg", "hgb_clf"]


def shift_labels(frame: pd.DataFrame, bars: int) -> pd.DataFrame:
    """Move every coin's close by `bars` rows, so the label at t becomes the label at t + bars."""
    return frame.assign(close=frame.groupby("coin")["close"].shift(-bars))


@pytest.fixture(scope="module")
def planted():
    return planted_frame(days=100)


@pytest.mark.slow
def test_label_shift_destroys_the_skill(planted):
    aligned = train_horizon(planted, H, seed=1, n_folds=3, features=PLANTED_FEATURES, models=QUICK)
    for name in QUICK:  # the known signal is found ...
        assert aligned.table.loc[name, "direction_accuracy"] > 0.6, name
    for bars in (H, -H):  # ... and is gone once labels move one horizon forward or back
        shifted = train_horizon(shift_labels(planted, bars), H, seed=1, n_folds=3, features=PLANTED_FEATURES,
                                models=QUICK)
        t = shifted.table
        for name in QUICK:
            se = 0.5 / np.sqrt(t.loc[name, "n_direction"] / H)
            assert abs(t.loc[name, "direction_accuracy"] - 0.5) <= 2 * se, (bars, name)
            assert t.loc[name, "dm_pvalue"] > 0.05, (bars, name)
        for name in ("ridge_reg", "xgb_reg"):
            assert t.loc[name, "relative_mae"] > 0.97 and t.loc[name, "r2_oos"] < 0.02, (bars, name)


def test_no_training_row_or_label_window_reaches_a_test_row(planted):
    """In the run itself: for every fold, the last training row's label ends before the first test row."""
    run = train_horizon(planted, H, seed=1, n_folds=3, features=PLANTED_FEATURES, models=["ridge_reg"])
    ts = planted["ts"]
    labelled = planted.assign(y=np.log(planted.groupby("coin")["close"].shift(-H) / planted["close"])).dropna(subset=["y"])
    for f in run.folds[run.folds.model == "ridge_reg"].itertuples():
        train = labelled[labelled.ts < f.train_end]
        test = run.predictions[run.predictions.fold == f.fold]
        assert len(train) == f.n_train and len(test) == f.n_test
        assert train.ts.max() + H * pd.Timedelta(hours=1) < test.ts.min()
        assert f.test_start == test.ts.min() and ts.min() <= f.train_start
    folds = run.predictions.groupby("fold")["ts"].agg(["min", "max"])
    assert (folds["min"].iloc[1:].to_numpy() > folds["max"].iloc[:-1].to_numpy()).all()  # ordered, disjoint


def test_hindcast_intervals_are_calibrated_only_on_labels_that_ended_before_the_last_fold():
    """Rows of fold 3 whose label window reaches into fold 4 carry huge errors: they must not widen
    fold 4's intervals (the hindcast is purged as the walk-forward is)."""
    run = synthetic_run()
    p = run.predictions
    last_start = pd.Timestamp(run.lineage["folds"][-1]["test_start"])
    reaching = (p["fold"] < 4) & (p["ts"] + H * pd.Timedelta(hours=1) >= last_start)
    assert reaching.sum() == 2 * H  # the last horizon of fold 3, both coins
    poisoned = p.assign(y_ret=np.where(reaching, 1e3 * p["scale"], p["y_ret"]))
    run.predictions = poisoned
    out = last_fold_forecasts(run, "ridge_reg")
    assert out["n_calibration"] == int(((p["fold"] < 4) & ~reaching).sum())
    clean = poisoned[~reaching]  # the same run without the rows whose labels reach fold 4
    run.predictions = clean
    expected = last_fold_forecasts(run, "ridge_reg")
    assert out["quantiles"] == expected["quantiles"] and out["quantiles"]["95"] < 5
    for key in ("80", "95"):
        np.testing.assert_array_equal(out["intervals"][key][0], expected["intervals"][key][0])
    # without the purge, the poisoned rows would have moved the quantile: the test can see a leak
    def q99(rows: pd.DataFrame) -> float:
        rows = rows[rows["fold"] < 4]
        return conformal_quantile((rows["y_ret"] / rows["scale"]).abs().to_numpy(), 0.99)

    assert q99(poisoned) > 10 * q99(clean)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(200, 2000), horizon=st.integers(1, 48), n_folds=st.integers(1, 6),
       test_fraction=st.floats(0.1, 0.6), gaps=st.lists(st.integers(0, 1999), max_size=30),
       seed=st.integers(0, 10))
def test_folds_are_purged_by_one_horizon(n, horizon, n_folds, test_fraction, gaps, seed):
    """Any timestamps (with gaps): every training row's label window ends before its fold's test block."""
    hours = np.setdiff1d(np.arange(n), gaps)
    ts = pd.DatetimeIndex(pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(hours, "h"))
    try:
        folds = walk_forward_folds(ts, horizon, n_folds, test_fraction)
    except Exception as err:  # too little data for the request: a clear refusal, never a leaky split
        assert "too few" in str(err) or "no training rows" in str(err)
        return
    bar = pd.Timedelta(hours=1)
    for f in folds:
        train = ts[ts < f.train_end]
        test = ts[(ts >= f.test_start) & (ts < f.test_end)]
        assert len(train) and len(test)
        assert train.max() + horizon * bar < test.min()  # label window [t, t+h] ends before the test block
    for a, b in zip(folds[:-1], folds[1:], strict=True):
        assert a.test_end == b.test_start
    assert folds[-1].test_end > ts.max()


@pytest.mark.shared_data
@pytest.mark.slow
def test_real_hourly_coins_show_no_implausible_skill(shared_data):
    """Accuracy >= 60% or out-of-sample R2 >= 5% on real hourly crypto would be a leak to find."""
    prices = shared_prices(shared_data, coins=["bitcoin", "ethereum", "solana"])
    frame = feature_frame(prices, with_close=True)
    run = train_horizon(frame, H, seed=42, n_folds=2, test_fraction=0.25)
    t = run.table
    for name in MODELS:
        assert t.loc[name, "direction_accuracy"] < 0.60, (name, t.loc[name, "direction_accuracy"])
        if MODELS[name][0] == "regression":
            assert t.loc[name, "r2_oos"] < 0.05, (name, t.loc[name, "r2_oos"])
    for block in run.by_coin[run.by_coin.model.isin(list(MODELS))].itertuples():
        assert block.direction_accuracy < 0.60, (block.model, block.coin)
