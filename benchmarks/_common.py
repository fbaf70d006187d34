"""What the benchmarks share: the real hourly data read in place, the feature frame, the machine, the JSON result.

A benchmark runs as `.venv/bin/python benchmarks/bench_x.py` from the repository root, so this folder is on
`sys.path` and `from _common import ...` finds this module.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import pandas as pd

from cryptosentinel.features import build_features
from cryptosentinel.snapshots import read_csv_snapshot
from cryptosentinel.util import json_safe

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "hourly_binance_spot"
BENCH = ROOT / "reports" / "bench"


def shared_prices() -> pd.DataFrame:
    "The 8-coin hourly Binance snapshot, read in place (never copied); exits with status 1 when it is not there."
    if not SHARED.is_dir():
        raise SystemExit(f"no data at {SHARED}: nothing to benchmark")
    return read_csv_snapshot(SHARED).frame


def feature_frame(prices: pd.DataFrame) -> pd.DataFrame:
    "What the feature view hands to training: `build_features(prices)` with `close` joined on (coin, ts)."
    return build_features(prices).merge(prices[["coin", "ts", "close"]], on=["coin", "ts"], how="left")


def machine(load_avg: bool = True) -> dict[str, Any]:
    "Python version, CPU count, platform and (with `load_avg`) the load average at the end of the run."
    out: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                           "platform": platform.platform()}
    if load_avg:
        out["load_avg_at_end"] = os.getloadavg()
    return out


def write_result(name: str, result: dict[str, Any]) -> Path:
    "Write `result` as JSON (NaN/inf -> null, times as ISO strings) to reports/bench/<name>.json and say so."
    out = BENCH / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(json_safe(result), indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return out
