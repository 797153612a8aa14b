"""SLO burn-rate gates: the multi-window, multi-burn-rate rule of the SRE workbook.

The burn rate over a window is the share of bad events in it divided by the error budget
(``1 - objective``): 1 spends the budget exactly over the SLO period, 14.4 spends 2 % of a 30-day budget
in one hour. A window pair fails when *both* its long and its short window burn faster than its factor:
the long window shows the burn is significant, the short one that it is still going on (so a gate
recovers soon after the cause is gone). Defaults: 14.4x over 1 h and 5 min, 6x over 6 h and 30 min.

``burn_verdict`` is pure (workflow code, the chaos error-budget rail and tests call it with numbers);
``evaluate_slo`` reads the numbers from Prometheus with one ``sum(increase(selector[window]))`` per
counter and window, rendered for the check's track like any other check, and records one
``Measurement``. A window with no events at all is no data, decided by the check's ``noData`` policy
(default: fail): a gate that sees nothing must not pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from orchestrator.errors import MetricError
from orchestrator.gates.model import Measurement, Phase, Sample
from orchestrator.gates.prometheus import MetricProvider
from orchestrator.gates.template import render, track_selector
from orchestrator.specs.checks import Check, NoDataPolicy
from orchestrator.specs.duration import format_duration
from orchestrator.specs.judge import BurnRate, BurnWindow


@dataclass(frozen=True)
class WindowBurn:
    window: timedelta
    bad: float | None
    total: float | None

    @property
    def ratio(self) -> float | None:
        if self.bad is None or self.total is None or self.total <= 0:
            return None
        return max(0.0, self.bad) / self.total


def burn_rate(bad: float | None, total: float | None, budget: float) -> float | None:
    """Bad share over the error budget; None without events."""
    if bad is None or total is None or total <= 0 or not math.isfinite(bad) or not math.isfinite(total):
        return None
    return max(0.0, bad) / total / budget


def burn_verdict(slo: BurnRate, burns: Mapping[timedelta, WindowBurn]) -> tuple[Phase | None, str, float | None]:
    """(phase, message, the highest burn rate seen); phase None means no data in some window."""
    parts: list[str] = []
    worst: float | None = None
    missing: list[str] = []
    failing: list[str] = []
    for pair in slo.windows:
        rates = {}
        for window in (pair.long, pair.short):
            burn = burns.get(window)
            rate = burn_rate(burn.bad, burn.total, slo.error_budget) if burn else None
            rates[window] = rate
            if rate is None:
                missing.append(format_duration(window))
            elif worst is None or rate > worst:
                worst = rate
        long_rate, short_rate = rates[pair.long], rates[pair.short]
        text = (f"{_x(long_rate)} over {format_duration(pair.long)} and {_x(short_rate)} over "
                f"{format_duration(pair.short)} (limit {pair.factor:g}x)")  # fmt: skip
        if long_rate is not None and short_rate is not None and long_rate > pair.factor and short_rate > pair.factor:
            failing.append(text)
        parts.append(text)
    objective = f"objective {slo.objective * 100:g} %"
    if failing:
        return Phase.FAILED, f"error budget burning at {'; '.join(failing)}; {objective}", worst
    if missing:
        return None, f"no events in the {', '.join(sorted(set(missing)))} window(s); {objective}", worst
    return Phase.SUCCESSFUL, f"burn rate {'; '.join(parts)}; {objective}", worst


def windows(slo: BurnRate) -> list[timedelta]:
    seen: list[timedelta] = []
    for pair in slo.windows:
        for window in (pair.long, pair.short):
            if window not in seen:
                seen.append(window)
    return seen


def _prom_duration(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    return f"{seconds}s"


def evaluate_slo(
    check: Check, provider: MetricProvider, variables: Mapping[str, str], at: datetime | None = None
) -> Measurement:
    """One measurement of an SLO check: every window's burn rate, the rule applied, the queries kept."""
    if check.slo is None:
        raise MetricError(f"check {check.name} is not an SLO check", retryable=False)
    slo = check.slo
    when = at if at is not None else datetime.now(UTC)
    track = str(check.track)
    values = {**variables, "track": track}
    selectors = {"track_selector": track_selector(track)}
    sent: list[str] = []
    samples: list[Sample] = []
    burns: dict[timedelta, WindowBurn] = {}

    def read(selector: str, window: timedelta) -> float | None:
        query = f"sum(increase({render(selector, values, selectors)}[{_prom_duration(window)}]))"
        sent.append(query)
        result = provider.query(query, at)
        if not result or not math.isfinite(result[0].value):
            return None
        samples.append(Sample(labels={"window": format_duration(window)}, value=result[0].value))
        return result[0].value

    try:
        for window in windows(slo):
            total = read(slo.total, window)
            if slo.bad is not None:
                bad = read(slo.bad, window)
                bad = 0.0 if bad is None and total is not None else bad  # no bad series yet: none were bad
            else:
                assert slo.good is not None
                good = read(slo.good, window)
                bad = None if total is None else total - (good or 0.0)
            burns[window] = WindowBurn(window, bad, total)
    except MetricError as exc:
        if exc.retryable:
            raise
        return Measurement(check=check.name, phase=Phase.ERROR, query=sent[-1] if sent else slo.total,
                           message=str(exc), at=when)  # fmt: skip

    phase, message, worst = burn_verdict(slo, burns)
    if phase is None:
        phase = {NoDataPolicy.PASS: Phase.SUCCESSFUL, NoDataPolicy.INCONCLUSIVE: Phase.INCONCLUSIVE}.get(
            check.no_data, Phase.FAILED
        )
        message += f" (noData: {check.no_data})"
    return Measurement(
        check=check.name, phase=phase, value=worst, values=samples, query=" ; ".join(sent), message=message,
        at=when,
    )  # fmt: skip


def _x(rate: float | None) -> str:
    return "no data" if rate is None else f"{rate:.3g}x"


__all__ = ["BurnWindow", "WindowBurn", "burn_rate", "burn_verdict", "evaluate_slo", "windows"]
