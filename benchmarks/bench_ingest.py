"""Ingest speed: read + validate the 8 hourly Binance CSVs, and simulate 8 coins x 1 year hourly.

Run as `.venv/bin/python benchmarks/bench_ingest.py`; writes reports/bench/ingest.json.
Reads ../shared/data in place. Each case: one warm-up run, then the median of 5 timed runs.
"""

from __future__ import annotations

import platform
import statistics
import time

from _common import SHARED, write_result

from cryptosentinel.config import DEFAULT_COINS
from cryptosentinel.ingest import validate_prices
from cryptosentinel.snapshots import read_csv_snapshot
from cryptosentinel.sources import simulate_prices

REPEATS = 5


def timed(fn, repeats: int = REPEATS) -> tuple[list[float], object]:
    result = fn()  # warm-up (imports, pandera schema build, page cache)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times, result


def main() -> None:
    cases = {}
    hourly_dir = SHARED
    if hourly_dir.is_dir():
        times, load = timed(lambda: read_csv_snapshot(hourly_dir))
        cases["csv_hourly_8_files_read_validate"] = {
            "rows": len(load.frame), "files": len(load.files), "times_s": times, "median_s": statistics.median(times)}
    else:
        print(f"skipped the CSV case: {hourly_dir} not found")

    coins = list(DEFAULT_COINS)
    times, sim = timed(lambda: simulate_prices(coins, "2023-01-01", "2024-01-01", freq="1h", seed=42))
    cases["simulate_8_coins_1y_hourly"] = {"rows": len(sim), "times_s": times, "median_s": statistics.median(times)}
    times, _ = timed(lambda: validate_prices(sim))
    cases["validate_8_coins_1y_hourly"] = {"rows": len(sim), "times_s": times, "median_s": statistics.median(times)}

    print(f"{'case':40s} {'rows':>8s} {'median s':>9s} {'rows/s':>11s}")
    for name, c in cases.items():
        print(f"{name:40s} {c['rows']:8d} {c['median_s']:9.3f} {c['rows'] / c['median_s']:11,.0f}")
    write_result("ingest", {"benchmark": "ingest", "repeats": REPEATS, "python": platform.python_version(),
                            "machine": platform.machine(), "cases": cases})


if __name__ == "__main__":
    main()
