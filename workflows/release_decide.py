"""The decisions of a fleet release as a pure state machine: ``decide(plan, state, event) -> (state, commands)``.

No Temporal import, no clock, no I/O: time arrives inside events, side effects leave as commands,
and the state is one pydantic model (``ReleaseState``) carried whole by a hand-over. The Release
workflow (``workflows/release.py``) feeds it events and runs its commands; a stateful test drives
it with generated interleavings. The rules:

1. **Waves in order.** A wave's first canary starts only once every cluster of the waves before it
   promoted and baked, and (when the wave asks for one) an approval came; at most ``maxParallel``
   canaries of a wave run at once; nothing new starts while the release is paused.
2. **One stop for the fleet.** The first stop (a cluster's canary rolled back, a bake check failed,
   no worker in a cluster for ``noWorkerTimeout``, an approval timed out, abort, cancellation) is the
   release's; later ones are ignored. On a stop every running canary is cancelled (each rolls back
   by itself) and every bake is dropped; nothing new starts.
3. **Undo only what promoted, only once nothing runs.** When no canary runs any more, the clusters
   to restore are chosen once, from those whose canary promoted: none, the stopping wave's, or the
   whole release's, last promoted first. They are restored one at a time; a restore that fails is
   reported (``undo-stuck``) and re-attempted after ``UNDO_RETRY``, or at once on ``retry``. The run
   ends only when each was restored.
4. **Hand over only between waves.** A long history hands the state to a new run when a wave is
   done and before the next one starts, when no canary and no bake runs: children do not move to a
   new run, and the parent-close policy would cancel them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from orchestrator.api.release import ClusterPhase, ClusterState, ReleasePhase, ReleaseState, StopDecision
from orchestrator.specs.release import ReleaseSpec

UNDO_RETRY = timedelta(seconds=30)
CHILD_RUNNING = frozenset({ClusterPhase.RUNNING, ClusterPhase.NO_WORKER})


@dataclass(frozen=True)
class WavePlan:
    clusters: tuple[str, ...]
    max_parallel: int
    bake: timedelta
    approval: timedelta | None


@dataclass(frozen=True)
class Plan:
    """What the decisions need of the spec, fixed for the release's life."""

    waves: tuple[WavePlan, ...]
    undo: str  # none | wave | release
    no_worker_timeout: timedelta


def plan_of(spec: ReleaseSpec) -> Plan:
    return Plan(
        waves=tuple(WavePlan(clusters=tuple(w.clusters), max_parallel=w.max_parallel or len(w.clusters),
                             bake=w.bake.duration, approval=w.approval.timeout if w.approval else None)
                    for w in spec.waves),
        undo=spec.on_failure.undo,
        no_worker_timeout=spec.no_worker_timeout,
    )


def initial_state(name: str, plan: Plan, queues: dict[str, str]) -> ReleaseState:
    return ReleaseState(name=name, waves=len(plan.waves), clusters=[
        ClusterState(name=c, wave=i, queue=queues.get(c, "")) for i, w in enumerate(plan.waves) for c in w.clusters])


# ---- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    """A run began (the first, or one a hand-over started): go on from the state."""

    at: datetime


@dataclass(frozen=True)
class WorkerMissing:
    """Nobody picked up the cluster's ping within its schedule-to-start timeout."""

    cluster: str
    at: datetime


@dataclass(frozen=True)
class WorkerFound:
    cluster: str


@dataclass(frozen=True)
class ChildEnded:
    cluster: str
    at: datetime
    promoted: bool
    reason: str
    check: str | None = None
    previous_template: dict[str, Any] | None = None
    namespace: str = ""
    deployment: str = ""


@dataclass(frozen=True)
class BakeEnded:
    cluster: str
    at: datetime
    passed: bool
    reason: str
    check: str | None = None


@dataclass(frozen=True)
class TimerFired:
    at: datetime


@dataclass(frozen=True)
class Control:
    """pause, resume, approve, abort or retry."""

    name: str
    at: datetime


@dataclass(frozen=True)
class Stopped:
    """The interpreter stopped the release (unknown clusters: ``refused``)."""

    kind: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class Cancel:
    at: datetime


@dataclass(frozen=True)
class UndoApplied:
    cluster: str
    at: datetime


@dataclass(frozen=True)
class UndoFailed:
    cluster: str
    error: str
    at: datetime


@dataclass(frozen=True)
class HistoryLong:
    at: datetime


Event = (Started | WorkerMissing | WorkerFound | ChildEnded | BakeEnded | TimerFired | Control | Stopped | Cancel
         | UndoApplied | UndoFailed | HistoryLong)

# ---- commands -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartChild:
    """Check that the cluster's worker polls, then start its canary on the cluster's queue."""

    cluster: str


@dataclass(frozen=True)
class CancelChild:
    cluster: str


@dataclass(frozen=True)
class StartBake:
    cluster: str
    until: datetime


@dataclass(frozen=True)
class CancelBake:
    cluster: str


@dataclass(frozen=True)
class StartTimer:
    at: datetime


@dataclass(frozen=True)
class RunUndo:
    cluster: str


@dataclass(frozen=True)
class Say:
    message: str


@dataclass(frozen=True)
class Continue:
    """Hand the state to a new run (between waves only)."""


@dataclass(frozen=True)
class End:
    phase: ReleasePhase
    cancelled: bool


Command = StartChild | CancelChild | StartBake | CancelBake | StartTimer | RunUndo | Say | Continue | End

# ---- the function -----------------------------------------------------------------------------------


def decide(plan: Plan, state: ReleaseState, event: Event) -> tuple[ReleaseState, list[Command]]:
    """The new state and the commands ``event`` leads to; ``state`` itself is never changed."""
    s = state.model_copy(deep=True)
    out: list[Command] = []
    if s.stage == "ended":
        return s, out
    match event:
        case Started(at):
            s.started_at = s.started_at or at
            _advance(plan, s, at, out)
        case WorkerMissing(cluster, at):
            c = s.cluster(cluster)
            if c.phase is ClusterPhase.RUNNING and not c.cancel_requested:
                c.phase = ClusterPhase.NO_WORKER
                if c.no_worker_since is None:
                    c.no_worker_since = at
                    out += [Say(f"no worker in {cluster} (task queue {c.queue}): waiting up to "
                                f"{plan.no_worker_timeout} for one"),
                            StartTimer(at + plan.no_worker_timeout)]
        case WorkerFound(cluster):
            c = s.cluster(cluster)
            if c.phase is ClusterPhase.NO_WORKER:
                c.phase, c.no_worker_since = ClusterPhase.RUNNING, None
                out.append(Say(f"a worker polls {c.queue}: starting the canary in {cluster}"))
        case ChildEnded():
            _child_ended(s, event, out)
            _advance(plan, s, event.at, out)
        case BakeEnded(cluster, at, passed, reason, check):
            c = s.cluster(cluster)
            if c.phase is ClusterPhase.BAKING:
                c.bake_until = None
                if passed:
                    c.phase = ClusterPhase.BAKED
                    out.append(Say(f"{cluster} baked: {reason}"))
                else:
                    c.phase, c.verdict, c.check = ClusterPhase.FAILED, reason, check
                    _stop(s, StopDecision(kind="bake", reason=f"{cluster}: bake check failed: {reason}",
                                          cluster=cluster, check=check), out)
            _advance(plan, s, at, out)
        case TimerFired(at):
            _timers(plan, s, at, out)
            _advance(plan, s, at, out)
        case Control(name, at):
            _control(s, name, at, out)
            _advance(plan, s, at, out)
        case Stopped(kind, reason, at):
            _stop(s, StopDecision(kind=kind, reason=reason), out)
            _advance(plan, s, at, out)
        case Cancel(at):
            s.cancel_requested = True
            _stop(s, StopDecision(kind="cancelled", reason="the release was cancelled"), out)
            _advance(plan, s, at, out)
        case UndoApplied(cluster, at):
            c = s.cluster(cluster)
            if c.phase in (ClusterPhase.UNDOING, ClusterPhase.UNDO_STUCK):
                c.phase, c.undo_error, c.undo_retry_at = ClusterPhase.UNDONE, "", None
                c.undo_attempts += 1
                out.append(Say(f"{cluster} restored to its previous template"))
            _advance(plan, s, at, out)
        case UndoFailed(cluster, error, at):
            c = s.cluster(cluster)
            if c.phase is ClusterPhase.UNDOING:
                c.phase, c.undo_error, c.undo_attempts = ClusterPhase.UNDO_STUCK, error, c.undo_attempts + 1
                c.undo_retry_at = at + UNDO_RETRY
                out += [Say(f"restoring {cluster} is stuck: {error} (re-attempted in {UNDO_RETRY}, or on retry)"),
                        StartTimer(c.undo_retry_at)]
        case HistoryLong(at):
            s.hand_over_wanted = True
            _advance(plan, s, at, out)
    _show(s)
    return s, out


def _child_ended(s: ReleaseState, event: ChildEnded, out: list[Command]) -> None:
    c = s.cluster(event.cluster)
    if c.phase not in CHILD_RUNNING:
        return  # told twice (a replayed result): the first one counted
    c.verdict, c.check, c.no_worker_since = event.reason, event.check, None
    c.namespace, c.deployment = event.namespace or c.namespace, event.deployment or c.deployment
    if event.promoted:
        # Promoted even when a stop raced it: it is then restored like any other promoted cluster.
        c.phase, c.previous_template = ClusterPhase.PROMOTED, event.previous_template
        s.promoted_order.append(c.name)
        out.append(Say(f"{c.name} promoted: {event.reason}"))
    elif c.cancel_requested:
        c.phase = ClusterPhase.CANCELLED
        out.append(Say(f"{c.name} stopped with the release: {event.reason}"))
    else:
        c.phase = ClusterPhase.FAILED
        _stop(s, StopDecision(kind="cluster", reason=f"{c.name}: {event.reason}", cluster=c.name,
                              check=event.check), out)


def _timers(plan: Plan, s: ReleaseState, at: datetime, out: list[Command]) -> None:
    for c in s.clusters:
        if c.phase is ClusterPhase.NO_WORKER and c.no_worker_since is not None \
                and at >= c.no_worker_since + plan.no_worker_timeout:
            c.verdict = f"no worker in {c.name} (task queue {c.queue}) for {plan.no_worker_timeout}"
            _stop(s, StopDecision(kind="no-worker", reason=c.verdict, cluster=c.name), out)
        if c.phase is ClusterPhase.UNDO_STUCK and c.undo_retry_at is not None and at >= c.undo_retry_at:
            c.phase, c.undo_retry_at = ClusterPhase.UNDOING, None
            out.append(RunUndo(c.name))
    if s.stage == "approval" and s.approval_deadline is not None and at >= s.approval_deadline and not s.approved:
        _stop(s, StopDecision(kind="approval-timeout",
                              reason=f"nobody approved wave {s.wave + 1} before {s.approval_deadline:%H:%M:%S}"), out)


def _control(s: ReleaseState, name: str, at: datetime, out: list[Command]) -> None:
    if name == "retry":
        for c in s.clusters:
            if c.phase is ClusterPhase.UNDO_STUCK:
                c.phase, c.undo_retry_at = ClusterPhase.UNDOING, None
                out.append(RunUndo(c.name))
        return
    if s.stop is not None:
        return  # the release is stopping: pause, resume, approve and a second abort change nothing
    # Pause holds what has not started; the client pauses the running canaries themselves (their controls
    # are updates, which a workflow cannot send).
    if name == "pause":
        s.paused = True
    elif name == "resume":
        s.paused = False
    elif name == "approve" and s.stage == "approval":
        s.approved = True
    elif name == "abort":
        _stop(s, StopDecision(kind="abort", reason="aborted"), out)


def _stop(s: ReleaseState, decision: StopDecision, out: list[Command]) -> None:
    if s.stop is None:
        s.stop = decision
        out.append(Say(f"stopping the release: {decision.reason}"))


def _advance(plan: Plan, s: ReleaseState, at: datetime, out: list[Command]) -> None:
    if s.stop is not None:
        _stopping(plan, s, at, out)
        return
    while True:
        if s.stage == "start":
            wave = plan.waves[s.wave]
            if wave.approval is not None:
                s.stage, s.approved = "approval", False
                s.approval_deadline = at + wave.approval
                out += [Say(f"wave {s.wave + 1} waits for approval (timeout {wave.approval})"),
                        StartTimer(s.approval_deadline)]
            else:
                s.stage = "canaries"
                out.append(Say(f"wave {s.wave + 1}: {', '.join(wave.clusters)}"))
        if s.stage == "approval":
            if not s.approved:
                return
            s.stage, s.approved, s.approval_deadline = "canaries", False, None
            out.append(Say(f"wave {s.wave + 1} approved: {', '.join(plan.waves[s.wave].clusters)}"))
        if s.stage == "canaries" and not _canaries(plan, s, at, out):
            return
        if s.stage == "bake":
            if any(c.phase is not ClusterPhase.BAKED for c in s.in_wave(s.wave)):
                return
            s.wave += 1
            s.stage = "start"
            if s.wave == len(plan.waves):
                _end(s, ReleasePhase.COMPLETED, at, out)
                return
            if s.hand_over_wanted:
                # Between waves, nothing runs: the only point where a new run can take over losslessly.
                s.hand_over_wanted = False
                s.runs += 1
                out.append(Continue())
                return


def _canaries(plan: Plan, s: ReleaseState, at: datetime, out: list[Command]) -> bool:
    """Start what may start; True once every cluster of the wave promoted (the bake has begun)."""
    wave = plan.waves[s.wave]
    clusters = s.in_wave(s.wave)
    if not s.paused:
        running = sum(c.phase in CHILD_RUNNING for c in clusters)
        for c in clusters:
            if running >= wave.max_parallel:
                break
            if c.phase is ClusterPhase.PENDING:
                c.phase = ClusterPhase.RUNNING
                out.append(StartChild(c.name))
                running += 1
    if any(c.phase is not ClusterPhase.PROMOTED for c in clusters):
        return False
    s.stage = "bake"
    for c in clusters:
        if wave.bake > timedelta(0):
            c.phase, c.bake_until = ClusterPhase.BAKING, at + wave.bake
            out.append(StartBake(c.name, c.bake_until))
        else:
            c.phase = ClusterPhase.BAKED
    return True


def _stopping(plan: Plan, s: ReleaseState, at: datetime, out: list[Command]) -> None:
    running = [c for c in s.clusters if c.phase in CHILD_RUNNING]
    for c in running:
        if not c.cancel_requested:
            c.cancel_requested = True
            out.append(CancelChild(c.name))
    for c in s.clusters:
        if c.phase is ClusterPhase.BAKING:
            c.phase, c.bake_until = ClusterPhase.PROMOTED, None  # the bake is dropped, the promotion stands
            out.append(CancelBake(c.name))
    if running:
        s.stage = "stopping"
        return
    if not s.undo_decided:
        s.undo_decided, s.stage = True, "undoing"
        s.undo = undo_scope(plan, s)
        if s.undo:
            out.append(Say(f"undo ({plan.undo}): restoring {', '.join(s.undo)}"))
    for name in s.undo:
        c = s.cluster(name)
        if c.phase is ClusterPhase.UNDONE:
            continue
        if c.phase not in (ClusterPhase.UNDOING, ClusterPhase.UNDO_STUCK):
            c.phase = ClusterPhase.UNDOING
            out.append(RunUndo(name))
        return  # one cluster at a time, in order
    kind = s.stop.kind if s.stop is not None else ""
    final = {"abort": ReleasePhase.ABORTED, "cancelled": ReleasePhase.ABORTED,
             "refused": ReleasePhase.REFUSED}.get(kind, ReleasePhase.STOPPED)
    _end(s, final, at, out)


def undo_scope(plan: Plan, s: ReleaseState) -> list[str]:
    """The promoted clusters onFailure says to restore, the last promoted first."""
    if plan.undo == "none":
        return []
    chosen = [n for n in s.promoted_order if plan.undo == "release" or s.cluster(n).wave == s.wave]
    return list(reversed(chosen))


def _end(s: ReleaseState, phase: ReleasePhase, at: datetime, out: list[Command]) -> None:
    s.stage, s.phase, s.finished_at = "ended", phase, at
    reason = s.stop.reason if s.stop is not None else "every cluster promoted and baked"
    out += [Say(f"{phase.value}: {reason}"), End(phase, cancelled=s.cancel_requested)]


def _show(s: ReleaseState) -> None:
    if s.stage == "ended":
        return
    if s.stop is not None:
        stuck = any(c.phase is ClusterPhase.UNDO_STUCK for c in s.clusters)
        s.phase = (ReleasePhase.STOPPING if s.stage == "stopping"
                   else ReleasePhase.UNDO_STUCK if stuck else ReleasePhase.UNDOING)
    elif s.stage == "approval":
        s.phase = ReleasePhase.WAITING_APPROVAL
    elif s.paused:
        s.phase = ReleasePhase.PAUSED
    elif s.stage == "bake":
        s.phase = ReleasePhase.BAKING
    else:
        s.phase = ReleasePhase.RUNNING


def children_running(s: ReleaseState) -> list[str]:
    return [c.name for c in s.clusters if c.phase in CHILD_RUNNING]


__all__ = [
    "BakeEnded",
    "Cancel",
    "CancelBake",
    "CancelChild",
    "ChildEnded",
    "Command",
    "Continue",
    "Control",
    "End",
    "Event",
    "HistoryLong",
    "Plan",
    "RunUndo",
    "Say",
    "StartBake",
    "StartChild",
    "StartTimer",
    "Started",
    "Stopped",
    "TimerFired",
    "UndoApplied",
    "UndoFailed",
    "WorkerFound",
    "WorkerMissing",
    "children_running",
    "decide",
    "initial_state",
    "plan_of",
    "undo_scope",
]
