"""Benchmark monitoring on the real 8-coin hourly Binance data: DeepChecks integrity and drift runs.

Measures, with time.perf_counter in one process:
- the DeepChecks import (paid once per process, on first use);
- `check_batch_integrity` on raw-price and feature batches of 1 day, 7 days and 30 days x 8 coins
  (first call separately: it builds the suite's check classes);
- `run_drift` between 30 days x 8 coins of reference and the next 7 days x 8 coins, all features and the
  24-h forward-return label, with and without the HTML report, at several dates, with the verdicts.
Writes reports/bench/monitoring.json.

    .venv/bin/python benchmarks/bench_monitoring.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
from _common import SHARED, machine, shared_prices, write_result

REPEATS = 3
DRIFT_DATES = ["2022-05-05", "2022-11-17", "2023-05-04", "2023-11-16"]  # end of the current window (exclusive)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    from cryptosentinel.config import Settings
    from cryptosentinel.features import FEATURE_NAMES, build_features
    from cryptosentinel.monitoring import (
        _deepchecks,
        check_batch_integrity,
        label_features,
        run_drift,
    )

    ms = Settings(_env_file=None)
    t_load, prices = timed(shared_prices)
    t_feat, features = timed(lambda: build_features(prices))
    t_label, frame = timed(lambda: label_features(features, prices, horizon=24))
    t_import, _ = timed(_deepchecks)
    print(f"data: {len(prices):,} price rows, {len(features):,} feature rows ({len(FEATURE_NAMES)} features); "
          f"load {t_load:.1f} s, features {t_feat:.1f} s, labels {t_label:.1f} s, deepchecks import {t_import:.1f} s")

    end = prices["ts"].max()
    integrity = []
    first_s, _ = timed(lambda: check_batch_integrity(prices[prices["ts"] > end - pd.Timedelta(days=7)], "prices",
                                                     settings=ms))
    for kind, src in (("prices", prices), ("features", features)):
        for days in (1, 7, 30):
            batch = src[src["ts"] > end - pd.Timedelta(days=days)]
            times, res = [], None
            for _ in range(REPEATS):
                s, res = timed(lambda b=batch, k=kind: check_batch_integrity(b, k, settings=ms))
                times.append(s)
            row = {"kind": kind, "days": days, "rows": len(batch), "median_s": round(statistics.median(times), 3),
                   "max_s": round(max(times), 3), "passed": res.passed, "checks": [c["check"] for c in res.checks],
                   "failures": [f["name"] + ": " + f["summary"] for f in res.failures]}
            integrity.append(row)
    with tempfile.TemporaryDirectory() as tmp:
        html_s, _ = timed(lambda: check_batch_integrity(features[features["ts"] > end - pd.Timedelta(days=7)],
                                                        "features", html=True, out_dir=tmp, settings=ms))

    def windows(d: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        t = pd.Timestamp(d, tz="UTC")
        cur = frame[(frame["ts"] >= t - pd.Timedelta(days=7)) & (frame["ts"] < t)]
        ref = frame[(frame["ts"] >= t - pd.Timedelta(days=37)) & (frame["ts"] < t - pd.Timedelta(days=7))]
        return ref, cur

    drift = []
    with tempfile.TemporaryDirectory() as tmp:
        first_drift_s, _ = timed(lambda: run_drift(*windows(DRIFT_DATES[0]), label="y_ret", html=False, out_dir=tmp,
                                                   settings=ms))
        for d in DRIFT_DATES:
            for html in (False, True):
                ref, cur = windows(d)
                s, rep = timed(lambda r=ref, c=cur, h=html: run_drift(r, c, label="y_ret", html=h, out_dir=tmp,
                                                                      settings=ms))
                drift.append({"current_end": d, "reference_rows": len(ref), "current_rows": len(cur),
                              "features": len(rep.feature_scores), "html": html, "seconds": round(s, 2),
                              "html_bytes": Path(rep.html_path).stat().st_size if rep.html_path else None,
                              "drift_detected": rep.drift_detected, "drift_share": round(rep.drift_share, 3),
                              "auc": round(rep.multivariate_score, 3), "label_drift": round(rep.label_drift_score, 3),
                              "ran_checks": rep.ran_checks, "top": rep.drifted_features[:5], "reasons": rep.reasons})

    print(f"\nintegrity (median of {REPEATS}; first call {first_s:.2f} s, features 7 d with HTML {html_s:.2f} s)")
    print(f"{'kind':<9}{'days':>5}{'rows':>8}{'median s':>10}{'max s':>8}  passed")
    for r in integrity:
        print(f"{r['kind']:<9}{r['days']:>5}{r['rows']:>8}{r['median_s']:>10.2f}{r['max_s']:>8.2f}  {r['passed']}"
              + (f"  {r['failures']}" if r["failures"] else ""))
    print(f"\ndrift: 30 d x 8 coins reference vs 7 d x 8 coins current, label y_ret (24 h); "
          f"first call {first_drift_s:.1f} s")
    print(f"{'current end':<13}{'ref':>6}{'cur':>6}{'html':>6}{'s':>7}  drift  share   AUC  label  top")
    for r in drift:
        print(f"{r['current_end']:<13}{r['reference_rows']:>6}{r['current_rows']:>6}{'yes' if r['html'] else 'no':>6}"
              f"{r['seconds']:>7.1f}  "
              f"{'yes' if r['drift_detected'] else 'no':<5}{r['drift_share']:>7.2f}{r['auc']:>6.3f}{r['label_drift']:>7.3f}"
              f"  {', '.join(r['top'][:3])}")

    print()
    write_result("monitoring", {
        "machine": machine(load_avg=False),
        "data": {"source": str(SHARED), "price_rows": len(prices), "feature_rows": len(features),
                 "features": len(FEATURE_NAMES)},
        "setup_s": {"load": round(t_load, 2), "features": round(t_feat, 2), "labels": round(t_label, 2),
                    "deepchecks_import": round(t_import, 2)},
        "integrity": {"first_call_s": round(first_s, 3), "features_7d_with_html_s": round(html_s, 3),
                      "runs": integrity},
        "drift": {"first_call_s": round(first_drift_s, 2), "runs": drift, "thresholds": {
            "feature_score": ms.drift_feature_threshold, "drift_share": ms.drift_share, "auc": ms.drift_auc,
            "label_score": ms.drift_label_threshold}},
    })


if __name__ == "__main__":
    main()
