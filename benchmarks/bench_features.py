"""Benchmark: build_features on the 8 real hourly coins against TA-Lib computing the same indicators.

Run from the repo root: `.venv/bin/python benchmarks/bench_features.py`. Reads ../shared/data in place and
writes reports/bench/features.json.

Three timings, each the median of REPEATS runs (runs interleaved so machine load hits all alike, one warm-up
run first):

* `ours`: `build_features(prices)` on the canonical stacked frame sorted by (coin, ts): input checks, all
  35 features, market join, calendar, the keyed output frame (rows past the warm-up).
* `talib_kernel`: TA-Lib alone on per-coin NumPy arrays split beforehand: RSI(14), MACD(12,26,9),
  BBANDS(20,2), ATR(14), SMA(24), SMA(168), EMA(12), EMA(26). Twelve output arrays per coin, nothing else.
* `talib_frame`: the same TA-Lib calls starting from the same stacked frame (find each coin's rows, call
  TA-Lib, write the twelve outputs into one float64 block aligned with the input rows): what a
  TA-Lib-based feature step with the same input and a table as output costs at least.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import talib

from cryptosentinel.features import FEATURE_NAMES, FEATURE_VERSION, WARMUP_BARS, build_features

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "hourly_binance_spot"
OUT = ROOT / "reports" / "bench" / "features.json"
REPEATS = 3
TICKERS = {"BTC": "bitcoin", "ETH": "ethereum", "SOL": "solana", "ADA": "cardano", "XRP": "ripple",
           "DOGE": "dogecoin", "LTC": "litecoin", "BNB": "binancecoin"}
TALIB_OUTPUTS = 12  # rsi, macd x3, bbands x3, atr, sma x2, ema x2


def load() -> pd.DataFrame:
    frames = []
    for path in sorted(DATA.glob("*USDT_1h.csv")):
        raw = pd.read_csv(path).iloc[:-1]  # the last candle was still open
        frames.append(pd.DataFrame({
            "coin": TICKERS[path.name.split("USDT")[0]], "ts": pd.to_datetime(raw["date"]).dt.tz_localize("UTC"),
            "open": raw["open"], "high": raw["high"], "low": raw["low"], "close": raw["close"],
            "volume": raw["volume"], "market_cap": np.nan, "source": "binance", "granularity": "1h"}))
    return pd.concat(frames).sort_values(["coin", "ts"], ignore_index=True)


def talib_indicators(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> list[np.ndarray]:
    rsi = talib.RSI(close, 14)
    macd = talib.MACD(close, 12, 26, 9)
    bbands = talib.BBANDS(close, 20, 2.0, 2.0, matype=0)
    atr = talib.ATR(high, low, close, 14)
    mas = [talib.SMA(close, 24), talib.SMA(close, 168), talib.EMA(close, 12), talib.EMA(close, 26)]
    return [rsi, *macd, *bbands, atr, *mas]


def talib_frame(prices: pd.DataFrame) -> np.ndarray:
    coin = prices["coin"].to_numpy(dtype=object)
    high, low, close = (prices[c].to_numpy(np.float64) for c in ("high", "low", "close"))
    new = np.r_[True, coin[1:] != coin[:-1]]
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], len(coin)]
    out = np.empty((len(coin), TALIB_OUTPUTS), order="F")
    for s, e in zip(starts, ends, strict=True):
        for j, values in enumerate(talib_indicators(high[s:e], low[s:e], close[s:e])):
            out[s:e, j] = values
    return out


def main() -> None:
    prices = load()
    per_coin = [tuple(g[c].to_numpy(np.float64).copy() for c in ("high", "low", "close"))
                for _, g in prices.groupby("coin", sort=True)]

    def talib_kernel() -> None:
        for high, low, close in per_coin:
            talib_indicators(high, low, close)

    runs: dict[str, list[float]] = {"ours": [], "talib_kernel": [], "talib_frame": []}
    jobs = {"ours": lambda: build_features(prices), "talib_kernel": talib_kernel,
            "talib_frame": lambda: talib_frame(prices)}
    for job in jobs.values():  # warm-up: imports, caches, allocator
        job()
    for _ in range(REPEATS):
        for name, job in jobs.items():
            t0 = time.perf_counter()
            job()
            runs[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(times) for name, times in runs.items()}
    rows_out = len(build_features(prices))
    result = {
        "rows_in": len(prices), "rows_out": rows_out, "coins": int(prices.coin.nunique()),
        "warmup_bars": WARMUP_BARS, "feature_version": FEATURE_VERSION,
        "feature_columns": len(FEATURE_NAMES), "talib_output_columns": TALIB_OUTPUTS,
        "repeats": REPEATS, "statistic": "median",
        "seconds": med, "all_runs_seconds": runs,
        "ratio_ours_vs_talib_kernel": med["ours"] / med["talib_kernel"],
        "ratio_ours_vs_talib_frame": med["ours"] / med["talib_frame"],
        # the same comparison per output column: ours writes 35 columns, TA-Lib 12
        "ratio_per_output_column_vs_talib_frame":
            (med["ours"] / len(FEATURE_NAMES)) / (med["talib_frame"] / TALIB_OUTPUTS),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_avg_1m": os.getloadavg()[0], "numpy": np.__version__, "pandas": pd.__version__,
                    "talib": talib.__version__},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"features benchmark: {len(prices):,} rows in, {rows_out:,} rows out, {len(FEATURE_NAMES)} features")
    print(f"{'job':<14}{'median ms':>11}  runs ms")
    for name, times in runs.items():
        print(f"{name:<14}{med[name] * 1e3:>11.1f}  " + ", ".join(f"{t * 1e3:.1f}" for t in times))
    print(f"ours / talib_kernel = {result['ratio_ours_vs_talib_kernel']:.2f}, "
          f"ours / talib_frame = {result['ratio_ours_vs_talib_frame']:.2f}, "
          f"per output column vs talib_frame = {result['ratio_per_output_column_vs_talib_frame']:.2f}")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
