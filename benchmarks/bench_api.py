"""Benchmark the API: one uvicorn worker on loopback in a subprocess, bounded load from this process (httpx async at a
fixed concurrency), every figure beside the floor endpoints of the same server, which parse the same request and
answer the same shape without calling any model (`api.benchmark_routes`).

* `POST /api/v1/predict` (one coin, served from the forecast cache until the next bar) against
  `POST /api/v1/bench/floor/predict`: the issue asks p50 within 1.5x the floor's and throughput at least half;
* `POST /api/v1/predict/features` (one vector, the compiled path) against `POST /api/v1/bench/floor/features`: p50
  within 2x the floor's;
* p50, p99 and throughput of all four; the endpoints run in alternating rounds so that the load of the shared
  machine falls on each alike;
* a 10,000-row CSV upload (`/predict/upload`, a forecast for the last bar): under 1 s asked;
* the server's resident memory after warm-up and after the load.

The store and registry are trained first from the simulator in a temporary folder (or `--data-dir` points at a
trained one, e.g. after `make run`). Results: reports/bench/api.json (api-<label>.json with --label).

    .venv/bin/python benchmarks/bench_api.py                   # 2,000 requests per endpoint, concurrency 8
    .venv/bin/python benchmarks/bench_api.py --concurrency 1 --label c1   # latency without queueing
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
COINS = ["bitcoin", "ethereum", "solana"]


def train(data_dir: Path, days: int) -> None:
    "Simulated prices, features, a two-fold training and one prediction pass into `data_dir`."
    from cryptosentinel import pipelines
    from cryptosentinel.config import Settings
    from cryptosentinel.registry_hopsworks import open_registry
    from cryptosentinel.sources import simulate_prices
    from cryptosentinel.store import PRICES
    from cryptosentinel.store_hopsworks import open_store
    settings = Settings(data_dir=data_dir, coins=COINS, horizons=[24], source="synthetic")
    end = pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=days)
    with open_store(settings) as store:
        store.upsert(PRICES, simulate_prices(COINS, "2024-01-01", end, freq="1h", seed=11))
        pipelines.update_features(store, settings=settings)
        registry = open_registry(settings)
        pipelines.train(store, registry, settings=settings, n_folds=2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def load(client: httpx.AsyncClient, path: str, body: dict, n: int, concurrency: int) -> tuple[list[float], float]:
    "`n` POSTs at `concurrency` in flight; (latencies in ms, wall seconds). Any non-200 stops the benchmark."
    latencies: list[float] = []
    todo = iter(range(n))

    async def worker() -> None:
        for _ in todo:
            t0 = time.perf_counter()
            r = await client.post(path, json=body)
            latencies.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                raise RuntimeError(f"{path}: {r.status_code} {r.text[:300]}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


def summary(latencies: list[float], wall: float) -> dict[str, float]:
    a = np.asarray(latencies)
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3), "throughput_rps": round(len(a) / wall, 1)}


async def bench(base: str, vector: dict, csv: bytes, n: int, concurrency: int, rounds: int, pid: int) -> dict:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        predict = {"coin": "bitcoin", "horizon": 24}
        features = {"vectors": [vector], "horizon": 24}
        endpoints = {"floor_predict": ("/api/v1/bench/floor/predict", predict),
                     "predict": ("/api/v1/predict", predict),
                     "floor_features": ("/api/v1/bench/floor/features", features),
                     "predict_features": ("/api/v1/predict/features", features)}
        for path, body in endpoints.values():  # warm-up: caches, explainers, connection pool
            await load(client, path, body, 200, concurrency)
        out: dict = {"rss_after_warmup_mb": round(rss_mb(pid), 1)}
        lat: dict[str, list[float]] = {k: [] for k in endpoints}
        wall: dict[str, float] = {k: 0.0 for k in endpoints}
        for r in range(rounds):
            order = list(endpoints) if r % 2 == 0 else list(reversed(endpoints))
            for name in order:
                path, body = endpoints[name]
                got, seconds = await load(client, path, body, n // rounds, concurrency)
                lat[name] += got
                wall[name] += seconds
        out["endpoints"] = {k: summary(lat[k], wall[k]) for k in endpoints}
        e = out["endpoints"]
        out["ratios"] = {
            "predict_p50_over_floor": round(e["predict"]["p50_ms"] / e["floor_predict"]["p50_ms"], 3),
            "predict_throughput_over_floor": round(e["predict"]["throughput_rps"] / e["floor_predict"]["throughput_rps"], 3),
            "features_p50_over_floor": round(e["predict_features"]["p50_ms"] / e["floor_features"]["p50_ms"], 3),
            "features_throughput_over_floor": round(
                e["predict_features"]["throughput_rps"] / e["floor_features"]["throughput_rps"], 3)}
        out["goals"] = {"predict_p50_within_1.5x": out["ratios"]["predict_p50_over_floor"] <= 1.5,
                        "predict_throughput_at_least_half": out["ratios"]["predict_throughput_over_floor"] >= 0.5,
                        "features_p50_within_2x": out["ratios"]["features_p50_over_floor"] <= 2.0}
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            r = await client.post("/api/v1/predict/upload", files={"file": ("bars.csv", csv, "text/csv")},
                                  data={"coin": "bitcoin"})
            times.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise RuntimeError(f"upload: {r.status_code} {r.text[:300]}")
        out["upload_10k_rows"] = {"bytes": len(csv), "median_s": round(statistics.median(times), 3),
                                  "max_s": round(max(times), 3), "runs": len(times),
                                  "under_1s": statistics.median(times) < 1.0}
        out["rss_after_load_mb"] = round(rss_mb(pid), 1)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000, help="requests per endpoint")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=4, help="alternating rounds the requests are split into")
    ap.add_argument("--days", type=int, default=150, help="simulated days to train on")
    ap.add_argument("--data-dir", default=None, help="a trained data directory (default: train one in a temp folder)")
    ap.add_argument("--label", default=None, help="suffix of the result file: reports/bench/api-<label>.json")
    args = ap.parse_args()

    from builders import simulated_prices

    from cryptosentinel.features import FEATURE_NAMES

    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="bench-api-")) / "data"
    t0 = time.perf_counter()
    if not args.data_dir:
        train(data_dir, args.days)
    train_s = time.perf_counter() - t0
    port = free_port()
    env = {**os.environ, "CRYPTOSENTINEL_DATA_DIR": str(data_dir), "CRYPTOSENTINEL_COINS": ",".join(COINS),
           "CRYPTOSENTINEL_HORIZONS": "24", "CRYPTOSENTINEL_SOURCE": "synthetic",
           "CRYPTOSENTINEL_API__BENCHMARK_ROUTES": "true", "CRYPTOSENTINEL_LOG_LEVEL": "WARNING"}
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.api.main:create_app", "--factory", "--host",
                               "127.0.0.1", "--port", str(port), "--workers", "1", "--log-level", "warning",
                               "--no-access-log"], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        started = time.perf_counter()
        while True:
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.perf_counter() - started > 300:
                raise RuntimeError("the server did not become ready")
            time.sleep(0.2)
        startup_s = time.perf_counter() - started
        stored = httpx.post(f"{base}/api/v1/predict", json={"coin": "bitcoin"}, timeout=60).json()["forecasts"][0]
        from cryptosentinel.config import Settings
        from cryptosentinel.pipelines import training_view
        from cryptosentinel.store_hopsworks import open_store
        with open_store(Settings(data_dir=data_dir)) as store:
            v, _ = training_view(store).latest_vectors(["bitcoin"])
        row = v.iloc[0]
        vector = {"coin": "bitcoin", "close": float(row["close"]), "ts": row["ts"].isoformat(),
                  "features": {n: float(row[n]) for n in FEATURE_NAMES}}
        end = pd.Timestamp("2023-01-01", tz="UTC") + pd.Timedelta(hours=10_000)
        bars = simulated_prices(["bitcoin"], "2023-01-01", end, seed=5)  # 10,000 hourly bars
        csv = bars[["ts", "open", "high", "low", "close", "volume"]].to_csv(index=False).encode()
        result = asyncio.run(bench(base, vector, csv, args.requests, args.concurrency, args.rounds, server.pid))
    finally:
        server.terminate()
        server.wait(timeout=30)
    result = {"benchmark": "api", "python": platform.python_version(), "cpus": os.cpu_count(),
              "requests_per_endpoint": args.requests, "concurrency": args.concurrency, "rounds": args.rounds,
              "workers": 1, "train_s": round(train_s, 1), "startup_to_ready_s": round(startup_s, 2),
              "champion": stored["models"], "upload_rows": len(bars), **result}
    out = ROOT / "reports" / "bench" / (f"api-{args.label}.json" if args.label else "api.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
