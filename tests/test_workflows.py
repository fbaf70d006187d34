"""The GitHub Actions workflows, checked without GitHub: they parse; everything they call exists (make targets,
scripts and files, `cryptosentinel` commands, the flows and names imported in `python -c`); actions are pinned
by commit; every job has a time-out; permissions are least; the schedules are the settings' default crons;
CRYPTOSENTINEL_* variables are real settings; no `${{ }}` expression is pasted into a shell script.
(`make delivery` runs actionlint and the GitHub workflow schema over the same files.)"""

import importlib
import re
import subprocess
from pathlib import Path

import pytest
import typer
import yaml
from pydantic import AliasChoices, BaseModel

from cryptosentinel.config import MonitoringSettings, OrchestrationSettings, Settings

pytestmark = pytest.mark.code

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
NAMES = ("ci", "feature-pipeline", "training-pipeline", "docker-build", "deploy")
# CRYPTOSENTINEL_* variables that are not settings, and the file that documents where they are read
NOT_SETTINGS = {"CRYPTOSENTINEL_GITHUB_TOKEN": "nbs/09a_notify.ipynb"}  # the token of notify.repository_dispatch
# the write permissions a job may ask for (never the whole workflow)
JOB_WRITES = {("docker-build", "image"): {"packages"}, ("feature-pipeline", "pipelines"): {"contents"}}
PINNED = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<action>[\w.-]+/[\w./-]+)@(?P<ref>\S+)(?P<rest>.*)$")


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / f"{name}.yml").read_text())


def triggers(wf: dict) -> dict:
    "The `on:` mapping (YAML 1.1 reads the bare key `on` as True)."
    on = wf.get("on", wf.get(True))
    return {on: None} if isinstance(on, str) else dict(on)


def steps(wf: dict):
    for job_id, job in wf["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, step


def scripts(wf: dict) -> list[str]:
    return [step["run"] for _, step in steps(wf) if "run" in step]


def all_workflows() -> dict[str, dict]:
    return {name: load(name) for name in NAMES}


def test_the_workflows_exist_and_parse():
    found = sorted(p.stem for p in WORKFLOWS.glob("*.y*ml"))
    assert found == sorted(NAMES)
    for name, wf in all_workflows().items():
        assert wf["name"] == name and triggers(wf) and wf["jobs"], name


def test_every_job_has_a_time_out():
    for name, wf in all_workflows().items():
        for job_id, job in wf["jobs"].items():
            assert isinstance(job.get("timeout-minutes"), int) and 0 < job["timeout-minutes"] <= 180, (name, job_id)


def test_permissions_are_least():
    for name, wf in all_workflows().items():
        top = wf.get("permissions")
        assert isinstance(top, dict) and top, f"{name}: set top-level permissions"
        assert all(v in ("read", "none") for v in top.values()), f"{name}: write access only on the job needing it"
        for job_id, job in wf["jobs"].items():
            writes = {k for k, v in (job.get("permissions") or {}).items() if v == "write"}
            assert writes == JOB_WRITES.get((name, job_id), set()), (name, job_id, writes)


def test_actions_are_pinned_to_a_commit_with_their_release():
    versions: dict[tuple[str, str], str] = {}
    for name in NAMES:
        for line in (WORKFLOWS / f"{name}.yml").read_text().splitlines():
            m = PINNED.match(line)
            if not m:
                continue
            assert re.fullmatch(r"[0-9a-f]{40}", m["ref"]), f"{name}: {m['action']} is not pinned by commit: {line}"
            release = re.fullmatch(r"\s+# (v\d+\.\d+\.\d+)", m["rest"])
            assert release, f"{name}: say the release of the pinned commit (`# vX.Y.Z`): {line}"
            known = versions.setdefault((m["action"], m["ref"]), release[1])
            assert known == release[1], f"{m['action']}@{m['ref']} is called both {known} and {release[1]}"
    pins = {action for action, _ in versions}
    assert {"actions/checkout", "actions/upload-artifact", "astral-sh/setup-uv", "docker/build-push-action"} <= pins
    assert len({action for action, _ in versions}) == len(versions), "one commit per action across the workflows"
    every_uses = [step["uses"] for wf in all_workflows().values() for _, step in steps(wf) if "uses" in step]
    assert len(every_uses) == sum(
        1 for n in NAMES for line in (WORKFLOWS / f"{n}.yml").read_text().splitlines() if PINNED.match(line))


def test_checkouts_keep_no_credentials():
    for name, wf in all_workflows().items():
        for job_id, step in steps(wf):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False, (name, job_id)


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return {m[1] for m in re.finditer(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.M)}


def test_every_make_target_called_exists():
    targets = makefile_targets()
    called = {t for wf in all_workflows().values() for s in scripts(wf)
              for m in re.finditer(r"\bmake((?:\s+[a-z][\w-]*)+)", s) for t in m[1].split()}
    assert called, "no make target found: the pattern is stale"
    assert called <= targets, f"missing Makefile targets: {sorted(called - targets)}"
    ci = {t for s in scripts(load("ci")) for m in re.finditer(r"\bmake((?:\s+[a-z][\w-]*)+)", s) for t in m[1].split()}
    assert {"lint", "typecheck", "nbcheck", "nbtest", "mltest", "realdata", "audit", "delivery"} <= ci


def test_every_script_and_file_named_exists():
    named = set()
    for name in NAMES:
        wf = load(name)
        text = "\n".join(scripts(wf))
        named |= set(re.findall(r"(?<![\w/.-])((?:\.ci|scripts|benchmarks|docs|app|nbs)/[\w./-]*\w)", text))
        named |= set(re.findall(r"(?<![\w/.-])(docker-compose[\w.-]*\.ya?ml|Dockerfile)\b", text))
        for _, step in steps(wf):
            for key in ("file", "cache-dependency-glob"):
                value = step.get("with", {}).get(key)
                if value:
                    named.add(value.removeprefix("main/"))  # real-data checks the project out into main/
    # the dashboard's entry file that deploy.yml names for Streamlit Community Cloud
    named |= set(re.findall(r"app/[\w/]+\.py", (WORKFLOWS / "deploy.yml").read_text()))
    assert {"uv.lock", "Dockerfile", "docker-compose.yml", "app/dashboard/main.py"} <= named
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"named by a workflow but not in the repository: {missing}"


def test_every_cryptosentinel_command_exists():
    from cryptosentinel.cli import app
    commands = set(typer.main.get_command(app).commands)
    called = {m[1] for wf in all_workflows().values() for s in scripts(wf)
              for m in re.finditer(r"(?:^|[\s/])cryptosentinel\s+([a-z][\w-]*)", s)}
    assert called and called <= commands, f"not a `cryptosentinel` command: {sorted(called - commands)}"


def test_the_python_snippets_name_real_code():
    text = "\n".join(s for wf in all_workflows().values() for s in scripts(wf))
    snippets = re.findall(r"python -c '([^']*)'", text)
    assert len(snippets) >= 2  # the failure notices of the two pipeline workflows
    for code in snippets:
        compile(code, "python -c", "exec")  # a SyntaxError names the snippet
    imports = re.findall(r"from (cryptosentinel[\w.]*) import ([\w, ]+)", text)
    assert imports
    for module, names in imports:
        mod = importlib.import_module(module)
        for attr in (n.strip() for n in names.split(",")):
            assert hasattr(mod, attr), f"{module} has no {attr}"


def test_the_pipeline_workflows_run_real_flows():
    from cryptosentinel.flows import PIPELINES
    text = "\n".join(s for wf in all_workflows().values() for s in scripts(wf))
    named = {f for m in re.findall(r"cryptosentinel run --flows ([\w,]+)", text) for f in m.split(",")}
    assert named == set(PIPELINES)  # each pipeline workflow runs its flows, and only real ones


def test_the_schedules_are_the_settings_default_crons():
    default = {f: OrchestrationSettings.model_fields[f].default
               for f in ("features_cron", "inference_cron", "training_cron")}
    expected = {"feature-pipeline": {default["features_cron"], default["inference_cron"]},
                "training-pipeline": {default["training_cron"]}}
    for name, crons in expected.items():
        wf = load(name)
        on = triggers(wf)
        assert {s["cron"] for s in on["schedule"]} == crons, name
        assert "workflow_dispatch" in on, name
        if len(crons) > 1:  # the steps pick their flow by the cron that started the run
            conditions = " ".join(str(step.get("if", "")) for _, step in steps(wf))
            for cron in crons:
                assert f"github.event.schedule == '{cron}'" in conditions, f"{name}: no step runs on {cron!r}"
    assert triggers(load("training-pipeline"))["repository_dispatch"] == {"types": ["retrain"]}


def is_setting(name: str) -> bool:
    "Whether pydantic-settings reads this CRYPTOSENTINEL_* variable into `Settings`."
    fields = Settings.model_fields
    aliases = {a.upper() for f in fields.values() if isinstance(f.validation_alias, AliasChoices)
               for a in f.validation_alias.choices if isinstance(a, str)}
    key = name.removeprefix("CRYPTOSENTINEL_").lower()
    if name in aliases or key in fields or key in MonitoringSettings.model_fields:  # flat monitoring names too
        return True
    outer, _, inner = key.partition("__")
    nested = fields[outer].annotation if outer in fields else None
    return isinstance(nested, type) and issubclass(nested, BaseModel) and inner in nested.model_fields


def test_is_setting():
    assert is_setting("CRYPTOSENTINEL_COINGECKO_API_KEY") and is_setting("CRYPTOSENTINEL_ORCHESTRATION__RETRIES")
    assert is_setting("CRYPTOSENTINEL_WEBHOOK_RETRIES")  # a flat monitoring name
    assert not is_setting("CRYPTOSENTINEL_COINGECKO_KEY") and not is_setting("CRYPTOSENTINEL_ORCHESTRATION__NOPE")


def test_the_environment_names_real_settings():
    names = set()
    for wf in all_workflows().values():
        envs = [wf.get("env") or {}] + [job.get("env") or {} for job in wf["jobs"].values()]
        envs += [step.get("env") or {} for _, step in steps(wf)]
        names |= {k for env in envs for k in env if k.startswith("CRYPTOSENTINEL_")}
        names |= {m for s in scripts(wf) for m in re.findall(r"CRYPTOSENTINEL_[A-Z0-9_]+", s)}
    unknown = sorted(n for n in names if not is_setting(n) and n not in NOT_SETTINGS)
    assert not unknown, f"not settings in cryptosentinel/config.py: {unknown}"
    for name, where in NOT_SETTINGS.items():
        assert name in (ROOT / where).read_text(), f"{name} is not documented in {where}"


def test_the_pipelines_take_secrets_keep_their_outputs_and_report_failures():
    for name in ("feature-pipeline", "training-pipeline"):
        wf = load(name)
        [job] = wf["jobs"].values()
        for var, secret in (("CRYPTOSENTINEL_COINGECKO_API_KEY", "COINGECKO_API_KEY"),
                            ("CRYPTOSENTINEL_HOPSWORKS_API_KEY", "HOPSWORKS_API_KEY"),
                            ("CRYPTOSENTINEL_DISCORD_WEBHOOK_URL", "DISCORD_WEBHOOK_URL"),
                            ("CRYPTOSENTINEL_SLACK_WEBHOOK_URL", "SLACK_WEBHOOK_URL")):
            assert job["env"][var] == f"${{{{ secrets.{secret} }}}}", (name, var)
        upload = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
        assert len(upload) == 1 and upload[0]["if"] == "always()", name
        assert "reports/runs/" in upload[0]["with"]["path"] and "reports/report.html" in upload[0]["with"]["path"]
        notify = job["steps"][-1]
        assert notify["if"].startswith("failure()") and "notify_failure" in notify["run"], name


def test_no_expression_is_pasted_into_a_script():
    """Values reach scripts through `env:` (a crafted branch name or payload cannot become shell code)."""
    for name, wf in all_workflows().items():
        for job_id, script in ((j, s["run"]) for j, s in steps(wf) if "run" in s):
            assert "${{" not in script, (name, job_id, script)


def test_every_script_is_valid_bash():
    for name, wf in all_workflows().items():
        for job_id, script in ((j, s["run"]) for j, s in steps(wf) if "run" in s):
            out = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
            assert out.returncode == 0, f"{name}/{job_id}: {out.stderr}\n{script}"


def test_deploy_pulls_the_images_docker_build_pushes():
    """deploy.yml sets IMAGE_PREFIX (ghcr.io/<owner>/<repo>) and IMAGE_TAG (the release's version) on the host:
    the compose files must name the images of the three targets with them, as docker-build.yml tags them."""
    build = load("docker-build")
    [job] = build["jobs"].values()
    targets = job["strategy"]["matrix"]["target"]
    meta = next(s for s in job["steps"] if s.get("id") == "meta")
    assert meta["with"]["images"] == "ghcr.io/${{ github.repository }}-${{ matrix.target }}"
    assert "export IMAGE_PREFIX=" in " ".join(scripts(load("deploy"))) and "IMAGE_TAG=" in " ".join(scripts(load("deploy")))
    images = {s.get("image", "") for f in ("docker-compose.yml", "docker-compose.prod.yml")
              for s in (yaml.safe_load((ROOT / f).read_text()).get("services") or {}).values()}
    for target in targets:
        assert any(re.fullmatch(rf"\$\{{IMAGE_PREFIX(:-[\w./-]+)?\}}-{target}:\$\{{IMAGE_TAG(:-[\w.-]+)?\}}", i)
                   for i in images), f"no compose image ${{IMAGE_PREFIX}}-{target}:${{IMAGE_TAG}} (found {sorted(images)})"
