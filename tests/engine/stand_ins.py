"""Stand-in activities registered under the real names, for the engine's own tests.

The engine's rules (when to look, when to stop, what to undo in which order, what to report) do not
depend on what a cluster or Prometheus answer, only on *that* they answer, fail or say "no data".
These stand-ins answer as told and record every call, so each rule is checked exactly and fast.
The activities themselves are tested against the sandbox cluster and the real Prometheus elsewhere.

Looks run in the real ``watch`` activity (``orchestrator/activities/watch.py``) on its own worker and
queue, as in production, with ``WorldLooker`` as its metric stand-in: every look is recorded under the
name of the activity that used to take it (``canary.evaluate_check``), and a judge's look goes to a
``judge.look`` stand-in when the test gives one.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from orchestrator.activities.watch import WatchActivities
from orchestrator.api.flag_requests import FlagCheckRequest, FlagRef, SampleRequest, SetPercentRequest
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
from orchestrator.config import Settings
from orchestrator.flags.base import Allocation, Change
from orchestrator.gates.judge import JudgeLookRequest, JudgeLookResult
from orchestrator.gates.model import Measurement, Phase
from orchestrator.gates.watch_fold import Look, watch_queue
from orchestrator.rails.models import RailsReport, RailsRequest, RailStatus, Verdict
from orchestrator.specs.checks import Check
from workflows.canary import CanaryWorkflow
from workflows.chaos import ChaosExperimentWorkflow
from workflows.flag_ramp import FlagRampWorkflow


def measurement(check: str, phase: Phase = Phase.SUCCESSFUL, *, no_data: bool = False, value: float = 0.001,
                message: str = "") -> Measurement:
    return Measurement(check=check, phase=phase, value=None if no_data else value, query="q", no_data=no_data,
                       message=message or ("no data" if no_data else f"{phase} {value}"), at=datetime.now(UTC))


@dataclass
class World:
    """What the stand-ins answer, and every call they received (name, argument)."""

    replicas: int = 4
    calls: list[tuple[str, Any]] = field(default_factory=list)
    # check name -> a function of the call number (0, 1, ...) giving the measurement
    looks: dict[str, Callable[[int], Measurement]] = field(default_factory=dict)
    failing: dict[str, int] = field(default_factory=dict)  # activity -> how many more calls fail (-1: all)
    flag_percent: float = 0.0
    stuck_reports: list[RollbackStuckRequest] = field(default_factory=list)
    refuse: str | None = None  # what the pre-flight rails answer (None: every rail passes)
    # activity -> an event its calls wait for before they answer (an undo step still under way)
    held: dict[str, asyncio.Event] = field(default_factory=dict)

    def names(self) -> list[str]:
        return [n for n, _ in self.calls]

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.calls if n == name)

    def _call(self, name: str, arg: Any) -> None:
        self.calls.append((name, arg))
        left = self.failing.get(name, 0)
        if left:
            self.failing[name] = left - 1 if left > 0 else left
            # As the real activities raise a programming error (orchestrator.activities.errors): non-retryable.
            raise ApplicationError(f"TypeError: {name} cannot work today", type="ProgrammingError",
                                   non_retryable=True)

    def look(self, name: str, check: str) -> Measurement:
        n = sum(1 for c, a in self.calls if c == name and a == check)
        self._call(name, check)
        answer: Callable[[int], Measurement] = self.looks.get(check, lambda i: measurement(check))
        return answer(n)

    def activities(self) -> list[Callable[..., Any]]:
        world = self

        @activity.defn(name="canary.snapshot_stable")
        async def snapshot_stable(ref: DeploymentRef) -> StableSnapshot:
            world._call("canary.snapshot_stable", ref)
            return StableSnapshot(namespace=ref.namespace, name=ref.name, replicas=world.replicas,
                                  template={"spec": {}}, container="app", image="demo:1")

        @activity.defn(name="canary.ensure_copy")
        async def ensure_copy(req: CopyRequest) -> None:
            world._call("canary.ensure_copy", req)

        @activity.defn(name="canary.wait_available")
        async def wait_available(req: WaitRequest) -> None:
            world._call("canary.wait_available", req)

        @activity.defn(name="canary.scale")
        async def scale(req: ScaleRequest) -> None:
            world._call("canary.scale", req)

        @activity.defn(name="canary.set_weight")
        async def set_weight(req: RouteRequest) -> WeightResult:
            world._call("canary.set_weight", req)
            pods = round(world.replicas * req.weight / 100)
            return WeightResult(requested=req.weight, effective=100 * pods / world.replicas, verified=True,
                                detail=f"{pods} of {world.replicas} pods")

        @activity.defn(name="canary.reset_traffic")
        async def reset_traffic(req: RouteRequest) -> WeightResult:
            if "canary.reset_traffic" in world.held:
                world.calls.append(("held canary.reset_traffic", req))
                await world.held["canary.reset_traffic"].wait()
            world._call("canary.reset_traffic", req)
            return WeightResult(requested=0, effective=0, verified=True)

        @activity.defn(name="canary.update_stable")
        async def update_stable(req: TemplateUpdate) -> None:
            world._call("canary.update_stable", req)

        @activity.defn(name="canary.restore_stable")
        async def restore_stable(req: TemplateRestore) -> None:
            world._call("canary.restore_stable", req)

        @activity.defn(name="canary.delete_copy")
        async def delete_copy(ref: DeploymentRef) -> None:
            world._call("canary.delete_copy", ref)

        look = world.look

        @activity.defn(name="canary.evaluate_check")
        async def evaluate_check(req: EvaluateRequest) -> Measurement:
            return look("canary.evaluate_check", req.check.name)

        @activity.defn(name="flags.evaluate_check")
        async def flags_evaluate(req: FlagCheckRequest) -> Measurement:
            return look("flags.evaluate_check", req.check.name)

        @activity.defn(name="flags.read")
        async def flags_read(ref: FlagRef) -> Allocation:
            world._call("flags.read", ref)
            return Allocation(percent=world.flag_percent, control="off", detail="stand-in")

        @activity.defn(name="flags.set_percent")
        async def flags_set(req: SetPercentRequest) -> Change:
            world._call("flags.set_percent", req)
            before = Allocation(percent=world.flag_percent)
            world.flag_percent = req.percent
            return Change(before=before, after=Allocation(percent=req.percent), changed=before.percent != req.percent)

        @activity.defn(name="flags.sample")
        async def flags_sample(req: SampleRequest) -> float | None:
            world._call("flags.sample", req)
            return 0.0

        @activity.defn(name="notify.outcome")
        async def notify(req: NotifyRequest) -> None:
            world._call("notify.outcome", req)

        @activity.defn(name="notify.rollback_stuck")
        async def stuck(req: RollbackStuckRequest) -> None:
            world._call("notify.rollback_stuck", req)
            world.stuck_reports.append(req)

        @activity.defn(name="rails.check")
        async def rails_check(req: RailsRequest) -> RailsReport:
            world._call("rails.check", req)
            refused = world.refuse is not None
            verdict = Verdict(rail="stand-in", status=RailStatus.REFUSED if refused else RailStatus.OK,
                              reason=world.refuse or "fine")
            return RailsReport(kind=req.kind, target="stand-in", refused=refused, reason=world.refuse or "",
                               verdicts=[verdict])

        return [rails_check, snapshot_stable, ensure_copy, wait_available, scale, set_weight, reset_traffic,
                update_stable, restore_stable, delete_copy, evaluate_check, flags_evaluate, flags_read, flags_set,
                flags_sample, notify, stuck]


@dataclass
class WorldLooker:
    """The watch's metric stand-in: each look answers as ``World.looks`` says, a judge's through ``judge``."""

    world: World
    judge: Callable[[JudgeLookRequest], Any] | None = None

    def look(self, check: Check, variables: Any, judge: JudgeLookRequest | None) -> Look:
        if judge is not None and self.judge is not None:
            self.world.calls.append(("judge.look", check.name))
            result: JudgeLookResult = asyncio.run(self.judge(judge))  # the reads run on the watch's threads
            return result
        return self.world.look("canary.evaluate_check", check.name)


def _activity_name(fn: Callable[..., Any]) -> str:
    return str(activity._Definition.must_from_callable(fn).name)


@contextlib.asynccontextmanager
async def engine_worker(client: Client, world: World, extra: list[Callable[..., Any]] | None = None
                        ) -> AsyncIterator[str]:
    queue = f"engine-{uuid.uuid4().hex[:10]}"
    judge = next((fn for fn in extra or [] if _activity_name(fn) == "judge.look"), None)
    watches = WatchActivities(Settings(), looker=WorldLooker(world, judge))
    worker = Worker(client, task_queue=queue, workflows=[CanaryWorkflow, FlagRampWorkflow, ChaosExperimentWorkflow],
                    activities=world.activities() + (extra or []))
    watcher = Worker(client, task_queue=watch_queue(queue), activities=watches.activities(),
                     max_heartbeat_throttle_interval=timedelta(seconds=1))  # tests look every second
    async with worker, watcher:
        yield queue
