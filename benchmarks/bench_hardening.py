"""Hardening, measured: the API under load while the pipelines write to its store, then five faults, each with what
was done, whether the API kept serving, the stored rows before and after, and what the system said.

Everything runs on loopback in a temporary folder (never ../shared/data): a store and registry trained from the
simulator up to 72 hours before the last full hour, the API (one uvicorn worker) on it, and one child process that
runs the Prefect flows (`_faults.FlowRunner`), so each pipeline run is the real flow of papermill-run notebooks.

1. Load: `--requests` POSTs to `/api/v1/predict` at `--concurrency` connections (httpx async, one connection per
   worker) while the runner alternates the feature pipeline (4 new simulated hours per run) and the inference
   pipeline on the same store; the API sees each new bar within a second and recomputes its forecasts.
2. Faults, with a prober posting to `/api/v1/predict` every 0.1 s throughout:
   * the API killed (SIGKILL) and restarted while a feature pipeline runs;
   * the data source failing during a feature pipeline: a loopback CoinGecko (`_faults.FaultServer`) answering
     503, 429 with `Retry-After: 3`, and never (client time-out 1 s); two client retries, one task retry;
   * a writer killed with SIGKILL inside its write transaction and at fractions of its write time;
   * the price champion's artifact truncated: the running API (and its forced reload), a freshly started API,
     `cryptosentinel predict`;
   * both webhooks pointing at a closed port during an inference pipeline.

Results: reports/bench/hardening.json. The whole run stops at `--timeout` seconds (children killed, exit 1).

    .venv/bin/python benchmarks/bench_hardening.py
    .venv/bin/python benchmarks/bench_hardening.py --requests 2000 --concurrency 16   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from _common import ROOT, machine, write_result
from _faults import FaultServer, FlowRunner, closed_port, kill_mid_write, store_facts

COINS = ["bitcoin", "ethereum", "solana"]
STEP = pd.Timedelta(hours=4)  # new hours each feature pipeline run of the load brings
HELD_BACK = pd.Timedelta(hours=72)  # training ends this long before the last full hour
FLOW_TIMEOUT = 600.0
PREDICT = {"coin": "bitcoin", "horizon": 24}
PREDICTIONS = "fg_predictions_h24_v1"  # the local store's table of the 24 h prediction history


class Deadline(Exception):
    "The benchmark's overall time-out."


def _deadline(signum: int, frame: Any) -> None:
    raise Deadline("the hardening benchmark hit its overall time-out")


def train(data_dir: Path, end: pd.Timestamp, days: int) -> dict[str, Any]:
    "Simulated prices up to `end` (the seed the synthetic source uses, so later runs continue the same path)."
    from cryptosentinel import pipelines
    from cryptosentinel.config import Settings
    from cryptosentinel.registry_hopsworks import open_registry
    from cryptosentinel.sources import simulate_prices
    from cryptosentinel.store import PRICES
    from cryptosentinel.store_hopsworks import open_store
    settings = Settings(data_dir=data_dir, coins=COINS, horizons=[24], source="synthetic")
    with open_store(settings) as store:
        store.upsert(PRICES, simulate_prices(COINS, end - pd.Timedelta(days=days), end, seed=settings.seed))
        pipelines.update_features(store, settings=settings)
        registry = open_registry(settings)
        pipelines.train(store, registry, settings=settings, n_folds=2)
        return {h: registry.champion(24, h) for h in ("regression", "classification", "volatility")}


class Api:
    "One uvicorn worker on a loopback port; `kill()` is SIGKILL, `start()` starts it again on the same port."

    def __init__(self, env: dict[str, str], log: Path, port: int | None = None) -> None:
        self.env, self.log, self.port = env, log, port or closed_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 300) -> float:
        "Start and wait for `/health`; seconds to it."
        cmd = [sys.executable, "-m", "uvicorn", "app.api.main:create_app", "--factory", "--host", "127.0.0.1",
               "--port", str(self.port), "--workers", "1", "--log-level", "warning", "--no-access-log"]
        with self.log.open("a") as err:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=err, stderr=err)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return time.perf_counter() - t0
            if self.proc.poll() is not None:
                raise RuntimeError(f"the API exited ({self.proc.returncode}); see {self.log}")
            time.sleep(0.1)
        raise RuntimeError("the API did not answer /health in time")

    def wait_ready(self, timeout: float = 120) -> float:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base}/ready", timeout=5).status_code == 200:
                    return time.perf_counter() - t0
            time.sleep(0.1)
        raise RuntimeError(f"the API was not ready within {timeout:.0f} s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


class Prober:
    "POST /api/v1/predict every 0.1 s from a thread; what came back (status codes, transport errors, a message)."

    def __init__(self, base: str) -> None:
        self.base, self.outcomes, self.messages = base, Counter(), Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    r = client.post("/api/v1/predict", json=PREDICT)
                    self.outcomes[str(r.status_code)] += 1
                    if r.status_code != 200:
                        self.messages[r.text[:300]] += 1
                except httpx.TransportError as exc:
                    self.outcomes[type(exc).__name__] += 1
                self._stop.wait(0.1)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def summary(self) -> dict[str, Any]:
        n, ok = sum(self.outcomes.values()), self.outcomes.get("200", 0)
        return {"probes": n, "ok": ok, "kept_serving": n > 0 and ok == n, "outcomes": dict(self.outcomes),
                "messages": [m for m, _ in self.messages.most_common(3)]}


def log_lines(path: Path, offset: int, words: tuple[str, ...], k: int = 8) -> list[str]:
    "Distinct WARNING/ERROR lines of CryptoSentinel's loggers written to `path` after `offset` with one of `words`."
    with path.open(errors="replace") as f:
        f.seek(offset)
        text = f.read()
    out: list[str] = []
    for line in text.splitlines():
        if " cryptosentinel." in line and any(w in line for w in ("WARNING", "ERROR", "CRITICAL")) \
                and any(w in line for w in words):
            line = line.strip()[:400]
            if line not in out:
                out.append(line)
    return out[:k]


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def last_flow_run(store: Path) -> dict[str, Any]:
    import json
    with contextlib.closing(sqlite3.connect(store, timeout=60)) as conn:
        row = conn.execute("SELECT record FROM runs WHERE kind = 'flow_run' ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return {}
    r = json.loads(row[0])
    failed = [t for t in r.get("tasks", []) if t.get("state") != "Completed"]
    return {"flow": r.get("flow"), "state": r.get("state"), "retries": r.get("retries"),
            "error": (failed[0].get("error") or {}).get("evalue", "")[:500] if failed else None}


def rows(store: Path, table: str = PREDICTIONS) -> int:
    "Rows of a store table (0 when it does not exist yet)."
    with contextlib.closing(sqlite3.connect(store, timeout=60)) as conn:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone() is None:
            return 0
        return conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]


async def load(base: str, n: int, concurrency: int) -> dict[str, Any]:
    "`n` POSTs to /api/v1/predict at `concurrency` connections; latencies of every request, failures counted."
    latencies: list[float] = []
    failures: Counter = Counter()
    todo = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        async def worker() -> None:
            for _ in todo:
                t0 = time.perf_counter()
                try:
                    r = await client.post("/api/v1/predict", json=PREDICT)
                    if r.status_code != 200:
                        failures[f"{r.status_code}: {r.text[:200]}"] += 1
                except httpx.TransportError as exc:
                    failures[type(exc).__name__] += 1
                latencies.append((time.perf_counter() - t0) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    a = np.asarray(latencies)
    return {"requests": len(a), "failures": sum(failures.values()), "failure_kinds": dict(failures.most_common(5)),
            "p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "max_ms": round(float(a.max()), 1), "throughput_rps": round(len(a) / wall, 1), "wall_s": round(wall, 2)}


def window(k: int, t0: pd.Timestamp) -> dict[str, Any]:
    "The feature pipeline's parameters for the k-th run: simulated hours [t0 + (k-1) STEP, t0 + k STEP)."
    return {"source": "synthetic", "days": None, "start": (t0 + (k - 1) * STEP).isoformat(),
            "end": (t0 + k * STEP).isoformat()}


def load_phase(api: Api, runner: FlowRunner, t0: pd.Timestamp, args: argparse.Namespace) -> dict[str, Any]:
    "The load, while a thread keeps the runner alternating feature and inference pipelines."
    warm = runner.run("feature_pipeline", FLOW_TIMEOUT, **window(1, t0))  # also starts Prefect's server
    if warm["state"] != "Completed":
        raise RuntimeError(f"the warm-up feature pipeline failed: {warm}")
    runs: list[dict[str, Any]] = []
    stop = threading.Event()

    def loop() -> None:
        for k in range(2, 2 + args.max_pipeline_runs):
            for flow, params in (("feature_pipeline", window(k, t0)), ("inference_pipeline", {})):
                if stop.is_set():
                    return
                runs.append(runner.run(flow, FLOW_TIMEOUT, **params))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    time.sleep(2)  # the first run is under way: its kernel starts while the load begins
    started = time.time()
    result = asyncio.run(load(api.base, args.requests, args.concurrency))
    ended = time.time()
    stop.set()
    thread.join(timeout=FLOW_TIMEOUT)
    during = [r for r in runs if started <= r["t"] <= ended]
    result.update(concurrency=args.concurrency, pipeline_runs_completed_during_load=len(during),
                  pipeline_runs_during_load={f: sum(r["flow"] == f for r in during) for f in
                                             ("feature_pipeline", "inference_pipeline")},
                  pipeline_runs_failed=[r for r in runs if r["state"] != "Completed"],
                  pipeline_runs_total=len(runs), pipeline_run_s=[r["seconds"] for r in runs],
                  new_hours_per_feature_run=int(STEP / pd.Timedelta(hours=1)))
    return result


def restart_fault(api: Api, runner: FlowRunner, t0: pd.Timestamp, k: int, store: Path) -> dict[str, Any]:
    "SIGKILL the API while a feature pipeline runs, start it again, then 1,000 requests."
    before = store_facts(store, COINS)
    run_id = runner.submit("feature_pipeline", **window(k, t0))
    runner.lines.wait({"event": "start", "id": run_id}, 60)
    time.sleep(3)  # the run is inside its first notebook
    killed = time.time()
    api.kill()
    restart_s = api.start()
    ready_s = api.wait_ready()
    after_restart = asyncio.run(load(api.base, 1000, 8))
    done = runner.wait(run_id, FLOW_TIMEOUT)
    after = store_facts(store, COINS)
    return {"what": "uvicorn killed with SIGKILL 3 s into a feature pipeline run, then started again",
            "flow_state": done["state"], "flow_finished_after_kill": done["t"] > killed,
            "api_down_s": round(restart_s + ready_s, 2), "ready_again": True,
            "requests_after_restart": after_restart["requests"], "failures_after_restart": after_restart["failures"],
            "price_rows_before": before["rows"], "price_rows_after": after["rows"],
            "said": f"flow {done['state']} in {done['seconds']} s; /ready 200 {restart_s + ready_s:.1f} s after the kill"}


def source_faults(api: Api, runner: FlowRunner, server: FaultServer, store: Path, log: Path) -> list[dict[str, Any]]:
    "The feature pipeline against a CoinGecko that answers 503, 429 with Retry-After, or never."
    out = []
    for mode, what in (("5xx", "every CoinGecko request answered 503"),
                       ("429", f"every CoinGecko request answered 429 with Retry-After: {server.retry_after_s}"),
                       ("hang", "CoinGecko never answers (client time-out 1 s)")):
        server.set(mode)
        before, offset = store_facts(store, COINS), size(log)
        with Prober(api.base) as probe:
            done = runner.run("feature_pipeline", FLOW_TIMEOUT, source="coingecko", days=1)
        after = store_facts(store, COINS)
        gaps = server.gaps_s()
        out.append({"fault": f"data source: {mode}", "what": what, "flow_state": done["state"],
                    "flow_s": done["seconds"], "source_requests": len(server.times),
                    "waits_between_requests_s": gaps[:12], "api": probe.summary(),
                    "price_rows_before": before["rows"], "price_rows_after": after["rows"],
                    "prices_unchanged": before == after, "flow_run": last_flow_run(store),
                    "said": done.get("error"), "log": log_lines(log, offset, ("CoinGecko", "failed", "retry"))})
    server.set("ok")
    return out


def kill_fault(api: Api, store: Path) -> dict[str, Any]:
    "A writer into the served store killed inside its transaction, then at fractions of its write time."
    rows, trials = 100_000, []
    with Prober(api.base) as probe:
        trials.append(kill_mid_write(store, "cardano", "2040-01-01", rows))  # just before COMMIT
        full = kill_mid_write(store, "cardano", "2050-01-01", rows, delay_s=120)  # not killed: the write time
        write_s = full["write_s"] or 1.0
        for i, share in enumerate((0.1, 0.3, 0.5, 0.7, 0.9, 1.2, 1.6, 2.5)):
            trials.append(kill_mid_write(store, "cardano", f"{2060 + 20 * i}-01-01", rows,
                                         delay_s=round(share * write_s, 3)))
    return {"fault": "worker SIGKILL mid-write", "what": f"a child upserting {rows:,} price rows into the served "
            "store killed with SIGKILL: once inside the transaction just before COMMIT, then at 10%..250% of the "
            f"uninterrupted write time ({write_s:.2f} s)", "uninterrupted": full, "trials": trials,
            "all_consistent": all(t["consistent"] for t in [full, *trials]),
            "outcomes": dict(Counter(t["outcome"] for t in trials)), "api": probe.summary(),
            "said": "nothing: SQLite rolls the open transaction back when the store is next opened"}


def artifact_fault(api: Api, env: dict[str, str], store: Path, tmp: Path, champion: dict[str, Any]
                   ) -> dict[str, Any]:
    "Truncate the price champion's largest artifact; the running API, a new API, `cryptosentinel predict`."
    from cryptosentinel.config import Settings
    from cryptosentinel.registry_hopsworks import open_registry
    registry = open_registry(Settings(data_dir=Path(env["CRYPTOSENTINEL_DATA_DIR"])))
    record = registry._record(champion["name"], champion["version"])  # the registry's own lookup of its files
    with registry._artifacts(record) as folder:
        target = max((p for p in Path(folder).rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    backup = tmp / "artifact.backup"
    shutil.copy2(target, backup)
    predictions = rows(store)
    with target.open("r+b") as f:
        f.truncate(max(1, target.stat().st_size // 2))
    fresh = Api(env, tmp / "api-fresh.log")
    try:
        with Prober(api.base) as probe:
            running_ready = httpx.get(f"{api.base}/ready", timeout=10)
            reload = httpx.post(f"{api.base}/api/v1/admin/reload", params={"force": "true"}, timeout=120,
                                headers={"X-API-Key": env["CRYPTOSENTINEL_API__ADMIN_API_KEY"]})
            fresh.start()
            ready = httpx.get(f"{fresh.base}/ready", timeout=10)
            predict = httpx.post(f"{fresh.base}/api/v1/predict", json=PREDICT, timeout=30)
            cli = subprocess.run([str(ROOT / ".venv/bin/cryptosentinel"), "predict"], env=env, cwd=tmp,
                                 capture_output=True, text=True, timeout=600)
    finally:
        fresh.stop()
        shutil.copy2(backup, target)
    registry.verify(champion["name"], champion["version"])  # restored: the checksums match again
    return {"fault": "corrupted model artifact",
            "what": f"{target.name} of the price champion {champion['name']} v{champion['version']} truncated to half",
            "api": probe.summary(), "running_api_ready_status": running_ready.status_code,
            "running_api_forced_reload_status": reload.status_code,
            "running_api_forced_reload_said": reload.json().get("error") if reload.status_code == 200 else reload.text[:400],
            "new_api_ready_status": ready.status_code, "new_api_ready_said": ready.json()["error"]["message"][:400]
            if ready.status_code != 200 else None,
            "new_api_predict_status": predict.status_code, "new_api_predict_said": predict.text[:400],
            "cli_predict_exit": cli.returncode, "cli_said": (cli.stderr.strip().splitlines() or [""])[-1][:400],
            "predictions_before": predictions,
            "predictions_after": rows(store),
            "restored_and_verified": True}


def webhook_fault(api: Api, env: dict[str, str], store: Path, tmp: Path) -> dict[str, Any]:
    "Both webhooks on a closed port during an inference pipeline."
    port = closed_port()
    dead = {**env, "CRYPTOSENTINEL_DISCORD_WEBHOOK_URL": f"http://127.0.0.1:{port}/discord",
            "CRYPTOSENTINEL_SLACK_WEBHOOK_URL": f"http://127.0.0.1:{port}/slack",
}  # the same PREFECT_HOME as the first runner, closed by now
    log = tmp / "runner-webhook.log"
    runner = FlowRunner(dead, log, tmp)
    try:
        before = store_facts(store, COINS)
        predictions = rows(store)
        with Prober(api.base) as probe:
            done = runner.run("inference_pipeline", FLOW_TIMEOUT)
        after = store_facts(store, COINS)
    finally:
        runner.close()
    return {"fault": "dead webhook", "what": f"Discord and Slack webhook URLs on closed port {port}",
            "flow_state": done["state"], "flow_s": done["seconds"], "api": probe.summary(),
            "price_rows_before": before["rows"], "price_rows_after": after["rows"],
            "predictions_before": predictions, "predictions_after": rows(store),
            "said": log_lines(log, 0, ("webhook",))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--days", type=int, default=120, help="simulated days to train on")
    ap.add_argument("--max-pipeline-runs", type=int, default=10, help="feature+inference pairs during the load, at most")
    ap.add_argument("--timeout", type=int, default=2400, help="overall time-out in seconds")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, executed notebooks)")
    args = ap.parse_args()
    signal.signal(signal.SIGALRM, _deadline)
    signal.alarm(args.timeout)

    from cryptosentinel.ingest import last_full_bar
    tmp = Path(tempfile.mkdtemp(prefix="bench-hardening-"))
    data_dir, store = tmp / "data", tmp / "data" / "store.sqlite"
    t0 = last_full_bar("1h") - HELD_BACK
    started, load_before = time.perf_counter(), os.getloadavg()
    result: dict[str, Any] = {"benchmark": "hardening", "requests": args.requests, "concurrency": args.concurrency,
                              "coins": COINS, "shared_machine": "2 cores shared with other agents' work"}
    server = FaultServer(retry_after_s=3).__enter__()  # 3 s: unlike the client's own backoff (1 s, 2 s)
    env = {**{k: v for k, v in os.environ.items() if "WEBHOOK" not in k},
           "CRYPTOSENTINEL_DATA_DIR": str(data_dir), "CRYPTOSENTINEL_REPORTS_DIR": str(tmp / "reports"),
           "CRYPTOSENTINEL_COINS": ",".join(COINS), "CRYPTOSENTINEL_HORIZONS": "24",
           "CRYPTOSENTINEL_SOURCE": "synthetic", "CRYPTOSENTINEL_LOG_LEVEL": "INFO",
           "CRYPTOSENTINEL_API__ADMIN_API_KEY": secrets.token_hex(16),  # this run's own key for /admin/reload
           "CRYPTOSENTINEL_API__DATA_CHECK_S": "1", "CRYPTOSENTINEL_ORCHESTRATION__HTML": "false",
           "CRYPTOSENTINEL_ORCHESTRATION__RETRIES": "1", "CRYPTOSENTINEL_ORCHESTRATION__RETRY_DELAY_S": "1",
           "CRYPTOSENTINEL_COINGECKO_BASE_URL": server.url, "CRYPTOSENTINEL_COINGECKO_MAX_RETRIES": "2",
           "CRYPTOSENTINEL_COINGECKO_TIMEOUT_S": "1", "PREFECT_HOME": str(tmp / "prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
           "MPLBACKEND": "Agg"}
    api = Api(env, tmp / "api.log")
    runner: FlowRunner | None = None
    try:
        t = time.perf_counter()
        champions = train(data_dir, t0, args.days)
        result["train_s"] = round(time.perf_counter() - t, 1)
        result["champions"] = {k: f"{v['name']}@{v['version']}" for k, v in champions.items() if v}
        result["api_start_s"] = round(api.start(), 2)
        api.wait_ready()
        runner = FlowRunner(env, tmp / "runner.log", tmp)
        result["load"] = load_phase(api, runner, t0, args)
        print("load:", result["load"], flush=True)
        k = 2 + args.max_pipeline_runs
        faults = [{"fault": "API restarted during a pipeline run", **restart_fault(api, runner, t0, k, store)}]
        faults += source_faults(api, runner, server, store, tmp / "runner.log")
        runner.close()
        runner = None
        faults.append(kill_fault(api, store))
        faults.append(artifact_fault(api, env, store, tmp, champions["regression"]))
        faults.append(webhook_fault(api, env, store, tmp))
        result["faults"] = faults
        result["store_at_end"] = store_facts(store)
        for f in faults:
            print(f"{f['fault']}: {f.get('flow_state', '')} {f.get('said')}", flush=True)
    except Deadline as exc:
        result["error"] = str(exc)
    finally:
        signal.alarm(0)
        if runner is not None:
            runner.close(timeout=5)
        api.stop()
        server.__exit__(None, None, None)
        result["total_s"] = round(time.perf_counter() - started, 1)
        result["machine"] = machine() | {"load_avg_at_start": load_before}
        result["measured_at"] = pd.Timestamp.now(tz="UTC").isoformat()
        write_result("hardening", result)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if "error" in result:
        sys.exit(result["error"])


if __name__ == "__main__":
    main()
