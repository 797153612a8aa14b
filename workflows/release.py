"""A fleet release, as one durable parent workflow on the central task queue.

    refuse clusters the operator did not name ─► for each wave, in order:
        (approval, if the wave asks for one; nobody within its timeout → stop)
        each cluster, at most maxParallel at once:
            ping its queue (nobody picks it up → "no worker in <cluster>", then a stop after noWorkerTimeout)
            ─► its canary, as a child workflow on the cluster's queue (its worker, its Kubernetes,
               its Prometheus), judged against that cluster's own stable
        every cluster promoted ─► bake: each cluster's bake checks, looked at by its own worker,
            for the bake's duration ─► the next wave (a long history hands over here, and only here)
    a canary rolled back, a bake check failed, abort or cancellation ─► every running canary is
        cancelled (each rolls back by itself) ─► onFailure's undo restores promoted clusters, the
        last promoted first, each to the template its canary recorded at promotion.

Every decision is ``workflows/release_decide.py``'s (pure, state in one model); this file only runs
its commands and turns what happens into its events. Children use the parent-close policy
REQUEST_CANCEL: a release that is terminated still leaves no canary half-shifted.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    TimeoutError,
    TimeoutType,
    WorkflowAlreadyStartedError,
)

with workflow.unsafe.imports_passed_through():
    from orchestrator.api.canary import WORKFLOW_TYPE as CANARY_TYPE
    from orchestrator.api.canary import CanaryInput, CanaryStatus
    from orchestrator.api.canary import Phase as CanaryPhase
    from orchestrator.api.canary import workflow_id as canary_id
    from orchestrator.api.common import ControlRequest, ControlResponse, Event
    from orchestrator.api.release import (
        WORKFLOW_TYPE,
        ClusterQueues,
        ClusterQueuesRequest,
        PingRequest,
        ReleaseInput,
        ReleaseState,
        UndoRequest,
    )
    from orchestrator.api.requests import EvaluateRequest
    from orchestrator.gates.model import CheckPhase, CheckStatus, Measurement
    from orchestrator.gates.verdict import advance, finish, start
    from orchestrator.specs.promql import image_version
    from orchestrator.specs.release import canary_for
    from workflows import release_decide as core

PING_WAIT = timedelta(seconds=10)  # a ping nobody picks up within this is "no worker in <cluster>"
EVENTS_KEPT = 100
_ONCE = RetryPolicy(maximum_attempts=1)
_LOOKS = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=1))


@workflow.defn(name=WORKFLOW_TYPE)
class ReleaseWorkflow:
    @workflow.init
    def __init__(self, inp: ReleaseInput) -> None:
        self._inp = inp
        self._spec = inp.release.spec
        self._plan = core.plan_of(self._spec)
        self._state: ReleaseState = inp.state or core.initial_state(inp.release.metadata.name, self._plan, {})
        self._inbox: list[core.Event] = []
        self._tasks: dict[str, asyncio.Task[None]] = {}  # cluster -> its child (or bake) runner
        self._others: set[asyncio.Task[None]] = set()  # timers and undos, kept until they finish
        self._ended: core.End | None = None
        self._hand_over = False

    @workflow.query
    def status(self) -> ReleaseState:
        return self._state

    # ---- controls: validated, then events -----------------------------------------------------------

    @workflow.update
    def pause(self, req: ControlRequest) -> ControlResponse:
        return self._control("pause")

    @workflow.update
    def resume(self, req: ControlRequest) -> ControlResponse:
        return self._control("resume")

    @workflow.update
    def approve(self, req: ControlRequest) -> ControlResponse:
        return self._control("approve")

    @workflow.update
    def abort(self, req: ControlRequest) -> ControlResponse:
        return self._control("abort")

    @workflow.update
    def retry(self, req: ControlRequest) -> ControlResponse:
        return self._control("retry")

    @approve.validator
    def _approvable(self, req: ControlRequest) -> None:
        if self._state.stage != "approval" or self._state.stop is not None:
            raise ApplicationError("nothing waits for approval", non_retryable=True)

    @retry.validator
    def _retryable(self, req: ControlRequest) -> None:
        if not any(c.phase.value == "undo-stuck" for c in self._state.clusters):
            raise ApplicationError("no restore is stuck", non_retryable=True)

    def _control(self, name: str) -> ControlResponse:
        if self._ended is not None:
            return ControlResponse(accepted=False, message=f"the release has ended ({self._state.phase.value})")
        self._inbox.append(core.Control(name, workflow.now()))
        return ControlResponse(accepted=True, message=f"{name} accepted")

    # ---- the interpreter -------------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: ReleaseInput) -> ReleaseState:
        if inp.state is None:
            refusal = await self._resolve_clusters()
            if refusal is not None:
                self._feed(refusal)  # before Started: nothing begins in a release that is refused
        # Controls a previous run received but had not applied go first: a pause sent just before the
        # hand-over holds the next wave's canaries.
        self._inbox[:0] = [core.Control(name, workflow.now()) for name in inp.controls] + [core.Started(workflow.now())]
        cancelled = False
        while self._ended is None and not self._hand_over:
            try:
                # A long history is noticed while the release waits (a bake adds history and no event).
                await workflow.wait_condition(lambda: bool(self._inbox) or self._history_long(inp))
            except asyncio.CancelledError:
                # Cancellation is an event: the children are cancelled (each rolls back), then undo runs.
                cancelled = True
                self._inbox.append(core.Cancel(workflow.now()))
                continue
            if self._history_long(inp):
                self._feed(core.HistoryLong(workflow.now()))
            else:
                self._feed(self._inbox.pop(0))
        if self._hand_over:
            controls = [e.name for e in self._inbox if isinstance(e, core.Control)]  # nothing else is pending
            workflow.continue_as_new(ReleaseInput(release=inp.release, history_limit=inp.history_limit,
                                                  state=self._state, controls=controls))
        if cancelled or (self._ended is not None and self._ended.cancelled):
            raise asyncio.CancelledError()
        return self._state

    async def _resolve_clusters(self) -> core.Stopped | None:
        names = self._spec.clusters()
        known = await workflow.execute_activity(
            "release.clusters", ClusterQueuesRequest(names=names), result_type=ClusterQueues,
            start_to_close_timeout=timedelta(seconds=30), retry_policy=_LOOKS)
        for c in self._state.clusters:
            c.queue = known.queues.get(c.name, "")
        if known.unknown:
            listed = ", ".join(sorted(known.queues)) or "none"
            return core.Stopped(
                "refused", f"cluster(s) {', '.join(known.unknown)} are not in the operator settings' cluster map "
                           f"({known.source}; of this release's clusters it names: {listed})", workflow.now())
        if self._spec.canary is None:
            return core.Stopped(
                "refused", "the canary is a file reference: the client inlines canaryFile before starting "
                           "(the worker reads no path)", workflow.now())
        return None

    def _history_long(self, inp: ReleaseInput) -> bool:
        if self._state.hand_over_wanted or self._ended is not None:
            return False
        info = workflow.info()
        limit = inp.history_limit
        return info.is_continue_as_new_suggested() or (limit is not None and info.get_current_history_length() >= limit)

    def _feed(self, event: core.Event) -> None:
        self._state, commands = core.decide(self._plan, self._state, event)
        for command in commands:
            match command:
                case core.StartChild(cluster):
                    self._tasks[cluster] = asyncio.create_task(self._child(cluster))
                case core.CancelChild(cluster) | core.CancelBake(cluster):
                    task = self._tasks.get(cluster)
                    if task is not None and not task.done():
                        task.cancel()
                case core.StartBake(cluster, until):
                    self._tasks[cluster] = asyncio.create_task(self._bake(cluster, until))
                case core.StartTimer(at):
                    self._keep(asyncio.create_task(self._timer(at)))
                case core.RunUndo(cluster):
                    self._keep(asyncio.create_task(self._undo(cluster)))
                case core.Say(message):
                    self._say(message)
                case core.Continue():
                    self._hand_over = True
                case core.End():
                    self._ended = command

    def _keep(self, task: asyncio.Task[None]) -> None:
        self._others.add(task)
        task.add_done_callback(self._others.discard)

    def _post(self, event: core.Event) -> None:
        self._inbox.append(event)

    def _say(self, message: str) -> None:
        workflow.logger.info("%s", message)
        self._state.events = [*self._state.events, Event(at=workflow.now(), message=message)][-EVENTS_KEPT:]

    # ---- what the commands do ---------------------------------------------------------------------

    async def _child(self, cluster: str) -> None:
        c = self._state.cluster(cluster)
        rollout = canary_for(self._spec, cluster)
        target = rollout.spec.target
        try:
            await self._until_worker(cluster, c.queue)
            c.workflow_id = canary_id(target.namespace, target.deployment, cluster)
            status: CanaryStatus = await workflow.execute_child_workflow(
                CANARY_TYPE, CanaryInput(rollout=rollout), id=c.workflow_id, task_queue=c.queue,
                result_type=CanaryStatus,
                parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
                cancellation_type=workflow.ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED)
        except (asyncio.CancelledError, ChildWorkflowError, ActivityError, WorkflowAlreadyStartedError) as exc:
            cause = exc if isinstance(exc, asyncio.CancelledError) else (exc.cause or exc)
            cancelled = isinstance(cause, asyncio.CancelledError) or "cancel" in str(cause).lower()
            reason = "its canary was cancelled and rolled back" if c.workflow_id else "stopped before its canary began"
            self._post(core.ChildEnded(cluster, workflow.now(), False,
                                       reason if cancelled else f"its canary failed: {cause}",
                                       namespace=target.namespace, deployment=target.deployment))
            return
        gate = status.decisive_gate
        self._post(core.ChildEnded(
            cluster, workflow.now(), status.phase is CanaryPhase.PROMOTED,
            f"canary {status.phase.value}: {status.reason}" if status.reason else f"canary {status.phase.value}",
            check=gate.check if gate is not None else None, previous_template=status.previous_template,
            namespace=target.namespace, deployment=target.deployment))

    async def _until_worker(self, cluster: str, queue: str) -> None:
        """Ping the cluster's queue until its worker answers; each unanswered ping is reported."""
        while True:
            try:
                await workflow.execute_activity(
                    "release.ping", PingRequest(cluster=cluster), task_queue=queue, result_type=str,
                    schedule_to_start_timeout=min(PING_WAIT, self._plan.no_worker_timeout),
                    start_to_close_timeout=timedelta(seconds=10), retry_policy=_ONCE)
            except ActivityError as exc:
                if isinstance(exc.cause, TimeoutError) and exc.cause.type is TimeoutType.SCHEDULE_TO_START:
                    self._post(core.WorkerMissing(cluster, workflow.now()))
                    continue
                raise
            if self._state.cluster(cluster).no_worker_since is not None:
                self._post(core.WorkerFound(cluster))
            return

    async def _bake(self, cluster: str, until: Any) -> None:
        c = self._state.cluster(cluster)
        checks = self._spec.waves[c.wave].bake.checks
        image = self._spec.image or (self._spec.canary.spec.change.image if self._spec.canary else None) or ""
        variables = {"namespace": c.namespace, "app": c.deployment, "target": c.deployment, "image": image,
                     "version": image_version(image) if image else ""}
        statuses: dict[str, CheckStatus] = {check.name: start(check) for check in checks}
        began = workflow.now()
        try:
            while checks and workflow.now() < until:
                for check in checks:
                    if workflow.now() < began + check.initial_delay:
                        continue
                    measurement = await workflow.execute_activity(
                        "canary.evaluate_check", EvaluateRequest(check=check, variables=variables),
                        task_queue=c.queue, result_type=Measurement, start_to_close_timeout=timedelta(seconds=30),
                        retry_policy=_LOOKS)
                    statuses[check.name] = advance(check, statuses[check.name], measurement)
                    if statuses[check.name].phase is CheckPhase.FAILED:
                        self._post(core.BakeEnded(cluster, workflow.now(), False,
                                                  f"{check.name}: {statuses[check.name].reason}", check.name))
                        return
                step = min(check.interval for check in checks)
                await workflow.sleep(max(min(step, until - workflow.now()), timedelta(seconds=0.001)))
            if not checks:
                await workflow.sleep(max(until - workflow.now(), timedelta(seconds=0.001)))
        except asyncio.CancelledError:
            return  # the release stopped: the bake is dropped, nothing to undo here
        except ActivityError as exc:
            self._post(core.BakeEnded(cluster, workflow.now(), False, f"a bake look failed: {exc.cause or exc}"))
            return
        finished = {name: finish(check, statuses[name]) for name, check in ((c.name, c) for c in checks)}
        # A bake that could not decide holds no better than a failed one: missing data never lets a wave on.
        undecided = [s for s in finished.values() if s.phase is not CheckPhase.SUCCESSFUL]
        if undecided:
            first = undecided[0]
            self._post(core.BakeEnded(cluster, workflow.now(), False, f"{first.check}: {first.reason}", first.check))
        else:
            shown = ", ".join(finished) or "no checks"
            self._post(core.BakeEnded(cluster, workflow.now(), True, f"baked for {self._plan.waves[c.wave].bake} "
                                                                      f"({shown} passed)"))

    async def _timer(self, at: Any) -> None:
        wait = at - workflow.now()
        if wait > timedelta(0):
            await workflow.sleep(wait)
        self._post(core.TimerFired(workflow.now()))

    async def _undo(self, cluster: str) -> None:
        c = self._state.cluster(cluster)
        if c.previous_template is None:
            self._post(core.UndoFailed(cluster, "its canary recorded no previous template", workflow.now()))
            return
        try:
            await workflow.execute_activity(
                "release.undo", UndoRequest(namespace=c.namespace, name=c.deployment, template=c.previous_template),
                task_queue=c.queue, start_to_close_timeout=timedelta(minutes=15),
                heartbeat_timeout=timedelta(seconds=30), retry_policy=_LOOKS)
        except ActivityError as exc:
            self._post(core.UndoFailed(cluster, str(exc.cause or exc), workflow.now()))
            return
        self._post(core.UndoApplied(cluster, workflow.now()))



__all__ = ["ReleaseWorkflow"]
