"""Shared pytest fixtures (built on `builders.py`): where ../shared/data is, a clean settings cache per test, an
empty local store; and the rule that every test says its kind (code, data or model)."""

import os
from pathlib import Path

import pytest
from builders import local_store

from cryptosentinel.config import get_settings

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KINDS = ("code", "data", "model")  # the markers pyproject.toml declares for the kind of a test


def pytest_collection_modifyitems(config, items):
    """Refuse a test without a kind: each file sets `pytestmark` (a test may override it with its own mark)."""
    unmarked = [item.nodeid for item in items if not any(item.get_closest_marker(k) for k in KINDS)]
    if unmarked:
        shown = "\n  ".join(unmarked[:20]) + ("\n  ..." if len(unmarked) > 20 else "")
        raise pytest.UsageError(f"{len(unmarked)} test(s) have no kind marker ({', '.join(KINDS)}); give the file "
                                f"a module-level `pytestmark = pytest.mark.<kind>`:\n  {shown}")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data in ../shared/data, read in place. Absent: skip locally, fail in CI."""
    if not SHARED_DATA.is_dir():
        reason = f"../shared/data not found at {SHARED_DATA}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI needs it beside the clone")
        pytest.skip(reason)
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path, monkeypatch):
    """Every test gets its own data directory and freshly read settings."""
    monkeypatch.setenv("CRYPTOSENTINEL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)  # no stray .env from the repo root
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def store(tmp_path):
    """An empty `LocalStore` in the test's own directory (a file may override it, e.g. to run on both backends)."""
    with local_store(tmp_path / "store.sqlite") as s:
        yield s
