"""Test setup shared by every suite: the real Temporal server, Prometheus and the sandbox Kubernetes API.

The suite runs in parallel under pytest-xdist (``make test``: ``-n 3 --dist loadgroup``). Every
session fixture starts its own server on a free port of 127.0.0.1 with its own temporary directory,
so each worker process has private servers. What would be wasteful to start once per worker is kept
on one worker by ``xdist_group``: tests using the real Unleash or PostgreSQL share one group, and a
module whose tests share a module-scoped server (a whole sandbox, a Prometheus with history) stays
together, so that server starts once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.fixtures_temporal", "tests.fixtures_kube", "tests.fixtures_prom", "tests.fixtures_pg"]


# Session fixtures that are costly to start (a real Unleash on PostgreSQL): one worker runs all their tests.
_SHARED_GROUPS = {"real_unleash": "postgres", "postgres_cluster": "postgres"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        group = next((_SHARED_GROUPS[name] for name in info.names_closure if name in _SHARED_GROUPS), None)
        callspec = getattr(item, "callspec", None)
        if group is None and callspec is not None and callspec.params.get("unleash") == "real":
            group = "postgres"  # the ``unleash`` fixture asks for ``real_unleash`` at run time
        module = item.getparent(pytest.Module)
        if group is None and module is not None:
            for defs in info.name2fixturedefs.values():
                if any(d.scope == "module" and d.baseid == module.nodeid for d in defs):
                    group = module.nodeid
                    break
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(autouse=True)
def _secrets_of_this_test_only() -> Iterator[None]:
    """Secrets a test's in-process CLI run remembered are forgotten after it.

    In a real process the remembered secrets are that process's own credentials and only grow; here one
    worker runs hundreds of CLI invocations, and a fuzz case whose "token" is ``spec`` would mask that
    word in every later test's messages.
    """
    from orchestrator import redact

    before = set(redact._known)
    yield
    with redact._lock:
        redact._known.intersection_update(before)


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
