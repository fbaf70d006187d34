"""Benchmark the coverage alarms of monitoring: false alarms per quarter of a random-walk champion (issue 9, item 9).

On the 8-coin hourly Binance data (read in place from ../shared/data), the champion is the random walk with
conformal intervals on returns scaled by `vol_24`, calibrated walk-forward as training does (`train_horizon`
with no models: fold k's quantiles come from folds < k, rows whose label window reaches fold k purged). Its
forecasts of folds 2..n are the validated history. Monitoring is then replayed once a day at 00:00 UTC over
that period: at each check, `alerts.check_performance` sees the forecasts validated by then (made at least
one horizon before) and judges each coin over the last `performance_window_days` (Kupiec on one forecast
per coin per day, p < `coverage_pvalue`). The random walk is the reference of the skill rule (relative MAE 1),
so every alarm it raises is a coverage alarm; they are counted three ways:

- breach-days: (check, coin, level) with a breach;
- alarms: a breach of a (coin, level) that was not in breach at the previous check (an episode's onset; a
  breach that persists is one alarm, as the alert cooldown and the open-alert status treat it);
- per quarter: alarms per calendar quarter (all coins together), and normalised to 91 days.

The goal (issue 9): at most one false coverage alarm per quarter. Results in reports/bench/monitoring_alarms.json.

    .venv/bin/python benchmarks/bench_monitoring_alarms.py [--horizon 24] [--folds 4] [--hour 0]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd
from _common import feature_frame, shared_prices, write_result

from cryptosentinel.alerts import check_performance
from cryptosentinel.config import Settings
from cryptosentinel.fitting import train_horizon
from cryptosentinel.training import INTERVAL_LEVELS, Fold, as_folds, conformal_fold_quantiles

GOAL_PER_QUARTER = 1.0


def validated_history(frame: pd.DataFrame, horizon: int, n_folds: int) -> tuple[pd.DataFrame, list[Fold]]:
    "The random walk's walk-forward forecasts of folds 2..n with conformal intervals, as a validated history."
    run = train_horizon(frame, horizon, n_folds=n_folds, models=[])
    p = run.predictions
    folds = as_folds(run.lineage["folds"])
    ts_ns = pd.DatetimeIndex(p["ts"]).tz_convert("UTC").as_unit("ns").asi8
    y, pred, scale = (p[c].to_numpy(dtype=float) for c in ("y_ret", "random_walk", "scale"))
    fold_of = p["fold"].to_numpy()
    h_ns = horizon * pd.Timedelta(run.lineage["bar"]).value
    inside = {key: np.full(len(p), np.nan) for key in INTERVAL_LEVELS}
    for fold in folds[1:]:
        quantiles, _ = conformal_fold_quantiles(y, pred, scale, ts_ns, fold_of, fold, h_ns)
        test = fold_of == fold.number
        for key, q in quantiles.items():
            inside[key][test] = np.abs(y[test] - pred[test]) <= q * scale[test]
    rows = fold_of >= 2
    out = pd.DataFrame({"coin": p["coin"].to_numpy()[rows], "made_at": p["ts"].to_numpy()[rows],
                        "horizon": horizon, "model_version": "random_walk@walk-forward",
                        "abs_error": np.abs(y - pred)[rows], "rw_abs_error": np.abs(y)[rows],
                        **{f"inside_{k}": inside[k][rows].astype(bool) for k in INTERVAL_LEVELS}})
    return out, folds


def replay(history: pd.DataFrame, horizon: int, settings: Settings, hour: int) -> pd.DataFrame:
    "One monitoring check a day at `hour` UTC: the breaches of each check (check, coin, rule, value, n, pvalue)."
    window = pd.Timedelta(days=settings.monitoring.performance_window_days)
    lag = pd.Timedelta(hours=horizon)
    first = history["made_at"].min().floor("D") + pd.Timedelta(hours=hour)
    checks = pd.date_range(first, history["made_at"].max() + lag, freq="D")
    made = history["made_at"]
    found = []
    for t in checks:
        seen = history[(made + lag <= t) & (made > t - lag - window - pd.Timedelta(days=1))]
        if seen.empty:
            continue
        for b in check_performance(seen, settings):
            found.append({"check": t, "coin": b.coin, "rule": b.rule, "value": b.value, "n": b.n,
                          "pvalue": b.pvalue})
    out = pd.DataFrame(found, columns=["check", "coin", "rule", "value", "n", "pvalue"])
    out.attrs["checks"] = checks
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--hour", type=int, default=0, help="UTC hour of the daily monitoring check")
    args = parser.parse_args()
    started = time.perf_counter()
    frame = feature_frame(shared_prices())
    history, folds = validated_history(frame, args.horizon, args.folds)
    settings = Settings(_env_file=None)
    ms = settings.monitoring
    breaches = replay(history, args.horizon, settings, args.hour)
    checks = breaches.attrs["checks"]
    judged_from = history["made_at"].min() + pd.Timedelta(days=ms.performance_window_days)
    coverage = breaches[breaches["rule"].str.startswith("interval_coverage")].copy()
    skill = breaches[breaches["rule"] == "model_skill"]

    # alarms: onsets of a (coin, rule) breach, i.e. not in breach at the previous check
    prev_check = dict(zip(checks[1:], checks[:-1], strict=True))
    keys = set(zip(coverage["check"], coverage["coin"], coverage["rule"], strict=True))
    coverage["onset"] = [(prev_check.get(t), c, r) not in keys
                         for t, c, r in zip(coverage["check"], coverage["coin"], coverage["rule"], strict=True)]
    alarms = coverage[coverage["onset"]]
    checks_judged = checks[checks >= judged_from]
    quarters = pd.PeriodIndex(checks_judged, freq="Q")
    days_per_q = pd.Series(1, index=quarters).groupby(level=0).sum()
    per_q = alarms.assign(q=pd.PeriodIndex(alarms["check"], freq="Q")).groupby("q").size()
    table = pd.DataFrame({"check_days": days_per_q, "alarms": per_q.reindex(days_per_q.index, fill_value=0)})
    table["breach_days"] = (coverage.assign(q=pd.PeriodIndex(coverage["check"], freq="Q")).groupby("q").size()
                            .reindex(table.index, fill_value=0))
    table["alarms_per_91_days"] = (table["alarms"] / table["check_days"] * 91).round(2)
    by_coin = alarms.groupby(["coin", "rule"]).size().unstack(fill_value=0)
    total_days = len(checks_judged)
    rate = len(alarms) / total_days * 91 if total_days else float("nan")
    coin_level_checks = total_days * history["coin"].nunique() * len(INTERVAL_LEVELS)
    overall = {f"coverage_{k}": float(history[f"inside_{k}"].mean()) for k in INTERVAL_LEVELS}

    pd.set_option("display.width", 200)
    print(f"validated random-walk forecasts: {len(history):,} rows, {history['coin'].nunique()} coins, "
          f"{history['made_at'].min()} .. {history['made_at'].max()} (folds 2..{len(folds)}); pooled coverage "
          + ", ".join(f"{k}%: {v:.3f}" for k, v in overall.items()))
    print(f"daily checks at {args.hour:02d}:00 UTC with a full {ms.performance_window_days:g}-day window: "
          f"{total_days} ({checks_judged.min().date()} .. {checks_judged.max().date()}), Kupiec p < "
          f"{ms.coverage_pvalue:g}, at least {ms.skill_min_predictions} daily forecasts per coin")
    print("\ncoverage alarms per quarter (all coins together):\n" + table.to_string())
    print("\nalarms by coin and level:\n" + (by_coin.to_string() if len(by_coin) else "none"))
    print(f"\nfalse coverage alarms: {len(alarms)} over {total_days} days = {rate:.2f} per 91 days "
          f"(goal <= {GOAL_PER_QUARTER:g}); breach-days {len(coverage)} of {coin_level_checks} coin-level checks "
          f"({len(coverage) / max(coin_level_checks, 1):.2%}); skill breaches {len(skill)} (the random walk is the "
          f"reference: none expected)")
    if len(alarms):
        print("\nalarms:\n" + alarms[["check", "coin", "rule", "value", "n", "pvalue"]].to_string(index=False))
    record = {"horizon": args.horizon, "folds": args.folds, "check_hour_utc": args.hour,
              "window_days": ms.performance_window_days, "coverage_pvalue": ms.coverage_pvalue,
              "min_daily_forecasts": ms.skill_min_predictions, "rows": len(history),
              "coins": sorted(history["coin"].unique()), "pooled_coverage": overall,
              "checks": total_days, "first_check": checks_judged.min(), "last_check": checks_judged.max(),
              "alarms": len(alarms), "alarms_per_91_days": rate, "goal_per_quarter": GOAL_PER_QUARTER,
              "goal_met": bool(rate <= GOAL_PER_QUARTER),
              "max_alarms_in_a_quarter": int(table["alarms"].max()) if len(table) else 0,
              "breach_days": len(coverage), "coin_level_checks": coin_level_checks, "skill_breaches": len(skill),
              "per_quarter": {str(q): r for q, r in table.to_dict("index").items()},
              "by_coin": {c: r for c, r in by_coin.to_dict("index").items()},
              "alarm_list": alarms[["check", "coin", "rule", "value", "n", "pvalue"]].to_dict("records"),
              "duration_s": round(time.perf_counter() - started, 1)}
    print()
    write_result("monitoring_alarms", record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
