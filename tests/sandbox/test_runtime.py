"""The sandbox's moving parts: the demo service, pods as processes, and traffic routing.

Real processes throughout: the demo service is started as ``python -m``, pods through the
sandbox API server with ``ProcessRuntime``, traffic over real HTTP. Assertions are about
behaviour (counts, proportions within generous bounds, processes gone), never timings.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from orchestrator.sandbox import demo_service
from orchestrator.sandbox.apiserver import ApiServer
from orchestrator.sandbox.prometheus import Target, TargetsFile, render_config
from orchestrator.sandbox.runtime import (
    PORT_ANNOTATION,
    ProcessRuntime,
    image_tag,
    kill_recorded,
    pid_alive,
    pod_environment,
)
from orchestrator.sandbox.traffic import (
    ClusterSnapshot,
    TrafficGenerator,
    ready_endpoints,
    routing_table,
    running_endpoints,
)

# -- helpers ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def eventually(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A small parser of the text format: (name, labels) -> value."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        name, _, rest = head.partition("{")
        labels = frozenset(
            (k, v.strip('"')) for k, v in (part.split("=", 1) for part in rest.rstrip("}").split(",") if part)
        )
        out[(name, labels)] = float(value)
    return out


def total(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and want <= set(ls))


class Service:
    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture
def start_service() -> Iterator[Callable[..., Service]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(wait_ready: bool = True, **env: str) -> Service:
        port = free_port()
        full = dict(
            os.environ, PORT=str(port), NAMESPACE="shop", APP="cart", TRACK="canary", VERSION="v9", POD="cart-1"
        )
        full.update(env)
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.sandbox.demo_service"], env=full)
        started.append(proc)
        svc = Service(proc, port)

        def answers() -> bool:
            try:
                return get(f"{svc.url}/healthz", 0.5)[0] in (200, 503)
            except OSError:
                return False

        eventually(answers)
        if wait_ready:
            eventually(lambda: get(f"{svc.url}/healthz")[0] == 200)
        return svc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(5)


# -- demo service ----------------------------------------------------------------------


def test_error_pattern_is_exact_over_any_window() -> None:
    for rate, window, expected in ((0.1, 10, 1), (0.25, 4, 1), (0.5, 10, 5), (0.0, 10, 0), (1.0, 7, 7)):
        for start in range(1, 200):
            errors = sum(demo_service.is_error(n, rate) for n in range(start, start + window))
            assert errors == expected, (rate, start)


def test_latency_parsing() -> None:
    assert demo_service.parse_latency("50") == (50.0, 50.0)
    assert demo_service.parse_latency("50-150") == (50.0, 150.0)
    with pytest.raises(ValueError):
        demo_service.parse_latency("150-50")


def test_error_rate_gives_exact_share_of_500s(start_service: Callable[..., Service]) -> None:
    svc = start_service(ERROR_RATE="0.3")
    codes = [get(f"{svc.url}/")[0] for _ in range(20)]
    assert codes.count(500) == 6
    assert codes.count(200) == 14
    metrics = parse_metrics(get(f"{svc.url}/metrics")[1])
    labels = {"namespace": "shop", "app": "cart", "track": "canary", "version": "v9", "pod": "cart-1"}
    assert total(metrics, "http_requests_total", code="500", **labels) == 6
    assert total(metrics, "http_requests_total", code="200", **labels) == 14
    # /metrics and /healthz are not part of the work and are not counted.
    assert total(metrics, "http_requests_total") == 20


def test_no_errors_by_default_and_error_series_exported_at_zero(start_service: Callable[..., Service]) -> None:
    svc = start_service()
    assert {get(f"{svc.url}/")[0] for _ in range(10)} == {200}
    metrics = parse_metrics(get(f"{svc.url}/metrics")[1])
    assert ("http_requests_total", frozenset({
        ("namespace", "shop"), ("app", "cart"), ("track", "canary"), ("version", "v9"), ("pod", "cart-1"),
        ("code", "500"),
    })) in metrics  # fmt: skip


def test_latency_is_added_and_recorded_in_histogram(start_service: Callable[..., Service]) -> None:
    svc = start_service(LATENCY_MS="120")
    for _ in range(3):
        t0 = time.monotonic()
        assert get(f"{svc.url}/")[0] == 200
        assert time.monotonic() - t0 >= 0.12
    metrics = parse_metrics(get(f"{svc.url}/metrics")[1])
    assert total(metrics, "http_request_duration_seconds_count", code="200") == 3
    # Nothing can land in a bucket below the added latency; everything is at most 10 s.
    assert total(metrics, "http_request_duration_seconds_bucket", code="200", le="0.1") == 0
    assert total(metrics, "http_request_duration_seconds_bucket", code="200", le="10") == 3
    assert total(metrics, "http_request_duration_seconds_sum", code="200") >= 0.36


def test_crash_after_exits_non_zero(start_service: Callable[..., Service]) -> None:
    svc = start_service(CRASH_AFTER_SECONDS="0.5")
    assert svc.proc.wait(15) != 0


def test_startup_seconds_delays_readiness(start_service: Callable[..., Service]) -> None:
    svc = start_service(wait_ready=False, STARTUP_SECONDS="1.5")
    assert get(f"{svc.url}/healthz")[0] == 503
    eventually(lambda: get(f"{svc.url}/healthz")[0] == 200)


def test_metrics_are_valid_exposition_format(start_service: Callable[..., Service]) -> None:
    svc = start_service(ERROR_RATE="0.5", LATENCY_MS="1-3", POD='we"ird\\pod')
    for _ in range(4):
        get(f"{svc.url}/")
    status, text = get(f"{svc.url}/metrics")
    assert status == 200
    assert 'pod="we\\"ird\\\\pod"' in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install -y prometheus)")
    # promtool parses with Prometheus' own parser; exit 0 means the exposition is valid.
    result = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


# -- pure pieces -----------------------------------------------------------------------


def test_pod_environment_from_template() -> None:
    pod = {
        "metadata": {"name": "web-abc", "namespace": "shop", "labels": {"app": "web", "track": "canary"}},
        "spec": {
            "containers": [
                {
                    "image": "registry:5000/web:v3",
                    "env": [
                        {"name": "ERROR_RATE", "value": "0.1"},
                        {"name": "PORT", "value": "1"},  # reserved: the runtime decides the port
                        {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "x", "key": "y"}}},
                    ],
                }
            ]
        },
    }
    env = pod_environment(pod, 4321)
    assert env == {
        "ERROR_RATE": "0.1",
        "PORT": "4321",
        "NAMESPACE": "shop",
        "APP": "web",
        "TRACK": "canary",
        "VERSION": "v3",
        "POD": "web-abc",
    }
    assert image_tag("demo") == "latest"
    assert image_tag("localhost:5000/demo") == "latest"


def test_targets_file_rewritten_only_on_change(tmp_path: Path) -> None:
    targets = TargetsFile(tmp_path / "targets.json")
    assert targets.update([Target("shop", "a", 1001)])
    assert not targets.update([Target("shop", "a", 1001)])
    assert targets.update([Target("shop", "a", 1001), Target("shop", "b", 1002)])
    assert sorted(targets.read(), key=lambda t: t.pod) == [Target("shop", "a", 1001), Target("shop", "b", 1002)]
    config = render_config(2.0, tmp_path / "targets.json")
    assert "honor_labels" not in config and '"scrape_interval": "2000ms"' in config


def _pod(name: str, track: str, port: int, ready: bool = True, app: str = "web") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "shop",
            "labels": {"app": app, "track": track},
            "annotations": {PORT_ANNOTATION: str(port)},
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def _svc(name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "shop", "labels": {"app": "web"}}, "spec": {"selector": selector}}


def _share(route: Any, n: int = 4000) -> dict[str, float]:
    rng = random.Random(1)
    counts: dict[str, int] = {}
    for _ in range(n):
        ep = route.pick(rng)
        key = ep.track if ep else "none"
        counts[key] = counts.get(key, 0) + 1
    return {k: v / n for k, v in counts.items()}


def test_routing_by_replica_ratio_without_router() -> None:
    snap = ClusterSnapshot(
        services=[_svc("web", {"app": "web"})],
        pods=[
            _pod("s1", "stable", 1),
            _pod("s2", "stable", 2),
            _pod("s3", "stable", 3),
            _pod("c1", "canary", 4),
            _pod("c2", "canary", 5, ready=False),
        ],
    )
    [route] = routing_table(snap)
    assert route.router == "service/web"
    share = _share(route)
    assert share["stable"] == pytest.approx(0.75, abs=0.05)
    assert share["canary"] == pytest.approx(0.25, abs=0.05)


def test_routing_by_httproute_weights() -> None:
    snap = ClusterSnapshot(
        services=[
            _svc("web", {"app": "web"}),
            _svc("web-stable", {"app": "web", "track": "stable"}),
            _svc("web-canary", {"app": "web", "track": "canary"}),
        ],
        pods=[_pod("s1", "stable", 1), _pod("s2", "stable", 2), _pod("s3", "stable", 3), _pod("c1", "canary", 4)],
        httproutes=[
            {
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {
                    "rules": [
                        {
                            "backendRefs": [
                                {"name": "web-stable", "port": 80, "weight": 90},
                                {"name": "web-canary", "port": 80, "weight": 10},
                            ]
                        }
                    ]
                },
            }
        ],
    )
    [route] = routing_table(snap)
    assert route.router == "httproute/web"
    share = _share(route)
    assert share["stable"] == pytest.approx(0.9, abs=0.04)
    assert share["canary"] == pytest.approx(0.1, abs=0.04)


def test_routing_by_virtualservice_weights_and_subsets() -> None:
    snap = ClusterSnapshot(
        services=[_svc("web", {"app": "web"})],
        pods=[_pod("s1", "stable", 1), _pod("c1", "canary", 4)],
        virtualservices=[
            {
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {
                    "http": [
                        {
                            "route": [
                                {
                                    "destination": {"host": "web.shop.svc.cluster.local", "subset": "stable"},
                                    "weight": 30,
                                },
                                {"destination": {"host": "web", "subset": "canary"}, "weight": 70},
                            ]
                        }
                    ]
                },
            }
        ],
        destinationrules=[
            {
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {
                    "host": "web",
                    "subsets": [
                        {"name": "stable", "labels": {"track": "stable"}},
                        {"name": "canary", "labels": {"track": "canary"}},
                    ],
                },
            }
        ],
    )
    [route] = routing_table(snap)
    assert route.router == "virtualservice/web"
    share = _share(route)
    assert share["stable"] == pytest.approx(0.3, abs=0.04)
    assert share["canary"] == pytest.approx(0.7, abs=0.04)


def test_weight_on_backend_without_ready_pods_is_a_failure_not_a_detour() -> None:
    snap = ClusterSnapshot(
        services=[_svc("web-stable", {"app": "web", "track": "stable"}), _svc("web-canary", {"track": "canary"})],
        pods=[_pod("s1", "stable", 1)],
        httproutes=[
            {
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {
                    "rules": [
                        {"backendRefs": [{"name": "web-stable", "weight": 1}, {"name": "web-canary", "weight": 1}]}
                    ]
                },
            }
        ],
    )
    [route] = routing_table(snap)
    assert route.sends()
    share = _share(route)
    assert share["none"] == pytest.approx(0.5, abs=0.05)


def test_plain_service_without_ready_pods_gets_no_load_but_its_pods_are_scraped() -> None:
    snap = ClusterSnapshot(services=[_svc("web", {"app": "web"})], pods=[_pod("s1", "stable", 1, ready=False)])
    [route] = routing_table(snap)
    assert not route.sends()
    assert ready_endpoints(snap) == []
    # Scraping starts with the process, before readiness.
    assert [ep.pod for ep in running_endpoints(snap)] == ["s1"]


# -- the runtime, direct ---------------------------------------------------------------


def test_process_runtime_lifecycle(tmp_path: Path) -> None:
    runtime = ProcessRuntime(tmp_path)
    pod = {
        "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web", "version": "v2"}},
        "spec": {"containers": [{"image": "demo:v1", "env": [{"name": "ERROR_RATE", "value": "1"}]}]},
    }
    try:
        fields = runtime.start(pod)
        assert fields is not None
        port = int(fields["annotations"][PORT_ANNOTATION])
        assert fields["status"]["podIP"] == "127.0.0.1"
        eventually(lambda: runtime.ready(pod))
        assert runtime.alive(pod)
        assert get(f"http://127.0.0.1:{port}/")[0] == 500  # the template's env reached the process
        metrics = get(f"http://127.0.0.1:{port}/metrics")[1]
        assert 'version="v2"' in metrics and 'pod="web-1"' in metrics
        assert "track=" not in metrics, "a pod without a track label exports none, as a stable pod on a cluster"
        pid = runtime.pid_of(pod)
        assert pid is not None
        assert (tmp_path / "pods" / "shop_web-1.pid").read_text().strip() == str(pid)
        assert (tmp_path / "logs" / "pods" / "shop_web-1.log").exists()
        runtime.stop(pod)
        assert not runtime.alive(pod)
        assert not pid_alive(pid)
        assert not (tmp_path / "pods" / "shop_web-1.pid").exists()
    finally:
        runtime.stop_all()


def test_kill_recorded_stops_leftover_pods(tmp_path: Path) -> None:
    runtime = ProcessRuntime(tmp_path)
    pod = {"metadata": {"name": "left", "namespace": "default", "labels": {"app": "x"}}, "spec": {"containers": [{}]}}
    runtime.start(pod)
    pid = runtime.pid_of(pod)
    assert pid is not None and pid_alive(pid)
    # As if the owner had been killed: only the PID file is left to go by.
    stopped = kill_recorded(tmp_path)
    assert stopped == [f"pod default/left (pid {pid})"]
    runtime.alive(pod)  # reaps the child
    assert not pid_alive(pid)
    assert kill_recorded(tmp_path) == []


# -- the runtime and the traffic generator against the sandbox API server --------------


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[ApiServer, ProcessRuntime, k8s.ApiClient]]:
    runtime = ProcessRuntime(tmp_path)
    server = ApiServer("127.0.0.1", 0, runtime=runtime, controller=True, tick=0.2).start()
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    api = k8s_config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield server, runtime, api
    finally:
        server.stop()
        runtime.stop_all()


def deployment(name: str, replicas: int, track: str, env: dict[str, str] | None = None) -> k8s.V1Deployment:
    labels = {"app": "web", "track": track}
    return k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name=name, labels=labels),
        spec=k8s.V1DeploymentSpec(
            replicas=replicas,
            selector=k8s.V1LabelSelector(match_labels=labels),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=labels),
                spec=k8s.V1PodSpec(
                    containers=[
                        k8s.V1Container(
                            name="web",
                            image=f"demo:{track}",
                            env=[k8s.V1EnvVar(name=k, value=v) for k, v in (env or {}).items()],
                        )
                    ]
                ),
            ),
        ),
    )


def service(name: str, selector: dict[str, str]) -> k8s.V1Service:
    return k8s.V1Service(
        metadata=k8s.V1ObjectMeta(name=name, labels={"app": "web"}),
        spec=k8s.V1ServiceSpec(selector=selector, ports=[k8s.V1ServicePort(port=80)]),
    )


def ready_pods(api: k8s.ApiClient, selector: str = "app=web") -> dict[str, int]:
    """Ready pod name -> port, as recorded by the runtime."""
    out: dict[str, int] = {}
    for pod in k8s.CoreV1Api(api).list_namespaced_pod("default", label_selector=selector).items:
        ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
        port = (pod.metadata.annotations or {}).get(PORT_ANNOTATION)
        if ready and port and not pod.metadata.deletion_timestamp:
            out[pod.metadata.name] = int(port)
    return out


def test_deployment_replicas_become_processes_and_dead_ones_are_replaced(
    cluster: tuple[ApiServer, ProcessRuntime, k8s.ApiClient],
) -> None:
    _, runtime, api = cluster
    k8s.AppsV1Api(api).create_namespaced_deployment("default", deployment("web", 2, "stable"))
    pods = eventually(lambda: p if len(p := ready_pods(api)) == 2 else None)
    for port in pods.values():
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    pids = runtime.pids()
    assert len(pids) == 2 and len(set(pids.values())) == 2
    assert all(pid_alive(pid) for pid in pids.values())

    # A process dies: the controller deletes its pod and a new pod gets a new process.
    victim_key, victim_pid = sorted(pids.items())[0]
    os.kill(victim_pid, signal.SIGKILL)

    def replaced() -> dict[str, int] | None:
        now = ready_pods(api)
        return now if len(now) == 2 and victim_key.split("/")[1] not in now else None

    pods_after = eventually(replaced)
    new_pids = runtime.pids()
    assert victim_pid not in new_pids.values()
    assert not pid_alive(victim_pid)
    assert all(pid_alive(pid) for pid in new_pids.values())
    for port in pods_after.values():
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200

    # Deleting the Deployment stops every process.
    k8s.AppsV1Api(api).delete_namespaced_deployment("web", "default")
    eventually(lambda: not runtime.pids() and not ready_pods(api))
    eventually(lambda: not any(pid_alive(pid) for pid in new_pids.values()))


def _track_totals(ports: dict[str, int]) -> dict[str, float]:
    """Requests served per track, summed over the demo services' own metrics."""
    totals: dict[str, float] = {}
    for port in ports.values():
        metrics = parse_metrics(get(f"http://127.0.0.1:{port}/metrics")[1])
        for (name, labels), value in metrics.items():
            if name == "http_requests_total":
                track = dict(labels)["track"]
                totals[track] = totals.get(track, 0.0) + value
    return totals


def _served_share(ports: dict[str, int], requests: int) -> dict[str, float]:
    before = _track_totals(ports)

    def enough() -> dict[str, float] | None:
        now = _track_totals(ports)
        delta = {t: now.get(t, 0.0) - before.get(t, 0.0) for t in now}
        return delta if sum(delta.values()) >= requests else None

    delta = eventually(enough, timeout=30)
    n = sum(delta.values())
    return {t: v / n for t, v in delta.items()}


def test_traffic_follows_replica_ratio_then_httproute_weights(
    cluster: tuple[ApiServer, ProcessRuntime, k8s.ApiClient],
) -> None:
    _, _, api = cluster
    apps = k8s.AppsV1Api(api)
    core = k8s.CoreV1Api(api)
    apps.create_namespaced_deployment("default", deployment("web", 3, "stable"))
    apps.create_namespaced_deployment("default", deployment("web-canary", 1, "canary", {"ERROR_RATE": "0.5"}))
    core.create_namespaced_service("default", service("web", {"app": "web"}))
    core.create_namespaced_service("default", service("web-stable", {"app": "web", "track": "stable"}))
    core.create_namespaced_service("default", service("web-canary", {"app": "web", "track": "canary"}))
    ports = eventually(lambda: p if len(p := ready_pods(api)) == 4 else None)

    generator = TrafficGenerator(api, rate=100.0, refresh_interval=0.2, seed=7)
    generator.start()
    try:
        eventually(lambda: any(len(r.backends[0].endpoints) == 4 for r in generator.routes()))
        [route] = generator.routes()
        assert route.router == "service/web"
        # No router: 3 stable replicas and 1 canary share the load by count.
        share = _served_share(ports, 300)
        assert share["canary"] == pytest.approx(0.25, abs=0.1)
        assert share["stable"] == pytest.approx(0.75, abs=0.1)

        # An HTTPRoute now sends 80 % to the canary, against the replica ratio.
        k8s.CustomObjectsApi(api).create_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", "default", "httproutes",
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": {"name": "web"},
                "spec": {
                    "parentRefs": [{"name": "gateway"}],
                    "rules": [{"backendRefs": [
                        {"name": "web-stable", "port": 80, "weight": 20},
                        {"name": "web-canary", "port": 80, "weight": 80},
                    ]}],
                },
            },
        )  # fmt: skip
        eventually(lambda: generator.routes()[0].router == "httproute/web")
        generator.reset_counts()
        share = _served_share(ports, 300)
        assert share["canary"] == pytest.approx(0.8, abs=0.1)
        assert share["stable"] == pytest.approx(0.2, abs=0.1)

        # The generator's own counters agree, and see the canary's injected errors.
        counts = generator.counts()
        canary, stable = counts[("default", "web", "canary")], counts[("default", "web", "stable")]
        assert canary.sent / (canary.sent + stable.sent) == pytest.approx(0.8, abs=0.1)
        assert canary.failed == pytest.approx(canary.sent / 2, abs=max(3, canary.sent * 0.1))
        assert stable.failed == 0
    finally:
        generator.stop()
