"""Which cluster a command talks to: a configured one always wins over a running sandbox.

The running sandbox is a state file whose ``cluster`` component is a live process (this test's
own, found by a marker in its command line), as ``sandbox up`` records it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.config import PrometheusSettings, Settings
from orchestrator.sandbox.discover import cluster_line, resolve
from orchestrator.sandbox.manager import ComponentRecord, SandboxState

# A word of this process's own command line, so the recorded PID counts as alive: the executable, which is
# there whether pytest runs here or in a pytest-xdist worker (whose command line does not say "pytest").
MARKER = Path("/proc/self/cmdline").read_bytes().split(b"\0")[0].decode() if Path("/proc/self").exists() \
    else "python"


def running_sandbox(state_dir: Path, *, alive: bool = True) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    pid = os.getpid() if alive else 2**22 + 1
    state = SandboxState(
        started_at="2026-12-02T00:00:00+00:00", state_dir=str(state_dir), ports={}, scrape_interval=2,
        traffic_rate=20,
        components={
            "temporal": ComponentRecord(pid=pid, marker=MARKER, address="127.0.0.1:17233", url="http://127.0.0.1:18233"),
            "prometheus": ComponentRecord(pid=pid, marker=MARKER, address="127.0.0.1:19090",
                                          url="http://127.0.0.1:19090"),
            "cluster": ComponentRecord(pid=pid, marker=MARKER, address="127.0.0.1:16443", url="http://127.0.0.1:16443"),
        },
    )
    (state_dir / "state.json").write_text(state.model_dump_json())
    (state_dir / "kubeconfig").write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: sandbox\n"
        "clusters: [{name: sandbox, cluster: {server: 'http://127.0.0.1:16443'}}]\n"
        "contexts: [{name: sandbox, context: {cluster: sandbox, user: sandbox}}]\n"
        "users: [{name: sandbox, user: {}}]\n"
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def test_nothing_configured_uses_the_running_sandbox_and_names_it(tmp_path: Path, home: Path) -> None:
    state_dir = tmp_path / ".sandbox"
    running_sandbox(state_dir)
    s, sandbox = resolve(Settings(state_dir=str(state_dir)), {"HOME": str(home)})
    assert sandbox
    assert s.kubeconfig == str(state_dir.resolve() / "kubeconfig")
    assert s.temporal_address == "127.0.0.1:17233"
    assert s.prometheus.url == "http://127.0.0.1:19090"
    line = cluster_line(s, sandbox, {"HOME": str(home)})
    assert line.startswith("cluster: the local sandbox at http://127.0.0.1:16443 (kubeconfig ")


def test_explicit_temporal_and_prometheus_are_kept(tmp_path: Path, home: Path) -> None:
    state_dir = tmp_path / ".sandbox"
    running_sandbox(state_dir)
    given = Settings(state_dir=str(state_dir), temporal_address="127.0.0.1:7999",
                     prometheus=PrometheusSettings(url="http://127.0.0.1:9999"))
    s, sandbox = resolve(given, {"HOME": str(home)})
    assert sandbox and s.kubeconfig
    assert (s.temporal_address, s.prometheus.url) == ("127.0.0.1:7999", "http://127.0.0.1:9999")


@pytest.mark.parametrize("case", ["kubeconfig", "in-cluster", "home-kubeconfig", "no-sandbox", "dead-sandbox"])
def test_a_configured_cluster_wins_and_a_dead_sandbox_is_not_used(case: str, tmp_path: Path, home: Path) -> None:
    state_dir = tmp_path / ".sandbox"
    running_sandbox(state_dir, alive=case != "dead-sandbox")
    if case == "no-sandbox":
        (state_dir / "state.json").unlink()
    env = {"HOME": str(home)}
    given = Settings(state_dir=str(state_dir))
    if case == "kubeconfig":
        given = Settings(state_dir=str(state_dir), kubeconfig=str(tmp_path / "mine.yaml"))
    elif case == "in-cluster":
        env["KUBERNETES_SERVICE_HOST"] = "10.0.0.1"
    elif case == "home-kubeconfig":
        (home / ".kube").mkdir()
        (home / ".kube" / "config").write_text("apiVersion: v1\nkind: Config\n")
    s, sandbox = resolve(given, env)
    assert not sandbox
    assert s == given
    if case in ("no-sandbox", "dead-sandbox"):
        assert "none configured" in cluster_line(s, sandbox, env)
