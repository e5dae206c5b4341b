# streamtrain: `make demo` runs the whole pipeline locally; `make test` runs the test suite.
# Both start from nothing: the first target creates .venv and installs the pinned dependencies.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Supported interpreters; PYTHON is the first one found (python3 first, then python3.X, then pyenv's).
PYTHON_VERSIONS := 3.11 3.12 3.13
PYTHON ?= $(shell mk/python.sh $(PYTHON_VERSIONS))
VENV ?= .venv
# The tfio environment uses constraints-tfio.txt and EXTRAS=tfio,dev (see `make test-tfio`). The main .venv also
# gets the quality extra (River, for `make quality`); the other Pythons' and the tfio venv (numpy < 2) do not.
CONSTRAINTS ?= constraints.txt
EXTRAS ?= dev$(if $(filter .venv,$(VENV)),$(comma)quality)
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
comma := ,
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(CONSTRAINTS) | cksum | cut -d' ' -f1)-$(subst $(comma),-,$(EXTRAS))
PYTEST_ARGS ?=
DEMO_ARGS ?=
# The slowest tests, with their times, at the end of every run.
DURATIONS ?= --durations=25

.PHONY: help venv demo test test-system-packages test-suite test-fast test-python test-matrix test-tfio lint typecheck clean

help: ## list the targets
	@grep -hE '^[a-z][a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sort

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@[ -n '$(PYTHON)' ] || exit 1
	'$(PYTHON)' -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## create .venv with the pinned dependencies (idempotent)

demo: venv ## the whole pipeline on this machine: embedded broker, producer, trainer, evaluator, predictor
	$(VENV)/bin/streamtrain demo $(DEMO_ARGS)

# Everything CI runs. In CI the system packages the tests need (Docker engine, Chromium) are installed first,
# so the container and live-page tests run too; elsewhere they skip with the reason when missing.
# A clean clone must fit a CI machine's disk: every venv holds a TensorFlow (about 2.5 GB) and the container tests
# build images of about 7 GB, so in CI the images go once the suite is done, and each extra venv once its tests are.
test: venv ## ruff, mypy, the whole suite, the tfio reader's tests and the other Pythons' core tests
	@if [ "$(CI)" = "true" ]; then echo "test: $$(mk/disk.sh)"; $(MAKE) --no-print-directory test-system-packages; fi
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory test-suite
	@if [ "$(CI)" = "true" ]; then $(MAKE) --no-print-directory images-remove; fi
	$(MAKE) --no-print-directory test-tfio
	$(MAKE) --no-print-directory test-matrix

test-suite: venv ## the whole test suite on this venv's Python (kind tests skip without a cluster)
	$(PY) -m pytest tests $(DURATIONS) $(PYTEST_ARGS)

test-fast: venv ## unit tests only
	$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

# CI (CI=true) removes each extra venv once its tests have run; elsewhere they are kept for the next run.
DROP_EXTRA_VENVS ?= $(if $(filter true,$(CI)),yes,)
drop_venv = $(if $(DROP_EXTRA_VENVS),rm -rf $(1); echo "removed $(1) ($$(mk/disk.sh))",true)

# One interpreter's core: the unit tests and the producer -> trainer -> evaluator pipeline test, in .venv-pyX.Y.
PYTHON_VERSION ?= 3.12
CORE_TESTS := tests/unit tests/integration/test_pipeline.py
test-python: ## unit tests + the pipeline test on PYTHON_VERSION (default 3.12), in .venv-py<version>
	@interpreter=$$(mk/python.sh $(PYTHON_VERSION)); \
	if [ -z "$$interpreter" ]; then \
	  if [ "$${CI:-}" = "true" ]; then exit 1; else echo "test-python: skipped, no Python $(PYTHON_VERSION)"; exit 0; fi; \
	fi; \
	$(MAKE) --no-print-directory venv PYTHON="$$interpreter" VENV=.venv-py$(PYTHON_VERSION) && \
	.venv-py$(PYTHON_VERSION)/bin/python -m pytest $(CORE_TESTS) -q $(DURATIONS) $(PYTEST_ARGS); \
	status=$$?; $(call drop_venv,.venv-py$(PYTHON_VERSION)); exit $$status

test-matrix: ## test-python on every supported Python other than the main venv's
	@main=$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	for version in $(PYTHON_VERSIONS); do \
	  [ "$$version" = "$$main" ] && continue; \
	  $(MAKE) --no-print-directory test-python PYTHON_VERSION=$$version || exit 1; \
	done

# tensorflow-io pins TensorFlow 2.16 (numpy < 2, Python <= 3.12): its reader is tested in an environment of its own,
# beside the unit tests (the core on the extra's TensorFlow).
test-tfio: ## the unit tests and the tensorflow-io reader's tests (marker tfio) in .venv-tfio, built from the tfio extra
	$(MAKE) --no-print-directory venv VENV=.venv-tfio CONSTRAINTS=constraints-tfio.txt EXTRAS=tfio,dev \
	  PYTHON="$$(mk/python.sh 3.11 3.12)"
	.venv-tfio/bin/python -m pytest tests/unit -q $(PYTEST_ARGS) \
	  && .venv-tfio/bin/python -m pytest tests -m tfio --ignore=tests/unit -q $(PYTEST_ARGS); \
	status=$$?; $(call drop_venv,.venv-tfio); exit $$status

test-system-packages: docker-engine chromium ## the system packages tests need: Docker engine, Chromium (root, apt)

lint: venv ## ruff and mypy
	$(VENV)/bin/ruff check components tests $(wildcard benchmarks)
	$(VENV)/bin/mypy

.PHONY: docs
docs: venv ## regenerate docs/configuration.md from the settings classes
	$(PY) -m streamtrain.docs_config docs/configuration.md

clean: ## remove the venvs, caches and demo output
	rm -rf $(VENV) .venv-py3.* .venv-tfio .pytest_cache .mypy_cache .ruff_cache demo-output

include $(wildcard mk/*.mk)
