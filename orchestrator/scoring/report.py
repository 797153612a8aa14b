"""Reports on resilience scores: text, Markdown (a pull-request comment), JSON and self-contained HTML.

Every format is rendered from the same view: for each service, its ``ServiceScore`` (the
aggregate, each experiment's share, the trend) plus the detail of the latest run of each
experiment, which is the evidence the score rests on most. JSON carries everything, every
run with its full evidence, and is strict JSON: non-finite numbers (no data) become
``null``. HTML needs no network: styles are inline and the charts are hand-drawn SVG
(the steady-state metrics through each run with the fault window shaded, and the score
trend), so the page can be attached to a CI run as it is.

Every score is shown with its coverage, in every format, beside the number and never only in
a footnote: a service with "60 % of the weight measured", a run with the range its unmeasured
factors leave open ("range 60-100, 60 % of the weight measured") and which factors those are.
A reviewer who reads only the headline still learns how much of it was measured.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator.errors import SpecError
from orchestrator.scoring.formula import (
    DEFAULT_CONFIG,
    FACTORS,
    RunScore,
    ScoringConfig,
    ServiceScore,
    Status,
    SubScore,
    TrendPoint,
    score_service,
)
from orchestrator.scoring.model import CheckEvidence, RunRecord
from orchestrator.scoring.store import RunStore

FORMATS = ("text", "markdown", "json", "html")


@dataclass(frozen=True)
class ServiceView:
    summary: ServiceScore
    records: dict[str, RunRecord]
    details: list[RunScore]
    """Latest run of each experiment (scored or not), newest first."""


def render_report(
    store: RunStore,
    service: str | None,
    fmt: str,
    *,
    now: datetime | None = None,
    config: ScoringConfig = DEFAULT_CONFIG,
) -> str:
    """Render one service (or every service when ``service`` is None) in ``fmt``.

    Raises ``SpecError`` (exit 2) for an unknown format or service.
    """
    renderer = _renderer(fmt)
    known = store.services()
    if service is not None and service not in known:
        hint = f" (known: {', '.join(known)})" if known else " (the store holds no runs)"
        raise SpecError([f"unknown service {service!r}{hint}"])
    as_of = now or datetime.now(UTC)
    views = [_view(store.runs(service=s), s, as_of, config) for s in ([service] if service else known)]
    return renderer(views, as_of, config)


def render_run(store: RunStore, run_id: str, fmt: str, *, config: ScoringConfig = DEFAULT_CONFIG) -> str:
    """Render the detail of one run (its service summary limited to that run)."""
    renderer = _renderer(fmt)
    record = store.get(run_id)
    if record is None:
        raise SpecError([f"unknown run {run_id!r}"])
    view = _view([record], record.service, record.ended_at, config)
    return renderer([view], record.ended_at, config)


def _renderer(fmt: str) -> Callable[[list[ServiceView], datetime, ScoringConfig], str]:
    renderers: dict[str, Callable[[list[ServiceView], datetime, ScoringConfig], str]] = {
        "text": _text,
        "markdown": _markdown,
        "json": _json,
        "html": _html,
    }
    if fmt not in renderers:
        raise SpecError([f"unknown format {fmt!r} (use one of: {', '.join(FORMATS)})"])
    return renderers[fmt]


def _view(runs: list[RunRecord], service: str, now: datetime, config: ScoringConfig) -> ServiceView:
    summary = score_service(service, runs, now, config)
    latest: dict[str, RunScore] = {}
    for s in summary.runs:  # oldest first, so the last one written wins
        latest[s.experiment] = s
    details = sorted(latest.values(), key=lambda s: s.at, reverse=True)
    return ServiceView(summary=summary, records={r.run_id: r for r in runs}, details=details)


# -- shared wording ----------------------------------------------------------------------------------------


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


EVIDENCE_ROWS = ("deviation", "budget")
"""Rows shown beside the weighted factors, as evidence: they carry no weight."""


def _points(value: float) -> str:
    """A range end: whole points stay whole (60, not 60.0)."""
    return f"{value:.1f}".removesuffix(".0")


def _measured(coverage: float) -> str:
    return f"{coverage * 100:.0f} % of the weight measured"


def _run_coverage(run: RunScore) -> str:
    """``range 60-100, 60 % of the weight measured``; the range only when something was left open."""
    if run.score is None or run.low is None or run.high is None:
        return "nothing measured"
    if round(run.high - run.low, 1) == 0:
        return _measured(run.coverage)
    return f"range {_points(run.low)}-{_points(run.high)}, {_measured(run.coverage)}"


def _unmeasured_line(run: RunScore, config: ScoringConfig) -> str | None:
    """Which factors were not measured, and what that leaves open; None when nothing was left out."""
    if run.score is None or run.low is None or run.high is None:
        return None
    missing = [s.name for s in run.subscores if s.name in FACTORS and s.value is None]
    if not missing:
        return None
    label = (
        f"below the {config.min_coverage * 100:g} % needed for a status word"
        if run.status is Status.NOT_ENOUGH_EVIDENCE
        else f"at least the {config.min_coverage * 100:g} % needed for a status word"
    )
    return (
        f"Not measured: {', '.join(missing)}. Scored 0 they give {_points(run.low)}, scored 1 they give "
        f"{_points(run.high)}; {_measured(run.coverage)}, {label}."
    )


def _sub_value(sub: SubScore) -> str:
    return "n/a" if sub.value is None else f"{sub.value:.2f}"


def _sub_weight(sub: SubScore) -> str:
    if sub.name in EVIDENCE_ROWS:
        return "evidence"
    return "-" if sub.weight is None else f"{sub.weight * 100:.0f} %"


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _headline(view: ServiceView, config: ScoringConfig) -> str:
    s = view.summary
    scored = sum(1 for r in s.runs if r.score is not None)
    unscored = len(s.runs) - scored
    extra = f" ({unscored} not scored)" if unscored else ""
    # Compared as printed: a run that ended a minute ago is not "scaled down" at "1.00 of the 1.00 needed".
    stale = (
        f"; evidence {s.evidence:.2f} of the {config.evidence_target:.2f} needed, score scaled down for staleness"
        if s.score is not None and round(s.evidence, 2) < round(config.evidence_target, 2)
        else ""
    )
    return (
        f"As of {_when(s.as_of)}, from {scored} scored run(s) of {len(s.experiments)} experiment(s){extra}"
        f"{stale}. Trend: {s.direction}."
    )


def _trend_line(points: Sequence[TrendPoint]) -> str:
    return " -> ".join(f"{p.score:.1f}" for p in points) if points else "no scored runs"


def _evidence_line(record: RunRecord | None, run: RunScore, md: bool) -> str:
    tick = "`" if md else ""
    parts = [f"run {tick}{run.run_id}{tick}"]
    if record is not None:
        if record.workflow_id:
            parts.append(f"workflow {tick}{record.workflow_id}{tick}")
        for label, url in sorted(record.links.items()):
            parts.append(f"[{label}]({url})" if md else f"{label}: {url}")
    return ", ".join(parts)


# -- text --------------------------------------------------------------------------------------------------


def _text(views: list[ServiceView], as_of: datetime, config: ScoringConfig) -> str:
    out: list[str] = []
    for view in views:
        s = view.summary
        out.append(f"{s.service}: {_score(s.score)}/100 {s.status.value} ({_measured(s.coverage)})")
        out.append(f"  {_headline(view, config)}")
        out.append(f"  trend: {_trend_line(s.trend)}")
        if s.experiments:
            out.append(
                f"  {'experiment':<24} {'runs':>4} {'mean':>6} {'sd':>6} {'score':>6} {'weight':>6} {'measured':>8}"
            )
            for e in s.experiments:
                out.append(
                    f"  {e.experiment:<24} {e.runs:>4} {e.mean:>6.1f} {e.stddev:>6.1f} {e.score:>6.1f} {e.weight:>6.2f}"
                    f" {e.coverage * 100:>6.0f} %"
                )
        for run in view.details:
            out.append(
                f"  run {run.run_id} ({run.experiment}, {run.outcome.value}, {_when(run.at)}): "
                f"{_score(run.score)} {run.status.value} ({_run_coverage(run)})"
            )
            if run.cap:
                out.append(f"    cap: {run.cap}")
            unmeasured = _unmeasured_line(run, config)
            if unmeasured:
                out.append(f"    {unmeasured}")
            for sub in run.subscores:
                out.append(f"    {sub.name:<13} {_sub_value(sub):>5} {_sub_weight(sub):>8}  {sub.why}")
            out.append(f"    evidence: {_evidence_line(view.records.get(run.run_id), run, md=False)}")
        out.append("")
    if not views:
        out.append("no runs recorded")
    return "\n".join(out).rstrip() + "\n"


# -- markdown ----------------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown(views: list[ServiceView], as_of: datetime, config: ScoringConfig) -> str:
    out: list[str] = []
    if not views:
        return "### Resilience score\n\nNo experiment runs recorded.\n"
    for view in views:
        s = view.summary
        out.append(
            f"### Resilience score for `{s.service}`: {_score(s.score)} / 100 ({s.status.value}), "
            f"{_measured(s.coverage)}"
        )
        out.append("")
        out.append(_headline(view, config))
        out.append("")
        if s.experiments:
            out.append("| experiment | runs | mean | spread (sd) | score | weight | measured | latest run |")
            out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
            for e in s.experiments:
                out.append(
                    f"| {_cell(e.experiment)} | {e.runs} | {e.mean:.1f} | {e.stddev:.1f} | {e.score:.1f} "
                    f"| {e.weight:.2f} | {e.coverage * 100:.0f} % | `{e.latest_run_id}` ({e.latest_score:.1f}) |"
                )
            out.append("")
        for run in view.details:
            record = view.records.get(run.run_id)
            fault = f", fault {record.fault}" if record else ""
            out.append(
                f"#### {_cell(run.experiment)}, run `{run.run_id}`: {_score(run.score)} ({run.status.value}), "
                f"{_run_coverage(run)}"
            )
            out.append("")
            out.append(f"Outcome {run.outcome.value}{fault}, ended {_when(run.at)}.")
            if run.cap:
                out.append(f"**Cap:** {run.cap}.")
            unmeasured = _unmeasured_line(run, config)
            if unmeasured:
                out.append(f"**{_cell(unmeasured)}**")
            out.append("")
            out.append("| sub-score | value | weight | why |")
            out.append("| --- | ---: | ---: | --- |")
            for sub in run.subscores:
                out.append(f"| {sub.name} | {_sub_value(sub)} | {_sub_weight(sub)} | {_cell(sub.why)} |")
            out.append("")
            out.append(f"Evidence: {_evidence_line(record, run, md=True)}")
            out.append("")
        out.append(f"**Trend** (oldest to newest): {_trend_line(s.trend)}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


# -- json --------------------------------------------------------------------------------------------------


def _strict(value: Any) -> Any:
    """Replace non-finite floats by None so the output is JSON any parser accepts."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict(v) for v in value]
    return value


def _json(views: list[ServiceView], as_of: datetime, config: ScoringConfig) -> str:
    services = []
    for view in views:
        data = view.summary.model_dump(mode="json", exclude={"runs"})
        data["runs"] = [
            {
                **run.model_dump(mode="json"),
                "evidence": view.records[run.run_id].model_dump(mode="json") if run.run_id in view.records else None,
            }
            for run in view.summary.runs
        ]
        data["details"] = [run.run_id for run in view.details]
        services.append(data)
    document = {
        "as_of": as_of.isoformat(),
        "config": config.model_dump(mode="json"),
        "services": services,
    }
    return json.dumps(_strict(document), indent=2, allow_nan=False) + "\n"


# -- html --------------------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 60em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.num { text-align: right; }
.status { font-weight: bold; padding: 0.1em 0.5em; border: 1px solid; }
.RESILIENT { color: #1a7f37; } .DEGRADED { color: #9a6700; } .FRAGILE, .ESCAPED { color: #cf222e; }
.UNSCORED, .NOT_ENOUGH_EVIDENCE { color: #666; }
svg { background: #fafafa; border: 1px solid #ddd; margin: 0.25em 0; }
"""

_W, _H = 640, 200
_LEFT, _RIGHT, _TOP, _BOTTOM = 60, 20, 20, 30


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _scale(lo: float, hi: float, out_lo: float, out_hi: float) -> Callable[[float], float]:
    span = hi - lo
    if span == 0:
        return lambda _v: (out_lo + out_hi) / 2
    return lambda v: out_lo + (v - lo) / span * (out_hi - out_lo)


def _clock(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%H:%M:%S")


def metric_chart(check: CheckEvidence, record: RunRecord) -> str:
    """The check's values through the run: a line per stretch of data, the fault window shaded,
    the tolerance bounds dashed, and a red tick wherever a measurement had no data."""
    timeline = check.timeline()
    finite = [(m.at, float(m.value)) for _, m in timeline if m.value is not None and math.isfinite(m.value)]
    times = [m.at.timestamp() for _, m in timeline]
    for edge in (record.injected_at, record.reverted_at):
        if edge is not None:
            times.append(edge.timestamp())
    if not times:
        return f"<p>{_e(check.name)}: no measurements.</p>"
    t0, t1 = min(times), max(times)
    ys = [v for _, v in finite] + [
        b for b in (check.tolerance.min, check.tolerance.max, check.tolerance.baseline) if b is not None
    ]
    lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    pad = (hi - lo) * 0.05 or (abs(hi) * 0.1 or 1.0)
    lo, hi = lo - pad, hi + pad
    x = _scale(t0, t1, _LEFT, _W - _RIGHT)
    y = _scale(lo, hi, _H - _BOTTOM, _TOP)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
        f'class="metric" data-check="{_e(check.name)}" data-points="{len(finite)}" role="img" '
        f'aria-label="{_e(check.name)} through run {_e(record.run_id)}">'
    ]
    if record.injected_at is not None:
        end = record.reverted_at.timestamp() if record.reverted_at is not None else t1
        x0, x1 = x(record.injected_at.timestamp()), x(end)
        parts.append(
            f'<rect class="fault" x="{x0:.1f}" y="{_TOP}" width="{max(0.0, x1 - x0):.1f}" '
            f'height="{_H - _TOP - _BOTTOM}" fill="#f4cccc" opacity="0.6"><title>fault active</title></rect>'
        )
    for label, bound in (("min", check.tolerance.min), ("max", check.tolerance.max)):
        if bound is not None:
            by = y(bound)
            parts.append(
                f'<line class="bound" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{by:.1f}" y2="{by:.1f}" '
                f'stroke="#cf222e" stroke-dasharray="4 3"><title>tolerance {label} {bound:g}</title></line>'
            )
    # A gap in the data breaks the line: drawing across it would invent values nobody measured.
    segments: list[list[tuple[float, float]]] = [[]]
    for _, m in timeline:
        if m.value is not None and math.isfinite(m.value):
            segments[-1].append((x(m.at.timestamp()), y(m.value)))
        else:
            if segments[-1]:
                segments.append([])
            gx = x(m.at.timestamp())
            parts.append(
                f'<line class="nodata" x1="{gx:.1f}" x2="{gx:.1f}" y1="{_H - _BOTTOM}" y2="{_H - _BOTTOM - 10}" '
                f'stroke="#cf222e" stroke-width="2"><title>no data at {_e(m.at.isoformat())}</title></line>'
            )
    for seg in segments:
        if seg:
            pts = " ".join(f"{px:.1f},{py:.1f}" for px, py in seg)
            parts.append(f'<polyline points="{pts}" fill="none" stroke="#0969da" stroke-width="1.5"/>')
    parts.append(
        f'<text x="4" y="{_TOP + 4}" font-size="10">{hi:.4g}</text>'
        f'<text x="4" y="{_H - _BOTTOM}" font-size="10">{lo:.4g}</text>'
        f'<text x="{_LEFT}" y="{_H - 8}" font-size="10">{_clock(t0)}</text>'
        f'<text x="{_W - _RIGHT}" y="{_H - 8}" font-size="10" text-anchor="end">'
        f"{_clock(t1)}</text>"
        f'<text x="{_LEFT + 4}" y="{_TOP - 6}" font-size="11">{_e(check.name)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def trend_chart(points: Sequence[TrendPoint], config: ScoringConfig = DEFAULT_CONFIG) -> str:
    """Score per run over time on a fixed 0-100 axis, with the status bands dashed."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
        f'class="trend" data-points="{len(points)}" role="img" aria-label="score trend">'
    ]
    y = _scale(0.0, 100.0, _H - _BOTTOM, _TOP)
    for band in (config.resilient_at, config.degraded_at):
        parts.append(
            f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y(band):.1f}" y2="{y(band):.1f}" stroke="#999" '
            f'stroke-dasharray="2 3"/><text x="4" y="{y(band) + 3:.1f}" font-size="10">{band:g}</text>'
        )
    if points:
        stamps = [p.at.timestamp() for p in points]
        x = _scale(min(stamps), max(stamps), _LEFT, _W - _RIGHT)
        xy = [(x(p.at.timestamp()), y(p.score)) for p in points]
        pts = " ".join(f"{px:.1f},{py:.1f}" for px, py in xy)
        parts.append(f'<polyline points="{pts}" fill="none" stroke="#0969da" stroke-width="1.5"/>')
        for (px, py), p in zip(xy, points, strict=True):
            parts.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="#0969da"><title>{_e(p.run_id)} '
                f"({_e(p.experiment)}): {p.score:.1f}</title></circle>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _html(views: list[ServiceView], as_of: datetime, config: ScoringConfig) -> str:
    body: list[str] = []
    for view in views:
        s = view.summary
        body.append(
            f"<h2>{_e(s.service)}: {_score(s.score)} / 100 "
            f'<span class="status {s.status.name}">{_e(s.status.value)}</span> '
            f'<span class="coverage">{_e(_measured(s.coverage))}</span></h2>'
        )
        body.append(f"<p>{_e(_headline(view, config))}</p>")
        if s.experiments:
            body.append(
                "<table><tr><th>experiment</th><th>runs</th><th>mean</th><th>spread (sd)</th><th>score</th>"
                "<th>weight</th><th>measured</th><th>latest run</th></tr>"
            )
            for e in s.experiments:
                body.append(
                    f'<tr><td>{_e(e.experiment)}</td><td class="num">{e.runs}</td>'
                    f'<td class="num">{e.mean:.1f}</td><td class="num">{e.stddev:.1f}</td>'
                    f'<td class="num">{e.score:.1f}</td><td class="num">{e.weight:.2f}</td>'
                    f'<td class="num">{e.coverage * 100:.0f} %</td>'
                    f"<td>{_e(e.latest_run_id)} ({e.latest_score:.1f})</td></tr>"
                )
            body.append("</table>")
        body.append("<h3>Score trend</h3>")
        body.append(trend_chart(s.trend, config))
        for run in view.details:
            record = view.records.get(run.run_id)
            body.append(
                f"<h3>{_e(run.experiment)}: run {_e(run.run_id)} {_score(run.score)} "
                f'<span class="status {run.status.name}">{_e(run.status.value)}</span> '
                f'<span class="coverage">{_e(_run_coverage(run))}</span></h3>'
            )
            if run.cap:
                body.append(f"<p><strong>Cap:</strong> {_e(run.cap)}</p>")
            unmeasured = _unmeasured_line(run, config)
            if unmeasured:
                body.append(f'<p class="unmeasured"><strong>{_e(unmeasured)}</strong></p>')
            body.append("<table><tr><th>sub-score</th><th>value</th><th>weight</th><th>why</th></tr>")
            for sub in run.subscores:
                body.append(
                    f'<tr><td>{_e(sub.name)}</td><td class="num">{_sub_value(sub)}</td>'
                    f'<td class="num">{_e(_sub_weight(sub))}</td><td>{_e(sub.why)}</td></tr>'
                )
            body.append("</table>")
            if record is not None:
                links = "".join(f' <a href="{_e(url)}">{_e(label)}</a>' for label, url in sorted(record.links.items()))
                wf = f", workflow <code>{_e(record.workflow_id)}</code>" if record.workflow_id else ""
                body.append(f"<p>Evidence: run <code>{_e(run.run_id)}</code>{wf}{links}</p>")
                for check in record.checks:
                    body.append(metric_chart(check, record))
    if not views:
        body.append("<p>No experiment runs recorded.</p>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Resilience scores as of {_e(_when(as_of))}</title><style>{_CSS}</style></head>\n<body>\n"
        f"<h1>Resilience scores</h1>\n<p>As of {_e(_when(as_of))}.</p>\n" + "\n".join(body) + "\n</body></html>\n"
    )
