"""Test setup shared by every suite: the real Temporal server, Prometheus and the sandbox Kubernetes API."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.fixtures_temporal", "tests.fixtures_kube", "tests.fixtures_prom", "tests.fixtures_pg"]


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    # The Temporal SDK can abort the interpreter at exit (sdk-python#300); leave with pytest's own status.
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    status = getattr(config, "_exit_status", None)
    if status is not None:
        os._exit(int(status))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config._exit_status = exitstatus  # type: ignore[attr-defined]
