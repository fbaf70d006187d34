"""Intervals from the volatility forecast (issue 9, items 2 and 3): standardised conformal intervals on a
simulated GARCH series with known volatility, purging, a hand-computed calibration, event probabilities
against the normal ones, the method choice, the serving record and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cryptosentinel.config import ConfigError, DataValidationError
from cryptosentinel.intervals import (
    IntervalCalibration,
    choose_interval_method,
    conformal_intervals,
    event_bound,
    event_report,
    exceedance_probability,
    fit_interval_calibration,
    fold_numbers,
    interval_metrics,
    interval_report,
    large_move_alerts,
    residual_sample,
    simulate_risk_rows,
)
from cryptosentinel.training import Fold

pytestmark = pytest.mark.code

H = 24


@pytest.fixture(scope="module")
def garch():
    "Six coins, a year of hourly GARCH returns, the true sigma; walk-forward intervals and their report."
    rows, folds = simulate_risk_rows(n_coins=6, days=365, horizon=H, n_folds=4, seed=11)
    wf = conformal_intervals(rows, folds, H)
    return rows, folds, wf, interval_report(wf)


@pytest.mark.model
def test_known_volatility_covers_and_beats_unconditional(garch):
    _, _, _, rep = garch
    v, u = rep["methods"]["vol_conformal"], rep["methods"]["unconditional"]
    assert abs(v["80"]["coverage"] - 0.80) < 0.025
    assert abs(v["95"]["coverage"] - 0.95) < 0.012
    for k in ("80", "95"):
        assert v[k]["interval_score"] < u[k]["interval_score"]
        assert v[k]["interval_skill"] > 0.03
        assert v[k]["dm_pvalue"] < 0.05
    assert all(abs(c - 0.80) < 0.08 for c in v["80"]["coverage_by_vol_tercile"])
    assert all(abs(c - 0.80) < 0.08 for c in v["80"]["coverage_by_coin"].values())
    assert v["80"]["tests"]["kupiec_pooled_pvalue"] > 0.01
    assert v["80"]["tests"]["n_coins"] == 6
    # the standardised quantile forecasts beat the unconditional ones in the tails
    assert rep["pinball_skill"]["0.025"] > 0 and rep["pinball_skill"]["0.975"] > 0


@pytest.mark.model
def test_constant_volatility_gives_no_skill():
    "With constant variance the standardised intervals are the unconditional ones in disguise: no real skill."
    rows, folds = simulate_risk_rows(n_coins=4, days=365, horizon=H, n_folds=4, seed=3, garch=(1e-4, 0.0, 0.0))
    rep = interval_report(conformal_intervals(rows, folds, H))
    for k in ("80", "95"):
        assert abs(rep["methods"]["vol_conformal"][k]["interval_skill"]) < 0.02


@pytest.mark.data
def test_purging_no_calibration_label_reaches_into_the_fold(garch):
    rows, folds, wf, _ = garch
    assert not wf.rows.loc[wf.rows.fold <= 1, "calibrated"].any()
    assert wf.rows.loc[wf.rows.fold >= 2, "calibrated"].all()
    for rec, fold in zip(wf.calibration, folds[1:], strict=True):
        assert rec["fold"] == fold.number
        assert pd.Timestamp(rec["calibration_last_ts"]) + pd.Timedelta(hours=H) < fold.test_start
        # the count equals the rows of earlier folds whose label ends before the fold starts
        ok = (rows.fold >= 1) & (rows.fold < fold.number) & (rows.ts + pd.Timedelta(hours=H) < fold.test_start)
        assert rec["n_calibration"] == int(ok.sum())


@pytest.mark.data
def test_calibration_ignores_test_rows_outcomes(garch):
    "Changing the outcomes of fold 4 changes nothing about fold 4's intervals (no look-ahead)."
    rows, folds, wf, _ = garch
    shaken = rows.copy()
    f4 = shaken.fold == 4
    shaken.loc[f4, "y_ret"] = shaken.loc[f4, "y_ret"] * 5
    wf2 = conformal_intervals(shaken, folds, H)
    cols = ["lo_vol_conformal_80", "hi_unconditional_95", "p_move_5", "vol_tercile"]
    pd.testing.assert_frame_equal(wf.rows.loc[f4, cols], wf2.rows.loc[f4, cols])


def _tiny():
    ts = pd.date_range("2024-01-01", periods=7, freq="1h", tz="UTC")
    hour = lambda h: ts[0] + pd.Timedelta(hours=h)  # noqa: E731
    folds = [Fold(k, hour(2 * k - 2), hour(2 * k - 1), hour(2 * k + 1)) for k in (1, 2, 3)]
    tiny = pd.DataFrame({"coin": ["a"] * 7 + ["b"] * 7, "ts": list(ts) * 2,
                         "y_ret": [0.0, 1, -2, 3, -4, 5, -6, 2, 2, -2, 2, -2, 2, -2], "pred": 0.0,
                         "sigma": [1.0, 1, 2, 1, 2, 1, 2, 1, 1, 1, 2, 2, 1, 1],
                         "vol_168": [1.0, 1, 2, 3, 4, 5, 6, 1, 1, 2, 3, 4, 5, 6]})
    tiny["fold"] = fold_numbers(tiny.ts, folds)
    return tiny, folds


def test_hand_computed_calibration():
    tiny, folds = _tiny()
    assert tiny.fold.tolist() == [0, 1, 1, 2, 2, 3, 3] * 2
    wf = conformal_intervals(tiny, folds, horizon=1, levels={"50": 0.5}, taus=(0.5,), thresholds=(0.05,),
                             sample_size=3)
    c2, c3 = wf.calibration
    # fold 2 (03:00-05:00): calibration = fold 1 rows with ts + 1h < 03:00 -> 01:00 only: scores a 1/1, b 2/1
    assert c2["n_calibration"] == 2 and c2["z_quantiles"] == {"50": 2.0}  # ceil(3 * .5) = 2nd smallest
    # fold 3: 01:00..03:00; |z|: a 1, 1, 3; b 2, 2, 1 -> 1 1 1 2 2 3, ceil(7 * .5) = 4th smallest = 2
    assert c3["n_calibration"] == 6 and c3["z_quantiles"] == {"50": 2.0}
    assert c3["coin_quantiles"] == {"a": {"50": 2.0}, "b": {"50": 2.0}}
    assert c3["vol_edges"] == pytest.approx(list(np.quantile([1, 2, 3, 1, 2, 3], [1 / 3, 2 / 3])))
    r = wf.rows.set_index(["coin", wf.rows.ts.dt.hour])
    assert r.loc[("a", 6), ["lo_vol_conformal_50", "hi_vol_conformal_50"]].tolist() == [-4.0, 4.0]
    assert r.loc[("a", 6), ["lo_unconditional_50", "hi_unconditional_50"]].tolist() == [-2.0, 2.0]
    assert r.loc[("b", 3), ["lo_vol_conformal_50", "lo_unconditional_50"]].tolist() == [-4.0, -2.0]  # b 01:00: |2|
    # pinball median: the median of the signed z in fold 3's calibration (a 1, -1, 3; b 2, -2, 1 -> 1) times sigma
    assert r.loc[("a", 6), "q_vol_conformal_0.5"] == pytest.approx(2 * 1.0)
    assert r.loc[("a", 6), "q_unconditional_0.5"] == pytest.approx(np.median([1, -2, 3]))
    assert r.loc[("a", 6), "vol_tercile"] == "high" and r.loc[("a", 3), "vol_tercile"] == "high"
    # the report on the four calibrated rows of fold 2 and four of fold 3
    rep = interval_report(wf)
    assert rep["n"] == 8 and rep["folds"] == [2, 3]
    v = rep["methods"]["vol_conformal"]["50"]
    y = np.array([3, -4, 5, -6, 2, -2, 2, -2.0])  # row order: a 03..06, then b 03..06
    hw = 2 * np.array([1, 2, 1, 2, 2, 2, 1, 1.0])  # q = 2 (both folds) times sigma
    inside = np.abs(y) <= hw
    assert v["coverage"] == pytest.approx(inside.mean())
    width, miss = 2 * hw, np.maximum(np.abs(y) - hw, 0)
    assert v["interval_score"] == pytest.approx(np.mean(width + 2 / 0.5 * miss))


def test_event_probabilities_match_the_normal():
    gauss = stats.norm.ppf(np.arange(1, 1000) / 1000)
    for pred, sigma in [(0.0, 0.02), (0.0, 0.05), (0.01, 0.03), (-0.02, 0.04)]:
        for x in (0.05, 0.10):
            c = math.log1p(x)
            want = stats.norm.sf((c - pred) / sigma) + stats.norm.cdf((-c - pred) / sigma)
            got = exceedance_probability(pred, sigma, gauss, x)
            assert got == pytest.approx(want, abs=2e-3)
    assert event_bound(0.05) == pytest.approx(math.log(1.05))
    cal = IntervalCalibration(24, {"80": 0.8}, {"80": 1.2816}, {}, {"80": "vol_conformal"}, {"80": ""},
                              gauss.tolist(), {"5": 0.2})
    p = cal.event_probabilities(np.zeros(2), np.array([0.02, 0.05]))
    assert set(p) == {0.05, 0.10}
    assert p[0.05] == pytest.approx(2 * stats.norm.sf(math.log(1.05) / np.array([0.02, 0.05])), abs=2e-3)


@pytest.mark.model
def test_event_probabilities_have_skill_on_known_volatility(garch):
    _, _, wf, _ = garch
    ev = event_report(wf)
    for k in ("5", "10"):
        assert ev[k]["brier_skill"] > 0.03
        assert abs(ev[k]["mean_probability"] - ev[k]["event_rate"]) < 0.05  # calibrated on average
    assert ev["definition"] == "|log return| > log(1 + x)"


def test_method_choice():
    def report(is_v, is_u):
        skill = 1 - is_v / is_u
        return {"n": 100, "levels": {"80": 0.8, "95": 0.95},
                "methods": {"vol_conformal": {k: {"interval_score": is_v, "interval_skill": skill} for k in ("80", "95")},
                            "unconditional": {k: {"interval_score": is_u, "interval_skill": 0.0} for k in ("80", "95")}}}
    better = choose_interval_method(report(0.9, 1.0))
    assert {k: c["method"] for k, c in better.items()} == {"80": "vol_conformal", "95": "vol_conformal"}
    assert "+10.0% skill" in better["80"]["reason"]
    worse = choose_interval_method(report(1.0, 1.0))
    assert worse["95"]["method"] == "unconditional" and "not better" in worse["95"]["reason"]
    assert choose_interval_method(report(0.9, 1.0), min_skill=0.2)["80"]["method"] == "unconditional"
    empty = report(math.nan, math.nan)
    assert choose_interval_method(empty)["80"]["method"] == "unconditional"


def test_serving_record_round_trip_and_methods(garch):
    _, _, wf, rep = garch
    choice = choose_interval_method(rep)
    cal = fit_interval_calibration(wf, choice)
    assert cal.n == int((wf.rows.fold >= 1).sum()) and len(cal.z_sample) == 999
    back = IntervalCalibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back == cal
    lo, hi = cal.intervals(0.001, 0.04, "coin_0")["95"]
    assert hi - 0.001 == pytest.approx(cal.z_quantiles["95"] * 0.04) and lo == pytest.approx(0.002 - hi)
    unc = IntervalCalibration(**{**cal.__dict__, "methods": {"80": "unconditional", "95": "vol_conformal"}})
    out = unc.intervals(np.zeros(2), np.array([0.01, 0.08]), ["coin_1", "coin_1"])
    assert out["80"][1] == pytest.approx([cal.coin_quantiles["coin_1"]["80"]] * 2)  # one width whatever sigma
    assert out["95"][1] == pytest.approx(cal.z_quantiles["95"] * np.array([0.01, 0.08]))
    metrics = interval_metrics(rep, choice)
    assert set(metrics) >= {"coverage_80", "coverage_95", "interval_score_80", "interval_score_95",
                            "interval_skill_80", "interval_skill_95", "coverage_80_by_vol_tercile"}
    assert len(metrics["coverage_80_by_vol_tercile"]) == 3


@pytest.mark.model
def test_mondrian_covers_every_tercile_and_serves_by_vol(garch, caplog):
    rows, folds, _, _ = garch
    # a constant sigma knows nothing of volatility: pooled intervals over-cover calm weeks and under-cover wild ones;
    # Mondrian quantiles per vol_168 tercile of the calibration rows move every tercile toward 80%
    flat = rows.assign(sigma=float(np.median(rows["sigma"])))
    pooled = interval_report(conformal_intervals(flat, folds, H))
    mwf = conformal_intervals(flat, folds, H, mondrian=True)
    mond = interval_report(mwf)
    worst = {name: max(abs(c - 0.80) for c in r["methods"]["vol_conformal"]["80"]["coverage_by_vol_tercile"])
             for name, r in (("pooled", pooled), ("mondrian", mond))}
    assert worst["pooled"] > 0.05 and worst["mondrian"] < worst["pooled"] - 0.02, worst
    assert mond["methods"]["vol_conformal"]["80"]["interval_score"] < pooled["methods"]["vol_conformal"]["80"]["interval_score"]
    assert abs(mond["methods"]["vol_conformal"]["80"]["coverage"] - 0.80) < 0.015
    cal = fit_interval_calibration(mwf, choose_interval_method(mond))
    back = IntervalCalibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back == cal and len(cal.vol_edges) == 2 and set(cal.vol_z_quantiles) == {"low", "mid", "high"}
    vol = np.array([cal.vol_edges[0] / 2, cal.vol_edges[1] * 2])
    hi = back.intervals(np.zeros(2), np.full(2, 0.02), ["coin_0"] * 2, levels=["80"], vol=vol)["80"][1]
    assert hi == pytest.approx(0.02 * np.array([cal.vol_z_quantiles["low"]["80"], cal.vol_z_quantiles["high"]["80"]]))
    with caplog.at_level("WARNING"):
        assert back.intervals(0.0, 0.02, "coin_0")["80"][1] == pytest.approx(0.02 * cal.z_quantiles["80"])
    assert "fell back to the pooled" in caplog.text


def test_large_move_alerts():
    probs = pd.DataFrame({"coin": ["a", "b", "c"], "probability": [0.30, 0.15, 0.05], "base_rate": [0.1, 0.1, 0.01],
                          "ts": pd.Timestamp("2024-01-01", tz="UTC")})
    alerts = large_move_alerts(probs)
    assert [a["coin"] for a in alerts] == ["a", "c"]  # 0.30 > 2 x 0.10, 0.05 > 2 x 0.01
    assert alerts[0]["base_rate"] == 0.1 and alerts[0]["threshold"] == pytest.approx(0.2)
    assert alerts[0]["event"] == "large move likely" and "3.0x its base rate" in alerts[0]["message"]
    assert [a["coin"] for a in large_move_alerts(probs, threshold=0.1)] == ["a", "b"]
    assert large_move_alerts(probs.iloc[:0]) == []


def test_bad_input_is_refused_clearly(garch):
    rows, folds, wf, _ = garch
    with pytest.raises(DataValidationError, match="lack column"):
        conformal_intervals(rows.drop(columns="pred"), folds, H)
    with pytest.raises(DataValidationError, match="'sigma' must be finite and > 0"):
        conformal_intervals(rows.assign(sigma=np.where(rows.index == 5, -1.0, rows.sigma)), folds, H)
    with pytest.raises(DataValidationError, match="'y_ret' must be finite"):
        conformal_intervals(rows.assign(y_ret=np.nan), folds, H)
    with pytest.raises(ConfigError, match="coverage in"):
        conformal_intervals(rows, folds, H, levels={"80": 1.5})
    cal = fit_interval_calibration(wf, choose_interval_method(interval_report(wf)))
    with pytest.raises(ConfigError, match="unknown interval level"):
        cal.intervals(0.0, 0.02, "coin_0", levels=["90"])
    with pytest.raises(DataValidationError, match="sigma must be finite and > 0"):
        cal.intervals(0.0, 0.0, "coin_0")
    with pytest.raises(DataValidationError, match="sigma must be finite and > 0"):
        cal.event_probabilities(np.zeros(2), np.array([0.02, np.nan]))
    with pytest.raises(ValueError, match="shape mismatch"):  # mismatched lengths
        cal.intervals(np.zeros(3), np.full(2, 0.02), "coin_0")
    with pytest.raises(DataValidationError, match="coin, probability"):
        large_move_alerts([{"coin": "a", "probability": 0.3}])
    with pytest.raises(ConfigError, match="threshold is a probability"):
        large_move_alerts([{"coin": "a", "probability": 0.3}], threshold=5)
    with pytest.raises(DataValidationError, match="no finite"):
        residual_sample(np.array([np.nan, np.inf]))
