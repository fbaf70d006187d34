"""Write the generated parts of the documentation from the code, so they cannot drift from it.

    .venv/bin/python docs/gen_docs.py           # write them (then `make readme` for README.md)
    .venv/bin/python docs/gen_docs.py --check   # exit 1, naming the files, when one is out of date

- `docs/api.md`: the API reference, from the OpenAPI schema of `app/api` (with a curl call per endpoint);
- the module map in `docs/architecture.md` (between its `module-map` markers): every notebook, its module and
  the notebook's one-line summary;
- the settings table in `nbs/index.ipynb` (between its `settings` markers), the README's source: every setting,
  its variable, default and meaning, from `cryptosentinel.config.setting_docs()`.

`make docs` runs this and then `make readme`. `tests/test_docs.py` fails when a file differs from what this writes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
API_MD = ROOT / "docs" / "api.md"
ARCHITECTURE_MD = ROOT / "docs" / "architecture.md"
INDEX_NB = ROOT / "nbs" / "index.ipynb"
BASE_URL = "http://127.0.0.1:8000"
# example values of path parameters for the curl calls (a new path parameter needs one here)
PATH_EXAMPLES = {"coin": "bitcoin", "flow": "feature_pipeline", "root": "reports",
                 "path": "runs/feature_pipeline/2024-05-01/RUN-ID/20_ingest.html"}
QUERY_EXAMPLES = {"/api/v1/prices/{coin}": "?interval=1D", "/api/v1/predictions/history": "?coin=bitcoin&limit=10",
                  "/api/v1/alerts": "?severity=critical", "/api/v1/runs": "?kind=flow_run&limit=5"}


class DocsError(Exception):
    "The code has something the generator cannot document (named in the message)."


# ---------------------------------------------------------------- the API reference

def openapi_schema() -> dict[str, Any]:
    "The API's OpenAPI schema as served, without the benchmark-only routes."
    sys.path.insert(0, str(ROOT))
    from app.api.main import create_app
    from cryptosentinel.config import ApiSettings, Settings
    return create_app(Settings(api=ApiSettings(benchmark_routes=False))).openapi()


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _anchor(name: str) -> str:
    return "schema-" + name.lower()


def type_text(schema: dict[str, Any]) -> str:
    "A schema's type in a few words: `string`, `integer or null`, `array of [PriceBar](#schema-pricebar)`."
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return f"[{name}](#{_anchor(name)})"
    if "anyOf" in schema:
        return " or ".join(type_text(s) for s in schema["anyOf"])
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {type_text(schema.get('items', {}))}"
    if kind == "string" and schema.get("format") in ("date-time", "binary"):
        return "date-time (ISO 8601)" if schema["format"] == "date-time" else "file"
    return kind


def constraints(schema: dict[str, Any]) -> str:
    "A schema's limits in words: `pattern ...`, `1..8760`, `1 to 50 items` (also inside `anyOf`)."
    out = []
    for s in [schema, *schema.get("anyOf", [])]:
        if "pattern" in s:
            out.append(f"pattern `{s['pattern']}`")
        lo, hi = s.get("minimum", s.get("exclusiveMinimum")), s.get("maximum", s.get("exclusiveMaximum"))
        if lo is not None or hi is not None:
            fmt = lambda x: "" if x is None else f"{int(x)}" if float(x).is_integer() else f"{x:g}"  # noqa: E731
            out.append(f"{'>' if 'exclusiveMinimum' in s else '≥'} {fmt(lo)}" if hi is None else
                       f"{fmt(lo)}..{fmt(hi)}" if lo is not None else f"≤ {fmt(hi)}")
        if "minItems" in s or "maxItems" in s:
            out.append(f"{s.get('minItems', 0)} to {s.get('maxItems', 'any number of')} items")
        if "maxLength" in s:
            out.append(f"at most {s['maxLength']} characters")
    return ", ".join(out)


def _cell(text: Any) -> str:
    "Text fit for a markdown table cell."
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default(schema: dict[str, Any]) -> str:
    return f"`{json.dumps(schema['default'])}`" if "default" in schema else ""


def _curl(method: str, path: str, op: dict[str, Any], schemas: dict[str, Any]) -> str:
    "One curl call of an endpoint, with example values from the schema."
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in PATH_EXAMPLES:
            raise DocsError(f"no example value for the path parameter {name!r} of {path}: add it to PATH_EXAMPLES "
                            "in docs/gen_docs.py")
        return PATH_EXAMPLES[name]
    url = BASE_URL + re.sub(r"\{(\w+)(?::path)?\}", fill, path) + QUERY_EXAMPLES.get(path, "")
    parts = ["curl -s"]
    if method != "get":
        parts.append(f"-X {method.upper()}")
    if op.get("security"):
        parts.append('-H "X-API-Key: $CRYPTOSENTINEL_API__ADMIN_API_KEY"')
    content = op.get("requestBody", {}).get("content", {})
    if "multipart/form-data" in content:
        parts.append("-F file=@bars.csv -F coin=bitcoin")
    elif "application/json" in content:
        body = content["application/json"]["schema"]
        target = schemas.get(_ref_name(body["$ref"]), {}) if "$ref" in body else body
        example = (target.get("examples") or [target.get("example", {})])[0]
        parts.append(f"-H 'Content-Type: application/json' -d '{json.dumps(example)}'")
        if "..." in json.dumps(example):
            parts.insert(0, "# replace the \"...\" entries with real values first\n")
    return " ".join(parts) + f" '{url}'" if "?" in url else " ".join(parts) + f" {url}"


def _endpoint(method: str, path: str, op: dict[str, Any], schemas: dict[str, Any]) -> list[str]:
    lines = [f"### `{method.upper()} {path}`", "", op.get("summary", "") + ".", ""]
    if op.get("security"):
        lines += ["Needs the admin key in the `X-API-Key` header (setting `api.admin_api_key`; without it set, "
                  "every admin call is refused with 401).", ""]
    params = op.get("parameters", [])
    if params:
        lines += ["| parameter | in | type | required | default | limits | meaning |", "|---|---|---|---|---|---|---|"]
        for p in params:
            s = p.get("schema", {})
            lines.append(f"| `{p['name']}` | {p['in']} | {_cell(type_text(s))} | {'yes' if p.get('required') else 'no'} "
                         f"| {_default(s)} | {_cell(constraints(s))} | {_cell(p.get('description', ''))} |")
        lines.append("")
    body = op.get("requestBody")
    if body:
        for media, content in body.get("content", {}).items():
            lines.append(f"- Body ({media}{', required' if body.get('required') else ''}): "
                         f"{type_text(content.get('schema', {}))}"
                         + (f" ({content['schema']['description']})" if content.get('schema', {}).get('description')
                            else "") + ".")
    ok = [(code, r) for code, r in op.get("responses", {}).items() if code.startswith("2")]
    for code, r in ok:
        media = r.get("content", {})
        shape = "; ".join(f"{m}: {type_text(c['schema'])}" if c.get("schema") else m for m, c in media.items())
        lines.append(f"- Answer {code}: {shape or r.get('description', '')}.")
    errors = sorted((code for code in op.get("responses", {}) if not code.startswith("2")), key=int)
    if errors:
        lines.append(f"- Errors: {', '.join(errors)}, as [ErrorResponse](#{_anchor('ErrorResponse')}).")
    lines += ["", "```sh", _curl(method, path, op, schemas), "```", ""]
    return lines


def _schema_section(name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f'<a id="{_anchor(name)}"></a>', "", f"### {name}", ""]
    if schema.get("description"):
        lines += [schema["description"].strip(), ""]
    props = schema.get("properties", {})
    if not props:
        return lines + [f"Type: {type_text(schema)}.", ""]
    required = set(schema.get("required", []))
    lines += ["| field | type | required | default | meaning |", "|---|---|---|---|---|"]
    for field, s in props.items():
        meaning = ", ".join(x for x in (s.get("description", ""), constraints(s)) if x)
        lines.append(f"| `{field}` | {_cell(type_text(s))} | {'yes' if field in required else 'no'} | {_default(s)} "
                     f"| {_cell(meaning)} |")
    return lines + [""]


def api_reference(schema: dict[str, Any] | None = None) -> str:
    "`docs/api.md`: every endpoint by tag, its parameters, body, answer and errors, a curl call; then every schema."
    schema = schema or openapi_schema()
    info, schemas = schema["info"], schema["components"]["schemas"]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            by_tag.setdefault((op.get("tags") or ["other"])[0], []).append((method, path, op))
    lines = [f"# {info['title']} reference", "",
             "<!-- Generated by docs/gen_docs.py from the OpenAPI schema of app/api: do not edit by hand; "
             "run `make docs`. -->", "",
             info.get("description", ""), "",
             f"The running service also serves this schema at `{BASE_URL}/openapi.json`, with interactive pages at "
             "`/docs` (Swagger UI) and `/redoc`. Start it with `cryptosentinel serve` (or `make run`). Times are UTC "
             "(ISO 8601); coin ids are CoinGecko ids of the configured coins.", "",
             "| method | path | what it does |", "|---|---|---|"]
    lines += [f"| {m.upper()} | `{p}` | {_cell(op.get('summary', ''))} |" for ops in by_tag.values() for m, p, op in ops]
    lines.append("")
    for tag, ops in by_tag.items():
        lines += [f"## {tag.capitalize()}", ""]
        for method, path, op in ops:
            lines += _endpoint(method, path, op, schemas)
    lines += ["## Schemas", ""]
    for name in sorted(schemas):
        lines += _schema_section(name, schemas[name])
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------- the module map

def _summary(cells: list[dict[str, Any]]) -> str:
    "The `> one-line summary` of a notebook's first markdown cell."
    for cell in cells:
        if cell["cell_type"] == "markdown":
            found = re.search(r"^>.*(?:\n(?!\s*$|#).*)*", "".join(cell["source"]), re.M)  # up to a blank line
            return " ".join(" ".join(line.lstrip(">") for line in found.group(0).splitlines()).split()) if found else ""
    return ""


def notebooks() -> list[tuple[str, str | None, str]]:
    "(notebook, module or None for a pipeline step, summary) of every numbered notebook, in file-name order."
    out = []
    for nb in sorted((ROOT / "nbs").glob("[0-9]*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        module = next((m.group(1) for c in cells if c["cell_type"] == "code"
                       for m in [re.search(r"#\|\s*default_exp\s+(\S+)", "".join(c["source"]))] if m), None)
        out.append((nb.stem, module, _summary(cells)))
    return out


def module_map() -> str:
    "The module map of `docs/architecture.md`: notebook, module, lines, summary; then the pipeline step notebooks."
    rows = notebooks()
    lines = ["| notebook | module | what it owns |", "|---|---|---|"]
    for nb, module, summary in rows:
        if module:
            lines.append(f"| `nbs/{nb}.ipynb` | `cryptosentinel/{module}.py` | {_cell(summary)} |")
    lines += ["", "Pipeline step notebooks (no module: Prefect runs them with papermill, each run leaves an executed "
              "copy under `reports/runs/`):", "", "| notebook | what a run does |", "|---|---|"]
    for nb, module, summary in rows:
        if not module:
            lines.append(f"| `nbs/{nb}.ipynb` | {_cell(summary)} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- the settings table

def settings_table() -> str:
    "Every setting: variable, path on `Settings`, default, meaning (from `cryptosentinel.config.setting_docs()`)."
    from cryptosentinel.config import setting_docs
    lines = ["| variable | setting | default | meaning |", "|---|---|---|---|"]
    for doc in setting_docs():
        default = "none (secret)" if doc.secret else f"`{doc.default}`" if doc.default != "" else ""
        lines.append(f"| `{doc.env}` | `{doc.field}` | {_cell(default)} | {_cell(doc.meaning)} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- writing and checking

def replace_block(text: str, name: str, block: str, where: Path) -> str:
    "`text` with the lines between `<!-- begin: name -->` and `<!-- end: name -->` replaced by `block`."
    pattern = re.compile(rf"(<!-- begin: {name} [^>]*-->\n)(?:.*?\n)?(<!-- end: {name} -->)", re.S)
    if not pattern.search(text):
        raise DocsError(f"{where.relative_to(ROOT)} has no `<!-- begin: {name} ... -->` / `<!-- end: {name} -->` "
                        "markers: put them back where the generated part goes")
    return pattern.sub(lambda m: m.group(1) + "\n" + block + "\n\n" + m.group(2), text, count=1)


def notebook_with_block(path: Path, name: str, block: str) -> str:
    "The notebook's JSON text (as nbdev-clean writes it) with the block replaced in the markdown cell holding it."
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = [c for c in nb["cells"] if c["cell_type"] == "markdown" and f"<!-- begin: {name} " in "".join(c["source"])]
    if len(cells) != 1:
        raise DocsError(f"{path.relative_to(ROOT)}: expected one markdown cell with the `{name}` markers, "
                        f"found {len(cells)}")
    cells[0]["source"] = replace_block("".join(cells[0]["source"]), name, block, path).splitlines(keepends=True)
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def expected() -> dict[Path, str]:
    "Each generated file's full expected text."
    arch = replace_block(ARCHITECTURE_MD.read_text(encoding="utf-8"), "module-map", module_map(), ARCHITECTURE_MD)
    return {API_MD: api_reference(), ARCHITECTURE_MD: arch,
            INDEX_NB: notebook_with_block(INDEX_NB, "settings", settings_table())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file is out of date")
    args = parser.parse_args(argv)
    try:
        files = expected()
    except DocsError as exc:
        print(f"gen_docs: {exc}", file=sys.stderr)
        return 2
    stale = [p for p, text in files.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    if args.check:
        for p in stale:
            print(f"gen_docs: {p.relative_to(ROOT)} is out of date: run `make docs`", file=sys.stderr)
        return 1 if stale else 0
    for p in stale:
        p.write_text(files[p], encoding="utf-8")
        print(f"wrote {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
