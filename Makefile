# streamtrain: `make demo` runs the whole pipeline locally; `make test` runs the test suite.
# Both start from nothing: the first target creates .venv and installs the pinned dependencies.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: help venv demo test test-fast lint typecheck bench bench-quick clean

help: ## list the targets
	@grep -hE '^[a-z][a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sort

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## create .venv with the pinned dependencies (idempotent)

demo: venv ## the whole pipeline on this machine: embedded broker, producer, trainer, evaluator
	$(VENV)/bin/streamtrain demo $(DEMO_ARGS)

# In CI the Docker engine is installed and started here, so the container tests run too.
test: venv ## ruff, mypy and the whole test suite (kind tests skip without a cluster)
	@if [ "$${CI:-}" = "true" ]; then $(MAKE) --no-print-directory docker-engine; fi
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest tests $(PYTEST_ARGS)

test-fast: venv ## unit tests only
	$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

lint: venv ## ruff and mypy
	$(VENV)/bin/ruff check components tests $(wildcard benchmarks)
	$(VENV)/bin/mypy

clean: ## remove the venv, caches and demo output
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-output

include $(wildcard mk/*.mk)
