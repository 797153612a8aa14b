"""N concurrent canary rollouts against one Temporal dev server, measured.

Each rollout: ``setWeight 50`` (replicas routing: one canary pod beside two stable ones), then an
analysis step whose two checks (error ratio, p95 latency) are looked at every ``--interval`` seconds,
``--looks`` times each; then promotion. Two modes, run one after the other unless ``--mode`` says:

* ``engine`` — the orchestrator alone: the real ``CanaryWorkflow`` and the real ``watch`` activity on its
  own worker and queue, with an in-process metric stand-in (every look answers "successful" at once)
  and stand-in kube activities registered under the real names (answering as a converged cluster
  would). What is measured is the engine, the watch, the worker and Temporal;
* ``e2e`` — everything real: the worker built by ``orchestrator.worker.build_worker`` (real activities),
  the sandbox API server with virtual pods (``orchestrator.sandbox.virtual``) and the real Prometheus
  scraping the one synthetic exporter that serves every pod's metrics.

Every component is its own process (Temporal dev server, each worker, Prometheus, the sandbox API
server with its exporter; this driver starts the rollouts), so its CPU is sampled apart (``/proc``).

Gate lag is (look due -> look taken) plus, with ``--fail-after``, (decision -> first undo activity
started). A look is due at its check's ``next_at`` (or the step's start plus ``initialDelay``); the watch
takes it at some instant after: engine mode records the difference inside the watch (each worker writes
its lags to a file at exit). Looks taken by activities of their own (runs recorded before the watch) are
read from history as before: due at the deadline of the timer that woke the measurement loop, taken at
the ``at`` of the ``Measurement`` the activity returned. The decision lag is read from history: the
completion of the watch that returned the failure to the scheduling of ``canary.reset_traffic``.

    python benchmarks/scale.py --rollouts 100 --workers 1
    python benchmarks/scale.py --rollouts 1000 --workers 2 --mode engine
    python benchmarks/scale.py --rollouts 1 --mode engine --three-steps --analysis-duration 1800 --looks 0
    python benchmarks/scale.py --rollouts 100 --mode engine --controls   # abort/promote during the analysis
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter

from orchestrator.api.canary import WORKFLOW_TYPE, CanaryInput, CanaryStatus
from orchestrator.api.requests import (
    CopyRequest,
    DeploymentRef,
    EvaluateRequest,
    NotifyRequest,
    RollbackStuckRequest,
    RouteRequest,
    ScaleRequest,
    StableSnapshot,
    TemplateRestore,
    TemplateUpdate,
    WaitRequest,
    WeightResult,
)
from orchestrator.gates.model import Measurement, Phase
from orchestrator.rails.models import RailsReport, RailsRequest
from orchestrator.specs.canary import CanaryRollout
from orchestrator.specs.loader import load_text

NAMESPACE = "scale"
STABLE_REPLICAS = 2
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ---- the rollout --------------------------------------------------------------------------------

def rollout_spec(name: str, interval: int, looks: int, window: int, *, duration: int = 0,
                 three_steps: bool = False, fail_after: int = 0) -> CanaryRollout:
    """``looks`` 0: no count, the analysis lasts ``duration`` seconds; ``fail_after``: the error check fails then."""
    sel = 'namespace="{{namespace}}",app="{{app}}",{{track_selector}}'
    count = f"count: {looks}" if looks else ""
    limit = f"duration: {duration}s" if duration else ""
    error_query = f"fail-after-{fail_after} " if fail_after else ""
    text = f"""
apiVersion: orchestrator.dev/v1
kind: CanaryRollout
metadata: {{name: {name}}}
spec:
  target: {{namespace: {NAMESPACE}, deployment: {name}, container: app}}
  change: {{image: "registry.local/app:v2"}}
  traffic: {{type: replicas}}
  steps:
    - setWeight: 50
    - analysis:
        {limit}
        checks:
          - name: error-rate
            query: >-
              {error_query}sum(rate(http_requests_total{{{sel},code=~"5.."}}[{window}s]))
              / sum(rate(http_requests_total{{{sel}}}[{window}s]))
            condition: {{max: 0.02}}
            interval: {interval}s
            {count}
            failureLimit: 0
          - name: p95-latency
            query: >-
              histogram_quantile(0.95,
              sum by (le) (rate(http_request_duration_seconds_bucket{{{sel}}}[{window}s])))
            condition: {{max: 0.5}}
            interval: {interval}s
            {count}
            failureLimit: 1
{"    - setWeight: 100" if three_steps else ""}
  progressDeadline: 120s
"""
    spec = load_text(text, f"<{name}>", expect="CanaryRollout")
    assert isinstance(spec, CanaryRollout)
    return spec


# ---- stand-in activities (engine mode) ------------------------------------------------------------

def stand_ins() -> list[Callable[..., Any]]:
    """The canary's activities under their real names, answering as a converged, healthy cluster."""

    @activity.defn(name="canary.snapshot_stable")
    async def snapshot_stable(ref: DeploymentRef) -> StableSnapshot:
        return StableSnapshot(namespace=ref.namespace, name=ref.name, replicas=STABLE_REPLICAS,
                              template={"spec": {}}, container="app", image="registry.local/app:v1")

    @activity.defn(name="canary.ensure_copy")
    async def ensure_copy(req: CopyRequest) -> None:
        return None

    @activity.defn(name="canary.wait_available")
    async def wait_available(req: WaitRequest) -> None:
        return None

    @activity.defn(name="canary.scale")
    async def scale(req: ScaleRequest) -> None:
        return None

    @activity.defn(name="canary.set_weight")
    async def set_weight(req: RouteRequest) -> WeightResult:
        return WeightResult(requested=req.weight, effective=req.weight, verified=True)

    @activity.defn(name="canary.reset_traffic")
    async def reset_traffic(req: RouteRequest) -> WeightResult:
        return WeightResult(requested=0, effective=0, verified=True)

    @activity.defn(name="canary.update_stable")
    async def update_stable(req: TemplateUpdate) -> None:
        return None

    @activity.defn(name="canary.restore_stable")
    async def restore_stable(req: TemplateRestore) -> None:
        return None

    @activity.defn(name="canary.delete_copy")
    async def delete_copy(ref: DeploymentRef) -> None:
        return None

    @activity.defn(name="canary.evaluate_check")
    async def evaluate_check(req: EvaluateRequest) -> Measurement:
        return Measurement(check=req.check.name, phase=Phase.SUCCESSFUL, value=0.001, query=req.check.query,
                           message="stand-in: successful", at=datetime.now(UTC))

    @activity.defn(name="notify.outcome")
    async def notify(req: NotifyRequest) -> None:
        return None

    @activity.defn(name="notify.rollback_stuck")
    async def stuck(req: RollbackStuckRequest) -> None:
        return None

    @activity.defn(name="rails.check")
    async def rails_check(req: RailsRequest) -> RailsReport:
        return RailsReport.of(req.kind, "stand-in", [])

    return [rails_check, snapshot_stable, ensure_copy, wait_available, scale, set_weight, reset_traffic, update_stable,
            restore_stable, delete_copy, evaluate_check, notify, stuck]


LAGS: list[float] = []


class SuccessfulLooker:
    """The watch's metric stand-in: every look successful at once (a query marked ``fail-after-N`` fails
    from its Nth look of a rollout on)."""

    def __init__(self) -> None:
        self.looks: dict[str, int] = {}

    def look(self, check: Any, variables: Any, judge: Any) -> Measurement:
        phase = Phase.SUCCESSFUL
        if check.query.startswith("fail-after-"):
            key = f"{variables.get('app')}/{check.name}"
            self.looks[key] = self.looks.get(key, 0) + 1
            if self.looks[key] >= int(check.query.split()[0].rsplit("-", 1)[1]):
                phase = Phase.FAILED
        return Measurement(check=check.name, phase=phase, value=0.001, query=check.query,
                           message=f"stand-in: {phase}", at=datetime.now(UTC))


def timed_watch() -> Any:
    """The real watch activity, recording how late each look was taken (due -> taken)."""
    from orchestrator.activities.watch import WatchActivities
    from orchestrator.config import Settings

    class TimedWatch(WatchActivities):
        async def _look(self, check: Any, req: Any, state: Any, scheduled: datetime) -> Any:
            LAGS.append((datetime.now(UTC) - scheduled).total_seconds())
            return await super()._look(check, req, state, scheduled)

    return TimedWatch(Settings(), looker=SuccessfulLooker())


@dataclass
class Tuning:
    max_concurrent_activities: int
    max_concurrent_workflow_tasks: int
    max_cached_workflows: int

    def args(self) -> list[str]:
        return ["--max-activities", str(self.max_concurrent_activities),
                "--max-workflow-tasks", str(self.max_concurrent_workflow_tasks),
                "--max-cached", str(self.max_cached_workflows)]


async def serve_worker(mode: str, address: str, queue: str, tuning: Tuning) -> None:
    """One worker process (``--serve-worker``): runs until SIGTERM."""
    import signal

    from temporalio.worker import Worker

    client = await Client.connect(address, data_converter=pydantic_data_converter)
    if mode == "engine":
        from orchestrator.gates.watch_fold import WATCH_THROTTLE, watch_queue
        from orchestrator.worker import WATCH_SLOTS, PairedWorker
        from workflows.canary import CanaryWorkflow

        watcher = Worker(client, task_queue=watch_queue(queue), activities=timed_watch().activities(),
                         max_concurrent_activities=WATCH_SLOTS, max_heartbeat_throttle_interval=WATCH_THROTTLE)
        worker: Worker = PairedWorker(client, watcher=watcher, task_queue=queue, workflows=[CanaryWorkflow],
                              activities=stand_ins(), max_concurrent_activities=tuning.max_concurrent_activities,
                              max_concurrent_workflow_tasks=tuning.max_concurrent_workflow_tasks,
                              max_cached_workflows=tuning.max_cached_workflows)
    else:
        from orchestrator.config import Settings
        from orchestrator.worker import build_worker

        worker = build_worker(client, Settings.from_env(), task_queue=queue,
                              max_concurrent_activities=tuning.max_concurrent_activities,
                              max_concurrent_workflow_tasks=tuning.max_concurrent_workflow_tasks,
                              max_cached_workflows=tuning.max_cached_workflows)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        print("ready", flush=True)
        await stop.wait()
    lag_file = os.environ.get("SCALE_LAG_FILE")
    if lag_file:
        Path(lag_file).write_text("\n".join(f"{lag:.4f}" for lag in LAGS))


# ---- processes and their CPU ------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


@dataclass
class Sampler:
    """CPU (share of one core) and resident memory of each named process, sampled every few seconds."""

    pids: dict[str, int]
    every: float = 2.0
    cpu: dict[str, list[float]] = field(default_factory=dict)
    rss: dict[str, float] = field(default_factory=dict)
    _running: bool = True

    total: dict[str, float] = field(default_factory=dict)
    load: list[float] = field(default_factory=list)

    async def run(self) -> None:
        last = {n: (time.monotonic(), cpu_seconds(p)) for n, p in self.pids.items()}
        first = {n: u for n, (_, u) in last.items()}
        while self._running:
            await asyncio.sleep(self.every)
            for name, pid in self.pids.items():
                try:
                    now, used = time.monotonic(), cpu_seconds(pid)
                    self.rss[name] = max(self.rss.get(name, 0.0), rss_mb(pid))
                except OSError:
                    continue
                t0, u0 = last[name]
                self.cpu.setdefault(name, []).append((used - u0) / max(now - t0, 1e-6))
                self.total[name] = used - first[name]
                last[name] = (now, used)
            with open("/proc/loadavg") as f:
                self.load.append(float(f.read().split()[0]))

    def stop(self) -> None:
        self._running = False


def start_process(args: Sequence[str], env: dict[str, str] | None = None, log: Path | None = None
                  ) -> subprocess.Popen[str]:
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=out, text=True,
                            env={**os.environ, **(env or {})})


def wait_ready(proc: subprocess.Popen[str], what: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        raise RuntimeError(f"{what} did not start (exit {proc.poll()})")
    drain(proc)
    return line.strip()


def drain(proc: subprocess.Popen[str]) -> None:
    """Read what a process writes to its stdout pipe: a full pipe would stop it mid-run."""
    import threading

    stream = proc.stdout
    if stream is not None:
        threading.Thread(target=lambda: all(True for _ in stream), daemon=True).start()


# ---- the lag, from history ---------------------------------------------------------------------------

def history_figures(events: Sequence[Any]) -> list[float]:
    """Lags (seconds) of every ``canary.evaluate_check`` look in one rollout's history."""
    wft_time: datetime | None = None
    timers: dict[str, datetime] = {}
    fired: datetime | None = None
    current: datetime | None = None
    scheduled: dict[int, datetime] = {}
    lags: list[float] = []
    for ev in events:
        t = ev.event_time.ToDatetime(tzinfo=UTC)
        kind = ev.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            wft_time = t
        elif kind == EventType.EVENT_TYPE_TIMER_STARTED and wft_time is not None:
            a = ev.timer_started_event_attributes
            timers[a.timer_id] = wft_time + a.start_to_fire_timeout.ToTimedelta()
        elif kind == EventType.EVENT_TYPE_TIMER_FIRED:
            due = timers.pop(ev.timer_fired_event_attributes.timer_id, None)
            if due is not None and (fired is None or due < fired):
                fired = due
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            current, fired = (fired or wft_time), None
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            a = ev.activity_task_scheduled_event_attributes
            if a.activity_type.name == "canary.evaluate_check" and current is not None:
                scheduled[ev.event_id] = current
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            a = ev.activity_task_completed_event_attributes
            due = scheduled.pop(a.scheduled_event_id, None)
            if due is not None and a.result.payloads:
                at = datetime.fromisoformat(json.loads(a.result.payloads[0].data)["at"])
                lags.append((at - due).total_seconds())
    return lags


def first_scheduled(events: Sequence[Any], name: str) -> datetime | None:
    for ev in events:
        if (ev.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                and ev.activity_task_scheduled_event_attributes.activity_type.name == name):
            return datetime.fromtimestamp(ev.event_time.ToDatetime(tzinfo=UTC).timestamp(), UTC)
    return None


def decision_lag(events: Sequence[Any]) -> float | None:
    """Seconds from the watch returning a failed gate to the first undo activity (``reset_traffic``) scheduled."""
    names = {ev.event_id: ev.activity_task_scheduled_event_attributes.activity_type.name for ev in events
             if ev.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED}
    returned: datetime | None = None
    for ev in events:
        if (ev.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
                and names.get(ev.activity_task_completed_event_attributes.scheduled_event_id) == "watch.checks"):
            returned = ev.event_time.ToDatetime(tzinfo=UTC)
        if (ev.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                and names.get(ev.event_id) == "canary.reset_traffic" and returned is not None):
            return float((ev.event_time.ToDatetime(tzinfo=UTC) - returned).total_seconds())
    return None


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# ---- one measured run -----------------------------------------------------------------------------------

@dataclass
class Result:
    mode: str
    rollouts: int
    workers: int
    promoted: int = 0
    other: dict[str, int] = field(default_factory=dict)
    lags: list[float] = field(default_factory=list)
    decision_lags: list[float] = field(default_factory=list)
    control_lags: dict[str, list[float]] = field(default_factory=dict)
    events: list[int] = field(default_factory=list)
    start_span: float = 0.0
    finish_span: float = 0.0
    wall: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    cpu_peak: dict[str, float] = field(default_factory=dict)
    rss: dict[str, float] = field(default_factory=dict)
    cpu_total: dict[str, float] = field(default_factory=dict)
    load: float = 0.0


async def create_deployments(kubeconfig: Path, names: Sequence[str]) -> None:
    from kubernetes import client, config

    api = config.new_client_from_config(str(kubeconfig))
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)

    def make() -> None:
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        for name in names:
            labels = {"app": name}
            apps.create_namespaced_deployment(NAMESPACE, {
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
                "spec": {"replicas": STABLE_REPLICAS, "selector": {"matchLabels": labels},
                         "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                             {"name": "app", "image": "registry.local/app:v1"}]}}}})

    await asyncio.to_thread(make)


async def measure(args: argparse.Namespace, mode: str, tuning: Tuning, work: Path) -> Result:
    procs: dict[str, subprocess.Popen[str]] = {}
    result = Result(mode, args.rollouts, args.workers)
    queue = f"scale-{uuid.uuid4().hex[:8]}"
    names = [f"app-{i:04d}" for i in range(args.rollouts)]
    worker_env: dict[str, str] = {}
    lag_files: list[Path] = []
    try:
        tport = free_port()
        procs["temporal"] = start_process([
            str(Path(sys.executable).parent / "temporal"), "server", "start-dev", "--headless",
            "--ip", "127.0.0.1", "--port", str(tport), "--log-level", "error"])
        drain(procs["temporal"])
        address = f"127.0.0.1:{tport}"
        if mode == "e2e":
            kubeconfig = work / "kubeconfig"
            procs["sandbox api+exporter"] = start_process(
                [sys.executable, "-m", "orchestrator.sandbox.virtual", "--kubeconfig", str(kubeconfig),
                 "--tick", str(args.tick)], log=work / "sandbox.log")
            ready = wait_ready(procs["sandbox api+exporter"], "the sandbox")
            exporter_port = int(ready.rsplit(":", 1)[1])
            from orchestrator.sandbox.virtual import VirtualPrometheus

            prom = VirtualPrometheus(work / "prom", exporter_port, port=free_port(),
                                     scrape_interval=args.scrape_interval)
            popen = prom.start()
            prom.wait_ready(60, popen)
            procs["prometheus"] = popen  # type: ignore[assignment]
            await create_deployments(kubeconfig, names)
            worker_env = {"KUBECONFIG": str(kubeconfig), "ORCHESTRATOR_PROMETHEUS_URL": prom.url,
                          "ORCHESTRATOR_DB_URL": f"sqlite:///{work}/runs.db"}
        wait_port(tport)
        client = await Client.connect(address, data_converter=pydantic_data_converter)
        for w in range(args.workers):
            lag_files.append(work / f"lags-{mode}-{w}.txt")
            procs[f"worker {w + 1}"] = start_process(
                [sys.executable, __file__, "--serve-worker", "--mode", mode, "--temporal", address,
                 "--task-queue", queue, *tuning.args()], env={**worker_env, "SCALE_LAG_FILE": str(lag_files[-1])},
                log=work / f"worker-{mode}-{w}.log")
            wait_ready(procs[f"worker {w + 1}"], f"worker {w + 1}")
        sampler = Sampler({n: p.pid for n, p in procs.items()} | {"driver": os.getpid()})
        sampling = asyncio.create_task(sampler.run())

        began = time.monotonic()
        started_at: list[float] = []
        finished_at: list[float] = []
        handles: list[WorkflowHandle[Any, Any]] = []
        limit = asyncio.Semaphore(args.start_concurrency)

        async def start(index: int, name: str) -> None:
            spec = rollout_spec(name, args.interval, args.looks, args.window, duration=args.analysis_duration,
                                three_steps=args.three_steps, fail_after=args.fail_after)
            # --start-over spreads the starts evenly (rollouts begun through the day, not all in one burst).
            await asyncio.sleep(args.start_over * index / max(1, len(names)))
            async with limit:
                handle = await client.start_workflow(
                    WORKFLOW_TYPE, CanaryInput(rollout=spec), id=f"canary-{NAMESPACE}-{name}", task_queue=queue,
                    result_type=CanaryStatus)
            started_at.append(time.monotonic() - began)
            handles.append(handle)

        await asyncio.gather(*(start(i, n) for i, n in enumerate(names)))
        controlled: dict[str, tuple[str, datetime]] = {}

        async def control(index: int, handle: WorkflowHandle[Any, Any]) -> None:
            from orchestrator.api.common import ControlRequest

            # Half abort, half promote, during the analysis (past its first looks).
            await asyncio.sleep(args.controls)
            name = "abort" if index % 2 else "promote"
            at = datetime.now(UTC)
            await handle.execute_update(name, ControlRequest(by="benchmark"))
            controlled[handle.id] = (name, at)

        if args.controls:
            await asyncio.gather(*(control(i, h) for i, h in enumerate(list(handles))))

        async def finish(handle: WorkflowHandle[Any, Any]) -> None:
            status = await handle.result()
            finished_at.append(time.monotonic() - began)
            phase = str(status.phase.value)
            if phase == "promoted":
                result.promoted += 1
            else:
                key = f"{phase}: {status.reason}"[:90]
                result.other[key] = result.other.get(key, 0) + 1

        await asyncio.gather(*(finish(h) for h in list(handles)))
        result.wall = time.monotonic() - began
        sampler.stop()
        await sampling
        result.start_span = max(started_at)
        result.finish_span = max(finished_at) - min(finished_at)
        # The steady state: every rollout started, none finished yet (or the whole run when too short).
        first_done = min(finished_at)
        steady = slice(int(max(result.start_span, args.settle) / sampler.every) + 1,
                       max(int(first_done / sampler.every), 1))
        for name, series in sampler.cpu.items():
            window = series[steady] or series
            result.cpu[name] = statistics.fmean(window) if window else 0.0
            result.cpu_peak[name] = max(series) if series else 0.0
        result.rss = dict(sampler.rss)
        result.cpu_total = dict(sampler.total)
        result.load = statistics.fmean(sampler.load) if sampler.load else 0.0
        limit = asyncio.Semaphore(20)

        async def history(handle: WorkflowHandle[Any, Any]) -> None:
            async with limit:
                h = await handle.fetch_history()
            result.events.append(len(h.events))
            result.lags.extend(history_figures(h.events))
            lag = decision_lag(h.events)
            if lag is not None and args.fail_after:
                result.decision_lags.append(lag)
            if handle.id in controlled:
                name, at = controlled[handle.id]
                acted = first_scheduled(h.events, "canary.reset_traffic" if name == "abort" else
                                        "canary.update_stable")
                if acted is not None:
                    result.control_lags.setdefault(name, []).append((acted - at).total_seconds())

        await asyncio.gather(*(history(h) for h in handles))
        return result
    finally:
        for proc in reversed(list(procs.values())):
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        for lag_file in lag_files:
            if lag_file.exists():
                result.lags.extend(float(x) for x in lag_file.read_text().split())


def report(results: Sequence[Result], args: argparse.Namespace, tuning: Tuning) -> None:
    print(f"settings: rollouts={args.rollouts} workers={args.workers} interval={args.interval}s "
          f"looks={args.looks} (2 checks) window={args.window}s scrape={args.scrape_interval}s "
          f"start-concurrency={args.start_concurrency} start-over={args.start_over:g}s sandbox-tick={args.tick}s "
          f"max_concurrent_activities={tuning.max_concurrent_activities} "
          f"max_concurrent_workflow_tasks={tuning.max_concurrent_workflow_tasks} "
          f"max_cached_workflows={tuning.max_cached_workflows} cores={os.cpu_count()}")
    for r in results:
        print(f"\n[{r.mode}] {r.rollouts} rollouts, {r.workers} worker(s): {r.promoted} promoted"
              + "".join(f"; {n} x {k}" for k, n in r.other.items()))
        print(f"  gate-evaluation lag: p50 {pct(r.lags, 0.5):.3f}s  p99 {pct(r.lags, 0.99):.3f}s  "
              f"max {max(r.lags, default=float('nan')):.3f}s  ({len(r.lags)} looks)")
        if r.decision_lags:
            print(f"  decision -> first undo activity scheduled: p50 {pct(r.decision_lags, 0.5):.3f}s  "
                  f"p99 {pct(r.decision_lags, 0.99):.3f}s  ({len(r.decision_lags)} rollbacks)")
        for name, lags in sorted(r.control_lags.items()):
            print(f"  {name} -> acted on (first activity of the {name} scheduled): p50 {pct(lags, 0.5):.3f}s  "
                  f"p99 {pct(lags, 0.99):.3f}s  max {max(lags):.3f}s  ({len(lags)} rollouts)")
        print(f"  history events per rollout: median {statistics.median(r.events):.0f}, max {max(r.events)}")
        per_min = 60.0 / max(r.start_span, 1e-3)
        print(f"  started: all {r.rollouts} in {r.start_span:.1f}s ({r.rollouts * per_min:.0f}/min); "
              f"finished: all within {r.finish_span:.1f}s "
              f"({r.rollouts * 60.0 / max(r.finish_span, 1e-3):.0f}/min); wall {r.wall:.0f}s")
        busiest = max(r.cpu, key=lambda n: r.cpu[n])
        looks = max(len(r.lags), 1)
        print(f"  CPU (cores: mean in steady state / peak), CPU-ms per look over the run, peak RSS "
              f"(machine load average {r.load:.1f} on {os.cpu_count()} cores):")
        for name in sorted(r.cpu, key=lambda n: -r.cpu[n]):
            print(f"    {name:22s} {r.cpu[name]:5.2f} / {r.cpu_peak[name]:5.2f}   "
                  f"{1000 * r.cpu_total.get(name, 0) / looks:6.1f} ms/look   {r.rss.get(name, 0):7.0f} MB")
        print(f"  busiest process: {busiest}")


def main() -> None:
    parser = argparse.ArgumentParser(description="N concurrent canary rollouts, measured")
    parser.add_argument("--rollouts", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--mode", choices=["engine", "e2e", "both"], default="both")
    parser.add_argument("--interval", type=int, default=10, help="seconds between looks of a check")
    parser.add_argument("--looks", type=int, default=18, help="looks per check (18 x 10 s = 3 minutes)")
    parser.add_argument("--analysis-duration", type=int, default=0,
                        help="seconds the analysis lasts (with --looks 0: no count, it runs the whole time)")
    parser.add_argument("--three-steps", action="store_true", help="a final setWeight 100 after the analysis")
    parser.add_argument("--fail-after", type=int, default=0,
                        help="engine mode: the error check fails from this look on (measures rollback lag)")
    parser.add_argument("--controls", type=float, default=0.0,
                        help="seconds after the starts: abort half the rollouts and promote the others")
    parser.add_argument("--settle", type=float, default=0.0,
                        help="the steady state begins no earlier than this many seconds after the first start")
    parser.add_argument("--window", type=int, default=30, help="rate() window of the queries, seconds")
    parser.add_argument("--scrape-interval", type=float, default=5.0)
    parser.add_argument("--tick", type=float, default=1.0, help="sandbox controller pass interval")
    parser.add_argument("--start-concurrency", type=int, default=20)
    parser.add_argument("--start-over", type=float, default=0.0,
                        help="spread the starts evenly over this many seconds (0: all at once)")
    parser.add_argument("--max-activities", type=int, default=64)
    parser.add_argument("--max-workflow-tasks", type=int, default=32)
    parser.add_argument("--max-cached", type=int, default=2000)
    parser.add_argument("--serve-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--temporal", help=argparse.SUPPRESS)
    parser.add_argument("--task-queue", help=argparse.SUPPRESS)
    args = parser.parse_args()
    tuning = Tuning(args.max_activities, args.max_workflow_tasks, args.max_cached)
    if args.serve_worker:
        asyncio.run(serve_worker(args.mode, args.temporal, args.task_queue, tuning))
        return
    modes = ["engine", "e2e"] if args.mode == "both" else [args.mode]
    work = Path(tempfile.mkdtemp(prefix="scale-"))
    try:
        for m in modes:  # each mode's figures as soon as they exist
            report([asyncio.run(measure(args, m, tuning, work))], args, tuning)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
