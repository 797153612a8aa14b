"""Read one judge look from Prometheus: exact increases of cumulative counters since the previous look.

The judge needs counts, not rates. ``rate()``/``increase()`` extrapolate to the window's edges and
miss the first increment of a series that appears mid-window (a labelled error counter often appears
only at the first error, with no initial zero), so the ratio of two ``rate()``s underestimates while the
window fills. Instead each look reads the cumulative values (an instant query of the counter itself)
and differences them against the readings kept in ``JudgeState.marks``:

* the first look only records the starting point (and the control's history, for the tail bound and to
  recognise a shared outage later);
* a series seen for the first time after the first look counts from zero: it belongs to a new pod, or
  it is an error series that did not exist because there was no error yet (missing counts as zero once
  the request series exists);
* a *request* series that went down was reset (a pod restarted, or a ``sum`` lost a pod): the look is
  *skipped* for both sides (readings updated, nothing counted), so a reset can never produce a verdict by
  itself whichever way the query aggregates. Resets are decided on the request series only (for latency,
  the ``+Inf`` bucket), never on the errors: an error series that went down (it vanished and came back
  with its first new error) counts from zero like a new one. Deciding on the errors would skip exactly
  the looks where a side had an error, and bias the split;
* a look where one side's requests did not advance while the other's did (its next scrape has not
  landed yet) *waits*: nothing is counted and no reading moves on, so the next look counts both sides'
  increments since the same starting point. Discarding it would throw away the advanced side's
  increment (with 30 s scrapes and 10 s looks most of the data). Waiting is decided on request counts,
  never on the errors' split, so the test stays valid;
* series that vanish keep their last reading (bounded), so a series that comes back is not counted twice.

On the first look of a worker's judge (``scrape=True``) the judge also infers each side's scrape interval
from the spacing of the samples (``changes()`` of the request query over a 1 s subquery of 5 minutes,
which any PromQL engine answers, Thanos and Mimir included) and warns when the look interval is shorter.

Gauges need no differencing: each look reads one value per pod and side. Retryable ``MetricError``s
propagate (the activity is retried); non-retryable ones propagate too, for the caller to record.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from orchestrator.errors import MetricError
from orchestrator.gates.dispersion import DEFAULT as DEFAULT_NOISE
from orchestrator.gates.dispersion import Noise, PodMoments, estimate
from orchestrator.gates.evaluate import Side as QuerySide
from orchestrator.gates.judge import JudgeLook, JudgeState, Side, tail_bound
from orchestrator.gates.judge_plan import Tail
from orchestrator.gates.model import Sample
from orchestrator.gates.prometheus import MetricProvider
from orchestrator.gates.template import render, track_selector
from orchestrator.specs.checks import Check
from orchestrator.specs.judge import Judge, JudgeKind


def track_sides(check: Check, variables: Mapping[str, str]) -> tuple[QuerySide, QuerySide]:
    """The canary and the judge's ``compareTo`` track as query sides."""
    judge = _judge(check)
    sides = []
    for track in ("canary", judge.compare_to):
        selectors = {"track_selector": track_selector(track)}
        sides.append(QuerySide(track, {**variables, "track": track}, selectors=selectors))
    return sides[0], sides[1]


def read_look(
    prom: MetricProvider, check: Check, variables: Mapping[str, str], state: JudgeState, at: datetime | None = None,
    *, service: bool = False,
) -> JudgeLook:
    """One look of a canary's judge check: canary vs its ``compareTo`` track."""
    subject, control = track_sides(check, variables)
    look = read_look_sides(prom, check, subject, control, state, at, service=service)
    if service and look.start and _judge(check).kind is JudgeKind.COUNTS:
        look = look.model_copy(update={"noise": read_noise(prom, check, variables, look.at,
                                                            check.interval.total_seconds())})
    return look


def read_look_sides(
    prom: MetricProvider,
    check: Check,
    subject: QuerySide,
    control: QuerySide,
    state: JudgeState,
    at: datetime | None = None,
    *,
    service: bool = False,
) -> JudgeLook:
    """One look with caller-chosen sides (a flag ramp: the treatment variant vs the control variant).

    ``service``: on the first look, also infer each side's scrape interval (one more query per side); with
    ``read_look`` (a canary) also the stable's dispersion and pod spread from its history (``read_noise``).
    """
    judge = _judge(check)
    when = at if at is not None else datetime.now(UTC)
    start = state.started_at is None
    reader = _Reader(prom, judge, subject, control, state, at)
    if judge.kind is JudgeKind.GAUGE:
        canary = Side(gauge=reader.gauge("canary", subject))
        other = Side(gauge=reader.gauge("control", control))
        return JudgeLook(at=when, canary=canary, control=other, start=start, queries=reader.queries)

    if judge.kind is JudgeKind.LATENCY:
        c_buckets = reader.cumulative("canary", "latency", subject, by_le=True)
        k_buckets = reader.cumulative("control", "latency", control, by_le=True)
        canary = Side(buckets=_histogram(c_buckets))
        other = Side(buckets=_histogram(k_buckets))
        history = _histogram(reader.totals["control", "latency"]) if start else []
        advanced = (canary.buckets[-1][1] > 0 if canary.buckets else False,
                    other.buckets[-1][1] > 0 if other.buckets else False)  # fmt: skip
    else:
        ce = reader.cumulative("canary", "errors", subject)
        ke = reader.cumulative("control", "errors", control)
        cr = reader.cumulative("canary", "requests", subject)
        kr = reader.cumulative("control", "requests", control)
        canary = Side(requests=sum(cr.values()), errors=sum(ce.values()))
        other = Side(requests=sum(kr.values()), errors=sum(ke.values()))
        advanced = (canary.requests > 0, other.requests > 0)
        history = []
        if start:
            requests = sum(reader.totals["control", "requests"].values())
            errors = sum(reader.totals["control", "errors"].values())
            history = [(0.0, requests), (1.0, errors)]
    skipped = ""
    if reader.resets:
        skipped = f"counter reset in {', '.join(sorted(reader.resets))}: look skipped (nothing counted)"
    waiting = ""
    # During a declared warm-up nothing is counted, so readings always move on (nothing to wait for).
    warming = (judge.warmup is not None and state.started_at is not None
               and when - state.started_at <= judge.warmup)  # fmt: skip
    if not start and not skipped and not warming and advanced[0] != advanced[1]:
        behind = "canary" if not advanced[0] else judge.compare_to
        waiting = (f"the {behind}'s requests have not advanced since the last counted look: waiting for its next "
                   "scrape (nothing is lost: the next look counts both sides from the same point)")
    if start or skipped or waiting:
        canary, other = Side(), Side()
    scrapes = scrape_intervals(prom, check, subject, control, at) if start and service else {}
    return JudgeLook(
        at=when, canary=canary, control=other, marks={} if waiting else reader.marks, start=start,
        control_history=history, skipped=skipped, waiting=waiting, queries=reader.queries, scrape_seconds=scrapes,
        pods=(reader.series.get("canary", 0), reader.series.get("control", 0)),
    )  # fmt: skip


SCRAPE_WINDOW = 300
NOISE_WINDOW = 3600


def read_noise(
    prom: MetricProvider, check: Check, variables: Mapping[str, str], at: datetime, interval: float,
    window: float = NOISE_WINDOW,
) -> Noise:
    """The stable's dispersion between looks and spread between pods over ``window`` before ``at``.

    Per pod, the sums ``gates.dispersion.estimate`` needs of the per-look increments (looks ``interval``
    apart), each computed by Prometheus in one query: a look's increment is ``idelta`` over a two-look
    subquery, and the sums are ``sum_over_time`` of it over the window (standard PromQL, so Thanos and
    Mimir answer it too); six queries, whatever the window. A reset gives a negative increment, clamped to 0.
    When the history is missing or too short, or the engine refuses, the stated default applies.
    """
    judge = _judge(check)
    templates = judge.queries()
    selectors = {"track_selector": track_selector("stable")}
    stable = {**variables, "track": "stable"}
    step = max(1, round(interval))

    def delta(metric: str) -> str:
        inner = render(templates[metric][1], stable, selectors)
        return f"clamp_min(idelta((sum by (pod, instance) ({inner}))[{2 * step}s:{step}s]), 0)"

    sums = {
        "looks": f"count_over_time(({delta('requests')})[{int(window)}s:{step}s])",
        "n": f"sum_over_time(({delta('requests')})[{int(window)}s:{step}s])",
        "nn": f"sum_over_time(({delta('requests')} ^ 2)[{int(window)}s:{step}s])",
        "e": f"sum_over_time(({delta('errors')})[{int(window)}s:{step}s])",
        "ee": f"sum_over_time(({delta('errors')} ^ 2)[{int(window)}s:{step}s])",
        "en": f"sum_over_time(({delta('errors')} * {delta('requests')})[{int(window)}s:{step}s])",
    }
    pods: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    try:
        for name, query in sums.items():
            for sample in prom.query(query, at):
                if math.isfinite(sample.value):
                    pods[sample.labels.get("pod", ""), sample.labels.get("instance", "")][name] = sample.value
    except MetricError:
        return DEFAULT_NOISE
    moments = [PodMoments(**{f: values.get(f, 0.0) for f in ("looks", "n", "e", "nn", "ee", "en")})
               for values in pods.values() if values.get("looks", 0.0) > 0]  # fmt: skip
    return estimate(moments)


def scrape_intervals(
    prom: MetricProvider, check: Check, subject: QuerySide, control: QuerySide, at: datetime | None
) -> dict[str, float]:
    """Each side's scrape interval in seconds, inferred from how often its busiest request series changed
    over the last five minutes (a 1 s subquery): a counter with traffic changes once per scrape. A side
    whose series never changed, or an engine that refuses the query, gives no figure (no warning)."""
    judge = _judge(check)
    templates = judge.queries()
    subject_template, control_template = templates["latency" if judge.kind is JudgeKind.LATENCY else "requests"]
    out: dict[str, float] = {}
    for name, template, side in (("canary", subject_template, subject), (judge.compare_to, control_template, control)):
        query = f"changes(({render(template, side.variables, side.selectors)})[{SCRAPE_WINDOW}s:1s])"
        try:
            samples = prom.query(query, at)
        except MetricError:
            continue
        changes = [s.value for s in samples if math.isfinite(s.value) and s.labels.get("le", "+Inf") == "+Inf"]
        if changes and max(changes) > 0:
            out[name] = SCRAPE_WINDOW / max(changes)
    return out


def _judge(check: Check) -> Judge:
    if check.judge is None:
        raise MetricError(f"check {check.name} is not a judge check", retryable=False)
    return check.judge


class _Reader:
    def __init__(self, prom: MetricProvider, judge: Judge, subject: QuerySide, control: QuerySide,
                 state: JudgeState, at: datetime | None) -> None:  # fmt: skip
        self.prom, self.judge, self.state, self.at = prom, judge, state, at
        self.templates = judge.queries()
        self.sides = {"canary": subject, "control": control}
        self.marks: dict[str, float] = {}
        self.resets: set[str] = set()
        self.queries: list[str] = []
        self.totals: dict[tuple[str, str], dict[str, float]] = {}
        self.series: dict[str, int] = {}
        """Per side: how many request (or +Inf bucket) series it had, i.e. its pods."""

    def _query(self, side: str, metric: str, query_side: QuerySide) -> list[Sample]:
        subject_template, control_template = self.templates[metric]
        template = subject_template if side == "canary" else control_template
        query = render(template, query_side.variables, query_side.selectors)
        self.queries.append(query)
        return self.prom.query(query, self.at)

    def gauge(self, side: str, query_side: QuerySide) -> list[float]:
        return [s.value for s in self._query(side, "gauge", query_side) if math.isfinite(s.value)]

    def cumulative(self, side: str, metric: str, query_side: QuerySide, *, by_le: bool = False) -> dict[str, float]:
        """Increments since the last look by series (or by ``le`` when ``by_le``); records new readings."""
        increments: dict[str, float] = defaultdict(float)
        totals: dict[str, float] = defaultdict(float)
        for sample in self._query(side, metric, query_side):
            if not math.isfinite(sample.value):
                continue
            labels = dict(sample.labels)
            le = labels.get("le", "")
            if by_le and not le:
                raise MetricError(
                    f"the latency query returned a series without an 'le' label ({labels}): "
                    "give the _bucket series, e.g. sum by (le, pod) (http_request_duration_seconds_bucket{...})",
                    retryable=False,
                )
            key = f"{side}/{metric}/" + ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
            self.marks[key] = sample.value
            group = le if by_le else "all"
            totals[group] += sample.value
            previous = self.state.marks.get(key)
            if previous is None:
                increments[group] += sample.value  # a new series counts from zero
            elif sample.value < previous and (metric == "requests" or le == "+Inf"):
                self.resets.add(f"{side} {metric}")
            elif sample.value < previous:
                increments[group] += sample.value  # an error (or bucket) series back from zero: counted as new
            else:
                increments[group] += sample.value - previous
        self.totals[side, metric] = dict(totals)
        if metric in ("requests", "latency"):
            self.series[side] = sum(1 for key in self.marks if key.startswith(f"{side}/{metric}/")
                                    and (not by_le or "le=+Inf" in key.split(",") or key.endswith("le=+Inf")))
        return dict(increments)


def _histogram(by_le: dict[str, float]) -> list[tuple[float, float]]:
    """Per-``le`` sums as a cumulative histogram, ascending, with counts made monotone."""
    pairs = sorted((_le(le), count) for le, count in by_le.items())
    out: list[tuple[float, float]] = []
    running = 0.0
    for le, count in pairs:
        # Buckets are read one series at a time, a scrape apart at worst: keep them monotone.
        running = max(running, count)
        out.append((le, running))
    return out


def _le(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise MetricError(f"bucket bound le={text!r} is not a number", retryable=False) from None


def service_rates(
    prom: MetricProvider, check: Check, variables: Mapping[str, str], at: datetime, window: timedelta
) -> tuple[float, float]:
    """The stable side's requests per second and error rate over ``window`` before ``at``, read as a judge reads.

    Before a rollout all traffic is the stable's, so this is the traffic a plan divides between the tracks.
    """
    second = _stable_window(prom, check, variables, at, window)
    seconds = window.total_seconds()
    requests, errors = second.canary.requests, second.canary.errors
    return requests / seconds, (errors / requests if requests > 0 else 0.0)


def service_tail(
    prom: MetricProvider, check: Check, variables: Mapping[str, str], at: datetime, window: timedelta
) -> Tail:
    """For a latency judge, over ``window``: the stable's requests per second, the share of them slower than
    the bucket bound nearest its ``quantile``, that bound (None when the histogram has no request above a
    finite bucket), and the ratio of slow shares the judge's tolerance makes (see ``judge.tail_bound``)."""
    judge = _judge(check)
    histogram = _stable_window(prom, check, variables, at, window).canary.buckets
    total = histogram[-1][1] if histogram else 0.0
    le, ratio = tail_bound(histogram, judge.quantile, judge.effective_tolerance)
    below = next((count for bound, count in histogram if bound == le), total)
    share = (total - below) / total if total > 0 and le is not None else 0.0
    return Tail(total / window.total_seconds(), share, le, ratio)


def _stable_window(
    prom: MetricProvider, check: Check, variables: Mapping[str, str], at: datetime, window: timedelta
) -> JudgeLook:
    """The stable side's increments over ``window`` before ``at`` (in the look's ``canary`` side), as a judge
    reads them: two looks ``window`` apart."""
    selectors = {"track_selector": track_selector("stable")}
    stable = QuerySide("stable", {**variables, "track": "stable"}, selectors=selectors)
    first = read_look_sides(prom, check, stable, stable, JudgeState(), at - window)
    state = JudgeState(marks=first.marks, started_at=first.at)
    second = read_look_sides(prom, check, stable, stable, state, at)
    if second.skipped:
        raise MetricError(f"{second.skipped}: try again, or a longer window", retryable=False)
    return second
