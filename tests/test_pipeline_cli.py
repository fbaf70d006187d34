"""The whole job through the command line on simulated data: ingest, features, train, predict, status, evaluate."""

import json

import pytest
from typer.testing import CliRunner

from cryptosentinel.cli import app
from cryptosentinel.config import get_settings

pytestmark = pytest.mark.code

COINS = "bitcoin,ethereum,solana"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """One trained system, shared by the tests of this module (training is the slow part)."""
    data = tmp_path_factory.mktemp("data")
    mp = pytest.MonkeyPatch()
    mp.setenv("CRYPTOSENTINEL_DATA_DIR", str(data))
    mp.setenv("CRYPTOSENTINEL_COINS", COINS)
    get_settings.cache_clear()
    runner = CliRunner()
    outputs = {}
    for args in (["ingest", "--source", "synthetic", "--days", "90"], ["features"], ["train", "--folds", "3"],
                 ["predict"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output, result.exception)
        outputs[args[0]] = result.output
    yield runner, outputs
    mp.undo()
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def _isolated_settings(workspace):
    """Keep the module's data directory (overrides the suite-wide fresh directory per test)."""
    yield


def invoke(runner, *args):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.output


def test_train_names_the_champion_or_says_why_none_was_promoted(workspace):
    _, outputs = workspace
    out = outputs["train"]
    assert "regression:" in out and "classification:" in out
    assert "champion: " in out
    assert ("PROMOTED" in out) or ("not promoted" in out and "does not beat" in out)


def test_predict_prints_a_forecast_per_coin_with_intervals_and_as_of(workspace):
    _, outputs = workspace
    lines = [line for line in outputs["predict"].splitlines() if " 24 h " in line]
    assert sorted(line.split()[0] for line in lines) == sorted(COINS.split(","))
    assert all("80%:" in line and "as of" in line for line in lines)


def test_status_json_has_every_section(workspace):
    runner, _ = workspace
    report = json.loads(invoke(runner, "status", "--json"))
    tables = report["store"]["tables"]
    assert {"prices", "features", "predictions_h24"} <= set(tables)
    assert set(tables["features"]["coins"]) == set(COINS.split(","))
    champion = report["models"]["models"]["24h"]
    assert champion["name"] and champion["version"] >= 1
    assert report["predictions"]["rows"] >= report["predictions"]["validated"] > 0  # the hindcast, validated
    rolling = report["predictions"]["horizons"]["24h"]["rolling"]
    assert 0 < rolling["coverage_80"] <= rolling["coverage_95"] <= 1
    assert {"open", "by_severity"} <= set(report["alerts"])
    assert "last_run" in report["drift"]


def test_evaluate_json_has_the_documented_shape(workspace):
    runner, _ = workspace
    report = json.loads(invoke(runner, "evaluate", "--json"))
    assert report["horizon"] == 24 and report["model"]
    keys = {"mae", "rmse", "mase", "direction_accuracy", "coverage_80", "coverage_95", "dm_pvalue", "n", "baseline"}
    assert keys <= set(report["overall"])
    assert set(report["coins"]) == set(COINS.split(","))
    for block in [report["overall"], *report["coins"].values()]:
        assert keys <= set(block) and block["baseline"]["mae"] > 0


def test_evaluate_a_named_version_and_refuse_a_bad_name(workspace):
    runner, _ = workspace
    report = json.loads(invoke(runner, "evaluate", "--model", "xgb_reg@1", "--json"))
    assert report["model"].startswith("xgb_reg")
    result = runner.invoke(app, ["evaluate", "--model", "nonsense"])
    assert result.exit_code != 0


def test_predict_twice_for_the_same_bar_adds_nothing(workspace):
    runner, _ = workspace
    before = json.loads(invoke(runner, "status", "--json"))["predictions"]["rows"]
    invoke(runner, "predict")
    after = json.loads(invoke(runner, "status", "--json"))["predictions"]["rows"]
    assert after == before
