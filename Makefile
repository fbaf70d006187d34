# CryptoSentinel: the README's two commands are `make run` and `make test`.
# Each installs what it needs into .venv/ on first use (uv, from the locked versions in uv.lock).

SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_DAYS ?= 120
# uv from PATH, else a copy that .ci/get-uv unpacks from PyPI's wheel into .tools/ (no pip needed, so the
# "externally managed" system Python of Debian 12 / Ubuntu 24.04 works too).
UV = $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
export UV_LINK_MODE := copy
# offline machines: no telemetry attempts from Prefect's local server (a comment after a value would become part of it)
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: help install run test lint typecheck nbcheck nbtest pytest browser bench lab hooks export clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml uv.lock
	@command -v uv >/dev/null || $(PYTHON) .ci/get-uv
	$(UV) sync --frozen --quiet --compile-bytecode --all-extras --python $(PYTHON)
	@touch $@

install: $(STAMP) ## create .venv with the locked dependencies

run: $(STAMP) ## the main job: the three flows (offline: the simulator), the report, the status, then the API on :8000 and the dashboard on :8501
	$(BIN)/cryptosentinel run --days $(RUN_DAYS)
	$(BIN)/cryptosentinel report
	$(BIN)/cryptosentinel status
	@echo "serving the API on http://127.0.0.1:8000 and the dashboard on http://127.0.0.1:8501 (Ctrl-C stops both)"
	@$(BIN)/cryptosentinel serve --port 8000 & api=$$!; trap 'kill $$api 2>/dev/null' EXIT INT TERM; \
	  $(BIN)/cryptosentinel dashboard --port 8501 --api-url http://127.0.0.1:8000

test: lint typecheck nbcheck delivery nbtest pytest ## lint, notebook checks, delivery checks, notebooks run, test suite

.PHONY: delivery
delivery: $(STAMP) ## Dockerfile (hadolint), compose files and workflows (schemas, actionlint), offline
	bash .ci/check-delivery

lint: $(STAMP) ## ruff over hand-written code and generated modules (never reformats)
	$(BIN)/ruff check cryptosentinel app tests benchmarks scripts docs

typecheck: $(STAMP) ## mypy over the package and app/
	$(BIN)/mypy

nbcheck: $(STAMP) ## notebooks clean and library in sync (nbdev's CI order)
	bash .ci/nbcheck

nbtest: $(STAMP) ## run every notebook top to bottom on its small defaults
	data_dir=$$(mktemp -d) && CRYPTOSENTINEL_DATA_DIR=$$data_dir MPLBACKEND=Agg $(BIN)/nbdev-test --n-workers 2; \
	  status=$$?; rm -rf "$$data_dir"; exit $$status

browser: ## headless Chromium for the dashboard's browser test (Debian's chromium package)
	@bash .ci/get-chromium

pytest: $(STAMP) browser ## the test suite
	$(BIN)/pytest -n 2 -q

.PHONY: mltest realdata audit
mltest: $(STAMP) browser ## ML tests: model behaviour, the null test and leak canary, the gate (pytest -m model)
	$(BIN)/pytest -n 2 -q -m "model and not shared_data"

realdata: $(STAMP) ## the tests on the real data in ../shared/data (pytest -m shared_data; fails without it)
	@test -d ../shared/data || { echo "realdata: ../shared/data not found beside the clone" >&2; exit 1; }
	$(BIN)/pytest -n 2 -q -m shared_data

audit: $(STAMP) ## known vulnerabilities in the locked dependencies (pip-audit, PyPI's advisories; needs the network)
	@req=$$(mktemp) && $(UV) export --frozen --all-extras --all-groups --no-emit-project --no-header --quiet \
	  --output-file "$$req" && $(BIN)/pip-audit --strict --disable-pip --require-hashes --progress-spinner off \
	  -r "$$req"; status=$$?; rm -f "$$req"; exit $$status

bench: $(STAMP) ## benchmarks; JSON results under reports/bench/
	@mkdir -p reports/bench
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python "$$b" || exit 1; done

.PHONY: demo
demo: $(STAMP) browser ## record a walkthrough (simulator, dashboard pages, an API call): docs/demo/demo.mp4 and .gif
	@bash .ci/get-ffmpeg
	$(BIN)/python scripts/demo.py

lab: $(STAMP) hooks ## JupyterLab on the notebooks
	$(BIN)/jupyter lab nbs

hooks: $(STAMP) ## nbdev's git hooks: clean notebooks on save/commit, notebook merge driver
	$(BIN)/nbdev-install-hooks

export: $(STAMP) ## notebooks -> package, then clean the notebooks
	$(BIN)/nbdev-export && $(BIN)/nbdev-clean

clean: ## remove the virtual environment and caches (keeps data/)
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache

readme: $(STAMP) ## README.md from the markdown cells of nbs/index.ipynb
	$(BIN)/python -c "import json; nb = json.load(open('nbs/index.ipynb')); \
	  md = ['\n'.join(''.join(c['source']).splitlines()) for c in nb['cells'] if c['cell_type'] == 'markdown']; \
	  open('README.md', 'w').write('\n\n'.join(md) + '\n')"

.PHONY: docs
docs: $(STAMP) ## docs/api.md, the module map and the settings table from the code, then README.md
	$(BIN)/python docs/gen_docs.py
	@$(MAKE) --no-print-directory readme
