# llmbook — two commands:
#   make book   set up everything (Debian fonts + browser, .venv, pip) and build the HTML book
#   make test   set up everything and run every test (lint, types, unit tests, the unit tests
#               again against the lowest declared versions, all chapters under nbval, the
#               book build and a headless-browser check of the built site)
# Both are idempotent: set-up steps are skipped when their stamp is newer than their inputs.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMPS := .stamps
APT_PACKAGES := $(shell grep -v '^\#' apt.txt)
JB_FLAGS := -W -n --keep-going
export PYTHONHASHSEED := 0

.PHONY: help setup book test unit lowest chapters lint typecheck browser bench data manifest artifacts notebook execute sync-repo-url clean

help:
	@echo "make book   - install everything and build the HTML book into _build/html"
	@echo "make test   - install everything and run the whole test suite (what CI runs)"
	@echo "make lowest - run the fast unit tests against the lowest versions pyproject.toml declares"
	@echo "make bench  - run the benchmarks and write benchmarks/RESULTS.md"
	@echo "make notebook NB=01_background/1_2_status - regenerate one section notebook and execute it"
	@echo "make execute - regenerate and execute every chapter"
	@echo "make data   - rebuild the data files from their sources and rewrite the manifest"
	@echo "make artifacts [NAME=ch3-lstm] [RESUME=1] - rebuild shipped checkpoints/results from configs/artifacts"

$(STAMPS):
	@mkdir -p $(STAMPS)

# Debian packages: CJK fonts (figures and browser) and chromium (browser test).
$(STAMPS)/apt: apt.txt | $(STAMPS)
	@echo ">>> [setup] Debian packages: $(APT_PACKAGES)"
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	  echo ">>> apt-get install$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	else echo ">>> already installed"; fi
	@touch $@

$(BIN)/python:
	@echo ">>> [setup] creating virtual environment $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMPS)/pip: requirements.txt pyproject.toml $(BIN)/python | $(STAMPS)
	@echo ">>> [setup] pip install -r requirements.txt && pip install -e ."
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $@

# Mermaid's JavaScript, served from the book itself so diagrams render offline.  Vendored
# files go to _vendor/, not _static/: Jupyter Book 1 adds every .js under a root _static/
# folder to every page as a script (56 MathJax files, 5 MB and eight script errors a page).
MERMAID_VERSION := 11.17.2
$(STAMPS)/vendor-mermaid: | $(STAMPS)
	@echo ">>> [setup] vendoring mermaid@$(MERMAID_VERSION) into _vendor/mermaid (npm pack)"
	@rm -rf _static/mermaid; rmdir _static 2>/dev/null || true
	@if command -v npm >/dev/null; then \
	  tmp=$$(mktemp -d); (cd $$tmp && npm pack mermaid@$(MERMAID_VERSION) --silent >/dev/null 2>&1 && tar xzf mermaid-*.tgz); \
	  rm -rf _vendor/mermaid && mkdir -p _vendor/mermaid/chunks && \
	  cp $$tmp/package/dist/mermaid.esm.min.mjs _vendor/mermaid/ && \
	  cp -r $$tmp/package/dist/chunks/mermaid.esm.min _vendor/mermaid/chunks/ && \
	  find _vendor/mermaid -name '*.map' -delete; rm -rf $$tmp; touch $@; \
	else echo ">>> npm not found: diagrams will need mermaid from the network"; fi

# MathJax 3, served from the book itself so formulas render offline too.
MATHJAX_VERSION := 3.2.2
$(STAMPS)/vendor-mathjax: | $(STAMPS)
	@echo ">>> [setup] vendoring mathjax@$(MATHJAX_VERSION) into _vendor/mathjax (npm pack)"
	@rm -rf _static/mathjax; rmdir _static 2>/dev/null || true
	@if command -v npm >/dev/null; then \
	  tmp=$$(mktemp -d); (cd $$tmp && npm pack mathjax@$(MATHJAX_VERSION) --silent >/dev/null 2>&1 && tar xzf mathjax-*.tgz); \
	  rm -rf _vendor/mathjax && mkdir -p _vendor/mathjax && \
	  cp $$tmp/package/es5/tex-chtml.js _vendor/mathjax/ && \
	  cp -r $$tmp/package/es5/input $$tmp/package/es5/output $$tmp/package/es5/a11y $$tmp/package/es5/ui $$tmp/package/es5/adaptors _vendor/mathjax/ 2>/dev/null; \
	  rm -rf $$tmp; touch $@; \
	else echo ">>> npm not found: formulas will need MathJax from the network"; fi

setup: $(STAMPS)/apt $(STAMPS)/pip $(STAMPS)/vendor-mermaid $(STAMPS)/vendor-mathjax
	@echo ">>> [setup] done: $$($(BIN)/python --version), llmbook installed in $(VENV)"

book: setup
	@echo ">>> [book] jupyter-book build . $(JB_FLAGS)"
	$(BIN)/jupyter-book build . $(JB_FLAGS)
	@echo ">>> [book] open _build/html/index.html"

lint: setup
	@echo ">>> [lint] ruff check + ruff format --check"
	$(BIN)/ruff check llmbook tests benchmarks
	$(BIN)/ruff format --check llmbook tests benchmarks
	$(BIN)/python book/lint_chapters.py
	$(BIN)/python book/build_toc.py --check

typecheck: setup
	@echo ">>> [typecheck] mypy llmbook"
	$(BIN)/mypy llmbook

unit: setup
	@echo ">>> [unit] pytest tests (all but the browser test)"
	$(BIN)/python -m pytest tests -m "not browser" -q

# The lowest versions pyproject.toml declares, in a venv of their own: book/lowest_pins.py turns
# every ">=" of the core dependencies and of the serve extra into "==" (so this cannot drift
# from pyproject.toml); the test tools come at requirements.txt's pins, except httpx at the dev
# extra's lower bound (Starlette 0.27's TestClient needs httpx < 0.28); llmbook goes in with
# --no-deps.  Tests that need another extra (transformers, jupytext, playwright) skip.
LOWEST_VENV ?= .venv-lowest
LOWEST_TEST_TOOLS := pytest pytest-socket hypothesis nltk sacrebleu rouge-score
LOWEST_TESTS := tests -m "not slow and not browser" -q --ignore=tests/test_book.py --ignore=tests/test_browser.py

$(LOWEST_VENV)/.installed: pyproject.toml requirements.txt book/lowest_pins.py Makefile
	@echo ">>> [lowest] creating $(LOWEST_VENV) with the lowest declared versions"
	rm -rf $(LOWEST_VENV)
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(PYTHON) book/lowest_pins.py --extra serve --lowest httpx --pinned $(LOWEST_TEST_TOOLS) > $(LOWEST_VENV)/pins.txt
	@echo ">>> [lowest] pins: $$(tr '\n' ' ' < $(LOWEST_VENV)/pins.txt)"
	@start=$$SECONDS; \
	$(LOWEST_VENV)/bin/python -m pip install -q --no-compile -r $(LOWEST_VENV)/pins.txt; \
	$(LOWEST_VENV)/bin/python -m pip install -q --no-deps -e .; \
	echo ">>> [lowest] installed in $$((SECONDS - start)) s"
	@touch $@

lowest: $(STAMPS)/apt $(LOWEST_VENV)/.installed
	@echo '>>> [lowest] pytest $(LOWEST_TESTS)  (in $(LOWEST_VENV))'
	@start=$$SECONDS; \
	$(LOWEST_VENV)/bin/python -m pytest $(LOWEST_TESTS); \
	echo ">>> [lowest] unit tests passed against the lowest versions in $$((SECONDS - start)) s"

# Two notebooks at a time (one per core; each notebook's cells stay in one kernel): much of a
# page's time is single-threaded Python (kernel start, imports, tokenizing, plotting).
NB_WORKERS ?= 2
chapters: setup
	@echo ">>> [chapters] pytest --nbval-lax chapters/ on $(NB_WORKERS) workers (every chapter executes offline: LLMBOOK_OFFLINE=1; tagged cells must match; hidden claim cells must hold)"
	LLMBOOK_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest --nbval-lax --nbval-cell-timeout=900 \
	  -p no:randomly -n $(NB_WORKERS) --dist loadfile chapters -q

browser: setup
	@echo ">>> [browser] headless chromium over the built book"
	LLMBOOK_BROWSER_TESTS=1 $(BIN)/python -m pytest tests -m browser -q

test: lint typecheck unit lowest chapters book browser
	@echo ">>> [test] all checks passed"

bench: setup
	@echo ">>> [bench] benchmarks/run_all.py -> benchmarks/RESULTS.md"
	$(BIN)/python benchmarks/run_all.py

# chapters/NN_slug/N_M_slug.md (a MyST text notebook) is the source of a section page;
# chapters/NN_slug/N_M_slug.ipynb is generated from it and executed in its folder, so that
# the book shows outputs of the current code; book/clean_notebook.py then strips stderr
# (progress bars, warnings) from cells that nbval does not check.
notebook: setup
	@test -n "$(NB)" || { echo "usage: make notebook NB=01_background/1_2_ngram"; exit 2; }
	@src=chapters/$(NB).md; \
	test -f "$$src" || { echo "no source chapters/$(NB).md"; exit 2; }; \
	nb=chapters/$(NB).ipynb; start=$$SECONDS; \
	echo ">>> [notebook] $$src -> $$nb (executed)"; \
	$(BIN)/jupytext --quiet --to ipynb --output "$$nb" "$$src" && \
	(cd "$$(dirname "$$nb")" && $(abspath $(BIN))/jupyter-execute --inplace --timeout=900 "$$(basename "$$nb")") && \
	$(BIN)/python book/clean_notebook.py "$$nb" && \
	echo ">>> [notebook] $$nb executed in $$((SECONDS - start)) s"

execute: setup
	@for src in chapters/[0-9][0-9]_*/[0-9]*_*.md; do \
	  [ -f "$$src" ] || continue; \
	  nb=$${src#chapters/}; $(MAKE) --no-print-directory notebook NB=$${nb%.md}; \
	done

data: setup
	$(BIN)/python data/scripts/build_poetry.py
	$(BIN)/python data/scripts/build_sentiment_split.py
	$(MAKE) manifest

manifest: setup
	$(BIN)/python data/scripts/make_manifest.py

# Every shipped checkpoint and result file, rebuilt from configs/artifacts/*.toml with a
# card (data, command, hardware, wall time, metrics).  One artifact: make artifacts NAME=ch3-lstm;
# continue an interrupted build: make artifacts NAME=ch3-lstm RESUME=1.  `all` takes hours of CPU.
artifacts: setup
	$(BIN)/python -m llmbook.experiments build $(or $(NAME),all) $(if $(RESUME),--resume)

# The repository URL lives in _config.yml (repository.url); copy it everywhere else.
sync-repo-url:
	$(PYTHON) book/sync_repo_url.py

clean:
	rm -rf _build $(STAMPS) $(LOWEST_VENV)
