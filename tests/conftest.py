"""Shared pytest fixtures: where ../shared/data is, and a clean settings cache per test."""

import os
from pathlib import Path

import pytest

from cryptosentinel.config import get_settings

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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
