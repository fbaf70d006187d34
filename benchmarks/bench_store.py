"""Benchmark the local feature store on the 8-coin hourly Binance data (~190k rows).

Measures: first upsert, a second (idempotent) upsert, a full read, a one-coin read, and the latency
of `latest` for one coin (median and p95 over 200 calls), alone and while another process upserts
in a loop. Writes reports/bench/store.json.

    .venv/bin/python benchmarks/bench_store.py
"""

from __future__ import annotations

import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import SHARED, write_result

from cryptosentinel.store import PRICES, LocalStore

COINS = {"BTC": "bitcoin", "ETH": "ethereum", "SOL": "solana", "ADA": "cardano", "XRP": "ripple",
         "DOGE": "dogecoin", "LTC": "litecoin", "BNB": "binancecoin"}
N_LATEST = 200


def load_prices() -> tuple[pd.DataFrame, str]:
    """The real hourly bars when ../shared/data is there, else synthetic data of the same shape."""
    if SHARED.is_dir():
        frames = []
        for sym, coin in COINS.items():
            raw = pd.read_csv(SHARED / f"{sym}USDT_1h.csv").iloc[:-1]  # last row is a partial candle
            frames.append(pd.DataFrame({
                "coin": coin, "ts": pd.to_datetime(raw["date"]).dt.tz_localize("UTC"),
                "open": raw.open, "high": raw.high, "low": raw.low, "close": raw.close,
                "volume": raw.volume.astype(float), "market_cap": np.nan, "source": "binance", "granularity": "1h"}))
        return pd.concat(frames, ignore_index=True), str(SHARED)
    rng = np.random.default_rng(0)
    frames = []
    for coin in COINS.values():
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 23_988)))
        frames.append(pd.DataFrame({
            "coin": coin, "ts": pd.date_range("2021-04-04 20:00", periods=len(close), freq="h", tz="UTC"),
            "open": close, "high": close * 1.01, "low": close * 0.99, "close": close,
            "volume": rng.uniform(1, 100, len(close)), "market_cap": np.nan, "source": "synthetic",
            "granularity": "1h"}))
    return pd.concat(frames, ignore_index=True), "synthetic"


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def latencies(fn, n: int = N_LATEST) -> dict[str, float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"median_ms": 1000 * statistics.median(times), "p95_ms": 1000 * times[int(0.95 * (n - 1))],
            "max_ms": 1000 * times[-1], "calls": n}


# The busy writer: rewrites the newest 2,000 hours of two coins with new values, again and again.
WRITER = textwrap.dedent("""
    import sys, time, pandas as pd
    from pathlib import Path
    from cryptosentinel.store_local import LocalStore, PRICES
    store, stop = LocalStore(sys.argv[1]), Path(sys.argv[2])
    base = store.read("prices", coins=["ethereum", "solana"]).groupby("coin").tail(2000)
    i = 0
    print("ready", flush=True)
    while not stop.exists():
        i += 1
        r = store.upsert(PRICES, base.assign(close=base.close * (1 + i * 1e-6)))
    print(f"upserts {i} rows_each {r.rows}", flush=True)
""")


def main() -> None:
    df, source = load_prices()
    tmp = Path(tempfile.mkdtemp())
    store = LocalStore(tmp / "store.sqlite")
    results: dict[str, object] = {"rows": len(df), "coins": df.coin.nunique(), "data": source}

    t, r = timed(lambda: store.upsert(PRICES, df))
    results["upsert_first_s"], results["upsert_first"] = t, r.to_dict()
    t, r = timed(lambda: store.upsert(PRICES, df))
    results["upsert_idempotent_s"], results["upsert_idempotent"] = t, r.to_dict()
    t, full = timed(lambda: store.read("prices"))
    results["read_full_s"], results["read_full_rows"] = t, len(full)
    t, one = timed(lambda: store.read("prices", coins=["bitcoin"]))
    results["read_one_coin_s"], results["read_one_coin_rows"] = t, len(one)
    results["latest_one_coin_idle"] = latencies(lambda: store.latest("prices", coins=["bitcoin"]))
    results["read_one_coin_idle"] = latencies(lambda: store.read("prices", coins=["bitcoin"]), n=20)

    stop = tmp / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(store.path), str(stop)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "ready", writer.stderr.read()
    time.sleep(0.5)
    results["latest_one_coin_busy"] = latencies(lambda: store.latest("prices", coins=["bitcoin"]))
    results["read_one_coin_busy"] = latencies(lambda: store.read("prices", coins=["bitcoin"]), n=20)
    stop.touch()
    out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err
    results["busy_writer"] = out.strip()
    results["file_mb"] = store.status()["size_bytes"] / 1e6
    results["machine"] = {"python": platform.python_version(), "platform": platform.platform(),
                          "sqlite": __import__("sqlite3").sqlite_version}
    store.close()

    print(f"{'measure':34} value")
    for key in ("upsert_first_s", "upsert_idempotent_s", "read_full_s", "read_one_coin_s"):
        print(f"{key:34} {results[key]:.3f} s")
    for key in ("latest_one_coin_idle", "latest_one_coin_busy", "read_one_coin_idle", "read_one_coin_busy"):
        lat = results[key]
        print(f"{key:34} median {lat['median_ms']:.2f} ms, p95 {lat['p95_ms']:.2f} ms ({lat['calls']} calls)")
    print(f"{'busy writer':34} {results['busy_writer']}")
    print(f"rows {results['rows']} from {source}")
    write_result("store", results)


if __name__ == "__main__":
    main()
