"""The house rules, read from the code: imports run one way in notebook order, modules stay short."""

import ast
import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.code

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 700


def notebook_order() -> dict[str, tuple[int, str]]:
    "module name -> (position of its notebook in file-name order, notebook name)."
    order = {}
    for i, nb in enumerate(sorted((ROOT / "nbs").glob("[0-9]*.ipynb"))):
        for cell in json.loads(nb.read_text())["cells"]:
            found = re.search(r"#\|\s*default_exp\s+(\S+)", "".join(cell["source"]))
            if found:
                order[found.group(1)] = (i, nb.name)
                break
    return order


def package_imports(path: Path) -> set[str]:
    "Modules of the package a generated module imports, at the top or inside functions."
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(a.name for a in node.names)
            elif node.module and node.module.startswith("cryptosentinel."):
                found.add(node.module.split(".")[1])
            elif node.module == "cryptosentinel":
                found.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("cryptosentinel."))
    return found


ORDER = notebook_order()


@pytest.mark.parametrize("module", sorted(ORDER))
def test_a_module_imports_only_modules_of_earlier_notebooks(module):
    position, notebook = ORDER[module]
    later = sorted(m for m in package_imports(ROOT / "cryptosentinel" / f"{module}.py")
                   if m in ORDER and ORDER[m][0] >= position and m != module)
    assert not later, f"{module} ({notebook}) imports {later}, exported from later notebooks: " \
                      f"{[ORDER[m][1] for m in later]}"


@pytest.mark.parametrize("module", sorted(ORDER))
def test_no_exported_module_is_longer_than_700_lines(module):
    lines = (ROOT / "cryptosentinel" / f"{module}.py").read_text().count("\n")
    assert lines <= MAX_LINES, f"{module}.py has {lines} lines: take a seam into a letter-suffixed notebook"


def test_every_generated_module_has_a_notebook():
    generated = {p.stem for p in (ROOT / "cryptosentinel").glob("*.py")} - {"__init__", "_modidx"}
    assert generated <= set(ORDER), f"modules without a notebook (stale files?): {sorted(generated - set(ORDER))}"
