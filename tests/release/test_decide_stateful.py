"""The fleet release's decisions over generated interleavings (issue 21).

A ``RuleBasedStateMachine`` draws a release (waves of clusters, maxParallel, bakes, approvals, an
undo policy), then feeds ``workflows.release_decide`` random sequences of canaries ending (promoted
or rolled back), bakes ending, missing and returning workers, timers, controls, cancellation,
long histories (with the hand-over they allow) and undo outcomes. Its own model of what runs is
built from the commands, and after each event it checks:

* no wave's canary starts before every cluster of the waves before it promoted and baked, and no
  more than ``maxParallel`` of a wave run at once; a bake starts only once its whole wave promoted;
* after a stop nothing new starts, every running canary is told to stop, and the release ends
  only when no canary runs and no restore is under way (an abort leaves no child running);
* undo never touches a cluster that was not promoted, and restores exactly what onFailure says;
* a hand-over happens only between waves, with nothing running, and the state survives a round
  trip through ``pydantic_data_converter`` unchanged.

Derandomized, with ``print_blob`` so a failure prints its reproduction.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from temporalio.contrib.pydantic import pydantic_data_converter

from orchestrator.api.release import ClusterPhase, ReleasePhase, ReleaseState
from workflows import release_decide as core

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@st.composite
def plans(draw: st.DrawFn) -> core.Plan:
    sizes = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    names = iter(f"c{i}" for i in range(10))
    waves = []
    for size in sizes:
        clusters = tuple(next(names) for _ in range(size))
        waves.append(core.WavePlan(
            clusters=clusters, max_parallel=draw(st.integers(1, size)),
            bake=timedelta(seconds=draw(st.sampled_from([0, 30]))),
            approval=draw(st.sampled_from([None, timedelta(minutes=5)]))))
    return core.Plan(waves=tuple(waves), undo=draw(st.sampled_from(["none", "wave", "release"])),
                     no_worker_timeout=timedelta(minutes=2))


class ReleaseCore(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.running: set[str] = set()  # children started and not ended
        self.cancelled: set[str] = set()  # children told to stop
        self.baking: set[str] = set()
        self.baked: set[str] = set()
        self.promoted: list[str] = []
        self.undoing: str | None = None
        self.restored: list[str] = []
        self.stopped = False
        self.stop_wave = 0
        self.ended = False
        self.handovers = 0

    @initialize(plan=plans())
    def begin(self, plan: core.Plan) -> None:
        self.plan = plan
        self.wave_of = {c: i for i, w in enumerate(plan.waves) for c in w.clusters}
        self.state = core.initial_state("r", plan, {c: f"orchestrator-{c}" for c in self.wave_of})
        self._feed(core.Started(self.now))

    def _feed(self, event: core.Event) -> None:
        before = self.state
        self.state, commands = core.decide(self.plan, before, event)
        if before.stop is None and self.state.stop is not None:
            self.stopped, self.stop_wave = True, self.state.wave
        for command in commands:
            self._check(command)

    def _check(self, command: core.Command) -> None:
        match command:
            case core.StartChild(cluster):
                assert not self.stopped, f"{cluster} started after the release stopped"
                wave = self.wave_of[cluster]
                for w in self.plan.waves[:wave]:
                    for c in w.clusters:
                        assert c in self.promoted, f"{cluster} (wave {wave}) started before {c} promoted"
                        assert c in self.baked or w.bake == timedelta(0), f"{cluster} started before {c} baked"
                assert cluster not in self.running and cluster not in self.promoted
                self.running.add(cluster)
                same_wave = [c for c in self.running if self.wave_of[c] == wave]
                assert len(same_wave) <= self.plan.waves[wave].max_parallel
            case core.CancelChild(cluster):
                assert self.stopped and cluster in self.running
                self.cancelled.add(cluster)
            case core.StartBake(cluster):
                baked_wave = self.plan.waves[self.wave_of[cluster]]
                assert all(c in self.promoted for c in baked_wave.clusters), "a bake began before its wave promoted"
                self.baking.add(cluster)
            case core.CancelBake(cluster):
                self.baking.discard(cluster)
            case core.RunUndo(cluster):
                assert cluster in self.promoted, f"undo touched {cluster}, which never promoted"
                assert not self.running, "a restore began while a canary still ran"
                assert self.undoing in (None, cluster), "restores run one at a time"
                self.undoing = cluster
            case core.Continue():
                assert not self.running and not self.baking and not self.stopped, "hand-over with work running"
                restored = pydantic_data_converter.payload_converter.from_payload(
                    pydantic_data_converter.payload_converter.to_payload(self.state), ReleaseState)
                assert restored == self.state, "the state changed in a round trip through the data converter"
                self.handovers += 1
                self.state = restored  # the new run continues from what the old one handed over
                self._feed(core.Started(self.now))
            case core.End(phase):
                assert not self.ended, "the release ends once"
                assert not self.running, f"the release ended with canaries running: {self.running}"
                assert self.undoing is None, "the release ended during a restore"
                self.ended = True
                expected = [] if phase is ReleasePhase.COMPLETED else core.undo_scope(self.plan, self.state)
                assert self.restored == expected, (self.restored, expected)
                if phase is ReleasePhase.COMPLETED:
                    assert set(self.promoted) == set(self.wave_of)
                if self.plan.undo == "release" and phase is not ReleasePhase.COMPLETED:
                    assert sorted(self.restored) == sorted(self.promoted), "undo: release restores every one"

    # ---- the fleet ------------------------------------------------------------------------------

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data(), promoted=st.booleans())
    def child_ends(self, data: st.DataObject, promoted: bool) -> None:
        cluster = data.draw(st.sampled_from(sorted(self.running)))
        self.running.discard(cluster)
        if promoted:
            self.promoted.append(cluster)
        self._feed(core.ChildEnded(cluster, self.now, promoted, "rolled back: gate errors failed"
                                   if not promoted else "all steps passed", check=None if promoted else "errors",
                                   previous_template={"spec": {"v": 1}} if promoted else None))

    @precondition(lambda self: bool(self.baking))
    @rule(data=st.data(), passed=st.booleans())
    def bake_ends(self, data: st.DataObject, passed: bool) -> None:
        cluster = data.draw(st.sampled_from(sorted(self.baking)))
        self.baking.discard(cluster)
        if passed:
            self.baked.add(cluster)
        self._feed(core.BakeEnded(cluster, self.now, passed, "errors passed" if passed else "errors failed",
                                  None if passed else "errors"))

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data(), found=st.booleans())
    def worker(self, data: st.DataObject, found: bool) -> None:
        cluster = data.draw(st.sampled_from(sorted(self.running)))
        self._feed(core.WorkerFound(cluster) if found else core.WorkerMissing(cluster, self.now))

    @rule(seconds=st.sampled_from([1, 31, 130, 400]))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        self._feed(core.TimerFired(self.now))

    @rule(name=st.sampled_from(["pause", "resume", "approve", "approve", "abort", "retry"]))
    def control(self, name: str) -> None:
        self._feed(core.Control(name, self.now))

    @rule()
    def cancel(self) -> None:
        self._feed(core.Cancel(self.now))

    @rule()
    def history_long(self) -> None:
        self._feed(core.HistoryLong(self.now))

    @precondition(lambda self: self.undoing is not None)
    @rule(ok=st.booleans())
    def undo_outcome(self, ok: bool) -> None:
        cluster = self.undoing
        assert cluster is not None
        if ok:
            self.undoing = None
            self.restored.append(cluster)
            self._feed(core.UndoApplied(cluster, self.now))
        else:
            # Stuck: reported; it runs again (RunUndo) on a retry or after UNDO_RETRY.
            self.undoing = None
            self._feed(core.UndoFailed(cluster, "the API server refused", self.now))
            assert self.state.cluster(cluster).phase is ClusterPhase.UNDO_STUCK

    # ---- after every step ------------------------------------------------------------------------

    @invariant()
    def stopping_stops_every_child(self) -> None:
        if self.stopped:
            assert self.running <= self.cancelled, f"running canaries not told to stop: {self.running - self.cancelled}"
            assert not self.baking, "a bake still runs after the stop"

    @invariant()
    def undo_only_promoted(self) -> None:
        for c in self.state.clusters:
            if c.phase in (ClusterPhase.UNDOING, ClusterPhase.UNDO_STUCK, ClusterPhase.UNDONE):
                assert c.name in self.promoted

    @invariant()
    def waves_in_order(self) -> None:
        for c in self.state.clusters:
            if c.phase is not ClusterPhase.PENDING:
                late = [e.name for e in self.state.clusters if e.wave < c.wave and e.name not in self.promoted]
                assert not late, f"{c.name} began while {late} of an earlier wave had not promoted"


ReleaseCore.TestCase.settings = settings(derandomize=True, print_blob=True, max_examples=200,
                                         stateful_step_count=50, deadline=None)
test_release_core = ReleaseCore.TestCase


def test_a_healthy_release_runs_every_wave_in_order_and_completes() -> None:
    plan = core.Plan(waves=(core.WavePlan(("a",), 1, timedelta(seconds=30), None),
                            core.WavePlan(("b", "c"), 2, timedelta(0), None)),
                     undo="release", no_worker_timeout=timedelta(minutes=2))
    s, out = core.decide(plan, core.initial_state("r", plan, {}), core.Started(T0))
    assert [c for c in out if isinstance(c, core.StartChild)] == [core.StartChild("a")]
    s, out = core.decide(plan, s, core.ChildEnded("a", T0, True, "all steps passed", previous_template={"v": 1}))
    assert out[-1] == core.StartBake("a", T0 + timedelta(seconds=30)) and s.phase is ReleasePhase.BAKING
    s, out = core.decide(plan, s, core.BakeEnded("a", T0, True, "errors passed"))
    assert [c for c in out if isinstance(c, core.StartChild)] == [core.StartChild("b"), core.StartChild("c")]
    s, _ = core.decide(plan, s, core.ChildEnded("b", T0, True, "ok"))
    s, out = core.decide(plan, s, core.ChildEnded("c", T0, True, "ok"))
    assert s.phase is ReleasePhase.COMPLETED and out[-1] == core.End(ReleasePhase.COMPLETED, cancelled=False)


def test_a_failure_in_the_second_wave_restores_the_first_waves_cluster_and_names_cluster_and_check() -> None:
    plan = core.Plan(waves=(core.WavePlan(("a",), 1, timedelta(0), None),
                            core.WavePlan(("b", "c"), 2, timedelta(0), None)),
                     undo="release", no_worker_timeout=timedelta(minutes=2))
    s, _ = core.decide(plan, core.initial_state("r", plan, {}), core.Started(T0))
    s, _ = core.decide(plan, s, core.ChildEnded("a", T0, True, "ok", previous_template={"v": 1}))
    s, out = core.decide(plan, s, core.ChildEnded("b", T0, False, "gate error-rate failed", check="error-rate"))
    assert core.CancelChild("c") in out and not any(isinstance(c, core.RunUndo) for c in out)
    s, out = core.decide(plan, s, core.ChildEnded("c", T0, False, "cancelled"))
    assert core.RunUndo("a") in out and s.cluster("c").phase is ClusterPhase.CANCELLED
    s, out = core.decide(plan, s, core.UndoApplied("a", T0))
    assert s.phase is ReleasePhase.STOPPED and s.stop is not None
    assert (s.stop.cluster, s.stop.check) == ("b", "error-rate") and s.stop.reason.startswith("b: ")
