"""The decision core's invariants over generated interleavings of every event (issue 17).

A ``RuleBasedStateMachine`` feeds ``workflows.decide`` random sequences of looks, weight changes,
undecided gates, controls, timers, stops, cancellations, hand-overs and undo outcomes, keeps its own
model of what was asked, and after each event checks the core against that model:

* I1 — the core allows a promotion only on an explicit promote, or with nothing paused, no decision
  pending and every watched gate's latest verdict since the latest weight change passed;
* I2 — a decision pause and its deadline, and the timed step's end, survive every hand-over; a pause's
  deadline fires once and rolls back, a step's end fires once;
* I3 — once compensation starts, every undo step is applied, reported stuck, under way, or waits for a
  step it depends on; nothing (a cancel included) ends the run before every step applied;
* I4 (compensation's share) — an undo step runs only once the steps it depends on were applied (the
  canary is removed only after the stable serves);
* I7 — the state survives a round trip through ``pydantic_data_converter`` unchanged.

Derandomized, so ``make test`` runs the same few thousand steps every time; ``print_blob`` prints the
reproduction of a failure.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from temporalio.contrib.pydantic import pydantic_data_converter

from orchestrator.api.common import ControlState, Verdict
from workflows import decide as core

GATES = ("errors", "latency", "judge")
UNDO = (("traffic to stable", ()), ("restore the stable template", ()),
        ("remove the canary", ("traffic to stable", "restore the stable template")))
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class DecisionCore(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = ControlState()
        self.now = T0
        # The model: what the events asked for, kept apart from the core's own bookkeeping.
        self.verdicts: dict[str, Verdict] = {}
        self.manual_pause = False
        self.promote = False
        self.pending: tuple[str, datetime] | None = None  # the decision pause: gate, deadline
        self.step_end: datetime | None = None
        self.rollbacks = 0
        self.stopped = False
        self.compensating = False
        self.cancelled = False
        self.in_flight: set[str] = set()
        self.reported: set[str] = set()
        self.ended: bool | None = None

    def _feed(self, event: core.Event) -> list[core.Command]:
        self.state, commands = core.decide(self.state, event)
        for command in commands:
            if isinstance(command, core.RollBack):
                self.rollbacks += 1
                self.stopped = True
                self.pending = None
            elif isinstance(command, core.RunUndo):
                # I4 (compensation's share): capacity is removed only after what replaces it was applied.
                applied = {u.name for u in self.state.undo if u.state == "applied"}
                assert set(dict(UNDO)[command.step]) <= applied, f"{command.step} ran before its dependencies"
                self.in_flight.add(command.step)
            elif isinstance(command, core.ReportStuck):
                self.reported.add(command.step)
            elif isinstance(command, core.End):
                assert self.ended is None, "the run ends once"
                self.ended = command.cancelled
        return commands

    def _open(self) -> bool:
        return not self.stopped and not self.compensating

    # ---- the running rollout -----------------------------------------------------------------------

    @rule(gate=st.sampled_from(GATES), verdict=st.sampled_from(list(Verdict)))
    def look(self, gate: str, verdict: Verdict) -> None:
        self._feed(core.Looked(gate, verdict))
        self.verdicts[gate] = verdict

    @rule(seconds=st.integers(1, 120))
    def weight_changed(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        self._feed(core.WeightChanged(self.now))
        self.verdicts = dict.fromkeys(self.verdicts, Verdict.UNMEASURED)

    @rule(gate=st.sampled_from(GATES), timeout=st.integers(1, 600), rollback=st.booleans(), failed=st.booleans())
    def undecided(self, gate: str, timeout: int, rollback: bool, failed: bool) -> None:
        resumed = gate in self.state.remeasure
        self._feed(core.Undecided(gate, f"{gate} undecided", self.now, timedelta(seconds=timeout), rollback, failed))
        if not self._open() or resumed or (self.pending is not None and self.pending[0] == gate):
            return
        if rollback:
            assert self.stopped, "onInconclusive: rollback rolls back at once"
            return
        if self.pending is None:
            self.pending = (gate, self.now + timedelta(seconds=timeout))
        if gate in self.verdicts:
            self.verdicts[gate] = Verdict.FAILED if failed else Verdict.UNDECIDED

    @rule(gate=st.sampled_from(GATES))
    def remeasured(self, gate: str) -> None:
        self._feed(core.Remeasured(gate))

    @rule(name=st.sampled_from(["pause", "resume", "promote", "approve", "abort", "retry"]))
    def control(self, name: str) -> None:
        was_open = self._open()
        self._feed(core.Control(name))
        if not was_open or name in ("approve", "retry"):
            return
        if name == "pause":
            self.manual_pause = True
        elif name == "resume":
            if self.pending is not None and self.pending[0] in self.verdicts:
                self.verdicts[self.pending[0]] = Verdict.UNMEASURED
            self.manual_pause, self.pending = False, None
        elif name == "promote":
            self.promote, self.manual_pause, self.pending = True, False, None
        else:
            assert self.stopped, "abort stops the run"

    @rule(seconds=st.integers(1, 600))
    def step_started(self, seconds: int) -> None:
        self._feed(core.StepStarted(self.now + timedelta(seconds=seconds)))
        self.step_end = self.step_end or self.now + timedelta(seconds=seconds)

    @rule()
    def step_done(self) -> None:
        self._feed(core.StepDone())
        self.step_end = None

    @rule(seconds=st.integers(1, 900))
    def timer(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        before = self.rollbacks
        due = self.pending is not None and self.now >= self.pending[1] and self._open()
        step_over = self.step_end is not None and self.now >= self.step_end and not self.stopped
        commands = self._feed(core.TimerFired(self.now))
        assert self.rollbacks == before + (1 if due else 0), "an expired decision pause rolls back, once"
        assert commands.count(core.StepOver()) == (1 if step_over else 0), "a step's end fires once, when due"
        if step_over:
            self.step_end = None

    @rule(kind=st.sampled_from(["gate", "approval-timeout", "error"]))
    def stop(self, kind: str) -> None:
        self._feed(core.Stopped(kind, kind))

    @rule()
    def cancel(self) -> None:
        self._feed(core.Cancel())
        self.cancelled = self.cancelled or self.ended is None  # a cancel after the end changes nothing

    @rule()
    def hand_over(self) -> None:
        before = self.state
        commands = self._feed(core.HandOver())
        assert self.state == before
        assert (core.Continue() in commands) == self._open()
        # The new run starts from the state as the converter delivers it (I7 is that it is the same).
        self.state = _round_trip(self.state)

    # ---- compensation --------------------------------------------------------------------------

    @precondition(lambda self: self.stopped and not self.compensating)
    @rule()
    def compensate(self) -> None:
        self.compensating = True
        self._feed(core.CompensationStarted(UNDO))

    @precondition(lambda self: bool(self.in_flight))
    @rule(data=st.data(), lands=st.booleans())
    def undo_outcome(self, data: st.DataObject, lands: bool) -> None:
        step = data.draw(st.sampled_from(sorted(self.in_flight)))
        self.in_flight.discard(step)
        if lands:
            self._feed(core.UndoApplied(step))
        else:
            self._feed(core.UndoFailed(step, "the API server said no"))

    @precondition(lambda self: self.compensating)
    @rule(seconds=st.integers(30, 900))
    def stuck_timer(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        self._feed(core.TimerFired(self.now))

    # ---- the invariants ----------------------------------------------------------------------------

    @invariant()
    def i1_never_promote_without_a_decision(self) -> None:
        allowed = self._open() and (self.promote or (
            not self.manual_pause and self.pending is None
            and all(v is Verdict.PASSED for v in self.verdicts.values())))
        assert core.may_promote(self.state) == allowed, (self.state, self.verdicts)

    @invariant()
    def i2_a_pause_and_its_deadline_are_state(self) -> None:
        decision = self.state.decision
        if self.pending is None:
            assert decision is None
        else:
            assert decision is not None and (decision.gate, decision.deadline) == self.pending
            assert self.state.paused
        assert self.rollbacks <= 1, "a stop is decided once"
        if not self.compensating:
            assert self.state.step_end == self.step_end, "the timed step's end is state"

    @invariant()
    def i3_compensation_lands_or_is_reported(self) -> None:
        if not self.compensating:
            assert self.ended is None
            return
        applied = {u.name for u in self.state.undo if u.state == "applied"}
        for u in self.state.undo:
            if u.state == "applied":
                continue
            waits = any(d not in applied for d in u.after)
            assert u.name in self.in_flight or u.name in self.reported or waits, f"{u.name} is forgotten"
        done = len(applied) == len(UNDO)
        assert (self.ended is not None) == done, "the run ends exactly when every undo step applied"
        if done:
            assert self.ended == self.cancelled, "a cancellation during compensation ends the run cancelled"

    @invariant()
    def i7_the_state_survives_the_converter(self) -> None:
        assert _round_trip(self.state) == self.state


def _round_trip(state: ControlState) -> ControlState:
    converter = pydantic_data_converter.payload_converter
    [back] = converter.from_payloads(converter.to_payloads([state]), [ControlState])
    assert isinstance(back, ControlState)
    return back


DecisionCore.TestCase.settings = settings(derandomize=True, print_blob=True, max_examples=150,
                                          stateful_step_count=40, deadline=None)
test_decision_core = DecisionCore.TestCase
