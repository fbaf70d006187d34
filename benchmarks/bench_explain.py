"""Benchmark explanations on real features: SHAP per request, global importance, LIME.

Reads the 8-coin hourly Binance snapshot in place (../shared/data/hourly_binance_spot) with
`ingest.read_csv_snapshot`, builds the features with `features.build_features`, labels each row here with
its 24-hour forward log return (labels belong to training; this is a local stand-in), and keeps the most
recent ~50k labelled rows. It trains an XGBoost regressor like training's `xgb_reg` (300 trees, depth 4)
on all but the last 2,000 of them, plus a depth-6 one, and training's random forest, HistGradientBoosting
and ridge settings for comparison, and times:

* `build`: `make_explainer(bundle, background)` (a 200-row background of training features);
* `single_row`: `explainer.explain(one_row)` (top 5), median of 200 calls over different rows; also
  `explain_records` (adds the model's own prediction) and shap's own `TreeExplainer.shap_values` on
  the same row for comparison;
* `batch_8`: `explain` on 8 rows, median of 50;
* `global_importance_2000`: `global_importance` on 2,000 rows, median of 3;
* `lime_one_row`: `lime_explain` (5,000 samples, 10 features) for one row, median of 3.

Timings are wall-clock (`time.perf_counter`). The machine's load average is recorded beside them: on
a shared 2-core box other jobs stretch every number.

    .venv/bin/python benchmarks/bench_explain.py [--rows 50000] [--repeats 200]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from importlib.metadata import version

import numpy as np
import pandas as pd
from _common import feature_frame, shared_prices, write_result
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from xgboost import XGBRegressor

from cryptosentinel.explain import agreement, lime_explain, make_explainer
from cryptosentinel.features import FEATURE_NAMES, FEATURE_VERSION
from cryptosentinel.registry import ModelBundle

HORIZON = 24
HELD_OUT = 2_000


def timed(fn, repeats: int) -> dict[str, float]:
    """Median, p90 and min of `repeats` calls, in milliseconds."""
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {"median_ms": round(statistics.median(times), 3), "p90_ms": round(times[int(0.9 * (len(times) - 1))], 3),
            "min_ms": round(times[0], 3), "n": repeats}


def load(rows: int) -> pd.DataFrame:
    feats = feature_frame(shared_prices()).sort_values(["coin", "ts"], ignore_index=True)
    ahead = feats.groupby("coin")[["ts", "close"]].shift(-HORIZON)
    exact = ahead["ts"] == feats["ts"] + pd.Timedelta(hours=HORIZON)  # no label across a gap
    feats["y"] = np.where(exact, np.log(ahead["close"] / feats["close"]), np.nan)
    data = feats.dropna(subset=["y", *FEATURE_NAMES]).sort_values(["ts", "coin"], ignore_index=True)
    return data.tail(rows).reset_index(drop=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    t0 = time.perf_counter()
    data = load(args.rows)
    train, held = data.iloc[:-HELD_OUT], data.iloc[-HELD_OUT:]
    X, y = train[FEATURE_NAMES], train["y"].to_numpy()
    print(f"data: {len(data):,} labelled rows x {len(FEATURE_NAMES)} features, {data['coin'].nunique()} coins, "
          f"{data['ts'].min():%Y-%m-%d} .. {data['ts'].max():%Y-%m-%d} ({time.perf_counter() - t0:.1f} s)")

    params = dict(n_estimators=300, learning_rate=0.03, subsample=0.5, colsample_bytree=0.8, max_bin=64,
                  tree_method="hist", min_child_weight=100, n_jobs=2, random_state=args.seed)
    fits: dict[str, float] = {}
    models = {}
    for name, est in (("xgb_d4", XGBRegressor(max_depth=4, **params)), ("xgb_d6", XGBRegressor(max_depth=6, **params)),
                      ("rf", RandomForestRegressor(n_estimators=100, max_depth=8, max_features="sqrt", min_samples_leaf=20,
                                                   max_samples=20_000, n_jobs=2, random_state=args.seed)),
                      ("hgb", HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                                            min_samples_leaf=100, l2_regularization=1.0,
                                                            early_stopping=False, random_state=args.seed)),
                      ("ridge", make_pipeline(StandardScaler(), Ridge(alpha=1.0)))):
        t1 = time.perf_counter()
        models[name] = est.fit(X, y)
        fits[name] = round(time.perf_counter() - t1, 2)
    family = {"xgb_d4": "xgb_reg", "xgb_d6": "xgb_reg", "rf": "rf_reg", "hgb": "hgb_reg", "ridge": "ridge_reg"}
    bundles = {name: ModelBundle(family[name], HORIZON, "regression", m, FEATURE_NAMES, FEATURE_VERSION)
               for name, m in models.items()}
    print("fit seconds:", fits)

    rng = np.random.default_rng(args.seed)
    rows = held.iloc[rng.integers(0, len(held), size=args.repeats)]
    background = X
    results: dict[str, dict] = {}
    for name, bundle in bundles.items():
        build = timed(lambda i, b=bundle: make_explainer(b, background, seed=args.seed), 5)
        ex = make_explainer(bundle, background, seed=args.seed)
        r: dict = {"build": build}
        r["single_row"] = timed(lambda i, ex=ex: ex.explain(rows.iloc[[i]]), args.repeats)
        r["single_row_records"] = timed(lambda i, ex=ex: ex.explain_records(rows.iloc[[i]]), args.repeats)
        r["batch_8"] = timed(lambda i, ex=ex: ex.explain(held.iloc[8 * i: 8 * i + 8]), 50)
        r["global_importance_2000"] = timed(lambda i, ex=ex: ex.global_importance(held, max_rows=2000), 3)
        results[name] = r

    import shap  # shap's own explainer on the same rows, for comparison (XGBoost: the same TreeSHAP underneath)

    te = shap.TreeExplainer(models["xgb_d4"])
    results["xgb_d4"]["shap_tree_explainer_single_row"] = timed(lambda i: te.shap_values(rows.iloc[[i]][FEATURE_NAMES]),
                                                                args.repeats)

    ex = make_explainer(bundles["xgb_d4"], background, seed=args.seed)
    row = held.iloc[[-1]]
    results["xgb_d4"]["lime_one_row"] = timed(
        lambda i: lime_explain(bundles["xgb_d4"], background, row, num_features=10, seed=args.seed, explainer=ex), 3)
    lime_row = lime_explain(bundles["xgb_d4"], background, row, num_features=10, seed=args.seed, explainer=ex)
    agree = agreement(ex.explain(row, k=len(FEATURE_NAMES))[0], lime_row, k=5)
    top = ex.global_importance(held).head(5)

    print(f"\n{'model':8} {'job':34} {'median ms':>10} {'p90 ms':>9} {'n':>5}")
    for name, r in results.items():
        for job, t in r.items():
            print(f"{name:8} {job:34} {t['median_ms']:10.2f} {t['p90_ms']:9.2f} {t['n']:5d}")
    print("\ntop features by mean |SHAP| (xgb_d4, held-out rows):",
          ", ".join(f"{f} {v * 1e4:.1f} bp" for f, v in zip(top["feature"], top["mean_abs_shap"], strict=True)))
    print(f"LIME vs SHAP on the latest row: overlap {agree['top_k_overlap']}, Spearman {agree['spearman']}, "
          f"sign {agree['sign_agreement']}")

    out = {"benchmark": "explain", "rows": len(data), "train_rows": len(train), "held_out_rows": len(held),
           "features": len(FEATURE_NAMES), "coins": int(data["coin"].nunique()), "horizon": HORIZON,
           "models": {"xgb_d4": "XGBRegressor 300 trees depth 4 (training's xgb_reg settings)",
                      "xgb_d6": "XGBRegressor 300 trees depth 6",
                      "rf": "RandomForestRegressor 100 trees depth 8 (training's rf_reg)",
                      "hgb": "HistGradientBoostingRegressor 200 iterations, 15 leaves (training's hgb_reg)",
                      "ridge": "StandardScaler + Ridge(alpha=1)"},
           "fit_s": fits, "background_rows": 200, "timings": results,
           "top_features": [{"feature": f, "mean_abs_shap": float(v)} for f, v in
                            zip(top["feature"], top["mean_abs_shap"], strict=True)],
           "lime_vs_shap_latest_row": {k: agree[k] for k in ("k", "top_k_overlap", "spearman", "sign_agreement")},
           "load_average": os.getloadavg(), "cpus": os.cpu_count(), "python": platform.python_version(),
           "versions": {p: version(p) for p in ("shap", "xgboost", "scikit-learn", "lime", "numpy")}}
    print()
    write_result("explain", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
