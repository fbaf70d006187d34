"""The `cryptosentinel` command as a user runs it: real processes, real store, one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.code

CLI = [sys.executable, "-m", "cryptosentinel.cli"]


def run(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=300)


def status() -> dict:
    result = run("status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_synthetic_ingest_then_status_json_has_the_documented_shape():
    result = run("ingest", "--source", "synthetic", "--coins", "bitcoin,ethereum", "--days", "2")
    assert result.returncode == 0, result.stderr
    assert "ingested 96 rows of 2 coins from synthetic" in result.stdout
    report = status()
    prices = report["store"]["tables"]["prices"]
    assert report["store"]["backend"] == "local"
    assert prices["rows"] == 96
    assert set(prices["coins"]) == {"bitcoin", "ethereum"}
    for coin in prices["coins"].values():
        assert coin["rows"] == 48 and coin["first"] < coin["last"]
    assert report["runs"]["ingest"][0]["source"] == "synthetic"


@pytest.mark.shared_data
def test_csv_ingest_of_the_hourly_snapshot_twice_keeps_the_row_counts(shared_data: Path):
    path = str(shared_data / "hourly_binance_spot")
    assert run("ingest", "--source", "csv", "--path", path).returncode == 0
    first = status()["store"]["tables"]["prices"]
    second_run = run("ingest", "--source", "csv", "--path", path)
    assert second_run.returncode == 0, second_run.stderr
    assert "0 new, 0 updated" in second_run.stdout
    second = status()["store"]["tables"]["prices"]
    assert len(first["coins"]) == 8
    assert first == second
    assert first["rows"] == 8 * 23987 + 1  # each file less its partial last candle; ETH has one more row


@pytest.mark.parametrize(("args", "message"), [
    (["ingest", "--source", "csv", "--path", "/no/such/dir"], "does not exist"),
    (["ingest", "--source", "synthetic", "--coins", "notacoin"], "notacoin"),
])
def test_user_mistakes_give_one_line_and_exit_code_2(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert status()["store"]["tables"].get("prices", {"rows": 0})["rows"] == 0  # nothing written


def test_debug_shows_the_traceback_of_a_user_error():
    result = run("--debug", "ingest", "--source", "csv", "--path", "/no/such/dir")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "does not exist" in result.stderr


def test_a_bad_setting_is_named():
    result = run("status", env_extra={"CRYPTOSENTINEL_HORIZONS": "abc"})
    assert result.returncode == 2
    assert "horizons" in result.stderr and "Traceback" not in result.stderr


def test_log_json_writes_json_lines():
    result = run("--log-json", "ingest", "--source", "synthetic", "--coins", "bitcoin", "--days", "1")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert lines and all({"time", "level", "name", "message"} <= set(line) for line in lines)
