"""The course report (12a_report, 12b_report_build): built from a real small simulated run (pipeline steps and a
notebook executed by the papermill runner), the experiment table equal to the registry's metrics, and a clear
error for every missing input."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from cryptosentinel.config import Settings
from cryptosentinel.pipelines import ingest_to_store, predict, train, update_features
from cryptosentinel.registry_mlflow import LocalRegistry
from cryptosentinel.report import (
    EXPERIMENT_COLUMNS,
    ReportInputError,
    Section,
    _cell,
    experiment_table,
    latest_notebooks,
    read_outputs,
    to_html,
    to_markdown,
    volatility_table,
)
from cryptosentinel.report_build import build_report, gather_inputs
from cryptosentinel.runner import run_notebook
from cryptosentinel.store_local import LocalStore

pytestmark = pytest.mark.code

COINS = ["bitcoin", "ethereum"]


def _settings(root: Path) -> Settings:
    return Settings(_env_file=None, data_dir=root / "data", reports_dir=root / "reports", coins=COINS, horizons=[24])


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A small real run: simulated prices, features, a two-fold training, a forecast, and the ingest notebook executed
    by the runner into reports/runs/."""
    root = tmp_path_factory.mktemp("report_run")
    settings = _settings(root)
    registry = LocalRegistry.from_settings(settings)
    store = LocalStore(settings.store_path)
    ingest_to_store(store, "synthetic", days=60, settings=settings)
    update_features(store, settings=settings)
    train(store, registry, settings=settings, n_folds=2)
    predict(store, registry, settings=settings)
    run_notebook("20_ingest", {"data_dir": str(settings.data_dir), "coins": COINS, "days": 60},
                 flow="feature_pipeline", run_id="test", settings=settings)
    yield settings, store, registry
    store.close()


@pytest.fixture(scope="module")
def report(real_run):
    settings, store, registry = real_run
    return build_report(settings, store, registry)


@pytest.mark.model
def test_the_report_builds_from_a_real_run_with_the_random_walk_and_figures(real_run, report):
    registry = real_run[2]
    page, md = report.html.read_text(), report.markdown.read_text()
    for title in ("Data and its quality", "EDA findings", "Experiments", "Volatility and interval results",
                  "The best models and why", "Over- and under-fitting", "Explanations", "Regimes", "Drift",
                  "Architecture", "CI/CD and orchestration", "Reliability and speed", "Limitations and future work"):
        assert f"<h2>{title}" in page and f"## {title}" in md
    assert "<td>random_walk</td>" in page and "| random_walk |" in md
    embedded = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert embedded and all(base64.b64decode(e).startswith(b"\x89PNG") for e in embedded)
    assert report.figures and all(f.is_file() and f"report_files/{f.name}" in md for f in report.figures)
    assert len(report.figures) == len(embedded)
    vol = volatility_table(registry)  # volatility models: their table, or the sentence that says they are absent
    assert ("<td>qlike" in page or "qlike</th>" in page) if len(vol) else "not trained in this run" in page


@pytest.mark.model
def test_every_number_in_the_experiment_table_is_the_registry_metric(real_run, report):
    settings, store, registry = real_run
    table = experiment_table(registry)
    assert "random_walk" in set(table["model"])
    md = report.markdown.read_text()
    listed = {(v["name"], v["version"]): v["metrics"] for v in registry.versions()}  # what the registry reports
    for r in table.to_dict("records"):
        stored = listed[(f"{r['model']}_{r['horizon']}h", r["version"])]
        for c in EXPERIMENT_COLUMNS:
            if c in stored and stored[c] is not None:
                assert r[c] == stored[c], (r["model"], c)
            else:
                assert pd.isna(r[c]), (r["model"], c)
        row = "| " + " | ".join(_cell(r[c]) for c in ("task", "model", "version", "kind", "status", *EXPERIMENT_COLUMNS))
        assert row in md  # the rendered row shows those numbers


@pytest.mark.model
def test_a_missing_input_is_a_clear_error(real_run, tmp_path):
    settings, store, registry = real_run
    with pytest.raises(ReportInputError, match="cryptosentinel run"):  # no executed notebooks
        build_report(settings.model_copy(update={"reports_dir": tmp_path / "nothing"}), store, registry,
                     out_dir=tmp_path / "out")
    assert not (tmp_path / "out" / "report.html").exists()
    empty = _settings(tmp_path / "empty")
    with LocalStore(empty.store_path) as bare:
        with pytest.raises(ReportInputError, match="cryptosentinel ingest"):
            gather_inputs(empty, bare, LocalRegistry.from_settings(empty))
        ingest_to_store(bare, "synthetic", days=30, settings=empty)
        with pytest.raises(ReportInputError, match="cryptosentinel train"):
            gather_inputs(empty, bare, LocalRegistry.from_settings(empty))
    with pytest.raises(ReportInputError, match="no random walk"):
        experiment_table(LocalRegistry.from_settings(empty))


def _executed(folder: Path, name: str, text: str = "done") -> Path:
    cell = new_code_cell("x", outputs=[new_output("stream", name="stdout", text=text),
                                       new_output("error", ename="ValueError", evalue="bad", traceback=[])])
    cell.metadata["papermill"] = {"duration": 2.0}
    nb = new_notebook(cells=[new_markdown_cell(f"# {name}\n> summary"), cell])
    nb.metadata["papermill"] = {"duration": 3.5}
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(folder / f"{name}.ipynb"))
    return folder / f"{name}.ipynb"


def test_latest_notebooks_takes_the_newest_day_and_skips_failed_attempts(tmp_path):
    _executed(tmp_path / "runs/training_pipeline/2026-01-01/a", "22_train")
    new = _executed(tmp_path / "runs/training_pipeline/2026-01-03/b", "22_train")
    _executed(tmp_path / "runs/training_pipeline/2026-01-03/b", "22_train.attempt1")
    assert latest_notebooks(tmp_path) == {"22_train": new}
    out = read_outputs(new)
    assert (out.texts, out.errors, out.attempts, out.duration_s, out.cells_s) == (["done"], ["ValueError: bad"], 2,
                                                                                   3.5, 2.0)


def test_renderings_escape_text_and_carry_the_same_table(tmp_path):
    sections = [Section("S").add("p", "<b>").add("table", pd.DataFrame({"m": ["a|b"], "v": [0.123456]}))]
    md, figures = to_markdown("T", sections, tmp_path / "f")
    page = to_html("T", sections)
    assert "| a/b | 0.1235 |" in md and not figures
    assert "&lt;b&gt;" in page and "<td>0.1235</td>" in page
