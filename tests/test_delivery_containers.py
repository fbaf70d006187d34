"""The containers without a Docker engine: everything the Dockerfile and the compose files name exists in the project.

COPY sources exist and pass .dockerignore; commands are real `cryptosentinel` (or `prefect`) subcommands with
real options; health checks ask routes the services have; extras exist in pyproject and provide what each
target imports; every variable is a real setting; `.env.example` is generated from the settings model; and
`.ci/check-delivery` passes here and fails on a broken compose file or Dockerfile.
"""

from __future__ import annotations

import ast
import functools
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from cryptosentinel.config import Settings, env_example, setting_docs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))  # `app/` is beside the package, not installed with it

from bench_image_sizes import NOT_INSTALLED, TARGETS, dependency_closure  # noqa: E402

pytestmark = pytest.mark.code
RUNTIME_TARGETS = {"api": "api", "dashboard": "dashboard", "worker": "pipelines"}  # target -> its extra
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.prod.yml")
POSTGRES_VARIABLES = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}  # the postgres image's own


# ---- reading the Dockerfile ----

def instructions(text: str) -> list[tuple[str, str]]:
    "The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined, comments dropped."
    out, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    "Each named stage's instructions (FROM ... AS name)."
    out: dict[str, list[tuple[str, str]]] = {}
    current = None
    for keyword, args in instructions(text):
        if keyword == "FROM":
            parts = args.split()
            current = parts[-1] if len(parts) >= 3 and parts[-2].upper() == "AS" else None
            out[current or f"_{len(out)}"] = [(keyword, args)]
        elif current is not None:
            out[current].append((keyword, args))
    return out


def parent(stage: str, all_stages: dict[str, list[tuple[str, str]]]) -> str:
    "The image or stage a stage is built FROM."
    return all_stages[stage][0][1].split()[0]


def lineage(stage: str, all_stages: dict[str, list[tuple[str, str]]]) -> list[str]:
    "The stage and the stages it builds on, nearest first."
    chain = [stage]
    while parent(chain[-1], all_stages) in all_stages:
        chain.append(parent(chain[-1], all_stages))
    return chain


def inherited(stage: str, keyword: str, all_stages: dict[str, list[tuple[str, str]]]) -> list[str]:
    "The arguments of every `keyword` instruction of a stage and its ancestors."
    return [a for s in reversed(lineage(stage, all_stages)) for k, a in all_stages[s] if k == keyword]


def env_names(args: str) -> list[str]:
    "The variables an ENV instruction sets (`ENV A=1 B=2`)."
    return re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", args)


def exec_form(args: str) -> list[str]:
    "A JSON-form CMD (or HEALTHCHECK's CMD) as a list."
    return json.loads(args[args.index("["):])


@functools.cache
def dockerfile() -> dict[str, list[tuple[str, str]]]:
    return stages((ROOT / "Dockerfile").read_text())


def copies(stage: str) -> list[tuple[str | None, list[str], str]]:
    "A stage's COPY instructions as (--from stage or None, sources, destination)."
    out = []
    for keyword, args in dockerfile()[stage]:
        if keyword == "COPY":
            words = shlex.split(args)
            source_stage = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
            paths = [w for w in words if not w.startswith("--")]
            out.append((source_stage, paths[:-1], paths[-1]))
    return out


# ---- .dockerignore, with Docker's rules: the last matching pattern wins, `!` re-includes ----

def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    for piece in re.split(r"(\*\*/|\*\*|\*|\?)", pattern.strip("/")):
        parts.append({"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(piece, re.escape(piece)))
    return re.compile("".join(parts) + "(?:/.*)?$")  # a folder's pattern covers what is inside it


def ignored(path: str, rules: list[str]) -> bool:
    "Whether `path` (relative to the context) is left out of the build context by the .dockerignore rules."
    out = False
    for rule in rules:
        negate = rule.startswith("!")
        if _pattern_regex(rule.lstrip("!")).match(path):
            out = not negate
    return out


def dockerignore_rules() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_ignore_rules_follow_docker() -> None:
    rules = ["*", "!app/", "**/__pycache__"]
    assert ignored("tests/test_x.py", rules)
    assert not ignored("app/api/main.py", rules)
    assert ignored("app/api/__pycache__/main.cpython-311.pyc", rules)


# ---- the CLI, the API, the settings ----

@functools.cache
def cli_commands() -> dict[str, set[str]]:
    "The `cryptosentinel` subcommands with their options, from the console script's own Typer app."
    import importlib

    import typer.main
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    module, _, attr = pyproject["project"]["scripts"]["cryptosentinel"].partition(":")
    assert callable(getattr(importlib.import_module(module), attr))
    from cryptosentinel import cli
    group = typer.main.get_command(cli.app)
    return {name: {opt for p in cmd.params for opt in p.opts} for name, cmd in group.commands.items()}  # type: ignore[attr-defined]


def check_command(argv: list[str]) -> None:
    "A `cryptosentinel ...` or `prefect server start ...` command line is one the installed tools accept."
    if argv[0] == "cryptosentinel":
        commands = cli_commands()
        assert argv[1] in commands, f"`cryptosentinel {argv[1]}` is not a command: {sorted(commands)}"
        for word in argv[2:]:
            if word.startswith("--"):
                assert word in commands[argv[1]], f"`cryptosentinel {argv[1]}` has no option {word}"
    elif argv[0] == "prefect":
        assert argv[1:3] == ["server", "start"], argv
        helped = subprocess.run([str(ROOT / ".venv/bin/prefect"), "server", "start", "--help"],
                                capture_output=True, text=True, timeout=120)
        assert helped.returncode == 0, helped.stderr
        for word in argv[3:]:
            if word.startswith("--"):
                assert word in helped.stdout, f"`prefect server start` has no option {word}"
    else:
        raise AssertionError(f"unexpected command {argv}")


@functools.cache
def api_paths() -> set[str]:
    "The API's routes, from its OpenAPI schema."
    from app.api.main import create_app
    return set(create_app(Settings(_env_file=None)).openapi()["paths"])


def _source_text(module: str) -> str:
    import importlib.util
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, module
    return Path(spec.origin).read_text()


@functools.cache
def setting_variables() -> set[str]:
    return {d.env for d in setting_docs()}


def check_variable(name: str, *, service_image: str = "") -> None:
    "A variable named in the Dockerfile or a compose file is one something reads."
    if name.startswith("CRYPTOSENTINEL_"):
        flat = {"CRYPTOSENTINEL_" + f.upper() for f in Settings.model_fields["monitoring"].annotation.model_fields}  # type: ignore[union-attr]
        read_by_app = any(f'"{name}"' in p.read_text() for p in (ROOT / "app").rglob("*.py"))  # the dashboard's API URL
        assert name in setting_variables() or name in flat or read_by_app, f"{name} is not a setting"
    elif name.startswith("PREFECT_"):
        import prefect.settings
        assert hasattr(prefect.settings, name), f"{name} is not a Prefect setting"
    elif name.startswith("POSTGRES_"):
        assert service_image.startswith("postgres:") and name in POSTGRES_VARIABLES, name
    else:
        assert name in {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "MPLBACKEND"} or name.startswith("UV_"), name


def third_party_imports(files: list[Path]) -> set[str]:
    "The top-level modules that Python files or notebooks' code cells import, less the stdlib and the project's."
    found: set[str] = set()
    for path in files:
        if path.suffix == ".ipynb":
            cells = json.loads(path.read_text())["cells"]
            sources = ["\n".join(line for line in "".join(c["source"]).splitlines() if not line.lstrip().startswith(("%", "!")))
                       for c in cells if c["cell_type"] == "code"]
        else:
            sources = [path.read_text()]
        for source in sources:
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Import):
                    found |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"app", "cryptosentinel", "__future__"}


# ---- the Dockerfile ----

def test_runtime_targets_are_slim_non_root_with_volumes_and_health_checks() -> None:
    all_stages = dockerfile()
    for target in RUNTIME_TARGETS:
        assert target in all_stages, f"no target {target}"
        chain = lineage(target, all_stages)
        base = parent(chain[-1], all_stages)
        assert base == "${PYTHON_IMAGE}" and "ARG PYTHON_IMAGE=python:3.11-slim" in (ROOT / "Dockerfile").read_text()
        users = inherited(target, "USER", all_stages)
        assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0", users
        # no uv, pip or compilers in the runtime: only the built venv is copied in
        assert not any(re.search(r"\b(uv|pip|apt-get|gcc)\b", a) for a in inherited(target, "RUN", all_stages))
        volumes = {v for a in inherited(target, "VOLUME", all_stages) for v in json.loads(a)}
        env = dict(re.findall(r"([A-Z_]+)=(\S+)", " ".join(inherited(target, "ENV", all_stages))))
        assert {env["CRYPTOSENTINEL_DATA_DIR"], env["CRYPTOSENTINEL_REPORTS_DIR"]} == volumes == {"/data", "/reports"}
        assert inherited(target, "HEALTHCHECK", all_stages), f"{target} has no HEALTHCHECK"


def test_copy_sources_exist_and_are_in_the_build_context() -> None:
    all_stages, rules = dockerfile(), dockerignore_rules()
    n = 0
    for stage in all_stages:
        for source_stage, sources, _ in copies(stage):
            if source_stage is not None:
                assert source_stage in all_stages, f"COPY --from={source_stage}: no such stage"
                continue
            for source in sources:
                assert (ROOT / source).exists(), f"{stage}: COPY {source}: not in the project"
                assert not ignored(source.rstrip("/"), rules), f"{stage}: COPY {source}: left out by .dockerignore"
                n += 1
    assert n >= 8
    for left_out in (".venv/bin/python", "data/store.sqlite", "reports/bench/x.json", ".git/HEAD", ".mypy_cache/x",
                     "cryptosentinel/__pycache__/config.cpython-311.pyc", "nbs/data/store.sqlite", "tests/test_api.py",
                     ".tools/bin/uv", ".env"):
        assert ignored(left_out, rules), f"{left_out} would be sent to the build"


def test_each_target_installs_only_its_extra_and_the_extra_provides_its_imports() -> None:
    all_stages = dockerfile()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for target, extra in RUNTIME_TARGETS.items():
        venvs = [s for s, srcs, dest in copies(target) if s is not None and dest == "/opt/venv"]
        assert len(venvs) == 1, f"{target} copies one venv"
        runs = inherited(venvs[0], "RUN", all_stages)
        syncs = [r for r in runs if r.startswith("uv sync")]
        assert syncs and all("--frozen" in r and "--no-dev" in r for r in syncs)
        assert {e for r in syncs for e in re.findall(r"--extra (\S+)", r)} == {extra}
        assert extra in extras
        skipped = {p for r in syncs for p in re.findall(r"--no-install-package (\S+)", r)}
        assert skipped == set(NOT_INSTALLED) and TARGETS[target]["extra"] == extra  # the size benchmark agrees
        # the modules the target's code imports come with core + its extra
        copied = [ROOT / src for s, srcs, _ in copies(target) if s is None for src in srcs]
        files = [f for c in copied for f in ([c] if c.is_file() else sorted(c.rglob("*.py")) + sorted(c.glob("2*.ipynb")))]
        if target == "worker":  # the flows and the runner the scheduled pipelines run in
            files += [ROOT / "cryptosentinel" / "flows.py", ROOT / "cryptosentinel" / "runner.py"]
        import importlib.metadata as md
        provided = md.packages_distributions()
        closure = dependency_closure([extra])
        for module in third_party_imports(files):
            dists = {d.lower().replace("_", "-") for d in provided.get(module, [])}
            assert dists & set(closure), f"{target} imports {module}, which core + [{extra}] does not install"


def test_dockerfile_commands_health_checks_and_variables_are_real() -> None:
    all_stages = dockerfile()
    for target in RUNTIME_TARGETS:
        check_command(exec_form(inherited(target, "CMD", all_stages)[-1]))
        for args in inherited(target, "ENV", all_stages):
            for name in env_names(args):
                check_variable(name)
        probe = exec_form(inherited(target, "HEALTHCHECK", all_stages)[-1])
        assert probe[:2] == ["python", "-c"]
        compile(probe[2], f"{target} HEALTHCHECK", "exec")
        paths = re.findall(r"'(?:https?://[^/']+)?(/[\w/.-]+)'", probe[2])
        assert len(paths) == 1, probe
        if target == "api":
            assert paths[0] in api_paths() and "/ready" in api_paths()
        elif target == "dashboard":
            assert paths[0].lstrip("/") in _source_text("streamlit.web.server.starlette.starlette_routes")
        else:  # PREFECT_API_URL + /health: Prefect's API answers /health
            assert paths[0] == "/health" and 'health_check_path: str = "/health"' in _source_text("prefect.server.api.server")
    for target, stage in (("api", "api"), ("dashboard", "dashboard")):
        entry = ROOT / "app" / stage / "main.py"
        assert any(dest.rstrip("/") == f"app/{stage}" for s, _, dest in copies(target) if s is None) and entry.is_file()
    worker_nbs = [src for s, srcs, _ in copies("worker") if s is None for src in srcs]
    assert "nbs/" in worker_nbs
    flows = (ROOT / "cryptosentinel" / "flows.py").read_text()
    for notebook in set(re.findall(r'"(2\d_\w+)"', flows)):
        assert (ROOT / "nbs" / f"{notebook}.ipynb").is_file(), notebook


# ---- the compose files ----

@functools.cache
def compose(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / name).read_text())


def test_compose_services_build_real_targets_and_run_real_commands() -> None:
    base, stage_names = compose("docker-compose.yml"), set(dockerfile())
    services = base["services"]
    assert {"api", "dashboard", "prefect-server", "postgres", "worker"} <= set(services)
    for name, svc in services.items():
        if "build" in svc:
            assert svc["build"]["target"] in RUNTIME_TARGETS and svc["build"]["target"] in stage_names
            assert (ROOT / svc["build"]["context"] / "Dockerfile").is_file()
        if "command" in svc:
            check_command(svc["command"])
        for other in svc.get("depends_on", {}):
            assert other in services, f"{name} depends on {other}: no such service"
        for variable in svc.get("environment", {}):
            check_variable(variable, service_image=svc.get("image", ""))
        for mount in svc.get("volumes", []):
            volume, target = mount.split(":")[:2]
            assert volume in base["volumes"], f"{name}: volume {volume} is not declared"
            if volume in {"data", "reports"}:
                assert target == f"/{volume}"
        for env_file in svc.get("env_file", []):
            assert env_file["path"] == ".env" and (ROOT / ".env.example").is_file()
    # the worker and the API share the data and reports volumes; the worker reaches the Prefect server
    for svc in ("api", "worker"):
        assert {"data:/data", "reports:/reports"} <= set(services[svc]["volumes"])
    server = services["prefect-server"]
    port = server["command"][server["command"].index("--port") + 1]
    assert services["worker"]["environment"]["PREFECT_API_URL"] == f"http://prefect-server:{port}/api"
    assert 'app.mount("/api", app=api_app' in _source_text("prefect.server.api.server")
    assert server["healthcheck"]["test"][-1].count(f":{port}/api/health") == 1
    assert services["worker"]["command"] == ["cryptosentinel", "schedule"]
    assert services["dashboard"]["environment"]["CRYPTOSENTINEL_API_URL"] == "http://api:8000"
    assert "8000:8000" in services["api"]["ports"] and "8501:8501" in services["dashboard"]["ports"]
    assert "postgresql+asyncpg://" in server["environment"]["PREFECT_SERVER_DATABASE_CONNECTION_URL"]


def test_production_override_limits_restarts_and_rotates_logs() -> None:
    base, prod = compose("docker-compose.yml")["services"], compose("docker-compose.prod.yml")["services"]
    assert set(prod) == set(base)
    for name, svc in prod.items():
        assert svc["restart"] == "unless-stopped", name
        assert svc["logging"]["driver"] == "json-file" and {"max-size", "max-file"} <= set(svc["logging"]["options"])
        limits = svc["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) > 0 and re.fullmatch(r"\d+[mg]", limits["memory"]), name
        for variable in svc.get("environment", {}):
            check_variable(variable, service_image=base[name].get("image", ""))


# ---- .env.example and the checks ----

def test_env_example_is_generated_from_the_settings() -> None:
    text = (ROOT / ".env.example").read_text()
    assert text == env_example(), "run: .venv/bin/python -c \"from cryptosentinel.config import env_example; " \
                                  "open('.env.example', 'w').write(env_example())\""
    named = set(re.findall(r"^# (CRYPTOSENTINEL_\w+|HOPSWORKS_\w+)=", text, flags=re.M))
    assert named == setting_variables() and len(named) > 70


@pytest.mark.slow
def test_check_delivery_passes_on_the_project() -> None:
    done = subprocess.run(["bash", str(ROOT / ".ci" / "check-delivery")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hadolint Dockerfile" in done.stdout and "compose specification" in done.stdout


def _copy_delivery_files(folder: Path) -> None:
    for name in ("Dockerfile", *COMPOSE_FILES):
        shutil.copy(ROOT / name, folder / name)


@pytest.mark.slow
def test_check_delivery_fails_on_a_broken_compose_file(tmp_path: Path) -> None:
    _copy_delivery_files(tmp_path)
    broken = compose("docker-compose.yml") | {}
    broken["services"] = dict(broken["services"], api=dict(broken["services"]["api"], ports="8000:8000 and 8001"))
    broken["services"]["worker"] = dict(broken["services"]["worker"], restart_policy="always")  # not a compose key
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump(broken))
    done = subprocess.run(["bash", str(ROOT / ".ci" / "check-delivery"), str(tmp_path)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0
    assert "docker-compose.yml" in done.stdout + done.stderr


@pytest.mark.slow
def test_check_delivery_fails_on_a_dockerfile_hadolint_refuses(tmp_path: Path) -> None:
    _copy_delivery_files(tmp_path)
    text = (tmp_path / "Dockerfile").read_text()
    (tmp_path / "Dockerfile").write_text(text.replace("FROM runtime AS api\n",
                                                      "FROM runtime AS api\nRUN apt-get install curl\n"))
    done = subprocess.run(["bash", str(ROOT / ".ci" / "check-delivery"), str(tmp_path)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0 and "DL3008" in done.stdout + done.stderr
