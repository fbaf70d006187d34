"""Benchmark the champion gate's false-promotion rate on block-permuted labels of the shared hourly data.

Builds the features of the 8-coin hourly Binance snapshot (read in place from ../shared/data), keeps the last
`--days` days, and then, `--permutations` times: shuffles each coin's hourly log returns in blocks of one week
(no block left in its place) and rebuilds its closes from them, so every label comes from another week and no
feature can predict it; trains the cheap models walk-forward (`train_horizon`, 4 folds); adds a near-random-walk
candidate (2% of the ridge forecast, the kind of rule the old point gate promoted about half the time); and
runs the gate (`registry.gate_tests`). It reports the false-promotion rate (goal <= 5%), the number of
permutations and the binomial 95% (Clopper-Pearson) interval, beside how often the old point rule (lowest MAE
below the random walk's) would have promoted. Then, on the real (unpermuted) labels of the same window, it
shows whether any model passes the gate: if none does, the random walk stays the point champion.
Results in reports/bench/gate.json.

    .venv/bin/python benchmarks/bench_gate.py [--permutations 20] [--days 180] [--horizon 24]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
from _common import feature_frame, machine, shared_prices, write_result
from scipy import stats

from cryptosentinel.fitting import train_horizon
from cryptosentinel.registry import GATE_ALPHA, GATE_FOLD_SHARE, GATE_MIN_IMPROVEMENT, gate_tests
from cryptosentinel.training import block_permuted


def gate(run, shrink: float = 0.02) -> tuple[dict, dict]:
    "The gate's tests of the run's regressors plus a shrunk ridge; each candidate's MAE beside the random walk's."
    run.predictions["ridge_shrunk"] = shrink * run.predictions["ridge_reg"]
    run.bundles["ridge_shrunk"] = SimpleNamespace(name="ridge_shrunk", task="regression", is_constant=False)
    tests = gate_tests(run, "regression")
    p = run.predictions
    mae = {n: float((p["y_ret"] - p[n]).abs().mean()) for n in [*tests, "random_walk"]}
    return tests, mae


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--permutations", type=int, default=20)
    parser.add_argument("--days", type=int, default=180, help="keep the last DAYS days of every coin")
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--models", default="ridge_reg,hgb_reg", help="cheap models for the permuted runs")
    parser.add_argument("--real-models", default="ridge_reg,hgb_reg,xgb_reg", help="models for the real labels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    t0 = time.perf_counter()
    frame = feature_frame(shared_prices())
    frame = frame[frame["ts"] > frame["ts"].max() - pd.Timedelta(days=args.days)].reset_index(drop=True)
    print(f"features: {len(frame):,} rows, {frame['coin'].nunique()} coins, last {args.days} days "
          f"({time.perf_counter() - t0:.0f} s)")

    rng = np.random.default_rng(args.seed)
    models = args.models.split(",")
    rows, t1 = [], time.perf_counter()
    for i in range(args.permutations):
        run = train_horizon(block_permuted(frame, rng), args.horizon, seed=args.seed + i, n_folds=4, models=models,
                            n_jobs=1)
        tests, mae = gate(run)
        rows.append({"permutation": i + 1, "promoted": any(t.passed for t in tests.values()),
                     "passed": [n for n, t in tests.items() if t.passed],
                     "point_rule_promoted": min(v for n, v in mae.items() if n != "random_walk") < mae["random_walk"],
                     "min_p_holm": min(t.p_holm for t in tests.values()),
                     "best_improvement": max(t.improvement for t in tests.values()),
                     "tests": {n: dataclasses.asdict(t) for n, t in tests.items()}})
        print(f"permutation {i + 1:2d}: gate {'PROMOTES ' + str(rows[-1]['passed']) if rows[-1]['promoted'] else 'holds'}"
              f"; point rule {'would promote' if rows[-1]['point_rule_promoted'] else 'holds'}; "
              f"min Holm p {rows[-1]['min_p_holm']:.3f}, best improvement {rows[-1]['best_improvement']:+.2%}")
    perm_s = time.perf_counter() - t1
    k, n = sum(r["promoted"] for r in rows), len(rows)
    ci = stats.binomtest(k, n).proportion_ci(0.95) if n else None
    point = sum(r["point_rule_promoted"] for r in rows)
    print(f"\nfalse promotions: {k}/{n} = {k / n:.1%} (95% CI {ci.low:.1%}-{ci.high:.1%}; goal <= 5%); "
          f"the old point rule: {point}/{n} = {point / n:.0%}")

    t2 = time.perf_counter()
    real = train_horizon(frame, args.horizon, seed=args.seed, n_folds=4, models=args.real_models.split(","),
                         n_jobs=1)
    real_tests, real_mae = gate(real)
    real_s = time.perf_counter() - t2
    table = pd.DataFrame([dataclasses.asdict(t) for t in real_tests.values()]).set_index("name")
    print("\nreal labels, the gate's tests:\n" + table.drop(columns=["reason", "baseline"]).round(4).to_string())
    passing = [nm for nm, t in real_tests.items() if t.passed]
    verdict = ("the random walk stays the point champion: no model passes the gate" if not passing
               else f"{passing} pass the gate")
    print(verdict)

    result = {
        "benchmark": "gate", "horizon": args.horizon, "days": args.days, "rows": len(frame),
        "coins": int(frame["coin"].nunique()), "models": models, "seed": args.seed,
        "thresholds": {"alpha": GATE_ALPHA, "min_improvement": GATE_MIN_IMPROVEMENT, "fold_share": GATE_FOLD_SHARE},
        "permutations": n, "false_promotions": k, "false_promotion_rate": k / n if n else None,
        "false_promotion_ci95": [ci.low, ci.high] if ci else None, "goal_rate": 0.05,
        "point_rule_promotions": point, "point_rule_rate": point / n if n else None,
        "permutation_runs": rows, "permutations_s": round(perm_s, 1),
        "real": {"models": args.real_models.split(","), "passing": passing, "verdict": verdict,
                 "random_walk_stays_champion": not passing, "mae": real_mae,
                 "tests": {nm: dataclasses.asdict(t) for nm, t in real_tests.items()}, "seconds": round(real_s, 1)},
        "machine": machine(), "measured_at": pd.Timestamp.now(tz="UTC").isoformat(),
    }
    write_result("gate", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
