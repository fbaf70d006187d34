"""The fault helpers of the hardening benchmark (benchmarks/_faults.py), on tiny inputs: the fault server answers
what it is set to, the CoinGecko client obeys its Retry-After and then fails clearly, a dead webhook port refuses,
a writer killed inside its transaction leaves a consistent store, and the summary table reads every result."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _faults import FaultServer, closed_port, kill_mid_write, price_batch, store_facts  # noqa: E402
from bench_zz_summary import figures, pick, summary  # noqa: E402

from cryptosentinel.coingecko import CoinGeckoClient  # noqa: E402
from cryptosentinel.config import SourceError  # noqa: E402
from cryptosentinel.store import PRICES  # noqa: E402
from cryptosentinel.store_local import LocalStore  # noqa: E402

pytestmark = pytest.mark.code


def test_fault_server_answers_each_mode():
    with FaultServer(retry_after_s=7) as server:
        assert httpx.get(f"{server.url}/ping").status_code == 200
        server.set("429")
        r = httpx.get(f"{server.url}/coins/bitcoin/market_chart/range")
        assert r.status_code == 429 and r.headers["retry-after"] == "7"
        server.set("5xx")
        assert httpx.get(f"{server.url}/ping").status_code == 503
        server.set("hang")
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(f"{server.url}/ping", timeout=0.3)
        assert [p for _, p in server.times] == ["/api/v3/ping"]  # `set` forgets what came before
        with pytest.raises(ValueError, match="fault mode"):
            server.set("slow")


def test_coingecko_client_waits_retry_after_then_fails_clearly():
    waits: list[float] = []
    with FaultServer("429", retry_after_s=3) as server:
        client = CoinGeckoClient(base_url=server.url, max_retries=2, sleep=waits.append)
        with pytest.raises(SourceError, match="after 3 attempt"):
            client.get("/ping")
        assert waits == [3.0, 3.0] and len(server.times) == 3


def test_closed_port_refuses():
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"http://127.0.0.1:{closed_port()}/hook", json={}, timeout=2)


def test_sigkill_inside_the_transaction_writes_nothing_and_a_finished_write_everything(tmp_path):
    path = tmp_path / "store.sqlite"
    with LocalStore(path) as store:
        store.upsert(PRICES, price_batch("bitcoin", "2030-01-01", 24))
    bitcoin = store_facts(path, ["bitcoin"])
    killed = kill_mid_write(path, "cardano", "2030-01-01", 40)  # held just before COMMIT, then SIGKILL
    assert killed["reached"] == ["begin", "in-transaction"] and killed["returncode"] == -9
    assert killed["rows_before"] == killed["rows_after"] == 0 and killed["outcome"] == "nothing written"
    assert killed["integrity"] == "ok" and killed["consistent"]
    done = kill_mid_write(path, "cardano", "2030-01-01", 40, delay_s=120)  # commits long before the delay
    assert done["reached"][-1] == "committed" and done["returncode"] == 0 and done["rows_after"] == 40
    assert done["outcome"] == "whole batch" and done["write_s"] is not None
    assert store_facts(path, ["bitcoin"]) == bitcoin  # other rows untouched


def test_summary_table_reads_every_result(tmp_path, monkeypatch):
    import bench_zz_summary
    (tmp_path / "hardening.json").write_text(json.dumps(
        {"concurrency": 64, "load": {"requests": 20000, "failures": 0, "p50_ms": 12.345678},
         "faults": [{"fault": "dead webhook", "api": {"kept_serving": True}}, {"fault": "x|y", "api": {}}]}))
    (tmp_path / "other.json").write_text(json.dumps({"rows": 5, "ok": True, "name": "skip me", "nested": {"a": 1}}))
    (tmp_path / "broken.json").write_text("{not json")
    monkeypatch.setattr(bench_zz_summary, "ROOT", tmp_path.parent)
    table = summary(tmp_path)
    assert "requests: 20000; failures: 0; p50 ms: 12.35" in table and "faults: dead webhook, x/y" in table
    assert "| [other](other.json) |" in table and "rows: 5; ok: yes" in table
    assert "unreadable JSON" in table
    assert pick({"a": [{"b": 1}, {"c": 2}]}, "a.*.b") == [1] and pick({"a": 1}, "a.b") is None
    assert figures("api-c1", {"concurrency": 1}) == [("concurrency", "1")]
