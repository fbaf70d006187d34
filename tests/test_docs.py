"""The documentation against the code: the generated parts are up to date, every command and make target it names
exists, every relative link and image resolves, and every setting and module is listed."""

import importlib.util
import json
import re
from pathlib import Path

import pytest
import typer

from cryptosentinel.cli import app as cli_app
from cryptosentinel.config import setting_docs

pytestmark = pytest.mark.code

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "docs" / "gen_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_docs = load_generator()


def code_snippets(text: str) -> list[str]:
    "The fenced code blocks and the inline code spans of a markdown text."
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)
    rest = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    return fenced + re.findall(r"`([^`\n]+)`", rest)


# where a shell command starts: a line (after variable assignments such as `PYTHON=... `), or after `&&`, `;`, `|`
COMMAND_START = r"(?:^[ \t]*(?:[A-Z_]+=\S+[ \t]+)*|[;&|][ \t]*)"


def commands_named(text: str) -> set[str]:
    "`cryptosentinel <command>` in the code of a markdown text (global options before the command skipped)."
    found = set()
    for snippet in code_snippets(text):
        found |= set(re.findall(rf"{COMMAND_START}(?:\S*/)?cryptosentinel(?:[ \t]+--[a-z-]+)*[ \t]+([a-z][a-z-]*)",
                                snippet, re.M))
    return found


def make_targets_named(text: str) -> set[str]:
    "`make <target>` in the code of a markdown text."
    found = set()
    for snippet in code_snippets(text):
        found |= set(re.findall(rf"{COMMAND_START}make[ \t]+([a-z][a-z-]*)", snippet, re.M))
    return found


def cli_commands() -> set[str]:
    return set(typer.main.get_command(cli_app).commands)


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*)\s*:(?!=)", (ROOT / "Makefile").read_text(), re.M))


def test_the_scanners_find_commands_and_targets_in_code_only():
    text = ("The cryptosentinel package and make sense.\n```sh\n.venv/bin/cryptosentinel --log-json ingest --days 3\n"
            "make run   # then\nPYTHON=/usr/bin/python3 make test\ngit clone URL cryptosentinel && cd cryptosentinel\n"
            "prefect work-pool create cryptosentinel --type process\n```\nand `cryptosentinel status --json`, "
            "`from cryptosentinel.flows import deploy`, `make`, `cd x && make lab`")
    assert commands_named(text) == {"ingest", "status"}
    assert make_targets_named(text) == {"run", "test", "lab"}
    assert {"ingest", "rollback", "schedule"} <= cli_commands()
    assert {"run", "test", "readme", "docs"} <= makefile_targets()


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_command_and_make_target_named_exists(doc):
    text = doc.read_text(encoding="utf-8")
    unknown_commands = sorted(commands_named(text) - cli_commands())
    unknown_targets = sorted(make_targets_named(text) - makefile_targets())
    assert not unknown_commands, f"{doc.name} names cryptosentinel commands that do not exist: {unknown_commands}"
    assert not unknown_targets, f"{doc.name} names make targets the Makefile does not have: {unknown_targets}"


def github_anchor(heading: str) -> str:
    "The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    return ({github_anchor(h) for h in re.findall(r"^#{1,6}\s+(.+)$", text, re.M)}
            | set(re.findall(r'<a id="([^"]+)"', text)))


def test_github_anchor():
    assert github_anchor("5. Scheduled pipelines") == "5-scheduled-pipelines"
    assert github_anchor("`GET /api/v1/coins`") == "get-apiv1coins"
    assert github_anchor("When a pipeline fails") == "when-a-pipeline-fails"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_and_image_exists(doc):
    text = re.sub(r"^```[^\n]*\n.*?^```", "", doc.read_text(encoding="utf-8"), flags=re.S | re.M)
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text) + re.findall(r'(?:src|href)="([^"]+)"', text)
    broken = []
    for target in targets:
        if re.match(r"[a-z]+:", target):  # http(s), mailto
            continue
        path, _, fragment = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(f"{target} (no heading #{fragment} in {file.name})")
    assert not broken, f"{doc.name} has broken links: {broken}"


def test_the_readme_lists_every_setting():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", readme, re.M))
    missing = [d.env for d in setting_docs() if d.env not in rows]
    assert not missing, f"README.md's settings table misses {missing}: run `make docs`"


def test_the_generated_docs_are_up_to_date():
    stale = [p.relative_to(ROOT).as_posix() for p, text in gen_docs.expected().items()
             if p.read_text(encoding="utf-8") != text]
    assert not stale, f"{stale} differ from what docs/gen_docs.py writes: run `make docs`"


def test_the_readme_is_the_index_notebook():
    nb = json.loads((ROOT / "nbs" / "index.ipynb").read_text(encoding="utf-8"))
    md = ["\n".join("".join(c["source"]).splitlines()) for c in nb["cells"] if c["cell_type"] == "markdown"]
    assert (ROOT / "README.md").read_text(encoding="utf-8") == "\n\n".join(md) + "\n", \
        "README.md is not made from nbs/index.ipynb: run `make readme`"


def test_the_module_map_names_every_module():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    modules = sorted(p.name for p in (ROOT / "cryptosentinel").glob("*.py") if p.stem not in ("_modidx", "__init__"))
    missing = [m for m in modules if f"`cryptosentinel/{m}`" not in text]
    assert not missing, f"docs/architecture.md's module map misses {missing}: run `make docs`"


def test_the_api_reference_documents_every_route():
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    schema = gen_docs.openapi_schema()
    missing = [f"{m.upper()} {p}" for p, ops in schema["paths"].items() for m in ops
               if f"### `{m.upper()} {p}`" not in text]
    assert not missing, f"docs/api.md misses {missing}: run `make docs`"
    assert "/api/v1/bench" not in text  # benchmark-only routes are not part of the service


def test_the_generator_refuses_a_file_without_its_markers(tmp_path):
    path = tmp_path / "x.md"
    path.write_text("no markers here\n")
    gen_docs.ROOT = tmp_path  # messages name the file relative to the root
    try:
        with pytest.raises(gen_docs.DocsError, match="module-map"):
            gen_docs.replace_block(path.read_text(), "module-map", "table", path)
    finally:
        gen_docs.ROOT = ROOT
    marked = "a\n<!-- begin: module-map (generated) -->\nold\n<!-- end: module-map -->\nb\n"
    assert gen_docs.replace_block(marked, "module-map", "new", path) == \
        "a\n<!-- begin: module-map (generated) -->\n\nnew\n\n<!-- end: module-map -->\nb\n"


# --- the curl calls of the README and the API reference, sent to the app on a trained simulated store

def curl_calls(text: str) -> list[str]:
    "Every `curl` command in the fenced code of a markdown text, continuation lines joined."
    calls = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("curl "):
                calls.append(line)
    return calls


def as_request(call: str, admin_key: str, upload: bytes) -> dict:
    "A curl command line as TestClient.request arguments."
    import shlex
    words = shlex.split(call.replace("$CRYPTOSENTINEL_API__ADMIN_API_KEY", admin_key))[1:]
    out: dict = {"method": "GET", "headers": {}}
    files, data = {}, {}
    while words:
        word = words.pop(0)
        if word == "-X":
            out["method"] = words.pop(0)
        elif word == "-H":
            name, _, value = words.pop(0).partition(":")
            out["headers"][name.strip()] = value.strip()
        elif word == "-d":
            out["content"] = words.pop(0)
            out["method"] = out["method"] if out["method"] != "GET" else "POST"
        elif word == "-F":
            name, _, value = words.pop(0).partition("=")
            if value.startswith("@"):
                files[name] = (value[1:], upload, "text/csv")
            else:
                data[name] = value
        elif word.startswith("-"):
            continue  # -s, -fsS: output options
        else:
            out["url"] = re.sub(r"^https?://[^/]+", "", word)
    if files:
        out |= {"files": files, "data": data}
    return out


def test_as_request_reads_curl():
    got = as_request("curl -s -X POST -H 'Content-Type: application/json' -d '{\"coin\": \"bitcoin\"}' "
                     "'http://127.0.0.1:8000/api/v1/predict?x=1'", "k", b"")
    assert got == {"method": "POST", "headers": {"Content-Type": "application/json"}, "content": '{"coin": "bitcoin"}',
                   "url": "/api/v1/predict?x=1"}
    got = as_request('curl -s -X POST -H "X-API-Key: $CRYPTOSENTINEL_API__ADMIN_API_KEY" -F file=@bars.csv '
                     "-F coin=bitcoin http://h:8000/u", "key", b"csv")
    assert got["headers"] == {"X-API-Key": "key"} and got["files"] == {"file": ("bars.csv", b"csv", "text/csv")}
    assert got["data"] == {"coin": "bitcoin"} and got["url"] == "/u"


@pytest.mark.slow
def test_every_curl_call_in_the_docs_answers(tmp_path):
    import sys
    sys.path.insert(0, str(ROOT / "tests"))
    from api_builders import ADMIN_KEY, client, csv_bytes, trained
    from builders import simulated_prices

    coins = ["bitcoin", "ethereum"]
    prices = simulated_prices(coins, "2024-01-01", "2024-05-01")
    settings, store, registry = trained(tmp_path, prices, coins)
    upload = csv_bytes(prices[prices["coin"] == "bitcoin"])
    calls = [c for doc in (ROOT / "README.md", ROOT / "docs" / "api.md", ROOT / "docs" / "operations.md")
             for c in curl_calls(doc.read_text())]
    # the placeholders a reader fills in: a run's folder, every feature of the served version
    runnable = [c for c in calls if "RUN-ID" not in c and '"..."' not in c]
    assert len(runnable) >= 20, calls
    started: list[str] = []
    with client(settings, store, registry, run_flow=lambda flow, s, **kw: started.append(flow)) as api:
        failed = {}
        for call in runnable:
            r = api.request(**as_request(call, ADMIN_KEY, upload))
            if not 200 <= r.status_code < 300:
                failed[call] = (r.status_code, r.text[:300])
    assert not failed, failed
