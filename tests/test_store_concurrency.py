"""The local store under real processes: readers while one writes, and a writer killed mid-transaction."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from cryptosentinel.store import PRICES
from cryptosentinel.store_local import LocalStore

pytestmark = [pytest.mark.code, pytest.mark.slow]  # real interpreters start in a few seconds each

# A writer or reader is a fresh interpreter (`sys.executable -c`), as papermill, the API and the
# dashboard would be: nothing is shared with the test process but the file.
PRELUDE = textwrap.dedent("""
    import sys, time, numpy as np, pandas as pd
    from pathlib import Path
    from cryptosentinel.store import PRICES
    from cryptosentinel.store_local import LocalStore

    def batch(i, hours, coins=("bitcoin", "ethereum", "solana")):
        start = pd.Timestamp("2020-01-01", tz="UTC") + pd.Timedelta(hours=i * hours)
        ts = pd.date_range(start, periods=hours, freq="h")
        frames = [pd.DataFrame({"coin": c, "ts": ts, "open": 1.0 + i, "high": 2.0 + i, "low": 0.5 + i,
                                "close": 1.5 + i, "volume": float(i), "market_cap": np.nan,
                                "source": "test", "granularity": "1h"}) for c in coins]
        return pd.concat(frames, ignore_index=True)
""")

WRITER = PRELUDE + textwrap.dedent("""
    store = LocalStore(sys.argv[1])
    n_batches, hours = int(sys.argv[2]), int(sys.argv[3])
    for i in range(n_batches):
        r = store.upsert(PRICES, batch(i, hours))
        assert r.inserted == 3 * hours, r
        print(f"committed {i}", flush=True)
""")

READER = PRELUDE + textwrap.dedent("""
    store = LocalStore(sys.argv[1])
    stop, batch_rows = Path(sys.argv[2]), int(sys.argv[3])
    reads, seen = 0, []
    print("ready", flush=True)
    while not stop.exists():
        latest = store.latest("prices")
        rows = len(store.read("prices"))
        one = store.read("prices", coins=["ethereum"], columns=["close"])
        assert rows % batch_rows == 0, f"saw a partial batch: {rows} rows"
        assert not seen or rows >= seen[-1], "row count went down"
        # three reads, three snapshots: later ones may see more batches, never fewer or partial ones
        assert len(one) * 3 >= rows and len(one) % (batch_rows // 3) == 0
        assert len(latest) in (0, 3)
        seen.append(rows)
        reads += 1
    print(f"reads {reads} max_rows {max(seen) if seen else 0}", flush=True)
""")


def _spawn(script: str, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_readers_while_one_writer_commits(tmp_path):
    path, stop = tmp_path / "store.sqlite", tmp_path / "stop"
    LocalStore(path).close()
    n_batches, hours = 30, 24
    readers = [_spawn(READER, path, stop, 3 * hours) for _ in range(3)]
    for reader in readers:  # readers are reading the empty store before the writer starts
        _wait_for(reader, "ready")
    writer = _spawn(WRITER, path, n_batches, hours)
    try:
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
        assert out.count("committed") == n_batches
    finally:
        stop.touch()
    for reader in readers:
        out, err = reader.communicate(timeout=60)
        assert reader.returncode == 0, err
        assert out.startswith("reads ")
        assert int(out.split()[1]) > 0 and int(out.split()[3]) > 0
    with LocalStore(path) as store:
        assert len(store.read("prices")) == n_batches * 3 * hours  # no lost writes
        assert store.summary("prices")["coins"]["bitcoin"]["rows"] == n_batches * hours


KILLED_WRITER = PRELUDE + textwrap.dedent("""
    store = LocalStore(sys.argv[1])
    mode, hours = sys.argv[2], int(sys.argv[3])
    new = batch(1, hours).assign(close=99.0)  # new hours and changed values for the old ones
    new = pd.concat([batch(0, hours).assign(close=42.0), new], ignore_index=True)
    if mode == "hook":
        def hang():
            print("in transaction", flush=True)
            time.sleep(60)
        store._before_commit = hang  # every row is written, COMMIT has not run
    print("upserting", flush=True)
    store.upsert(PRICES, new)
    print("committed", flush=True)
""")


def _wait_for(proc: subprocess.Popen, line: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = proc.stdout.readline()
        if got.strip() == line:
            return
        if not got and proc.poll() is not None:
            raise AssertionError(f"writer ended before {line!r}: {proc.stderr.read()}")
    raise AssertionError(f"no {line!r} within {timeout}s")


def _states(hours: int) -> tuple[int, int]:
    """Rows before the killed upsert, and after it if it had committed."""
    return 3 * hours, 6 * hours


# Only the deterministic form: the writer is killed from a hook inside its open transaction. (A kill
# timed by a sleep would make the outcome depend on the machine's speed.)
@pytest.mark.parametrize("mode,hours", [("hook", 2000)])
def test_writer_killed_mid_write_leaves_previous_or_full_state(tmp_path, mode, hours):
    path = tmp_path / "store.sqlite"
    seed = _spawn(WRITER, path, 1, hours)  # the previous state: batch 0
    _, err = seed.communicate(timeout=120)
    assert seed.returncode == 0, err
    with LocalStore(path) as store:
        before = store.read("prices")

    writer = _spawn(KILLED_WRITER, path, mode, hours)
    try:
        if mode == "hook":
            _wait_for(writer, "in transaction")
        else:
            _wait_for(writer, "upserting")
            time.sleep(0.4)  # validation done, the transaction is under way
        assert writer.poll() is None, "the writer finished before it could be killed"
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.wait(timeout=30)
        writer.stdout.close()
        writer.stderr.close()
    assert writer.returncode == -signal.SIGKILL

    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    with LocalStore(path) as store:
        after = store.read("prices")
        prev_rows, full_rows = _states(hours)
        if mode == "hook":
            pd.testing.assert_frame_equal(after, before)  # killed before COMMIT: previous state exactly
        else:
            assert len(after) in (prev_rows, full_rows)
            if len(after) == prev_rows:
                pd.testing.assert_frame_equal(after, before)
            else:
                assert set(after.close) == {42.0, 99.0}
        # the lock died with the writer: the next writer gets in
        assert store.upsert(PRICES, after.assign(close=7.0)).updated == len(after)
