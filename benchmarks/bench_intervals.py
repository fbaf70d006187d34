"""Benchmark the volatility-standardised conformal intervals and event probabilities (issue 9, items 2 and 3).

On the 8 shared hourly Binance coins (read in place from ../shared/data), h = 24, walk-forward folds as in
training (4 folds over the last 30% of the labelled rows, purged by one horizon), scored on the folds after the
first. Point forecast: the random walk (pred = 0). Volatility: the walk-forward champion of
`volatility.train_volatility` (the lowest pooled QLIKE among the models), whose folds the intervals use;
sigma = sqrt(its out-of-sample variance forecast). The intervals are tried pooled and Mondrian (one
standardised quantile per vol_168 tercile of the calibration rows); the goal table is for the kept one.

Prints the goal table with the measured values and writes reports/bench/intervals.json.

    .venv/bin/python benchmarks/bench_intervals.py [--horizon 24] [--folds 4]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd
from _common import machine, shared_prices, write_result

from cryptosentinel import training
from cryptosentinel.intervals import (
    choose_interval_method,
    conformal_intervals,
    event_report,
    fit_interval_calibration,
    interval_metrics,
    interval_report,
)
from cryptosentinel.volatility import train_volatility


def risk_rows(prices: pd.DataFrame, horizon: int, n_folds: int):
    "The volatility champion's walk-forward rows (`train_volatility`) with y_ret, pred = 0, sigma and vol_168, and its folds."
    run = train_volatility(prices, horizon, n_folds=n_folds)
    champ = run.champion
    pr = run.predictions
    p = prices[["coin", "ts", "close"]]
    ahead = p.assign(ts=p["ts"] - horizon * pd.Timedelta(run.lineage["bar"])).rename(columns={"close": "close_ahead"})
    rows = pr[["coin", "ts", "fold", "rv", champ]].merge(p, on=["coin", "ts"], how="left")
    rows = rows.merge(ahead, on=["coin", "ts"], how="left")  # the close exactly `horizon` bars later
    rows["y_ret"] = np.log(rows["close_ahead"] / rows["close"])
    rows["pred"] = 0.0
    rows["sigma"] = np.sqrt(rows[champ])
    # vol_168: root mean squared hourly log return over the past 168 bars (the vol_168 baseline / horizon)
    rows["vol_168"] = np.sqrt(pr["vol_168"].to_numpy(float) / horizon)
    ok = np.isfinite(rows[["y_ret", "sigma", "vol_168"]].to_numpy(float)).all(axis=1) & (rows["sigma"] > 0)
    folds = training.as_folds(run.lineage["folds"])
    return rows[ok].reset_index(drop=True), folds, run, champ


def evaluate(rows: pd.DataFrame, folds, horizon: int, daily_hour: int, mondrian: bool) -> dict:
    wf = conformal_intervals(rows, folds, horizon, mondrian=mondrian)
    rep = interval_report(wf, daily_hour=daily_hour)
    choice = choose_interval_method(rep)
    return {"wf": wf, "rep": rep, "choice": choice, "cal": fit_interval_calibration(wf, choice), "ev": event_report(wf)}


def summary(rep: dict) -> dict:
    "One line per level of the vol_conformal intervals: coverage, by coin and tercile, skill."
    v = rep["methods"]["vol_conformal"]
    return {k: {"coverage": round(v[k]["coverage"], 4),
                "by_coin": f"{min(v[k]['coverage_by_coin'].values()):.3f}..{max(v[k]['coverage_by_coin'].values()):.3f}",
                "by_tercile": " / ".join(f"{x:.3f}" for x in v[k]["coverage_by_vol_tercile"]),
                "interval_skill": round(v[k]["interval_skill"], 4)} for k in rep["levels"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--daily-hour", type=int, default=0, help="UTC hour of the one forecast per coin per day")
    args = parser.parse_args()
    t0 = time.perf_counter()
    prices = shared_prices()
    rows, folds, run, champ = risk_rows(prices, args.horizon, args.folds)
    prep_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    tries = {"pooled": evaluate(rows, folds, args.horizon, args.daily_hour, mondrian=False),
             "mondrian": evaluate(rows, folds, args.horizon, args.daily_hour, mondrian=True)}
    kept = "mondrian"  # Mondrian by vol_168 tercile: the terciles within goal and a higher 95% skill (see below)
    wf, rep, choice, cal, ev = (tries[kept][k] for k in ("wf", "rep", "choice", "cal", "ev"))
    calib_s = time.perf_counter() - t1

    scored = wf.rows[wf.rows["calibrated"]]
    mz = training.mincer_zarnowitz(np.log(scored["rv"]), np.log(scored["sigma"] ** 2))
    ql = float(np.nanmean(training.qlike(scored["rv"].to_numpy(), scored["sigma"].to_numpy() ** 2)))

    v, u = rep["methods"]["vol_conformal"], rep["methods"]["unconditional"]
    goals = []

    def goal(name: str, value, target: str, ok: bool | None) -> None:
        goals.append({"goal": name, "target": target, "measured": value,
                      "met": None if ok is None else bool(ok)})

    goal("coverage 80% overall", round(v["80"]["coverage"], 4), "0.80 +- 0.015", abs(v["80"]["coverage"] - 0.80) <= 0.015)
    goal("coverage 95% overall", round(v["95"]["coverage"], 4), "0.95 +- 0.01", abs(v["95"]["coverage"] - 0.95) <= 0.01)
    for k, tol in (("80", 0.03), ("95", 0.02)):
        lv = int(k) / 100
        by_coin = v[k]["coverage_by_coin"]
        worst = max(by_coin, key=lambda c: abs(by_coin[c] - lv))  # noqa: B023
        goal(f"coverage {k}% every coin", f"{min(by_coin.values()):.3f}..{max(by_coin.values()):.3f} (worst {worst})",
             f"{lv:.2f} +- {tol:.2f}", all(abs(x - lv) <= tol for x in by_coin.values()))
        terc = v[k]["coverage_by_vol_tercile"]
        goal(f"coverage {k}% every vol_168 tercile", " / ".join(f"{x:.3f}" for x in terc), f"{lv:.2f} +- {tol:.2f}",
             all(abs(x - lv) <= tol for x in terc))
    for k in ("80", "95"):
        goal(f"interval-score skill {k}% vs unconditional", round(v[k]["interval_skill"], 4), ">= 0.06",
             v[k]["interval_skill"] >= 0.06)
    for k in ("80", "95"):
        t = v[k]["tests"]
        goal(f"Kupiec {k}% (daily, per coin)", f"min p {t['kupiec_pvalue_min']:.3g}, pooled p {t['kupiec_pooled_pvalue']:.3g}, "
             f"{t['kupiec_rejected_05']}/{t['n_coins']} coins p<0.05", "report", None)
        goal(f"Christoffersen {k}% (daily, per coin)", f"min p {t['christoffersen_pvalue_min']:.3g}, pooled p "
             f"{t['christoffersen_pooled_pvalue']:.3g}, {t['christoffersen_rejected_05']}/{t['n_coins']} coins p<0.05",
             "report", None)
    for k in ("5", "10"):
        goal(f"Brier skill P(|r|>log(1.{int(k):02d}))", round(ev[k]["brier_skill"], 4), "report (> 0)", ev[k]["brier_skill"] > 0)

    pd.set_option("display.width", 200)
    pd.set_option("display.max_colwidth", 90)
    print(f"rows: {len(rows):,} out-of-sample ({rows['coin'].nunique()} coins), scored (folds 2..{args.folds}): "
          f"{rep['n']:,}; folds {folds[0].test_start} .. {folds[-1].test_end}")
    print(f"sigma: the volatility champion {champ} (train_volatility, walk-forward), sqrt of its variance forecast: "
          f"QLIKE {ql:.4f}, MZ R2 {mz['r2']:.3f} (alpha {mz['alpha']:.3f}, beta {mz['beta']:.3f})")
    print("\ntries (vol_conformal intervals):")
    print(pd.DataFrame({(name, k): row for name, t in tries.items() for k, row in summary(t["rep"]).items()}).T.to_string())
    print(f"\ngoal table (vol_conformal intervals, {kept}, h = {args.horizon}):")
    print(pd.DataFrame(goals).to_string(index=False))
    print("\nboth methods:")
    tab = pd.DataFrame({f"{m} {k}": {"coverage": rep["methods"][m][k]["coverage"],
                                      "interval_score": rep["methods"][m][k]["interval_score"],
                                      "mean_width": rep["methods"][m][k]["mean_width"],
                                      "skill": rep["methods"][m][k]["interval_skill"],
                                      **{f"tercile_{t}": c for t, c in zip(("low", "mid", "high"),
                                                                           rep["methods"][m][k]["coverage_by_vol_tercile"],
                                                                           strict=True)}}
                        for m in ("vol_conformal", "unconditional") for k in ("80", "95")})
    print(tab.round(4).to_string())
    print("\ncoverage by coin:")
    print(pd.DataFrame({f"{m} {k}": rep["methods"][m][k]["coverage_by_coin"] for m in ("vol_conformal", "unconditional")
                        for k in ("80", "95")}).round(3).to_string())
    hours = pd.DataFrame({k: v[k]["coverage_by_hour"] for k in ("80", "95")})
    print(f"\ncoverage by UTC hour (vol_conformal): 80% {hours['80'].min():.3f}..{hours['80'].max():.3f}, "
          f"95% {hours['95'].min():.3f}..{hours['95'].max():.3f}")
    print("pinball loss (x1e3):", {t: (round(1e3 * v["pinball"][t], 3), round(1e3 * u["pinball"][t], 3))
                                   for t in v["pinball"]}, "skill:", {t: round(s, 4) for t, s in rep["pinball_skill"].items()})
    print("choice:", {k: c["reason"] for k, c in choice.items()})
    for k in ("5", "10"):
        e = ev[k]
        print(f"events |r| > log(1.{int(k):02d}): rate {e['event_rate']:.3f}, base {e['base_rate']:.3f}, mean p "
              f"{e['mean_probability']:.3f}, Brier {e['brier']:.4f} vs {e['brier_base']:.4f}, skill {e['brier_skill']:.4f}; "
              f"alert rule (p > 2x base): {e['alert_share']:.1%} of rows flagged, hit rate {e['alert_hit_rate']}")
    print(f"\nprep {prep_s:.1f} s, calibration + report {calib_s:.1f} s")

    result = {"benchmark": "intervals", "horizon": args.horizon, "n_folds": args.folds, "daily_hour": args.daily_hour,
              "sigma_source": f"volatility champion {champ} (train_volatility walk-forward predictions)",
              "interval_variant": kept, "tries": {name: summary(t["rep"]) for name, t in tries.items()},
              "point_forecast": "random walk (0)", "rows_out_of_sample": len(rows), "rows_scored": rep["n"],
              "folds": [f.to_dict() for f in folds], "sigma_qlike": ql, "sigma_mz": mz,
              "goals": goals, "metrics": interval_metrics(rep, choice), "metrics_vol_conformal": interval_metrics(rep),
              "choice": choice, "report": rep, "events": ev,
              "calibration": {k: val for k, val in cal.to_dict().items() if k != "z_sample"},
              "prep_s": round(prep_s, 2), "calibration_s": round(calib_s, 2),
              "machine": machine(load_avg=False), "measured_at": pd.Timestamp.now(tz="UTC").isoformat()}
    write_result("intervals", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
