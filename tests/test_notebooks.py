"""The notebooks themselves: papermill parameters, exports, no outputs committed."""

import ast
import json
from pathlib import Path

import papermill
import pytest

pytestmark = pytest.mark.code

NBS = Path(__file__).resolve().parents[1] / "nbs"
ALL_NOTEBOOKS = sorted(p for p in NBS.glob("*.ipynb") if not p.name.startswith("_"))
# The step notebooks the flows run (nbs/20_*..29_*): parameterised, never exported.
STEP_NOTEBOOKS = sorted(p.name for p in NBS.glob("2[0-9]_*.ipynb"))
# Notebooks that papermill runs with parameters: the step notebooks and the module notebooks with a parameters cell.
PIPELINE_NOTEBOOKS = ["02_eda.ipynb", "02a_eda_summary.ipynb", "03_features.ipynb", "05_training.ipynb",
                      "08_regimes.ipynb", "09_monitoring.ipynb", *STEP_NOTEBOOKS]


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def parameter_cells(path: Path) -> list[dict]:
    return [c for c in cells(path) if "parameters" in c.get("metadata", {}).get("tags", [])]


@pytest.mark.parametrize("name", PIPELINE_NOTEBOOKS)
def test_pipeline_notebook_has_exactly_one_parameters_cell(name):
    path = NBS / name
    assert path.exists(), f"pipeline notebook {name} is missing"
    found = parameter_cells(path)
    assert len(found) == 1, f"{name} has {len(found)} cells tagged 'parameters'; papermill needs exactly one"
    assert papermill.inspect_notebook(str(path)), f"papermill sees no parameters in {name}"


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cells_hold_literals_only_and_are_not_exported(path):
    for cell in parameter_cells(path):
        source = "".join(cell["source"])
        assert "#| export" not in source, f"{path.name}: the parameters cell must not be exported"
        for node in ast.parse(source).body:
            assert isinstance(node, ast.Assign | ast.AnnAssign), f"{path.name}: only assignments in parameters"
            ast.literal_eval(node.value)  # raises on anything but a literal


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(path):
    for cell in cells(path):
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, (
                f"{path.name} carries outputs: run nbdev-clean (outputs may hold data from ../shared/data)")


def test_the_flows_step_notebooks_exist():
    assert STEP_NOTEBOOKS[:5] == ["20_ingest.ipynb", "21_features.ipynb", "22_train.ipynb", "23_predict.ipynb",
                                  "24_backfill.ipynb"]


@pytest.mark.parametrize("name", PIPELINE_NOTEBOOKS)
def test_papermill_sees_every_name_of_the_parameters_cell(name):
    """papermill's parser reads `name = value  # comment` line by line; a comment holding `=` once hid a name."""
    (cell,) = parameter_cells(NBS / name)
    names = {t.id for node in ast.parse("".join(cell["source"])).body
             for t in (node.targets if isinstance(node, ast.Assign) else [node.target])}
    assert names == set(papermill.inspect_notebook(str(NBS / name)))


@pytest.mark.parametrize("name", STEP_NOTEBOOKS)
def test_papermill_and_nbdev_test_run_the_same_cells_of_the_step_notebooks(name):
    """A step notebook has no cell nbdev-test skips (`#| eval: false`, the `notest` flag, `skip_exec`), so what
    `nbdev-test` checks on the small defaults is what papermill runs in production."""
    import tomllib

    from nbdev.test import nb_test_cells
    flags = tomllib.loads((NBS.parent / "pyproject.toml").read_text())["tool"]["nbdev"].get("tst_flags", "").split()
    path = NBS / name
    by_papermill = [c["id"] for c in cells(path) if c["cell_type"] == "code"]
    by_nbdev_test = [c.id for c in nb_test_cells(path, skip_flags=flags)]
    assert by_nbdev_test == by_papermill


@pytest.mark.parametrize("name", STEP_NOTEBOOKS)
def test_step_notebooks_export_nothing(name):
    for cell in cells(NBS / name):
        source = "".join(cell["source"])
        assert "#| export" not in source and "#| default_exp" not in source, f"{name}: a step notebook is not a module"


@pytest.mark.parametrize("path", [p for p in ALL_NOTEBOOKS if p.name[:2].isdigit() and p.name not in STEP_NOTEBOOKS],
                         ids=lambda p: p.name)
def test_every_numbered_notebook_exports_a_module(path):
    first_code = next(c for c in cells(path) if c["cell_type"] == "code")
    source = "".join(first_code["source"])
    assert source.startswith("#| default_exp "), f"{path.name} should start with '#| default_exp <module>'"
    module = source.split()[2]
    assert (NBS.parent / "cryptosentinel" / f"{module}.py").exists(), f"{module}.py not exported: run nbdev-export"
