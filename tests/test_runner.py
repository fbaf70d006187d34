"""The papermill runner: parameters checked before a kernel starts, executed notebooks kept (also failed ones),
transient failures told apart from deterministic ones."""

import json
import sqlite3

import nbformat
import papermill
import pytest

from cryptosentinel.config import Settings, SourceError, StoreError
from cryptosentinel.runner import (
    NotebookError,
    ParameterError,
    is_transient,
    run_notebook,
    step_settings,
    transient_error,
)
from cryptosentinel.util import RetryableError

pytestmark = pytest.mark.code


def make_notebook(folder, name, body, params="marker = ''"):
    "A tiny notebook: a `parameters` cell, then `body`."
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(folder / f"{name}.ipynb"))
    return folder / f"{name}.ipynb"


@pytest.fixture
def settings(tmp_path):
    return Settings(_env_file=None, data_dir=tmp_path / "data", reports_dir=tmp_path / "reports",
                    orchestration={"notebooks_dir": tmp_path / "nbs", "cell_timeout_s": 60})


def test_a_misspelled_parameter_is_refused_before_any_kernel_starts(settings, monkeypatch):
    def no_kernel(*args, **kwargs):
        raise AssertionError("papermill was called: a kernel would have started")
    monkeypatch.setattr(papermill, "execute_notebook", no_kernel)
    with pytest.raises(ParameterError, match=r"no parameter\(s\) \['dayz'\]; its parameters: \["):
        run_notebook("20_ingest", {"dayz": 3}, flow="t", run_id="r1",
                     settings=settings.model_copy(update={"orchestration": Settings(_env_file=None).orchestration}))
    assert not (settings.reports_dir / "runs").exists()


def test_values_must_be_json(settings):
    make_notebook(settings.orchestration.notebooks_dir, "tiny", "print(marker)")
    with pytest.raises(ParameterError, match="JSON values"):
        run_notebook("tiny", {"marker": object()}, settings=settings)


def test_a_failed_notebook_stays_on_disk_with_its_html_and_the_error_names_it(settings):
    make_notebook(settings.orchestration.notebooks_dir, "30_fail", "x = 1\nraise ValueError('boom ' + marker)")
    with pytest.raises(NotebookError) as info:
        run_notebook("30_fail", {"marker": "here"}, flow="tests", run_id="r1", settings=settings, started="2024-05-01")
    err = info.value
    assert (err.ename, err.evalue, err.transient) == ("ValueError", "boom here", False)
    path = settings.reports_dir.resolve() / "runs/tests/2024-05-01/r1/30_fail.ipynb"
    assert err.notebook_path == str(path) and path.is_file() and path.with_suffix(".html").is_file()
    assert "raise ValueError" in err.source and str(path) in str(err)
    executed = json.loads(path.read_text())
    assert any(o.get("ename") == "ValueError" for c in executed["cells"] for o in c.get("outputs", []))
    assert err.cell_index is not None and "raise ValueError" in "".join(executed["cells"][err.cell_index]["source"])


def test_a_transient_error_in_a_notebook_is_marked_transient_and_a_retry_keeps_the_first_copy(settings):
    make_notebook(settings.orchestration.notebooks_dir, "flaky",
                  "from cryptosentinel.util import RetryableError\nraise RetryableError(503)")
    with pytest.raises(NotebookError) as info:
        run_notebook("flaky", flow="tests", run_id="r2", settings=settings, html=False)
    assert info.value.transient and is_transient(info.value)
    with pytest.raises(NotebookError):
        run_notebook("flaky", flow="tests", run_id="r2", settings=settings, attempt=2, html=False)
    folder = settings.reports_dir.resolve() / "runs/tests"
    assert sorted(p.name for p in folder.rglob("*.ipynb")) == ["flaky.attempt1.ipynb", "flaky.ipynb"]


@pytest.mark.parametrize("ename, evalue, expected", [
    ("RetryableError", "503", True),
    ("ConnectError", "connection refused", True),
    ("SourceError", "CoinGecko /coins/x failed after 6 attempt(s); last status: 429", True),
    ("SourceError", "CSV snapshot /x does not exist", False),
    ("SourceError", "CoinGecko /coins/x answered 404: not found", False),
    ("StoreError", "store /s: cannot start a write: database is locked", True),
    ("OperationalError", "database is locked", True),
    ("StoreError", "unknown feature group 'x'", False),
    ("ValueError", "database is locked", False),
    ("KeyError", "'close'", False),
])
def test_transient_errors_by_name_and_message(ename, evalue, expected):
    assert transient_error(ename, evalue) is expected


def test_transient_exceptions_in_this_process():
    assert is_transient(RetryableError(429)) and is_transient(ConnectionResetError())
    assert is_transient(sqlite3.OperationalError("database is locked"))
    assert is_transient(SourceError("x failed after 3 attempt(s)"))
    assert not is_transient(StoreError("corrupt")) and not is_transient(ZeroDivisionError())


def test_step_settings_keep_the_process_settings_and_take_the_runs_folder_and_coins(tmp_path):
    s = step_settings(str(tmp_path), ["solana"], Settings(_env_file=None, seed=7))
    assert (s.data_dir, s.coins, s.seed) == (tmp_path, ["solana"], 7)
