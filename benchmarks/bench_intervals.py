"""Benchmark the volatility-standardised conformal intervals and event probabilities (issue 9, items 2 and 3).

On the 8 shared hourly Binance coins (read in place from ../shared/data), h = 24, walk-forward folds as in
training (4 folds over the last 30% of the labelled rows, purged by one horizon), scored on the folds after the
first. Point forecast: the random walk (pred = 0). Volatility: a causal stand-in computed here until the
volatility module's champion is wired in: per coin and fold, a HAR least-squares fit on training rows only
(labels ending before the fold starts) of log realised variance over the next 24 h on the log realised variance
of the past 24, 168 and 720 h, mapped back to variance with Duan's smearing factor. sigma = sqrt(variance).

Prints the goal table with the measured values and writes reports/bench/intervals.json.

    .venv/bin/python benchmarks/bench_intervals.py [--horizon 24] [--folds 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cryptosentinel import training
from cryptosentinel.intervals import (
    choose_interval_method,
    conformal_intervals,
    event_report,
    fit_interval_calibration,
    fold_numbers,
    interval_metrics,
    interval_report,
)
from cryptosentinel.snapshots import read_csv_snapshot
from cryptosentinel.util import json_safe

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "hourly_binance_spot"
OUT = ROOT / "reports" / "bench" / "intervals.json"
HAR_WINDOWS = (24, 168, 720)


def risk_frame(prices: pd.DataFrame, horizon: int) -> pd.DataFrame:
    "Per coin on a complete hourly grid: y_ret, future RV, past log RV (24/168/720 h), vol_168; missing bars stay NaN."
    out = []
    for coin, g in prices.groupby("coin"):
        s = g.set_index("ts")["close"].sort_index()
        s = s.reindex(pd.date_range(s.index[0], s.index[-1], freq="1h"))
        logp = np.log(s.to_numpy(float))
        r = np.concatenate([[np.nan], np.diff(logp)])
        r2 = pd.Series(r**2)
        f = pd.DataFrame({"coin": coin, "ts": s.index})
        f["y_ret"] = pd.Series(logp).shift(-horizon) - logp
        # realised variance of the next `horizon` hourly returns (t+1 .. t+h), all bars present
        f["rv"] = r2.rolling(horizon, min_periods=horizon).sum().shift(-horizon).to_numpy()
        for w in HAR_WINDOWS:
            f[f"lrv_{w}"] = np.log(r2.rolling(w, min_periods=int(0.9 * w)).mean().to_numpy() * horizon)
        f["vol_168"] = pd.Series(r).rolling(168, min_periods=150).std(ddof=0).to_numpy()
        out.append(f)
    frame = pd.concat(out, ignore_index=True)
    cols = ["y_ret", "rv", "vol_168", *(f"lrv_{w}" for w in HAR_WINDOWS)]
    ok = np.isfinite(frame[cols].to_numpy(float)).all(axis=1) & (frame["rv"] > 0)
    return frame[ok].reset_index(drop=True)


def har_sigma(frame: pd.DataFrame, folds: list[training.Fold]) -> np.ndarray:
    "Causal HAR variance forecast per coin and fold (fit on ts < fold.train_end), smeared back to variance."
    var = np.full(len(frame), np.nan)
    xcols = [f"lrv_{w}" for w in HAR_WINDOWS]
    for _coin, g in frame.groupby("coin"):
        X = np.column_stack([np.ones(len(g)), g[xcols].to_numpy(float)])
        ly = np.log(g["rv"].to_numpy(float))
        for fold in folds:
            train = (g["ts"] < fold.train_end).to_numpy()
            test = ((g["ts"] >= fold.test_start) & (g["ts"] < fold.test_end)).to_numpy()
            beta, *_ = np.linalg.lstsq(X[train], ly[train], rcond=None)
            smear = float(np.mean(np.exp(ly[train] - X[train] @ beta)))  # Duan: E[exp(residual)]
            var[g.index[test]] = np.exp(X[test] @ beta) * smear
    return np.sqrt(var)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--daily-hour", type=int, default=0, help="UTC hour of the one forecast per coin per day")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"no data at {SHARED}: nothing to benchmark", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    prices = read_csv_snapshot(SHARED).frame
    frame = risk_frame(prices, args.horizon)
    folds = training.walk_forward_folds(frame["ts"], args.horizon, args.folds)
    frame["fold"] = fold_numbers(frame["ts"], folds)
    frame["pred"] = 0.0
    frame["sigma"] = har_sigma(frame, folds)
    rows = frame[frame["fold"] >= 1].reset_index(drop=True)
    prep_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    wf = conformal_intervals(rows, folds, args.horizon)
    rep = interval_report(wf, daily_hour=args.daily_hour)
    choice = choose_interval_method(rep)
    cal = fit_interval_calibration(wf, choice)
    ev = event_report(wf)
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
    print(f"sigma stand-in (HAR on log RV 24/168/720 h, smeared): QLIKE {ql:.4f}, MZ R2 {mz['r2']:.3f} "
          f"(alpha {mz['alpha']:.3f}, beta {mz['beta']:.3f})")
    print(f"\ngoal table (vol_conformal intervals, h = {args.horizon}):")
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
              "sigma_source": "HAR(24/168/720 h) on log RV per coin and fold, Duan smearing (bench stand-in)",
              "point_forecast": "random walk (0)", "rows_out_of_sample": len(rows), "rows_scored": rep["n"],
              "folds": [f.to_dict() for f in folds], "sigma_qlike": ql, "sigma_mz": mz,
              "goals": goals, "metrics": interval_metrics(rep, choice), "metrics_vol_conformal": interval_metrics(rep),
              "choice": choice, "report": rep, "events": ev,
              "calibration": {k: val for k, val in cal.to_dict().items() if k != "z_sample"},
              "prep_s": round(prep_s, 2), "calibration_s": round(calib_s, 2),
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
              "measured_at": pd.Timestamp.now(tz="UTC").isoformat()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(json_safe(result), indent=2) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
