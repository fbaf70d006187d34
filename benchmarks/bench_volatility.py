"""Benchmark the volatility forecasts on the 8-coin hourly Binance data against the issue-9 goals.

Reads the CSV snapshot in place from ../shared/data, runs `train_volatility` for h=24 and h=168 on four
walk-forward folds over the last 30% of the data, scores the folds after the first (as the issue's goals
do): QLIKE skill of every model over each baseline and over the best one, Mincer-Zarnowitz R², and the
Diebold-Mariano p-value against the best baseline. It prints the goal table with the measured values and
writes reports/bench/volatility.json.

    .venv/bin/python benchmarks/bench_volatility.py [--horizons 24 168] [--folds 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import pandas as pd
from _common import machine, shared_prices, write_result

from cryptosentinel.volatility import train_volatility, volatility_scores

GOALS = {24: {"qlike_skill_best_baseline": (">=", 0.35), "mz_r2": (">=", 0.50), "dm_pvalue": ("<", 0.01)}}
COLUMNS = ["kind", "n", "qlike", "qlike_skill_unconditional", "qlike_skill_ewma", "qlike_skill_vol_168",
           "qlike_skill_best_baseline", "mz_r2", "mz_beta", "mse_log", "dm_stat", "dm_pvalue"]


def _met(value: float, op: str, goal: float) -> bool:
    return bool(value >= goal) if op == ">=" else bool(value < goal)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizons", type=int, nargs="+", default=[24, 168])
    parser.add_argument("--folds", type=int, default=4)
    args = parser.parse_args()
    prices = shared_prices()
    print(f"prices: {len(prices):,} rows, {prices['coin'].nunique()} coins, {prices['ts'].min()} .. {prices['ts'].max()}")
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)
    result: dict = {"benchmark": "volatility", "n_folds": args.folds, "rows": len(prices),
                    "coins": sorted(prices["coin"].unique()), "horizons": {}}
    for h in args.horizons:
        t0 = time.perf_counter()
        run = train_volatility(prices, h, n_folds=args.folds)
        wall = time.perf_counter() - t0
        later = run.predictions[run.predictions["fold"] > 1]
        table = volatility_scores(later, h)
        champ = str(table[table["kind"] == "model"]["qlike"].idxmin())
        print(f"\nh={h}: folds 2..{args.folds} ({len(later):,} forecasts), best baseline "
              f"{table['best_baseline'].iloc[0]}, champion {champ} ({wall:.1f} s)")
        print(table[COLUMNS].round(4).to_string())
        goals = []
        for key, (op, goal) in GOALS.get(h, {}).items():
            value = float(table.loc[champ, key])
            goals.append({"goal": f"{key} {op} {goal}", "measured": round(value, 4), "met": _met(value, op, goal)})
        if goals:
            print(f"\ngoals, h={h} ({champ}):\n" + pd.DataFrame(goals).to_string(index=False))
        per_fold = run.by_fold.reset_index().pivot(index="model", columns="fold", values="qlike_skill_best_baseline")
        print("\nQLIKE skill over the best baseline, per fold (all folds):\n" + per_fold.round(3).to_string())
        print("\nfindings (all folds):\n" + run.summary())
        result["horizons"][str(h)] = {
            "champion": champ, "best_baseline": table["best_baseline"].iloc[0], "train_s": round(wall, 2),
            "goals": goals, "table_folds_after_first": json.loads(table.reset_index().to_json(orient="records")),
            "run": run.to_dict()}
    result["machine"] = machine()
    result["measured_at"] = pd.Timestamp.now(tz="UTC").isoformat()
    write_result("volatility", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
