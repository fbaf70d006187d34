"""Benchmark training on the 8-coin hourly Binance data (~188k feature rows x 35 features).

Builds the features with `build_features` from the CSV snapshot (read in place from ../shared/data),
joins `close` as the feature view does, runs `train_horizon` for h=24 (every model and baseline, every
walk-forward fold, conformal intervals, the final refits), and records wall time, CPU time and peak
memory (tracemalloc peak of Python allocations, and the process's max RSS) in reports/bench/training.json.
It prints the walk-forward table and the run's findings.

    .venv/bin/python benchmarks/bench_training.py [--horizon 24] [--folds 4]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc

import pandas as pd
from _common import feature_frame, machine, shared_prices, write_result

from cryptosentinel.fitting import train_horizon

COLUMNS = ["task", "n", "mae", "rmse", "mase", "r2_oos", "direction_accuracy", "f1", "roc_auc", "brier",
           "dm_pvalue", "coverage_80", "coverage_95", "train_mae", "train_mase", "mae_gap_pct",
           "train_direction_accuracy"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    t0 = time.perf_counter()
    frame = feature_frame(shared_prices())
    prep_s = time.perf_counter() - t0
    print(f"features: {len(frame):,} rows x {frame.shape[1]} columns, {frame['coin'].nunique()} coins "
          f"({prep_s:.1f} s)")

    tracemalloc.start()
    cpu0, t1 = time.process_time(), time.perf_counter()
    run = train_horizon(frame, args.horizon, seed=args.seed, n_folds=args.folds, progress=True)
    wall = time.perf_counter() - t1
    cpu = time.process_time() - cpu0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB

    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)
    print(f"\nwalk-forward table, h={args.horizon}, {args.folds} folds "
          f"({run.lineage['folds'][0]['test_start']} .. {run.lineage['folds'][-1]['test_end']}):")
    print(run.table[COLUMNS].round(4).to_string())
    print("\nfindings:\n" + run.summary())
    regressors = [m for m in run.table.index if run.table.loc[m, "task"] == "regression"]
    cov = run.folds[run.folds.model.isin(regressors)].pivot_table(
        index="model", columns="fold", values=["coverage_80", "coverage_95"]).round(3)
    print("\ninterval coverage per fold (fold k calibrated on folds < k; fold 1 has none):\n" + cov.to_string())
    mase_coin = run.by_coin.pivot(index="model", columns="coin", values="mase").loc[regressors].round(3)
    print("\nMASE by coin:\n" + mase_coin.to_string())
    by_vol = run.by_vol.pivot(index="model", columns="vol_bucket", values="mase").loc[regressors, ["low", "mid", "high"]]
    print("\nMASE by vol_24 tercile (edges " + ", ".join(f"{e:.4f}" for e in run.lineage["vol_bucket_edges"])
          + "):\n" + by_vol.round(3).to_string())
    fit_s = run.folds.groupby("model")["fit_s"].sum().round(2)
    print("\nfit seconds per model over the folds (final fits not included):\n" + fit_s.to_string())
    print(f"\ntrain_horizon: {wall:.1f} s wall, {cpu:.1f} s CPU, peak traced memory "
          f"{peak / 2**20:.0f} MiB, max RSS {max_rss_mb:.0f} MiB")

    result = {
        "benchmark": "training", "horizon": args.horizon, "n_folds": args.folds, "seed": args.seed,
        "rows": len(frame), "features": len(run.lineage["feature_names"]), "coins": int(frame["coin"].nunique()),
        "rows_used": run.lineage["rows_used"], "feature_build_s": round(prep_s, 2),
        "train_horizon_wall_s": round(wall, 2), "train_horizon_cpu_s": round(cpu, 2),
        "peak_traced_mib": round(peak / 2**20, 1), "max_rss_mib": round(max_rss_mb, 1),
        "fit_s_per_model": fit_s.to_dict(), "folds": run.lineage["folds"],
        "table": run.to_dict()["table"], "summary": run.summary(), "by_coin": run.to_dict()["by_coin"],
        "by_vol": run.to_dict()["by_vol"], "per_fold": run.to_dict()["folds"],
        "machine": machine(), "measured_at": pd.Timestamp.now(tz="UTC").isoformat(),
    }
    write_result("training", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
