"""The notebooks themselves: papermill parameters, exports, no outputs committed."""

import ast
import json
from pathlib import Path

import papermill
import pytest

pytestmark = pytest.mark.code

NBS = Path(__file__).resolve().parents[1] / "nbs"
ALL_NOTEBOOKS = sorted(p for p in NBS.glob("*.ipynb") if not p.name.startswith("_"))
# Notebooks that papermill runs as pipeline steps.
PIPELINE_NOTEBOOKS = ["01c_sources.ipynb", "02_eda.ipynb", "02a_eda_summary.ipynb", "03_features.ipynb",
                      "05_training.ipynb", "08_regimes.ipynb", "09_monitoring.ipynb"]


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


@pytest.mark.parametrize("path", [p for p in ALL_NOTEBOOKS if p.name[:2].isdigit()], ids=lambda p: p.name)
def test_every_numbered_notebook_exports_a_module(path):
    first_code = next(c for c in cells(path) if c["cell_type"] == "code")
    source = "".join(first_code["source"])
    assert source.startswith("#| default_exp "), f"{path.name} should start with '#| default_exp <module>'"
    module = source.split()[2]
    assert (NBS.parent / "cryptosentinel" / f"{module}.py").exists(), f"{module}.py not exported: run nbdev-export"
