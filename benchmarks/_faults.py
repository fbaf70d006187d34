"""Fault injection for the hardening benchmark (`bench_hardening.py`) and its tests (`tests/test_hardening.py`).

* `FaultServer`: a loopback HTTP server that answers every GET with the fault it is set to (`ok`, `5xx`, `429` with
  `Retry-After`, `hang` until it stops), and records when each request came;
* `closed_port()`: a loopback port nobody listens on (a dead webhook);
* `kill_mid_write(...)`: a subprocess upserts a batch of price bars into a SQLite store and is killed with SIGKILL
  inside its write transaction (or after a delay); then the store is opened again and checked;
* `store_facts(...)`: `PRAGMA integrity_check`, row counts and a fingerprint of stored prices;
* `FlowRunner`: one subprocess that runs the Prefect flows (`cryptosentinel.flows.run_flow`) on command, so a run of
  faults pays for Prefect's temporary server once.

Run as a script it is the child side of these: `python benchmarks/_faults.py write ...` (the writer) and
`python benchmarks/_faults.py flows` (the flow runner, JSON commands on stdin).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import queue
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryptosentinel.util import to_utc

MARK = "@@fault "  # prefix of the protocol lines a child prints on stdout (everything else there is ignored)
MODES = ("ok", "5xx", "429", "hang")


class FaultServer:
    "Answer every GET on 127.0.0.1 with the current fault; `times` holds (monotonic time, path) of each request."

    def __init__(self, mode: str = "ok", retry_after_s: int = 1, status_5xx: int = 503) -> None:
        self.mode, self.retry_after_s, self.status_5xx = mode, retry_after_s, status_5xx
        self.times: list[tuple[float, str]] = []
        self._released = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.times.append((time.monotonic(), self.path))
                mode = server.mode
                if mode == "hang":
                    server._released.wait()  # set when the server stops: the client has long given up
                status, headers, body = 200, {}, b"{}"
                if mode == "5xx":
                    status, body = server.status_5xx, b'{"error": "injected server error"}'
                elif mode == "429":
                    status, body = 429, b'{"status": {"error_code": 429, "error_message": "injected rate limit"}}'
                    headers = {"Retry-After": str(server.retry_after_s)}
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that timed out closed its socket: nothing to report

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fault-server", daemon=True)

    def set(self, mode: str) -> FaultServer:
        "Switch the fault (and forget the requests seen so far)."
        if mode not in MODES:
            raise ValueError(f"fault mode must be one of {MODES}, got {mode!r}")
        self.mode, self.times = mode, []
        return self

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/api/v3"

    def gaps_s(self) -> list[float]:
        "Seconds between consecutive requests (how long the client waited before retrying)."
        t = [x for x, _ in self.times]
        return [round(b - a, 3) for a, b in zip(t, t[1:], strict=False)]

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._released.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def closed_port() -> int:
    "A loopback port that was free a moment ago and has no listener now."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def price_batch(coin: str, start: str | pd.Timestamp, rows: int) -> pd.DataFrame:
    "`rows` hourly bars of `coin` from `start` in the raw price schema (a random walk; only the count matters)."
    ts = pd.date_range(to_utc(start, "start"), periods=rows, freq="h")
    close = 100 * np.exp(np.cumsum(np.random.default_rng(rows).normal(0, 0.01, rows)))
    return pd.DataFrame({"coin": coin, "ts": ts, "open": close, "high": close * 1.01, "low": close * 0.99,
                         "close": close, "volume": 1e6, "market_cap": close * 1e7, "source": "synthetic",
                         "granularity": "1h"})


def _prices_table() -> str:
    from cryptosentinel.store import PRICES
    return PRICES.table


def store_facts(path: Path, coins: list[str] | None = None) -> dict[str, Any]:
    """Open the store the way the package does (`LocalStore`), then `integrity_check`, the price rows (of `coins`,
    or all) and a SHA-256 over those rows in key order."""
    from cryptosentinel.store_local import LocalStore
    LocalStore(path).close()  # opening runs a write transaction: a store a crash left broken fails here
    table = _prices_table()
    with contextlib.closing(sqlite3.connect(path, timeout=60)) as conn:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone()
        where, params = ("", ()) if not coins else (f"WHERE coin IN ({','.join('?' * len(coins))})", tuple(coins))
        rows = conn.execute(f'SELECT * FROM "{table}" {where} ORDER BY coin, ts', params).fetchall() if exists else []
    digest = hashlib.sha256(repr(rows).encode()).hexdigest()[:16]
    return {"integrity": integrity, "rows": len(rows), "sha256": digest}


class _Lines:
    "The protocol lines (JSON after MARK) a child prints on stdout, read by a thread into a queue."

    def __init__(self, stream: Any) -> None:
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            if line.startswith(MARK):
                event = json.loads(line[len(MARK):])
                self.seen.append(event)
                self.queue.put(event)

    def wait(self, match: dict[str, Any], timeout: float) -> dict[str, Any]:
        "The next event whose fields include `match` (TimeoutError when none comes in time)."
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.queue.get(timeout=left)
            except queue.Empty:
                break
            if all(event.get(k) == v for k, v in match.items()):
                return event
        raise TimeoutError(f"no event {match} within {timeout:.0f} s")


def emit(**event: Any) -> None:
    print(MARK + json.dumps(event, default=str), flush=True)


def kill_mid_write(store: Path, coin: str, start: str, rows: int, delay_s: float | None = None,
                   timeout: float = 300) -> dict[str, Any]:
    """A child upserts `rows` new bars of `coin` into `store`; SIGKILL it inside its write transaction, just before
    COMMIT (`delay_s` None), or `delay_s` after it began the upsert. The store's facts before and after, and what
    the child had reached ("begin", "in-transaction", "committed")."""
    before = store_facts(store, [coin])
    child = subprocess.Popen([sys.executable, __file__, "write", str(store), coin, start, str(rows),
                              *(["--hold"] if delay_s is None else [])],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines = _Lines(child.stdout)
    try:
        began = lines.wait({"event": "begin"}, timeout)
        if delay_s is None:
            lines.wait({"event": "in-transaction"}, timeout)
        else:  # the delay, unless the child commits first (then there is nothing to interrupt)
            with contextlib.suppress(TimeoutError):
                lines.wait({"event": "committed"}, delay_s)
        killed = None
        if any(e["event"] == "committed" for e in lines.seen):  # done before the delay: let it exit
            child.wait(timeout=60)
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            killed = time.monotonic()
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)
    time.sleep(0.2)  # the reader thread drains what the child printed before it died
    after = store_facts(store, [coin])
    reached = [e["event"] for e in lines.seen]
    added = after["rows"] - before["rows"]
    outcome = "nothing written" if added == 0 else "whole batch" if added == rows else f"PARTIAL ({added} of {rows})"
    times = {e["event"]: e["t_mono"] for e in lines.seen}
    return {"rows": rows, "delay_s": delay_s, "reached": reached, "returncode": child.returncode,
            "killed_after_begin_s": None if killed is None else round(killed - began["t_mono"], 3),
            "write_s": round(times["committed"] - times["begin"], 3) if "committed" in times else None,
            "rows_before": before["rows"], "rows_after": after["rows"], "integrity": after["integrity"],
            "outcome": outcome, "consistent": after["integrity"] == "ok" and added in (0, rows)}


class FlowRunner:
    "A child process that runs flows on command: `run(flow, params)` -> its record (or its error)."

    def __init__(self, env: dict[str, str], log: Path, cwd: Path) -> None:
        self.log = log
        self._err = log.open("a")
        self.proc = subprocess.Popen([sys.executable, __file__, "flows"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._err, text=True, env=env, cwd=cwd)
        self.lines = _Lines(self.proc.stdout)
        self._n = 0

    def submit(self, flow: str, **params: Any) -> int:
        self._n += 1
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"id": self._n, "flow": flow, "params": params}) + "\n")
        self.proc.stdin.flush()
        return self._n

    def wait(self, run_id: int, timeout: float) -> dict[str, Any]:
        return self.lines.wait({"event": "done", "id": run_id}, timeout)

    def run(self, flow: str, timeout: float, **params: Any) -> dict[str, Any]:
        return self.wait(self.submit(flow, **params), timeout)

    def close(self, timeout: float = 60) -> None:
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._err.close()


def _write(args: argparse.Namespace) -> None:
    "The child of `kill_mid_write`."
    from cryptosentinel.store import PRICES
    from cryptosentinel.store_local import LocalStore
    store = LocalStore(args.store)
    frame = price_batch(args.coin, args.start, args.rows)

    def inside() -> None:  # the store's test seam: runs inside the write transaction, before COMMIT
        emit(event="in-transaction", t_mono=time.monotonic())
        if args.hold:
            time.sleep(3600)

    store._before_commit = inside
    emit(event="begin", t_mono=time.monotonic())
    store.upsert(PRICES, frame)
    emit(event="committed", t_mono=time.monotonic())


def _flows() -> None:
    "The child of `FlowRunner`: one JSON command per stdin line, a `done` event per run."
    from cryptosentinel.cli import configure_logging
    from cryptosentinel.config import get_settings
    from cryptosentinel.flows import run_flow
    configure_logging(get_settings().log_level)
    emit(event="ready", pid=os.getpid())
    for line in sys.stdin:
        cmd = json.loads(line)
        emit(event="start", id=cmd["id"], flow=cmd["flow"], t=time.time())
        t0 = time.perf_counter()
        try:
            record = run_flow(cmd["flow"], **cmd["params"])
            out = {"state": record["state"], "figures": record.get("figures"), "retries": record.get("retries")}
        except Exception as exc:  # the flow's failure is what the benchmark measures: reported, not hidden
            out = {"state": "Failed", "error": f"{type(exc).__name__}: {str(exc)[:1500]}"}
        emit(event="done", id=cmd["id"], flow=cmd["flow"], t=time.time(), seconds=round(time.perf_counter() - t0, 2),
             **out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="upsert a batch of price bars (the child of kill_mid_write)")
    w.add_argument("store", type=Path)
    w.add_argument("coin")
    w.add_argument("start")
    w.add_argument("rows", type=int)
    w.add_argument("--hold", action="store_true", help="wait inside the transaction, before COMMIT, to be killed")
    sub.add_parser("flows", help="run flows on JSON commands from stdin (the child of FlowRunner)")
    args = ap.parse_args()
    if args.command == "write":
        _write(args)
    else:
        _flows()


if __name__ == "__main__":
    main()
