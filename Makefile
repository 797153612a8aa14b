# Two commands matter: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every Python package comes from requirements.lock, checked against its hashes; the lock is one file for
# the demo, the tests and the image (all extras), so `make demo` installs the test tools too. `make test` adds
# PostgreSQL and the real Unleash. The project itself goes in with --no-deps: nothing unpinned gets in.
DEMO_STAMP := $(VENV)/.installed-demo
LOCK := requirements.lock
KEEP ?= 0

.PHONY: help install demo test lint typecheck imports check sandbox-down bench lock docs clean

help:
	@echo "make demo   - sandbox up; canaries, flag ramps, the kill switch and a pod kill on its demo app (KEEP=1 keeps it)"
	@echo "make test   - the whole test suite (real Temporal, real Prometheus, real Unleash, sandbox Kubernetes API)"
	@echo "make check  - ruff, mypy and the import contracts (layers, what workflow code may import)"
	@echo "make docs   - the docs site (MkDocs, strict) into site/; .venv/bin/mkdocs serve previews it"
	@echo "make lock   - regenerate requirements.lock, the hashed lock every install uses (LOCK_ARGS=--upgrade)"

$(DEMO_STAMP): pyproject.toml $(LOCK)
	@command -v prometheus >/dev/null 2>&1 || { \
	  echo "installing prometheus (Debian package)"; \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq prometheus >/dev/null; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK)
	@# Editable, not a wheel: the demo's and the tests' subprocesses (worker, sandbox, CLI) must run the
	@# working tree's code, and a wheel would go stale at the first edit. The image installs a wheel.
	@# --no-build-isolation builds with the lock's setuptools instead of fetching an unpinned one.
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	@# The lock must hold every dependency of pyproject.toml: --no-deps above would not notice a missing one.
	$(BIN)/python -m pip check
	@touch $(DEMO_STAMP)

$(STAMP): $(DEMO_STAMP) scripts/install-unleash.sh
	@test -x /usr/lib/postgresql/15/bin/initdb || { \
	  echo "installing postgresql 15 (Debian package; the run store's tests use a throwaway cluster)"; \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
	  $(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }
	@scripts/install-unleash.sh
	@touch $(STAMP)

install: $(STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/python -m orchestrator.sandbox.demo $(if $(filter 1,$(KEEP)),--keep,)

sandbox-down: $(DEMO_STAMP)
	$(BIN)/orchestrator sandbox down

# Tests mostly wait on real servers and processes, so more workers than the 2 cores pay off; 3 measured
# best here (see docs/development.md, "Test time"). PYTEST_WORKERS=0 runs serially.
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

# The docs site into site/ (git-ignored); `make test` builds it too (tests/test_docs.py), strictly.
docs: $(DEMO_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python benchmarks/time_to_rollback.py

# Regenerates requirements.lock from pyproject.toml with pip-tools (docs/development.md, "The dependency lock").
# Pins already in the lock are kept where pyproject still allows them; LOCK_ARGS=--upgrade moves every pin to
# the newest release, LOCK_ARGS="--upgrade-package NAME" one package. Run with Python 3.11, as the image.
LOCK_TOOLS := $(VENV)/lock-tools
lock:
	@test -x $(LOCK_TOOLS)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_TOOLS) && \
	  $(LOCK_TOOLS)/bin/python -m pip install -q pip-tools; }
	$(LOCK_TOOLS)/bin/pip-compile --quiet --all-extras --all-build-deps --allow-unsafe --generate-hashes \
	  --strip-extras --no-emit-index-url --no-emit-find-links $(LOCK_ARGS) --output-file=$(LOCK) pyproject.toml

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .unleash
