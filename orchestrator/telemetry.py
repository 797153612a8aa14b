"""The worker's own metrics, and their Prometheus text exposition.

Shape: a ``Registry`` holds metric families (``Counter``, ``Gauge``, ``Histogram``); each family
holds one child per label-value tuple. Every mutation and ``render()`` take the registry's single
lock, so activities running in the worker's thread pool and the health server's scrape thread
never see a half-updated histogram. ``render()`` writes the text format version 0.0.4 that
Prometheus scrapes (the runtime dependencies exclude ``prometheus_client``, and the format is
small enough to write here).

``Metrics`` declares the orchestrator's metrics on a registry. A process-wide default instance
backs the module functions (``record_gate``, ``record_rollout_started`` ...) that activities call;
tests build a fresh ``Metrics()`` or pass ``metrics=`` to keep their counts isolated.

Call these from activities (or the worker), never from workflow code: a workflow replays, and
a replayed workflow would count its history twice.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from typing import Literal

Kind = Literal["canary", "flag_ramp", "chaos"]

DEFAULT_BUCKETS: tuple[float, ...] = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _labels(names: Sequence[str], values: Sequence[str], extra: tuple[str, str] | None = None) -> str:
    pairs = [f'{n}="{_escape_label(v)}"' for n, v in zip(names, values, strict=True)]
    if extra is not None:
        pairs.append(f'{extra[0]}="{_escape_label(extra[1])}"')
    return "{" + ",".join(pairs) + "}" if pairs else ""


class _Family:
    type_name = "untyped"

    def __init__(self, registry: Registry, name: str, help_text: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self._lock = registry.lock

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {list(self.labelnames)}, got {sorted(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def samples(self) -> Iterable[str]:  # pragma: no cover - overridden
        return ()


class Counter(_Family):
    type_name = "counter"

    def __init__(self, registry: Registry, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(registry, name, help_text, labelnames)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def samples(self) -> Iterable[str]:
        for key, v in sorted(self._values.items()):
            yield f"{self.name}{_labels(self.labelnames, key)} {_format_value(v)}"


class Gauge(_Family):
    type_name = "gauge"

    def __init__(self, registry: Registry, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(registry, name, help_text, labelnames)
        self._values: dict[tuple[str, ...], float] = {}
        if not self.labelnames:
            # An unlabelled gauge exists from the start, so a scrape shows 0 rather than nothing.
            self._values[()] = 0.0

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self.inc(-amount, **labels)

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def samples(self) -> Iterable[str]:
        for key, v in sorted(self._values.items()):
            yield f"{self.name}{_labels(self.labelnames, key)} {_format_value(v)}"


class Histogram(_Family):
    type_name = "histogram"

    def __init__(
        self,
        registry: Registry,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        if "le" in labelnames:
            raise ValueError("'le' is reserved for histogram buckets")
        super().__init__(registry, name, help_text, labelnames)
        self.buckets = tuple(sorted(float(b) for b in buckets))
        # Per child: non-cumulative bucket counts (last slot is +Inf), sum, count.
        self._children: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            counts, total = self._children.setdefault(key, ([0] * (len(self.buckets) + 1), [0.0]))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
                    break
            else:
                counts[-1] += 1
            total[0] += value

    def count(self, **labels: str) -> int:
        with self._lock:
            child = self._children.get(self._key(labels))
            return sum(child[0]) if child else 0

    def samples(self) -> Iterable[str]:
        for key, (counts, total) in sorted(self._children.items()):
            running = 0
            for bound, c in zip((*self.buckets, math.inf), counts, strict=True):
                running += c
                le = ("le", _format_value(bound))
                yield f"{self.name}_bucket{_labels(self.labelnames, key, le)} {running}"
            yield f"{self.name}_sum{_labels(self.labelnames, key)} {_format_value(total[0])}"
            yield f"{self.name}_count{_labels(self.labelnames, key)} {running}"


class Registry:
    """A set of metric families rendered together."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._families: dict[str, _Family] = {}

    def _add(self, family: _Family) -> None:
        with self.lock:
            if family.name in self._families:
                raise ValueError(f"metric {family.name} is already registered")
            self._families[family.name] = family

    def counter(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Counter:
        c = Counter(self, name, help_text, labelnames)
        self._add(c)
        return c

    def gauge(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Gauge:
        g = Gauge(self, name, help_text, labelnames)
        self._add(g)
        return g

    def histogram(
        self, name: str, help_text: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> Histogram:
        h = Histogram(self, name, help_text, labelnames, buckets)
        self._add(h)
        return h

    def get(self, name: str) -> _Family | None:
        with self.lock:
            return self._families.get(name)

    def render(self) -> str:
        """The whole registry in the Prometheus text exposition format (0.0.4)."""
        lines: list[str] = []
        with self.lock:
            for family in self._families.values():
                lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
                lines.append(f"# TYPE {family.name} {family.type_name}")
                lines.extend(family.samples())
        return "\n".join(lines) + "\n"


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The orchestrator's metrics, declared on one registry (a fresh one unless given)."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry or Registry()
        r = self.registry
        self.rollouts_started = r.counter(
            "orchestrator_rollouts_started_total",
            "Rollouts started, by kind (canary, flag_ramp, chaos).", ["kind"])
        self.rollouts_finished = r.counter(
            "orchestrator_rollouts_finished_total",
            "Rollouts finished, by kind and outcome (promoted, rolled_back, completed, aborted, failed...).",
            ["kind", "outcome"])
        self.rollbacks = r.counter(
            "orchestrator_rollbacks_total", "Automatic or manual rollbacks, by kind and reason.", ["kind", "reason"])
        self.gate_evaluations = r.counter(
            "orchestrator_gate_evaluations_total",
            "Metric gate evaluations, by verdict (successful, failed, inconclusive, error).", ["verdict"])
        self.active_faults = r.gauge(
            "orchestrator_active_faults", "Faults this worker injected and has not removed yet.")
        self.step_duration = r.histogram(
            "orchestrator_step_duration_seconds", "Duration of rollout steps, by kind and step.", ["kind", "step"])
        self.worker_ready = r.gauge(
            "orchestrator_worker_ready", "1 when the worker is connected to Temporal and polling, else 0.")

    def render(self) -> str:
        return self.registry.render()


_default_lock = threading.Lock()
_default: Metrics | None = None


def default_metrics() -> Metrics:
    """The process-wide metrics the module functions and the worker's /metrics use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Metrics()
        return _default


def set_default_metrics(metrics: Metrics | None) -> None:
    """Replace the process-wide metrics (``None`` starts over with a fresh set on next use)."""
    global _default
    with _default_lock:
        _default = metrics


def _m(metrics: Metrics | None) -> Metrics:
    return metrics if metrics is not None else default_metrics()


def record_rollout_started(kind: Kind | str, *, metrics: Metrics | None = None) -> None:
    _m(metrics).rollouts_started.inc(kind=kind)


def record_rollout_finished(kind: Kind | str, outcome: str, *, metrics: Metrics | None = None) -> None:
    _m(metrics).rollouts_finished.inc(kind=kind, outcome=outcome)


def record_rollback(kind: Kind | str, reason: str, *, metrics: Metrics | None = None) -> None:
    _m(metrics).rollbacks.inc(kind=kind, reason=reason)


def record_gate(verdict: str, *, metrics: Metrics | None = None) -> None:
    _m(metrics).gate_evaluations.inc(verdict=verdict)


def fault_injected(*, metrics: Metrics | None = None) -> None:
    _m(metrics).active_faults.inc()


def fault_removed(*, metrics: Metrics | None = None) -> None:
    m = _m(metrics)
    # Removal is idempotent (a retried activity may remove twice); never report a negative count.
    with m.registry.lock:
        if m.active_faults.value() > 0:
            m.active_faults.dec()


def set_active_faults(count: int, *, metrics: Metrics | None = None) -> None:
    _m(metrics).active_faults.set(count)


def observe_step(kind: Kind | str, step: str, seconds: float, *, metrics: Metrics | None = None) -> None:
    _m(metrics).step_duration.observe(seconds, kind=kind, step=step)


def set_worker_ready(ready: bool, *, metrics: Metrics | None = None) -> None:
    _m(metrics).worker_ready.set(1 if ready else 0)


def render(metrics: Metrics | None = None) -> str:
    return _m(metrics).render()
