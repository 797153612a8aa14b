"""Fleet release figures: the parent's overhead per wave, its history, and the time from a fleet abort
to every canary at weight 0.

A release of ``--clusters`` clusters in ``--waves`` waves, simulated in one process: one in-process
sandbox API server per cluster (virtual pods, ready ``--ready-after`` seconds after they start), one
worker per cluster on its own task queue plus the central worker, all against a real Temporal dev
server. The canary is ``setWeight 50`` then a ``--hold`` pause on 4 replicas; bakes last ``--bake``
seconds with no checks (one empty Prometheus answers the pre-flight rails; the figures are the
parent's, not the gates').

* overhead per wave = (the wave's end - its start, as the parent saw them) - the slowest canary of
  the wave (its child workflow's close - start, as Temporal recorded them): what the parent adds over
  the slowest child path (target: under 5 s per wave);
* the parent's history events for the whole release;
* abort: ``--aborts`` releases of all clusters in one wave; once every canary serves traffic, ``abort``;
  the time until the last canary reported weight 0 (its own ``weight_zero_at``) (target: p99 under 10 s).

    python benchmarks/fleet.py [--clusters 20] [--waves 3] [--aborts 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config
from temporalio.client import Client, WorkflowHandle, WorkflowQueryFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from orchestrator.api.canary import CanaryStatus
from orchestrator.api.common import ControlRequest
from orchestrator.api.release import ClusterPhase, ReleaseInput, ReleasePhase, ReleaseState, workflow_id
from orchestrator.config import PrometheusSettings, Settings
from orchestrator.sandbox.apiserver import ApiServer
from orchestrator.sandbox.virtual import SyntheticExporter, VirtualPods, VirtualPrometheus
from orchestrator.specs.operator import ClusterEntry, OperatorSettings, OperatorSpec
from orchestrator.specs.release import Release
from orchestrator.worker import build_worker
from workflows.release import ReleaseWorkflow

NAMESPACE = "shop"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def temporal_server() -> Iterator[str]:
    port, work = free_port(), tempfile.mkdtemp(prefix="fleet-temporal-")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "temporal"), "server", "start-dev", "--headless",
                             "--ip", "127.0.0.1", "--port", str(port), "--db-filename", f"{work}/t.db",
                             "--log-level", "error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.monotonic() < deadline, "Temporal did not start"
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


class Cluster:
    def __init__(self, name: str, work: Path, ready_after: float) -> None:
        self.name = name
        self.server = ApiServer(runtime=VirtualPods(ready_after=ready_after), tick=0.2).start()
        configuration = client.Configuration()
        kubeconfig = self.server.write_kubeconfig(work / f"{name}.kubeconfig")
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        self.api = client.ApiClient(configuration)
        client.CoreV1Api(self.api).create_namespace({"metadata": {"name": NAMESPACE}})

    def deploy(self, app: str) -> None:
        labels = {"app": app}
        client.AppsV1Api(self.api).create_namespaced_deployment(NAMESPACE, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": app, "labels": labels},
            "spec": {"replicas": 4, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "demo:1"}]}}}})

    def stop(self) -> None:
        self.api.close()
        self.server.stop()


@contextlib.asynccontextmanager
async def workers(temporal: Client, clusters: list[Cluster], prometheus: str
                  ) -> AsyncIterator[tuple[str, dict[str, str]]]:
    suffix = secrets.token_hex(3)
    queues = {c.name: f"orchestrator-{c.name}-{suffix}" for c in clusters}
    operator = OperatorSettings(spec=OperatorSpec(clusters=[ClusterEntry(name=n, task_queue=q)
                                                            for n, q in queues.items()]))
    central = f"central-{suffix}"
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(build_worker(temporal, Settings(task_queue=central), operator=operator,
                                                     max_concurrent_activities=16))
        for c in clusters:
            settings = Settings(task_queue=queues[c.name], prometheus=PrometheusSettings(url=prometheus))
            await stack.enter_async_context(build_worker(temporal, settings, api_client=c.api,
                                                         max_concurrent_activities=8))
        yield central, queues


def release(app: str, waves: list[list[str]], hold: float, bake: float) -> Release:
    return Release.model_validate({
        "apiVersion": "orchestrator.dev/v1", "kind": "Release", "metadata": {"name": app},
        "spec": {
            "canary": {"apiVersion": "orchestrator.dev/v1", "kind": "CanaryRollout", "metadata": {"name": app},
                       "spec": {"target": {"namespace": NAMESPACE, "deployment": app}, "change": {"image": "demo:2"},
                                "steps": [{"setWeight": 50}, {"pause": {"duration": f"{hold}s"}}],
                                "progressDeadline": "60s"}},
            "waves": [{"clusters": w, **({"bake": {"duration": f"{bake}s"}} if bake else {})} for w in waves],
        }})


async def child_span(temporal: Client, wid: str) -> tuple[datetime, datetime]:
    info = await temporal.get_workflow_handle(wid).describe()
    assert info.start_time is not None and info.close_time is not None
    return info.start_time, info.close_time


async def healthy_release(temporal: Client, clusters: list[Cluster], prometheus: str, waves: int, hold: float,
                          bake: float) -> dict[str, Any]:
    app = f"fleet-{secrets.token_hex(3)}"
    for c in clusters:
        c.deploy(app)
    names = [c.name for c in clusters]
    size = -(-len(names) // waves)
    plan = [names[i:i + size] for i in range(0, len(names), size)]
    async with workers(temporal, clusters, prometheus) as (central, _):
        handle: WorkflowHandle[Any, ReleaseState] = await temporal.start_workflow(
            ReleaseWorkflow.run, ReleaseInput(release=release(app, plan, hold, bake)), id=workflow_id(app),
            task_queue=central)
        began = time.monotonic()
        state = await handle.result()
        took = time.monotonic() - began
    assert state.phase is ReleasePhase.COMPLETED, state.stop
    assert state.finished_at is not None
    marks = [e.at for e in state.events if e.message.startswith("wave ")] + [state.finished_at]
    overheads = []
    for index, wave in enumerate(plan):
        spans = [await child_span(temporal, state.cluster(n).workflow_id) for n in wave]
        slowest = max((end - start).total_seconds() for start, end in spans)
        wave_seconds = (marks[index + 1] - marks[index]).total_seconds() - bake
        overheads.append(wave_seconds - slowest)
    history = await handle.fetch_history()
    return {"seconds": took, "overheads": overheads, "history": len(history.events)}


async def abort_once(temporal: Client, clusters: list[Cluster], prometheus: str) -> float:
    app = f"abort-{secrets.token_hex(3)}"
    for c in clusters:
        c.deploy(app)
    async with workers(temporal, clusters, prometheus) as (central, _):
        handle: WorkflowHandle[Any, ReleaseState] = await temporal.start_workflow(
            ReleaseWorkflow.run, ReleaseInput(release=release(app, [[c.name for c in clusters]], 600, 0)),
            id=workflow_id(app), task_queue=central)
        # Every canary serves traffic (its setWeight applied) before the abort.
        while True:
            try:
                state = await handle.query(ReleaseWorkflow.status)
            except RPCError:  # a query timed out while twenty canaries start on a busy machine: ask again
                continue
            if all(c.workflow_id and c.phase is ClusterPhase.RUNNING for c in state.clusters):
                try:
                    weights = [await temporal.get_workflow_handle(c.workflow_id).query(
                        "status", result_type=CanaryStatus) for c in state.clusters]
                except RPCError:
                    weights = []  # a child named but not started yet
                if weights and all(w.weight == 50 for w in weights):
                    break
            await asyncio.sleep(0.2)
        sent = time.time()
        await handle.execute_update(ReleaseWorkflow.abort, ControlRequest(by="benchmark"))
        state = await handle.result()
        zeros = []
        for member in state.clusters:
            status = await closed_status(temporal, member.workflow_id)
            assert status.weight_zero_at is not None, f"{member.name} never reported weight 0"
            zeros.append(status.weight_zero_at.timestamp())
    return max(zeros) - sent


async def closed_status(temporal: Client, wid: str) -> CanaryStatus:
    # A query on a closed run replays its history; on a starved machine the replay can trip the SDK's
    # 2 s deadlock detector, which says nothing about the run: ask again.
    for attempt in range(5):
        try:
            status: CanaryStatus = await temporal.get_workflow_handle(wid).query("status", result_type=CanaryStatus)
            return status
        except (RPCError, WorkflowQueryFailedError):
            if attempt == 4:
                raise
            await asyncio.sleep(1)
    raise AssertionError("unreachable")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


async def main_async(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="fleet-"))
    clusters = [Cluster(f"c{i:02d}", work, args.ready_after) for i in range(1, args.clusters + 1)]
    # The pre-flight rails ask a Prometheus (alerts): one, empty, for every cluster; no gate reads it.
    exporter = SyntheticExporter(VirtualPods()).start()
    prom = VirtualPrometheus(work / "prometheus", exporter.port, port=free_port())
    process = prom.start()
    try:
        prom.wait_ready(60, process)
        with temporal_server() as address:
            temporal = await Client.connect(address, data_converter=pydantic_data_converter)
            healthy = await healthy_release(temporal, clusters, prom.url, args.waves, args.hold, args.bake)
            print(f"release of {args.clusters} clusters in {args.waves} waves: {healthy['seconds']:.1f} s, "
                  f"parent history {healthy['history']} events")
            print("parent overhead per wave over its slowest canary (s): "
                  + ", ".join(f"{o:.2f}" for o in healthy["overheads"]))
            aborts = []
            for i in range(args.aborts):
                aborts.append(await abort_once(temporal, clusters, prom.url))
                print(f"abort {i + 1}: every canary at weight 0 after {aborts[-1]:.2f} s", flush=True)
            if aborts:
                print(f"abort -> all {args.clusters} canaries at weight 0: median {statistics.median(aborts):.2f} s, "
                      f"p99 {pct(aborts, 99):.2f} s, max {max(aborts):.2f} s over {len(aborts)} aborts")
    finally:
        process.terminate()
        process.wait(10)
        exporter.stop()
        for c in clusters:
            c.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--waves", type=int, default=3)
    parser.add_argument("--aborts", type=int, default=20)
    parser.add_argument("--hold", type=float, default=3.0, help="seconds each canary pauses at 50 %%")
    parser.add_argument("--bake", type=float, default=2.0, help="seconds of bake between waves")
    parser.add_argument("--ready-after", type=float, default=0.5)
    args = parser.parse_args()
    asyncio.run(main_async(args))
    sys.stdout.flush()
    os._exit(0)  # the Temporal SDK can abort the interpreter at exit (sdk-python#300)


if __name__ == "__main__":
    main()
