# Two commands matter: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KEEP ?= 0

.PHONY: help install demo test lint typecheck check sandbox-down bench clean

help:
	@echo "make demo   - sandbox up, a healthy canary promoted, a bad one rolled back (KEEP=1 keeps the sandbox)"
	@echo "make test   - the whole test suite (real Temporal, real Prometheus, real Unleash, sandbox Kubernetes API)"
	@echo "make check  - ruff and mypy"

$(STAMP): pyproject.toml scripts/install-unleash.sh
	@command -v prometheus >/dev/null 2>&1 || { \
	  echo "installing prometheus (Debian package)"; \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq prometheus >/dev/null; }
	@test -x /usr/lib/postgresql/15/bin/initdb || { \
	  echo "installing postgresql 15 (Debian package; the run store's tests use a throwaway cluster)"; \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
	  $(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@scripts/install-unleash.sh
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m orchestrator.sandbox.demo $(if $(filter 1,$(KEEP)),--keep,)

sandbox-down: $(STAMP)
	$(BIN)/orchestrator sandbox down

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck

bench: $(STAMP)
	$(BIN)/python benchmarks/time_to_rollback.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .unleash
