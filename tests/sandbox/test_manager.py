"""``sandbox up | status | down`` for real: Temporal, Prometheus and the cluster daemon as processes.

One full round trip (the expensive part, a few seconds) checks that the pieces work together:
a Deployment applied through the kubeconfig becomes pod processes, the traffic generator
reaches them, Prometheus scrapes them with their own labels, a second ``up`` is refused,
and ``down`` leaves no process and none of its files behind, but keeps the user's.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from orchestrator.errors import OrchestratorError
from orchestrator.sandbox import manager
from orchestrator.sandbox.manager import (
    AlreadyRunningError,
    PortInUseError,
    PrometheusMissingError,
    SandboxError,
)
from orchestrator.sandbox.runtime import pid_alive


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def eventually(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as e:  # the thing may not be there yet
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


def prom_query(url: str, query: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': query})}", timeout=5) as r:
        body = json.loads(r.read())
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and pid_alive(int(proc.name)):
            found.append(int(proc.name))
    return found


@pytest.fixture
def sandbox_dir(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "sandbox"
    yield state
    manager.down(state)  # whatever a failing test left running


def test_up_status_down_round_trip(sandbox_dir: Path) -> None:
    sandbox_dir.mkdir()
    user_file = sandbox_dir / "notes.txt"
    user_file.write_text("mine")
    t_port, ui_port, api_port, prom_port = free_ports(4)

    info = manager.up(sandbox_dir, temporal_port=t_port, ui_port=ui_port, api_port=api_port, prometheus_port=prom_port)
    assert info.temporal_ui_url == f"http://127.0.0.1:{ui_port}"
    assert info.kube_api_url == f"http://127.0.0.1:{api_port}"
    assert {c.name for c in info.components} == {"temporal", "prometheus", "cluster"}
    assert all(c.alive for c in info.components)
    pids = {c.name: c.pid for c in info.components}

    # The kubeconfig works with the official client, and a Deployment becomes live processes.
    api = k8s_config.new_client_from_config(config_file=info.kubeconfig)
    labels = {"app": "web", "track": "stable", "version": "v1"}
    k8s.AppsV1Api(api).create_namespaced_deployment(
        "default",
        k8s.V1Deployment(
            metadata=k8s.V1ObjectMeta(name="web", labels=labels),
            spec=k8s.V1DeploymentSpec(
                replicas=2,
                selector=k8s.V1LabelSelector(match_labels=labels),
                template=k8s.V1PodTemplateSpec(
                    metadata=k8s.V1ObjectMeta(labels=labels),
                    spec=k8s.V1PodSpec(
                        containers=[
                            k8s.V1Container(
                                name="web", image="demo:v1", env=[k8s.V1EnvVar(name="ERROR_RATE", value="0.5")]
                            )
                        ]
                    ),
                ),
            ),
        ),
    )
    k8s.CoreV1Api(api).create_namespaced_service(
        "default",
        k8s.V1Service(
            metadata=k8s.V1ObjectMeta(name="web", labels={"app": "web"}),
            spec=k8s.V1ServiceSpec(selector={"app": "web"}, ports=[k8s.V1ServicePort(port=80)]),
        ),
    )

    def two_ready_pods_with_traffic() -> Any:
        st = manager.status(sandbox_dir)
        ready = [p for p in st.pods if p.ready and p.pid]
        web = [a for a in st.traffic if a.app == "web" and a.router == "service/web"]
        sent = sum(t.get("sent", 0) for a in web for t in a.tracks.values())
        return st if len(ready) == 2 and sent > 0 else None

    st = eventually(two_ready_pods_with_traffic)
    assert st.running
    assert {c.name: c.alive for c in st.components} == {"temporal": True, "prometheus": True, "cluster": True}
    pod_pids = [p.pid for p in st.pods if p.pid]
    assert len(pod_pids) == 2 and all(pid_alive(pid) for pid in pod_pids)
    [web] = [a for a in st.traffic if a.app == "web"]
    assert web.router == "service/web"
    # ERROR_RATE reached the pods: the generator sees failures.
    assert eventually(lambda: sum(t["failed"] for a in manager.status(sandbox_dir).traffic for t in a.tracks.values()))

    # Prometheus scrapes both pods and labels their series from the pods' labels, as on a cluster.
    series = eventually(
        lambda: (
            r if len(r := prom_query(info.prometheus_url, 'sum by (pod, track) (http_requests_total{app="web"})')) == 2
            else None
        )
    )  # fmt: skip
    assert {s["metric"]["track"] for s in series} == {"stable"}
    assert {s["metric"]["pod"] for s in series} == {p.name for p in st.pods}
    raw = prom_query(info.prometheus_url, 'http_requests_total{app="web"}')
    # No honor_labels: what the process claims for itself stays exported_*, the pod's labels win.
    assert raw and all(s["metric"]["version"] == "v1" and s["metric"]["namespace"] == "default" for s in raw)

    # A second `up` on the same state directory is refused and changes nothing.
    with pytest.raises(AlreadyRunningError, match="already running"):
        manager.up(sandbox_dir, temporal_port=t_port, ui_port=ui_port, api_port=api_port, prometheus_port=prom_port)
    assert all(pid_alive(pid) for pid in pids.values())

    stopped = manager.down(sandbox_dir)
    assert {s.split(" ")[0] for s in stopped} >= {"temporal", "prometheus", "cluster"}
    for pid in [*pids.values(), *pod_pids]:
        assert not pid_alive(pid), f"pid {pid} still running after down"
    # Nor any other process started for this sandbox (children of the servers included).
    assert processes_mentioning(str(sandbox_dir)) == []
    assert not (sandbox_dir / "state.json").exists()
    assert not (sandbox_dir / "kubeconfig").exists()
    assert user_file.read_text() == "mine"
    assert manager.status(sandbox_dir).running is False

    # Twice is fine, and finds nothing to stop.
    assert manager.down(sandbox_dir) == []
    assert user_file.read_text() == "mine"


def test_port_in_use_is_refused_naming_the_port(sandbox_dir: Path) -> None:
    t_port, ui_port, api_port = free_ports(3)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = int(busy.getsockname()[1])
        with pytest.raises(PortInUseError) as err:
            manager.up(sandbox_dir, temporal_port=t_port, ui_port=ui_port, api_port=api_port, prometheus_port=taken)
    assert str(taken) in str(err.value) and "Prometheus" in str(err.value)
    assert isinstance(err.value, OrchestratorError)
    assert not (sandbox_dir / "state.json").exists()


def test_missing_prometheus_binary_is_a_clear_error(sandbox_dir: Path) -> None:
    ports = free_ports(4)
    with pytest.raises(PrometheusMissingError, match=r"prometheus is not installed: apt-get install -y prometheus"):
        manager.up(
            sandbox_dir,
            temporal_port=ports[0],
            ui_port=ports[1],
            api_port=ports[2],
            prometheus_port=ports[3],
            prometheus_binary=str(sandbox_dir.parent / "no-such-prometheus"),
        )
    assert not (sandbox_dir / "state.json").exists()


def test_bad_scrape_interval_and_duplicate_ports_refused(sandbox_dir: Path) -> None:
    a, b, c = free_ports(3)
    with pytest.raises(SandboxError, match="scrape interval"):
        manager.up(sandbox_dir, temporal_port=a, ui_port=b, api_port=c, prometheus_port=a + 1, scrape_interval=0.5)
    with pytest.raises(SandboxError, match=f"port {a} is given both"):
        manager.up(sandbox_dir, temporal_port=a, ui_port=b, api_port=c, prometheus_port=a)


def test_status_and_down_without_sandbox(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("user data")
    assert manager.status(tmp_path).running is False
    assert manager.down(tmp_path) == []
    assert (tmp_path / "keep.txt").read_text() == "user data"
