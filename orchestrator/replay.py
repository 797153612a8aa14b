"""Replay a rollout's gates over Prometheus history: "what would these checks have decided then?".

Shape: a small discrete-event simulation of a canary rollout between ``start`` and ``end``. It walks
the spec's steps the way the workflow does (``setWeight`` takes no time, a ``pause`` lasts its
duration, an ``analysis`` step looks at each check after ``initialDelay`` and then every
``interval`` until every check decided, or until a look at or past the step's ``duration``);
background checks look every ``interval`` from the start for the whole rollout. Every look is one
instant query at the look's time (``time=``), taken by the *same* code the worker runs
(``orchestrator.gates.evaluate``) and folded by the same verdict rules
(``orchestrator.gates.verdict``, one look at a time), so a threshold tuned here behaves the same in a rollout.

The first failed or errored verdict is a rollback at that look; an inconclusive one is what the
spec's ``onInconclusive`` says (pause or rollback); the end of the steps is a promotion. A window
that ends first reports the rollout as still running.

What the replay does not model, on purpose: the time Kubernetes takes (the canary is taken to be
available at ``start``), manual approvals (taken as given at once, and said so in the notes),
controls (pause, promote, abort), and retries of a Prometheus outage (an unreachable Prometheus
stops the replay instead of becoming error looks).

Check kinds: threshold and relative checks go through ``evaluate_sides`` and SLO checks through
``evaluate_slo`` (``MEASURERS``, keyed by what the check carries), both folded by the verdict rules; a judge
check carries its state from look to look exactly as the worker's ``judge.look`` activity does
(``read_look_sides`` then ``judge_update``, ``judge_finish`` at the end of a timed step), with the
rollout's false-rollback bound split over its judge checks. Custom selectors apply to threshold,
relative and judge checks; an SLO check renders its own track selector.

Bounds: before the first query the number of queries is estimated from the spec and the window
(``estimate_queries``: every check's looks in the window, capped by its count or its step's duration,
times the queries one look sends), and a replay above ``max_queries`` is refused with the estimate.
Looks and step events go to a ``ReplaySink`` as they happen when one is given (the CLI writes them
out at once, or spools them to a temporary file for formats that print the decision first), so memory
does not grow with the window.

Sides: by default the canary and the control side are chosen the way the worker chooses them
(``{{track_selector}}``). History recorded before the canary labels existed (or from another tool)
labels the sides differently, so ``canary_selector`` / ``control_selector`` replace that matcher
with label matchers given by the user, validated as plain PromQL matchers.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any, Literal, Protocol

from pydantic import BaseModel, Field

from orchestrator.errors import MetricError
from orchestrator.gates.evaluate import Side, evaluate_sides
from orchestrator.gates.model import CheckPhase, CheckStatus, Measurement, Phase
from orchestrator.gates.prometheus import MetricProvider
from orchestrator.gates.template import track_selector
from orchestrator.gates.verdict import advance, finish
from orchestrator.gates.verdict import start as start_status
from orchestrator.specs.canary import AnalysisStep, CanaryRollout, PauseStep, SetWeightStep
from orchestrator.specs.checks import Check, Relative
from orchestrator.specs.duration import format_duration
from orchestrator.specs.promql import image_version

Action = Literal["rollback", "pause", "promote", "running"]

DEFAULT_MAX_QUERIES = 10_000
"""More than a day of a handful of checks at their usual intervals; a larger replay is asked for explicitly."""

# One matcher: label, operator, double-quoted value (escapes allowed); a selector is a comma list of them.
_MATCHER = r'\s*[A-Za-z_][A-Za-z0-9_]*\s*(=~|!~|!=|=)\s*"(?:[^"\\\n]|\\.)*"\s*'
_SELECTOR = re.compile(rf"^{_MATCHER}(,{_MATCHER})*$")


def validate_selector(selector: str) -> str:
    """``selector`` if it is a comma-separated list of PromQL label matchers, else ``MetricError``."""
    if not _SELECTOR.match(selector):
        raise MetricError(
            f"selector {selector!r} is not a list of label matchers like version=\"v2\",pod=~\"web-.*\"",
            retryable=False,
        )
    return selector.strip()


class Look(BaseModel):
    """One evaluation of one check, and what the check's verdict was after it."""

    at: datetime
    check: str
    step: str  # "background" or e.g. "step 3 (analysis)"
    value: float | None
    control_value: float | None = None
    phase: str  # the measurement: successful | failed | inconclusive | error | waiting
    verdict: str  # the check after folding this look: running | successful | failed | ...
    message: str
    query: str
    seq: int = Field(default=0, exclude=True)


class StepEvent(BaseModel):
    """A step beginning (setWeight, pause, analysis) at its replayed time."""

    at: datetime
    step: str
    seq: int = Field(default=0, exclude=True)  # order in the simulation, for the text timeline


class Decision(BaseModel):
    action: Action
    at: datetime | None
    reason: str
    check: str | None = None
    elapsed_seconds: float | None = None  # since the replay's start


class Replay(BaseModel):
    name: str
    kind: str
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    events: list[StepEvent] = Field(default_factory=list)
    looks: list[Look] = Field(default_factory=list)
    decision: Decision
    notes: list[str] = Field(default_factory=list)


class ReplaySink(Protocol):
    """Where looks and step events go as the replay makes them, instead of the ``Replay``'s lists."""

    def event(self, event: StepEvent) -> None: ...

    def look(self, look: Look) -> None: ...


Measurer = Callable[[Check, MetricProvider, Side, Side | None, datetime], Measurement]


def _measure_condition(check: Check, provider: MetricProvider, subject: Side, control: Side | None,
                       at: datetime) -> Measurement:
    return evaluate_sides(check, provider, subject, control, at)


def _measure_slo(check: Check, provider: MetricProvider, subject: Side, control: Side | None,
                 at: datetime) -> Measurement:
    from orchestrator.gates.slo import evaluate_slo

    return evaluate_slo(check, provider, subject.variables, at)


# Keyed by the field that gives a check its kind. Judge checks carry state from look to look and are
# folded by the judge itself (``_Replayer._judge_look``), not by the verdict rules.
MEASURERS: dict[str, Measurer] = {
    "condition": _measure_condition,
    "slo": _measure_slo,
}


def _kind_of(check: Check) -> str:
    for kind in ("condition", "judge", "slo"):
        if getattr(check, kind, None) is not None:
            return kind
    return "condition"


@dataclass
class _Watch:
    check: Check
    step: str
    started: datetime
    next: datetime
    duration: timedelta | None
    # The verdict folded so far (``verdict.advance`` per look), not the measurements: memory and time per
    # look stay constant however long the window is.
    folded: CheckStatus | None = None
    status: CheckStatus | None = None
    data_seen: bool = False
    judge_state: Any = None  # orchestrator.gates.judge.JudgeState, for judge checks

    @property
    def done(self) -> bool:
        return self.status is not None and self.status.phase.final


class _Replayer:
    def __init__(self, spec: CanaryRollout, provider: MetricProvider, start: datetime, end: datetime,
                 canary_selector: str | None, control_selector: str | None, sink: ReplaySink | None) -> None:
        self.spec = spec
        self.sink = sink
        self.provider = provider
        self.start, self.end, self.t = start, end, start
        image = spec.spec.change.image or ""
        self.variables = {
            "namespace": spec.spec.target.namespace,
            "app": spec.spec.target.deployment,
            "target": spec.spec.target.deployment,
            "image": image,
            "version": image_version(image),  # the worker's parser: a registry port is not a tag
        }
        self.canary_selector = validate_selector(canary_selector) if canary_selector else None
        self.control_selector = validate_selector(control_selector) if control_selector else None
        self.result = Replay(name=spec.metadata.name, kind=spec.kind, start=start, end=end,
                             decision=Decision(action="running", at=None, reason=""))
        self._seq = 0
        self.alpha, self.judges = self._alpha(spec)
        self.background = [_Watch(c, "background", start, start + c.initial_delay, None)
                           for c in spec.spec.background_checks]

    def _side(self, track: str) -> Side:
        chosen = self.canary_selector if track == "canary" else self.control_selector
        return Side(track, {**self.variables, "track": track},
                    selectors={"track_selector": chosen or track_selector(track)})

    @staticmethod
    def _alpha(spec: CanaryRollout) -> tuple[float, int]:
        checks = [*spec.spec.background_checks]
        checks += [c for step in spec.spec.steps if isinstance(step, AnalysisStep) for c in step.analysis.checks]
        if not any(getattr(c, "judge", None) is not None for c in checks):
            return 0.0, 0
        from orchestrator.gates.judge import alpha_per_check, rollout_alpha

        rollout, n = rollout_alpha(checks)
        return alpha_per_check(rollout, n), n

    def _judge_look(self, watch: _Watch, at: datetime) -> tuple[Measurement, CheckStatus]:
        """One look of a judge check: read the counts since the last look, fold them, as the worker does."""
        from orchestrator.gates.counts import read_look_sides
        from orchestrator.gates.judge import JudgeState, judge_finish, judge_update

        check = watch.check
        assert check.judge is not None
        state = watch.judge_state if watch.judge_state is not None else JudgeState()
        look = read_look_sides(self.provider, check, self._side("canary"), self._side(check.judge.compare_to),
                               state, at)
        state, verdict = judge_update(check, state, look, alpha=self.alpha, checks=self.judges)
        watch.judge_state = state
        if watch.duration is not None and at - watch.started >= watch.duration:
            verdict = judge_finish(check, state, alpha=self.alpha, checks=self.judges)
        return verdict.measurement(look), verdict.status(state.looks)

    def _look(self, watch: _Watch) -> Decision | None:
        check, at = watch.check, watch.next
        if getattr(check, "judge", None) is not None:
            m, judged = self._judge_look(watch, at)
            watch.status = judged
            return self._record(watch, m, m.phase.value)
        subject = self._side(str(check.track))
        control = self._side(check.condition.compare_to) if isinstance(check.condition, Relative) else None
        m = MEASURERS[_kind_of(check)](check, self.provider, subject, control, at)
        wait_for_data: timedelta | None = getattr(check, "wait_for_data", None)
        waiting = (m.no_data and not watch.data_seen and wait_for_data is not None
                   and at - watch.started < wait_for_data)
        if waiting:
            phase = "waiting"
        else:
            watch.data_seen = watch.data_seen or not (m.no_data or m.phase is Phase.ERROR)
            watch.folded = advance(check, watch.folded if watch.folded is not None else start_status(check), m)
            finished = watch.duration is not None and at - watch.started >= watch.duration
            watch.status = finish(check, watch.folded) if finished else watch.folded
            phase = m.phase.value
        return self._record(watch, m, phase, " (waiting for data: not counted)" if waiting else "")

    def _record(self, watch: _Watch, m: Measurement, phase: str, note: str = "") -> Decision | None:
        check, at, status = watch.check, watch.next, watch.status
        look = Look(
            at=at, check=check.name, step=watch.step, value=m.value, control_value=m.control_value, phase=phase,
            verdict=status.phase.value if status else "running", message=m.message + note, query=m.query,
            seq=self._next_seq())
        if self.sink is not None:
            self.sink.look(look)
        else:
            self.result.looks.append(look)
        watch.next = at + check.interval
        if status is None:
            return None
        if status.phase in (CheckPhase.FAILED, CheckPhase.ERROR):
            return self._decide("rollback", at, status.reason, check.name)
        if status.phase is CheckPhase.INCONCLUSIVE:
            policy = getattr(self.spec.spec, "on_inconclusive", None)
            action: Action = "pause" if policy is not None and policy.action == "pause" else "rollback"
            return self._decide(action, at, status.reason, check.name)
        return None

    def _event(self, text: str) -> None:
        event = StepEvent(at=self.t, step=text, seq=self._next_seq())
        if self.sink is not None:
            self.sink.event(event)
        else:
            self.result.events.append(event)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _decide(self, action: Action, at: datetime | None, reason: str, check: str | None = None) -> Decision:
        elapsed = (at - self.start).total_seconds() if at is not None else None
        return Decision(action=action, at=at, reason=reason, check=check, elapsed_seconds=elapsed)

    def _run(self, step: list[_Watch], until: datetime | None) -> Decision | None:
        """Look at every due check in time order until ``step``'s checks decided or ``until`` passed."""
        while True:
            if step and all(w.done for w in step):
                return None
            active = [w for w in (*self.background, *step) if not w.done]
            nxt = min(active, key=lambda w: w.next) if active else None
            if until is not None and (nxt is None or nxt.next > until):
                self.t = until
                return None
            if nxt is None or nxt.next > self.end:
                return self._decide("running", None, f"still running at the end of the window ({self.end})")
            self.t = nxt.next
            decision = self._look(nxt)
            if decision is not None:
                return decision

    def run(self) -> Replay:
        decision: Decision | None = None
        for i, step in enumerate(self.spec.spec.steps, start=1):
            if isinstance(step, SetWeightStep):
                self._event(f"step {i}: setWeight {step.set_weight}%")
                continue
            if isinstance(step, PauseStep):
                pause = step.pause
                if pause.until_approved:
                    self.result.notes.append(f"step {i}: manual approval taken as given at once")
                    continue
                assert pause.duration is not None
                self._event(f"step {i}: pause {format_duration(pause.duration)}")
                decision = self._run([], self.t + pause.duration)
            elif isinstance(step, AnalysisStep):
                names = ", ".join(c.name for c in step.analysis.checks)
                self._event(f"step {i}: analysis ({names})")
                label = f"step {i} (analysis)"
                watches = [_Watch(c, label, self.t, self.t + c.initial_delay, step.analysis.duration)
                           for c in step.analysis.checks]
                decision = self._run(watches, None)
            if decision is not None:
                break
        if decision is None:
            decision = self._decide("promote", self.t, "every step passed")
        self.result.decision = decision
        return self.result


def _queries_per_look(check: Check) -> int:
    if check.judge is not None:
        return 2 * len(check.judge.queries())  # each metric, canary and control
    if check.slo is not None:
        from orchestrator.gates.slo import windows

        return 2 * len(windows(check.slo))  # total and bad, per window
    return 2 if isinstance(check.condition, Relative) else 1


def _looks(check: Check, window: timedelta, duration: timedelta | None, *, analysis: bool) -> int:
    """At most how many looks ``check`` takes in ``window`` (an analysis check also stops at its count)."""
    interval = max(check.interval, timedelta(milliseconds=1))
    if window < check.initial_delay:
        return 0
    looks = (window - check.initial_delay) // interval + 1
    if analysis and duration is not None:
        looks = min(looks, max(duration - check.initial_delay, timedelta(0)) // interval + 2)
    if analysis and check.count is not None:
        waiting = (check.wait_for_data // interval + 1) if check.wait_for_data is not None else 0
        looks = min(looks, check.count + waiting)
    return looks


def estimate_queries(spec: CanaryRollout, start: datetime, end: datetime) -> int:
    """At most how many queries replaying ``spec`` between ``start`` and ``end`` sends; no I/O."""
    window = end - start
    total = sum(_looks(c, window, None, analysis=False) * _queries_per_look(c) for c in spec.spec.background_checks)
    for step in spec.spec.steps:
        if isinstance(step, AnalysisStep):
            total += sum(_looks(c, window, step.analysis.duration, analysis=True) * _queries_per_look(c)
                         for c in step.analysis.checks)
    return total


def replay(spec: Any, provider: MetricProvider, start: datetime, end: datetime, *,
           canary_selector: str | None = None, control_selector: str | None = None,
           max_queries: int | None = DEFAULT_MAX_QUERIES, sink: ReplaySink | None = None) -> Replay:
    """Replay ``spec``'s gates between ``start`` and ``end`` against ``provider``'s history.

    Refused (``MetricError``, not retryable) before the first query when the estimate is above
    ``max_queries``. With a ``sink``, looks and events go there and the result keeps none of them.
    """
    if not isinstance(spec, CanaryRollout):
        raise MetricError(f"replay takes a CanaryRollout spec, not {getattr(spec, 'kind', type(spec).__name__)}",
                          retryable=False)
    if end <= start:
        raise MetricError("--to must be after --from", retryable=False)
    check_budget(spec, start, end, max_queries)
    return _Replayer(spec, provider, start, end, canary_selector, control_selector, sink).run()


def check_budget(spec: CanaryRollout, start: datetime, end: datetime, max_queries: int | None) -> int:
    """The estimate of ``estimate_queries``; ``MetricError`` (not retryable) when it is above ``max_queries``."""
    estimate = estimate_queries(spec, start, end)
    if max_queries is not None and estimate > max_queries:
        raise MetricError(
            f"this window would send up to {estimate:,} queries (limit {max_queries:,}): narrow --from/--to, "
            "or raise the limit with --max-queries or ORCHESTRATOR_REPLAY_MAX_QUERIES", retryable=False)
    return estimate


# ---- rendering ----------------------------------------------------------------------------------

def _fmt(value: float | None) -> str:
    # Four significant digits like the rollout status; "—" for a look without a value.
    return "—" if value is None else f"{value:.4g}"


def _decision_line(r: Replay) -> str:
    d = r.decision
    when = f" at {d.at.isoformat()} (+{d.elapsed_seconds:.0f}s)" if d.at is not None else ""
    return f"decision: {d.action}{when}: {d.reason}"


def _text_header(r: Replay) -> str:
    return f"replay of {r.kind} {r.name} from {r.start.isoformat()} to {r.end.isoformat()}\n"


def _text_line(item: StepEvent | Look) -> str:
    if isinstance(item, StepEvent):
        text = item.step
    else:
        text = (f"{item.check:<20} value {_fmt(item.value):<8} {item.phase:<11} -> {item.verdict:<11} "
                f"{item.message}")
    return f"  {item.at:%Y-%m-%d %H:%M:%S}  {text}".rstrip() + "\n"


def _text_footer(r: Replay) -> str:
    return "".join(f"note: {n}\n" for n in r.notes) + _decision_line(r) + "\n"


def to_text(r: Replay) -> str:
    # One timeline in the order the simulation went through it.
    timeline: list[StepEvent | Look] = sorted([*r.events, *r.looks], key=lambda item: item.seq)
    return _text_header(r) + "".join(_text_line(item) for item in timeline) + _text_footer(r)


def _markdown_head(r: Replay) -> str:
    out = [f"### Replay of `{r.name}`: {r.decision.action}", "",
           f"- Window: {r.start.isoformat()} to {r.end.isoformat()}", f"- {_decision_line(r).capitalize()}"]
    out += [f"- Note: {n}" for n in r.notes]
    out += ["", "| time | check | step | value | look | verdict | detail |", "|---|---|---|---|---|---|---|"]
    return "\n".join(out) + "\n"


def _markdown_row(look: Look) -> str:
    detail = look.message.replace("|", "\\|")
    return (f"| {look.at.isoformat()} | {look.check} | {look.step} | {_fmt(look.value)} | {look.phase} | "
            f"{look.verdict} | {detail} |\n")


def to_markdown(r: Replay) -> str:
    return _markdown_head(r) + "".join(_markdown_row(look) for look in r.looks)


def _json_look(look: Look) -> str:
    return json.dumps(look.model_dump(mode="json", by_alias=True), indent=2)


def _json_around(r: Replay) -> tuple[str, str]:
    """The JSON document of ``r`` without its looks: the text before them and the text after them."""
    data = r.model_dump(mode="json", by_alias=True)
    data["looks"] = ["LOOKS"]
    head, _, tail = json.dumps(data, indent=2).partition('"LOOKS"')
    return head, tail


def to_json(r: Replay) -> str:
    head, tail = _json_around(r)
    return head + ",\n".join(_json_look(look) for look in r.looks) + tail


RENDERERS: Mapping[str, Callable[[Replay], str]] = {"text": to_text, "markdown": to_markdown, "json": to_json}


class StreamWriter:
    """A ``ReplaySink`` that writes a replay's output while it runs, in the same text as ``RENDERERS``.

    Text is written line by line as looks are made. Markdown and JSON print the decision before the
    looks, so their looks are spooled to a temporary file (held in memory only up to a few MB) and
    copied out after the decision; step events are few (one per step) and are kept.
    """

    def __init__(self, output: str, write: Callable[[str], None], header: Replay, spool: IO[str] | None) -> None:
        self.output, self.write = output, write
        self.events: list[StepEvent] = []
        self.looks = 0
        self.spool = None if output == "text" else spool
        if self.spool is None:
            write(_text_header(header))

    def event(self, event: StepEvent) -> None:
        if self.output == "text":
            self.write(_text_line(event))
        else:
            self.events.append(event)

    def look(self, look: Look) -> None:
        if self.spool is None:
            self.write(_text_line(look))
        elif self.output == "json":
            self.spool.write((",\n" if self.looks else "") + _json_look(look))
        else:
            self.spool.write(_markdown_row(look))
        self.looks += 1

    def finish(self, result: Replay) -> None:
        """Write what follows the looks (text) or the whole document around the spooled looks."""
        if self.spool is None:
            self.write(_text_footer(result))
            return
        result = result.model_copy(update={"events": self.events})
        head, tail = _json_around(result) if self.output == "json" else (_markdown_head(result), "")
        self.write(head)
        self.spool.seek(0)
        while chunk := self.spool.read(64 * 1024):
            self.write(chunk)
        self.write(tail)


@contextmanager
def stream_writer(output: str, write: Callable[[str], None], header: Replay) -> Iterator[StreamWriter]:
    """A ``StreamWriter`` for ``output``, with its spool file for the duration of the block."""
    with tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024, mode="w+", encoding="utf-8") as spool:
        yield StreamWriter(output, write, header, spool)
