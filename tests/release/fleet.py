"""A fleet of sandbox clusters for release tests: each its own API server, pods, metrics and Prometheus.

Each cluster is an independent sandbox API server (with its controller) whose pods are virtual
(``orchestrator.sandbox.virtual``: ready ``READY_AFTER`` seconds after they start, failing the share
of requests their ``ERROR_RATIO`` environment variable says), one exporter for its pods, and its own
real Prometheus scraping only that exporter — no shared Prometheus with a ``cluster`` label, which
would be kinder than production. Each test gets one worker per cluster on that cluster's queue (its
own Kubernetes API, its own Prometheus) plus the central worker, which reaches no cluster at all.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config
from temporalio.client import Client

from orchestrator.config import PrometheusSettings, Settings
from orchestrator.sandbox.apiserver import ApiServer
from orchestrator.sandbox.virtual import SyntheticExporter, VirtualPods, VirtualPrometheus
from orchestrator.specs.operator import ClusterEntry, OperatorSettings, OperatorSpec
from orchestrator.worker import build_worker
from tests.fixtures_kube import deployment_manifest
from tests.fixtures_temporal import free_port

READY_AFTER = 0.6  # a new pod serves this long after it started: long enough to see a roll drop capacity
NAMESPACE = "shop"


@dataclass
class Cluster:
    name: str
    server: ApiServer
    pods: VirtualPods
    exporter: SyntheticExporter
    prometheus: VirtualPrometheus
    process: subprocess.Popen[bytes]
    api: client.ApiClient

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    def image(self, deployment: str) -> str:
        dep = self.apps.read_namespaced_deployment(deployment, NAMESPACE)
        return str(dep.spec.template.spec.containers[0].image)

    def ready_stable_pods(self, app: str) -> int:
        """Ready, not terminating pods of the stable Deployment (no ``track`` label), read over HTTP."""
        pods = client.CoreV1Api(self.api).list_namespaced_pod(NAMESPACE, label_selector=f"app={app},!track").items
        return sum(1 for p in pods if p.metadata.deletion_timestamp is None
                   and any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or [])))


def start_cluster(name: str, workdir: Path) -> Cluster:
    pods = VirtualPods(ready_after=READY_AFTER)
    server = ApiServer(runtime=pods, tick=0.1).start()
    exporter = SyntheticExporter(pods).start()
    prometheus = VirtualPrometheus(workdir / name / "prometheus", exporter.port, port=free_port(),
                                   scrape_interval=2.0)
    process = prometheus.start()
    prometheus.wait_ready(60, process)
    kubeconfig = server.write_kubeconfig(workdir / name / "kubeconfig")
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    api = client.ApiClient(configuration)
    client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
    return Cluster(name, server, pods, exporter, prometheus, process, api)


def stop_cluster(cluster: Cluster) -> None:
    cluster.process.terminate()
    try:
        cluster.process.wait(10)
    except subprocess.TimeoutExpired:
        cluster.process.kill()
    cluster.exporter.stop()
    cluster.api.close()
    cluster.server.stop()


@contextlib.contextmanager
def fleet(names: list[str], workdir: Path) -> Iterator[dict[str, Cluster]]:
    clusters: dict[str, Cluster] = {}
    try:
        for name in names:
            clusters[name] = start_cluster(name, workdir)
        yield clusters
    finally:
        for cluster in clusters.values():
            stop_cluster(cluster)


@dataclass
class Workers:
    central: str
    queues: dict[str, str]
    operator: OperatorSettings
    suffix: str = field(default_factory=lambda: secrets.token_hex(3))


@contextlib.asynccontextmanager
async def running(temporal: Client, clusters: dict[str, Cluster], *, absent: tuple[str, ...] = (),
                  ) -> AsyncIterator[Workers]:
    """The central worker and one worker per cluster (none for the clusters in ``absent``)."""
    suffix = secrets.token_hex(3)
    queues = {name: f"orchestrator-{name}-{suffix}" for name in clusters}
    operator = OperatorSettings(spec=OperatorSpec(clusters=[ClusterEntry(name=n, task_queue=q)
                                                            for n, q in queues.items()]))
    central = f"central-{suffix}"
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(build_worker(
            temporal, Settings(task_queue=central), operator=operator))
        for name, cluster in clusters.items():
            if name in absent:
                continue
            settings = Settings(task_queue=queues[name],
                                prometheus=PrometheusSettings(url=cluster.prometheus.url, timeout_seconds=5))
            await stack.enter_async_context(build_worker(temporal, settings, api_client=cluster.api))
        yield Workers(central=central, queues=queues, operator=operator)


def make_stable(clusters: dict[str, Cluster], app: str, replicas: int = 4) -> None:
    for cluster in clusters.values():
        manifest = deployment_manifest(app, replicas=replicas, image="demo:1")
        cluster.apps.create_namespaced_deployment(NAMESPACE, manifest)
    deadline = time.monotonic() + 30
    while any(c.ready_stable_pods(app) < replicas for c in clusters.values()):
        assert time.monotonic() < deadline, "the stable pods did not become ready"
        time.sleep(0.1)


class Sampler:
    """Samples a cluster's ready stable pods every few milliseconds while it runs; ``low`` is the least seen."""

    def __init__(self, cluster: Cluster, app: str) -> None:
        self.cluster, self.app = cluster, app
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.cluster.ready_stable_pods(self.app))
            time.sleep(0.02)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def low(self) -> int:
        return min(self.samples)
