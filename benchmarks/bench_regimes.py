"""Benchmark: market regimes on the 8 real hourly coins.

Run from the repo root: `.venv/bin/python benchmarks/bench_regimes.py`. Reads ../shared/data in place
(`ingest.read_csv_snapshot(...).frame`, then `features.build_features`) and writes reports/bench/regimes.json.

Timings (time.perf_counter), each the median of REPEATS runs after one warm-up run:

* `fit_pca`: standardise the 29 non-calendar features and fit a full PCA.
* `fit_regimes`: per-coin scalers, the silhouette criterion over k = 2..6 on a sample, the final K-Means on
  every row, naming.
* `fit_regimes_k_given`: the same with k fixed (no criterion).
* `label`: `RegimeModel.label` on every feature row.
* `current_regimes`: the current regime of every coin from its last two weeks of rows.

It also records what the fit found: k, the criterion's scores, the named centres, each coin's current regime, and
the names and shares the other candidate k would give (`names_by_k`).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

import numpy as np
from _common import shared_prices, write_result

from cryptosentinel.features import FEATURE_VERSION, build_features
from cryptosentinel.regimes import current_regimes, fit_pca, fit_regimes

REPEATS = 3
SEED = 42


def timed(fn, repeats: int = REPEATS) -> tuple[float, object]:
    "Median seconds of `repeats` calls after one warm-up call, and the last result."
    result = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    t0 = time.perf_counter()
    prices = shared_prices()
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    features = build_features(prices)
    features_s = time.perf_counter() - t0

    pca_s, pca = timed(lambda: fit_pca(features))
    fit_s, model = timed(lambda: fit_regimes(features, seed=SEED))
    fit_k_s, _ = timed(lambda: fit_regimes(features, k=model.k, seed=SEED))
    label_s, labels = timed(lambda: model.label(features))
    recent = features.groupby("coin").tail(24 * 14)
    current_s, current = timed(lambda: current_regimes(model, recent))

    centres = model.centres_table()
    by_k = {}  # what the other candidate k would have named (shares of the fit window)
    for kk in range(2, 7):
        other = fit_regimes(features, k=kk, seed=SEED).centres_table()
        by_k[str(kk)] = dict(zip(other["regime"], other["share"].round(4), strict=True))
    result = {
        "rows": len(features), "coins": int(features["coin"].nunique()),
        "span": [features["ts"].min().isoformat(), features["ts"].max().isoformat()],
        "feature_version": FEATURE_VERSION, "seed": SEED, "repeats": REPEATS,
        "seconds": {"read_csv": read_s, "build_features": features_s, "fit_pca": pca_s, "fit_regimes": fit_s,
                    "fit_regimes_k_given": fit_k_s, "label": label_s, "current_regimes": current_s},
        "label_rows_per_second": len(features) / label_s,
        "pca": {"explained_variance_ratio": [float(v) for v in pca.explained_variance_ratio],
                "cumulative": [float(v) for v in pca.cumulative],
                "components_for_90pct": int(np.searchsorted(pca.cumulative, 0.9)) + 1,
                "top_loadings_pc1": pca.top_loadings(1, 5)[["feature", "loading"]].to_dict("records")},
        "regimes": {"k": model.k, "criterion": model.criterion, "names": model.names,
                    "scaling": model.scaling, "centres": json.loads(centres.to_json(orient="records")),
                    "label_share": labels["regime"].value_counts(normalize=True).round(4).to_dict(),
                    "current": current, "names_by_k": by_k},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average": list(os.getloadavg())},
    }

    print(f"{len(features):,} feature rows, {result['coins']} coins, median of {REPEATS} runs")
    print(f"{'step':<22}{'seconds':>10}")
    for name, secs in result["seconds"].items():
        print(f"{name:<22}{secs:>10.3f}")
    scores = ", ".join(f"k={k}: {s:.3f}" for k, s in model.criterion["scores"].items())
    print(f"k={model.k} by {model.criterion['name']} ({scores})")
    print(centres[["regime_id", "regime", "share", "vol_score", "trend_score", "vol_24", "ret_168"]]
          .round(3).to_string(index=False))
    for kk, shares in by_k.items():
        print(f"k={kk}: " + "; ".join(f"{name} {share:.0%}" for name, share in shares.items()))
    for coin, now in current.items():
        print(f"{coin:<12} {now['regime']:<28} since {now['since']}")
    write_result("regimes", result)


if __name__ == "__main__":
    main()
