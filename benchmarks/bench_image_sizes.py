"""Estimated size of each Docker image target, from the installed distributions of its extras (no Docker engine here).

A target's venv holds the dependency closure of the core requirements plus its extra (the Dockerfile's
`uv sync --no-dev --extra X`, less NOT_INSTALLED). Each distribution's size is the sum of the file sizes in its RECORD, as
installed in .venv (`make install`: every extra, the same locked versions), plus the bytecode uv compiles for
its .py files (`UV_COMPILE_BYTECODE=1` in the build stage; measured from .venv's __pycache__ where present,
else estimated from the measured ratio). To that come the files the target copies (app/, nbs/) and the base
image, python:3.11-slim, whose size is stated, not measured (BASE_IMAGE_MB). The result is the uncompressed
size `docker images` would show, to within the base image's estimate and per-file filesystem overhead.

    .venv/bin/python benchmarks/bench_image_sizes.py      # writes reports/bench/image_sizes.json
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import sys
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "cryptosentinel"
# python:3.11-slim (Debian 12, amd64), uncompressed as `docker images` lists it: about 130 MB (Docker Hub shows
# about 45 MB compressed). Stated, not measured: this machine has no Docker engine.
BASE_IMAGE_MB = 130.0
# the Dockerfile's runtime targets: their extra and the project files they copy
TARGETS: dict[str, dict[str, Any]] = {
    "api": {"extra": "api", "copies": ["pyproject.toml", "app/__init__.py", "app/api"]},
    "dashboard": {"extra": "dashboard", "copies": ["pyproject.toml", "app/__init__.py", "app/dashboard"]},
    "worker": {"extra": "pipelines", "copies": ["pyproject.toml", "nbs"]},
}
# `uv sync --no-install-package` in the Dockerfile: xgboost dlopens NCCL only for multi-GPU training
NOT_INSTALLED = ("nvidia-nccl-cu12",)
MB = 1e6


def _requirements(dist: md.Distribution, extras: frozenset[str]) -> list[Requirement]:
    "The requirements of `dist` that apply on this platform with `extras` requested."
    out = []
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
            out.append(req)
    return out


def dependency_closure(extras: list[str] | tuple[str, ...] = (), # the project's extras, e.g. ["api"]
                       project: str = PROJECT,
                       ) -> dict[str, md.Distribution]:
    "Every installed distribution the project needs with `extras` (itself included), by canonical name."
    found: dict[str, md.Distribution] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(project, frozenset(extras))]
    while todo:
        name, wanted = todo.pop()
        key = canonicalize_name(name)
        if (key, wanted) in seen:
            continue
        seen.add((key, wanted))
        try:
            dist = found.get(key) or md.distribution(name)
        except md.PackageNotFoundError as exc:
            raise SystemExit(f"{name} is required but not installed: run `make install` (all extras)") from exc
        found[key] = dist
        todo += [(req.name, frozenset(req.extras)) for req in _requirements(dist, wanted)]
    return found


def _record_sizes(dist: md.Distribution) -> tuple[int, int, int]:
    "Bytes of the files in RECORD, bytes of their compiled bytecode found on disk, and bytes of .py without it."
    files, pyc, py_uncompiled = 0, 0, 0
    for f in dist.files or []:
        size = f.size if f.size is not None else 0
        if not size and not str(f).endswith((".pyc", "RECORD")):
            path = Path(str(f.locate()))
            size = path.stat().st_size if path.is_file() else 0
        files += size
        if f.suffix == ".py":
            cached = Path(importlib.util.cache_from_source(str(f.locate())))
            if cached.is_file():
                pyc += cached.stat().st_size
            else:
                py_uncompiled += size
    return files, pyc, py_uncompiled


def _tree_bytes(path: Path) -> int:
    "Bytes of a file, or of the files under a folder (no caches, no local data)."
    if path.is_file():
        return path.stat().st_size
    skip = {"__pycache__", ".ipynb_checkpoints", "data", "reports", "mlruns", "_scratch"}
    return sum(p.stat().st_size for p in path.rglob("*")
               if p.is_file() and not skip.intersection(p.relative_to(path).parts))


def _project_bytes() -> int:
    "The package as a wheel installs it: its modules (the editable install's RECORD lists only a pointer)."
    return _tree_bytes(ROOT / PROJECT)


def estimate(target: str) -> dict[str, Any]:
    "One target's estimate: distributions, site-packages, bytecode, copied files, base image, and the total."
    spec = TARGETS[target]
    dists = {k: d for k, d in dependency_closure([spec["extra"]]).items() if k not in NOT_INSTALLED}
    sizes, pyc_total, uncompiled_total = {}, 0, 0
    for key, dist in dists.items():
        files, pyc, uncompiled = _record_sizes(dist)
        if key == PROJECT:
            files = _project_bytes()
        sizes[key] = files
        pyc_total += pyc
        uncompiled_total += uncompiled
    site = sum(sizes.values())
    py_compiled = sum(f.size or 0 for d in dists.values() for f in (d.files or []) if f.suffix == ".py") - uncompiled_total
    ratio = pyc_total / py_compiled if py_compiled > 0 else 1.0
    bytecode = pyc_total + ratio * uncompiled_total  # .py without a .pyc here: the measured pyc/py ratio
    copied = sum(_tree_bytes(ROOT / c) for c in spec["copies"])
    total = BASE_IMAGE_MB * MB + site + bytecode + copied
    largest = sorted(sizes.items(), key=lambda kv: -kv[1])[:10]
    return {"target": target, "extra": spec["extra"], "distributions": len(dists), "not_installed": NOT_INSTALLED,
            "site_packages_mb": round(site / MB, 1), "bytecode_mb": round(bytecode / MB, 1),
            "copied_files_mb": round(copied / MB, 2), "base_image_mb": BASE_IMAGE_MB,
            "estimated_image_mb": round(total / MB), "pyc_to_py_ratio": round(ratio, 3),
            "largest_mb": {k: round(v / MB, 1) for k, v in largest}}


def main() -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import machine, write_result

    rows = [estimate(t) for t in TARGETS]
    print(f"{'target':<10} {'extra':<10} {'dists':>5} {'site MB':>8} {'pyc MB':>7} {'files MB':>8} "
          f"{'base MB':>7} {'image MB':>8}")
    for r in rows:
        print(f"{r['target']:<10} {r['extra']:<10} {r['distributions']:>5} {r['site_packages_mb']:>8.1f} "
              f"{r['bytecode_mb']:>7.1f} {r['copied_files_mb']:>8.2f} {r['base_image_mb']:>7.0f} "
              f"{r['estimated_image_mb']:>8}")
        print(f"{'':<10} largest: " + ", ".join(f"{k} {v}" for k, v in list(r["largest_mb"].items())[:6]))
    result = {"method": "dependency closure of core + the target's extra from installed metadata; RECORD file "
                        "sizes + compiled bytecode + copied project files + the stated base image size",
              "base_image": "python:3.11-slim", "targets": {r["target"]: r for r in rows},
              "machine": machine(load_avg=False)}
    write_result("image_sizes", result)
    return result


if __name__ == "__main__":
    main()
