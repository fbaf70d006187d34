"""The Prefect flows end to end on small simulated runs: executed notebooks, run records, notifications to a
loopback webhook, retries only for transient failures, and per-coin work on a local Dask cluster."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import nbformat
import pytest
from prefect import flow
from prefect.testing.utilities import prefect_test_harness

from cryptosentinel import flows
from cryptosentinel.config import get_settings
from cryptosentinel.queries import RUN_KIND, flow_status
from cryptosentinel.runner import NotebookError
from cryptosentinel.store_local import LocalStore

pytestmark = [pytest.mark.code, pytest.mark.slow]


@pytest.fixture(scope="session")
def prefect_api():
    "Prefect's temporary database and API server, once for the session (nothing else to start)."
    with prefect_test_harness(server_startup_timeout=180):
        yield


class Receiver:
    "A loopback HTTP server standing in for a Discord or Slack webhook."
    def __init__(self):
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def titles(self) -> list[str]:
        return [e["title"] for b in self.bodies for e in b.get("embeds", [])]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def env(tmp_path, monkeypatch, receiver, prefect_api):
    "Two coins, reports in the test's folder, no retry delay, Discord on the loopback, Slack on a dead port."
    monkeypatch.setenv("CRYPTOSENTINEL_COINS", "bitcoin,ethereum")
    monkeypatch.setenv("CRYPTOSENTINEL_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("CRYPTOSENTINEL_ORCHESTRATION__RETRY_DELAY_S", "0")
    monkeypatch.setenv("CRYPTOSENTINEL_DISCORD_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("CRYPTOSENTINEL_SLACK_WEBHOOK_URL", "http://127.0.0.1:9/dead")  # refuses: logged, never fails
    monkeypatch.setenv("CRYPTOSENTINEL_MONITORING__WEBHOOK_RETRIES", "0")
    get_settings.cache_clear()
    return tmp_path


def records(data_dir: Path) -> list[dict]:
    with LocalStore(data_dir / "store.sqlite") as store:
        return [r["record"] for r in store.runs(RUN_KIND, limit=50)]


def test_feature_flow_leaves_executed_notebooks_records_the_run_and_notifies(env, receiver):
    out = flows.run_flow("feature_pipeline", source="synthetic", start="2024-01-01", end="2024-01-04")
    assert out["state"] == "Completed" and [t["task"] for t in out["tasks"]] == ["ingest", "features"]
    for path in out["notebooks"]:
        p = Path(path)
        assert p.is_file() and p.with_suffix(".html").is_file() and p.with_suffix(".log").is_file()
        assert p.parent.parent.parent.parent == (env / "reports" / "runs").resolve()
        assert p.parent.name == out["run_id"]
    assert out["figures"]["rows_ingested"] == 2 * 72
    assert all(t["cells_s"] > 0 and t["duration_s"] >= t["cells_s"] for t in out["tasks"])
    (stored,) = records(env / "data")
    assert stored["flow"] == "feature_pipeline" and stored["notebooks"] == out["notebooks"] and stored["retries"] == 0
    assert "[INFO] pipeline_completed" in receiver.titles()
    with LocalStore(env / "data" / "store.sqlite") as store:
        status = flow_status(store, get_settings())
    assert status["feature_pipeline"]["last_state"] == "Completed" and not status["feature_pipeline"]["schedule_gap"]
    assert status["training_pipeline"]["schedule_gap"]  # never ran
    from typer.testing import CliRunner

    from cryptosentinel.cli import app
    result = CliRunner().invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    flows_status = json.loads(result.output)["runs"]["flows"]
    assert flows_status["feature_pipeline"]["last_notebooks"] == out["notebooks"]
    assert flows_status["inference_pipeline"]["schedule_gap"] is True


def test_a_failing_notebook_keeps_its_copy_fails_the_flow_at_once_and_notifies_with_its_path(env, receiver):
    with pytest.raises(NotebookError) as info:
        flows.run_flow("feature_pipeline", source="csv", path=str(env / "missing.csv"))
    err = info.value
    assert not err.transient and err.ename == "SourceError" and err.attempt == 1  # deterministic: no retry
    executed = Path(err.notebook_path)
    assert executed.name == "20_ingest.ipynb" and executed.is_file() and executed.with_suffix(".html").is_file()
    assert "SourceError" in executed.read_text()
    (stored,) = records(env / "data")
    assert stored["state"] == "Failed" and stored["notebooks"] == [str(executed)]
    assert [t["task"] for t in stored["tasks"]] == ["ingest"]  # the features step never ran
    failed = [b for b in receiver.bodies if b["embeds"][0]["title"] == "[CRITICAL] pipeline_failed"]
    assert len(failed) == 1 and str(executed) in json.dumps(failed[0])
    assert "feature_pipeline" in json.dumps(failed[0])


def make_notebook(folder: Path, name: str, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("marker = ''")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(folder / f"{name}.ipynb"))


COUNT = """from pathlib import Path
p = Path(marker)
n = int(p.read_text()) if p.exists() else 0
p.write_text(str(n + 1))
"""


@pytest.mark.parametrize("kind, error, attempts, ok", [
    ("transient", "from cryptosentinel.util import RetryableError\nif n == 0: raise RetryableError(503)", 2, True),
    ("deterministic", "raise KeyError('close')", 1, False),
])
def test_a_transient_failure_is_retried_a_deterministic_one_is_not(env, monkeypatch, kind, error, attempts, ok):
    make_notebook(env / "nbs", "step", COUNT + error)
    monkeypatch.setenv("CRYPTOSENTINEL_ORCHESTRATION__NOTEBOOKS_DIR", str(env / "nbs"))
    monkeypatch.setenv("CRYPTOSENTINEL_ORCHESTRATION__HTML", "false")
    get_settings.cache_clear()
    settings = get_settings()
    marker = env / f"{kind}.count"

    @flow
    def one_step():
        task = flows.configured_task(settings, "step")
        return task.submit("step", {"marker": str(marker)}, "tests", kind, "2024-05-01", settings).result()

    if ok:
        run = one_step()
        assert run["attempt"] == attempts
        assert (env / "reports/runs/tests/2024-05-01" / kind / "step.attempt1.ipynb").is_file()  # the failed try
    else:
        with pytest.raises(NotebookError):
            one_step()
    assert int(marker.read_text()) == attempts


def feature_rows(data_dir: Path):
    with LocalStore(data_dir / "store.sqlite") as store:
        from cryptosentinel.store import features_group
        df = store.read(features_group(store))
    return df.drop(columns=[c for c in df.columns if c.startswith("_") or c in ("ingested_at", "updated_at")],
                   errors="ignore").sort_values(["coin", "ts"]).reset_index(drop=True)


def test_parts_of_coins_on_a_local_dask_cluster_store_the_same_rows_as_the_local_run(env, monkeypatch):
    """The market series once, then the coins in parts (two per worker): byte for byte the local run's rows."""
    from distributed import LocalCluster
    params = {"source": "synthetic", "start": "2024-01-01", "end": "2024-02-20"}
    local = flows.run_flow("feature_pipeline", data_dir=str(env / "local"), **params)
    assert [t["task"] for t in local["tasks"]] == ["ingest", "features"]
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, host="127.0.0.1", protocol="tcp://",
                      dashboard_address=None) as cluster:
        monkeypatch.setenv("CRYPTOSENTINEL_ORCHESTRATION__DASK_ADDRESS", cluster.scheduler_address)
        get_settings.cache_clear()
        assert flows.dask_workers(cluster.scheduler_address) == 1
        dask = flows.run_flow("feature_pipeline", data_dir=str(env / "dask"), **params)
    assert [t["task"] for t in dask["tasks"]] == ["ingest", "features-market", "features-1of2", "features-2of2"]
    assert [t["parameters"].get("part") for t in dask["tasks"][2:]] == [["bitcoin"], ["ethereum"]]
    market = Path(dask["tasks"][1]["parameters"]["market_file"])
    assert market.is_file() and market.parent == Path(dask["notebooks"][0]).parent  # in the run's folder
    assert [Path(p).name for p in dask["notebooks"][1:]] == [
        "21_features.market.ipynb", "21_features.1of2.ipynb", "21_features.2of2.ipynb"]
    a, b = feature_rows(env / "local"), feature_rows(env / "dask")
    assert len(a) > 0 and set(a["coin"]) == {"bitcoin", "ethereum"}
    common = [c for c in a.columns if c in b.columns]
    import pandas as pd
    pd.testing.assert_frame_equal(a[common], b[common], check_exact=True)
    assert dask["figures"]["feature_rows_written"] == local["figures"]["feature_rows_written"] == len(a)


def test_the_backfill_on_dask_loads_in_parts_then_builds_features_on_the_market_once(env, monkeypatch):
    from distributed import LocalCluster

    from cryptosentinel.features import build_features
    from cryptosentinel.pipelines import max_gap
    from cryptosentinel.store import PRICES
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, host="127.0.0.1", protocol="tcp://",
                      dashboard_address=None) as cluster:
        monkeypatch.setenv("CRYPTOSENTINEL_ORCHESTRATION__DASK_ADDRESS", cluster.scheduler_address)
        get_settings.cache_clear()
        out = flows.run_flow("backfill", days=30, source="synthetic", data_dir=str(env / "bf"))
    assert [t["task"] for t in out["tasks"]] == ["backfill-1of2", "backfill-2of2", "features-market",
                                                 "features-1of2", "features-2of2"]
    assert all(t["parameters"]["features"] is False for t in out["tasks"][:2])
    with LocalStore(env / "bf" / "store.sqlite") as store:
        prices = store.read(PRICES)
        assert store.runs("features", limit=10) and len(store.runs("features", limit=10)) == 2  # one per part
    expected = build_features(prices, max_gap=max_gap(get_settings()))
    got = feature_rows(env / "bf")
    import pandas as pd
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_exact=True)


@pytest.mark.parametrize("n_coins, n_parts", [(1, 4), (2, 2), (7, 3), (128, 4), (128, 200), (33, 1)])
def test_coin_parts_cover_every_coin_exactly_once(n_coins, n_parts):
    from cryptosentinel.config import Settings
    coins = [f"coin{i:03d}" for i in range(n_coins)]
    dask = Settings(_env_file=None, orchestration={"dask_address": "tcp://127.0.0.1:1"})
    parts = flows.coin_parts(coins, dask, n_parts=n_parts)
    assert [c for p in parts for c in p] == coins  # every coin once, in order
    assert len(parts) == min(n_parts, n_coins) and all(parts)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced
    assert flows.coin_parts(coins, Settings(_env_file=None)) == [None]  # locally: one task for every coin


def test_parts_on_the_runs_market_series_store_what_one_run_stores_also_incrementally(tmp_path):
    """Without Prefect: the pipeline functions the features notebook calls, over two runs (full, then new bars),
    with a coin offline for two days (a warm-up restart)."""
    import pandas as pd

    from cryptosentinel.pipelines import (
        ingest_to_store,
        load_market,
        market_series,
        save_market,
        update_features,
    )
    from cryptosentinel.store import PRICES, features_group
    coins = ["bitcoin", "ethereum", "solana"]
    settings = get_settings().model_copy(update={"coins": coins})
    whole, parts = LocalStore(tmp_path / "whole.sqlite"), LocalStore(tmp_path / "parts.sqlite")
    for end in ("2024-03-01", "2024-03-03"):
        for s in (whole, parts):  # solana offline from 2024-01-20 to 2024-01-22
            ingest_to_store(s, "synthetic", coins=coins[:2], start="2024-01-01", end=end, settings=settings)
            ingest_to_store(s, "synthetic", coins=coins[2:], start="2024-01-01", end="2024-01-20", settings=settings)
            ingest_to_store(s, "synthetic", coins=coins[2:], start="2024-01-22", end=end, settings=settings)
        one = update_features(whole, settings=settings)
        series = load_market(save_market(market_series(parts, settings=settings), tmp_path / f"{end}.parquet"))
        runs = [update_features(parts, coins=p, settings=settings, market=series) for p in (["bitcoin", "solana"],
                                                                                           ["ethereum"])]
        assert sum(r["computed"] for r in runs) == one["computed"]
        a, b = (s.read(features_group(s)) for s in (whole, parts))
        cols = [c for c in a.columns if c not in ("ingested_at", "updated_at")]
        pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)
    assert series.attrs["start"] is not None  # the second run read only the recent prices
    assert pd.Timestamp(series.attrs["start"]) > whole.read(PRICES)["ts"].min()
    solana = whole.read(features_group(whole), coins=["solana"])["ts"]
    from cryptosentinel.features import WARMUP_BARS
    assert solana.min() == pd.Timestamp("2024-01-22", tz="UTC") + pd.Timedelta(hours=WARMUP_BARS)  # restarted
    whole.close()
    parts.close()


def test_deployments_carry_the_cron_schedules_of_the_settings_in_utc():
    from cryptosentinel.config import Settings
    settings = Settings(_env_file=None, orchestration={"training_cron": "5 3 * * *"})
    got = {d.name: (d.flow_name, [(s.schedule.cron, s.schedule.timezone) for s in d.schedules])
           for d in flows.deployments(settings)}
    assert got == {"features": ("feature_pipeline", [("7,37 * * * *", "UTC")]),
                   "training": ("training_pipeline", [("5 3 * * *", "UTC")]),
                   "inference": ("inference_pipeline", [("12,42 * * * *", "UTC")])}


def test_the_run_command_stops_at_the_first_failed_flow_and_names_its_notebook(env):
    from typer.testing import CliRunner

    from cryptosentinel.cli import app
    result = CliRunner().invoke(app, ["run", "--source", "csv", "--path", str(env / "missing")])
    assert isinstance(result.exception, NotebookError)
    assert "20_ingest" in str(result.exception) and Path(result.exception.notebook_path).is_file()
    assert [r["flow"] for r in records(env / "data")] == ["feature_pipeline"]  # training and inference never started


def test_a_flow_runs_against_a_prefect_server_started_on_loopback(env, tmp_path):
    """The same flow against `prefect server start` (what a deployment with a work pool talks to)."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx
    from prefect.settings import PREFECT_API_URL, temporary_settings
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server_env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-server"),
                  "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false"}
    prefect_cli = Path(sys.executable).with_name("prefect")
    server = subprocess.Popen([str(prefect_cli), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=server_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "prefect server did not start"
            time.sleep(1)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            out = flows.run_flow("feature_pipeline", source="synthetic", start="2024-01-01", end="2024-01-02")
        assert out["state"] == "Completed"
        runs = httpx.post(f"{url}/flow_runs/filter", json={}, timeout=10).json()
        assert [r["state_type"] for r in runs if r["id"].startswith(out["run_id"].rsplit("-", 1)[1])] == ["COMPLETED"]
    finally:
        server.terminate()
        server.wait(timeout=30)
