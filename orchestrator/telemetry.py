"""The worker's own metrics on ``prometheus_client``, and the Temporal SDK's metrics beside them.

Shape: ``Metrics`` declares the orchestrator's metrics on its *own* ``CollectorRegistry`` (never the
library's global one), so a test builds ``Metrics()`` and gets isolated counts without resetting
anything. Each metric is a thin ``_Family`` over the library's metric: it keeps the call style the
activities use (``inc(kind="canary")``), rejects a wrong label set with a ``ValueError`` naming the
expected labels, and reads values back through the registry (``value``/``count``) for tests and
for the clamp in ``fault_removed``. Exposition is the library's ``generate_latest``.

A process-wide default ``Metrics`` backs the module functions (``record_gate``,
``record_rollout_started`` ...) that activities call; ``set_default_metrics`` swaps it.

Label values are passed through ``orchestrator.redact.redact``: a label is scraped and kept by
whoever runs Prometheus, so a reason or an id that ever quoted a URL or a header must not carry its
credential there.

Call these from activities (or the worker), never from workflow code: a workflow replays, and a
replayed workflow would count its history twice.

Several workers. Counters are per process and Prometheus sums them (``sum by (...) (rate(...))``),
so they are right with any number of workers. Gauges are harder, because the worker that sets a
value is not always the one that clears it:

* ``orchestrator_rollback_stuck{kind,workflow_id}`` is a collector over reports with a time to
  live: a stuck compensation step is re-reported on every re-attempt (the workflow re-attempts on a
  slow timer and calls the ``notify.rollback_stuck`` activity each time), and a report not renewed
  within ``stuck_ttl`` vanishes. So when worker B clears a rollback that worker A reported, A's
  series disappears within the TTL at the latest. Aggregate with ``max by (kind, workflow_id)``.
* ``orchestrator_active_faults`` counts the faults this process injected minus those it removed;
  the sum across workers is right only while one fault's inject and revert run on the same worker.
  ``set_active_faults`` (from the chaos ledger, the source of truth) overwrites it.
* ``orchestrator_worker_ready`` is per worker by nature.

The SDK's own metrics (task schedule-to-start latency, slots, poll failures, workflow-task failures)
come from the SDK's Rust core, which serves them itself: ``install_sdk_metrics`` makes the default
``Runtime`` export them on a second port (``--sdk-metrics-port``), since the core cannot write into
a Python registry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import prometheus_client
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from orchestrator.redact import redact

Kind = Literal["canary", "flag_ramp", "chaos"]

DEFAULT_BUCKETS: tuple[float, ...] = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
ROLLBACK_BUCKETS: tuple[float, ...] = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600)
CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
# A stuck rollback is re-reported at every slow re-attempt; twice the longest re-attempt interval.
DEFAULT_STUCK_TTL = 30 * 60.0


class _Family:
    """One metric on a registry, with its label names checked on every call."""

    def __init__(self, registry: CollectorRegistry, metric: Any, name: str, labelnames: Sequence[str]) -> None:
        self._registry = registry
        self._metric = metric
        self.name = name
        self.labelnames = tuple(labelnames)
        self.lock = threading.RLock()

    def _child(self, labels: dict[str, str]) -> Any:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {list(self.labelnames)}, got {sorted(labels)}")
        if not self.labelnames:
            return self._metric
        return self._metric.labels(**_label_values(labels))

    def _sample(self, suffix: str, labels: dict[str, str]) -> float:
        self._child(labels)  # validates the label set
        value = self._registry.get_sample_value(self.name + suffix, _label_values(labels))
        return float(value) if value is not None else 0.0


class Counter(_Family):
    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self._child(labels).inc(amount)

    def value(self, **labels: str) -> float:
        return self._sample("_total", labels)


class Gauge(_Family):
    def set(self, value: float, **labels: str) -> None:
        self._child(labels).set(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self._child(labels).inc(amount)

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self._child(labels).dec(amount)

    def value(self, **labels: str) -> float:
        return self._sample("", labels)


class Histogram(_Family):
    def observe(self, value: float, **labels: str) -> None:
        self._child(labels).observe(value)

    def count(self, **labels: str) -> int:
        return int(self._sample("_count", labels))


def _label_values(labels: dict[str, str]) -> dict[str, str]:
    return {k: redact(v) for k, v in labels.items()}


class _StuckRollbacks(Collector):
    """``orchestrator_rollback_stuck``: one series per stuck rollback, expiring unless re-reported."""

    name = "orchestrator_rollback_stuck"

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._reports: dict[tuple[str, str], tuple[str, float]] = {}

    def report(self, kind: str, workflow_id: str, step: str, stuck: bool) -> bool:
        """Record the report; True when it changes what this process shows (news worth telling)."""
        self.current()  # drop expired reports first, so a re-report after expiry counts as news
        with self._lock:
            key = (kind, workflow_id)
            before = self._reports.get(key)
            if stuck:
                self._reports[key] = (step, self._clock())
                return before is None or before[0] != step
            return self._reports.pop(key, None) is not None

    def current(self) -> dict[tuple[str, str], str]:
        """Live reports: (kind, workflow_id) -> the step that is stuck."""
        now = self._clock()
        with self._lock:
            for key in [k for k, (_, at) in self._reports.items() if now - at > self.ttl]:
                del self._reports[key]
            return {k: step for k, (step, _) in self._reports.items()}

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            self.name,
            "1 while a rollback (compensation) step keeps failing, by kind and workflow id; "
            "the series disappears once the rollback completes.",
            labels=["kind", "workflow_id"],
        )
        for (kind, workflow_id), _step in sorted(self.current().items()):
            family.add_metric([redact(kind), redact(workflow_id)], 1.0)
        yield family

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self.name, "", labels=["kind", "workflow_id"])]


class Metrics:
    """The orchestrator's metrics, declared on one registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None, *, stuck_ttl: float = DEFAULT_STUCK_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry

        def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
            # prometheus_client appends `_total` itself; declaring the stem keeps today's names.
            stem = name.removesuffix("_total")
            return Counter(r, prometheus_client.Counter(stem, doc, labels, registry=r), stem, labels)

        def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
            return Gauge(r, prometheus_client.Gauge(name, doc, labels, registry=r), name, labels)

        self.rollouts_started = counter(
            "orchestrator_rollouts_started_total", "Rollouts started, by kind (canary, flag_ramp, chaos).", ["kind"])
        self.rollouts_finished = counter(
            "orchestrator_rollouts_finished_total",
            "Rollouts finished, by kind and outcome (promoted, rolled_back, completed, aborted, failed...).",
            ["kind", "outcome"])
        self.rollbacks = counter(
            "orchestrator_rollbacks_total", "Automatic or manual rollbacks, by kind and reason.", ["kind", "reason"])
        self.gate_evaluations = counter(
            "orchestrator_gate_evaluations_total",
            "Metric gate evaluations, by verdict (successful, failed, inconclusive, error).", ["verdict"])
        self.janitor_runs = counter(
            "orchestrator_janitor_runs_total", "Chaos janitor sweeps, by outcome (ok, failed).", ["outcome"])
        self.active_faults = gauge(
            "orchestrator_active_faults", "Faults this worker injected and has not removed yet.")
        self.step_duration = Histogram(
            r,
            prometheus_client.Histogram(
                "orchestrator_step_duration_seconds", "Duration of rollout steps, by kind and step.",
                ["kind", "step"], buckets=DEFAULT_BUCKETS, registry=r),
            "orchestrator_step_duration_seconds", ["kind", "step"])
        self.time_to_rollback = Histogram(
            r,
            prometheus_client.Histogram(
                "orchestrator_time_to_rollback_seconds",
                "From the rollback decision to traffic back on the stable, by kind.",
                ["kind"], buckets=ROLLBACK_BUCKETS, registry=r),
            "orchestrator_time_to_rollback_seconds", ["kind"])
        self.worker_ready = gauge(
            "orchestrator_worker_ready", "1 when the worker is connected to Temporal and polling, else 0.")
        self.rollback_stuck = _StuckRollbacks(stuck_ttl, clock)
        r.register(self.rollback_stuck)

    def render(self) -> str:
        return generate_latest(self.registry).decode()


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


def record_janitor_run(outcome: Literal["ok", "failed"] | str, *, metrics: Metrics | None = None) -> None:
    """One janitor sweep ended: ``ok`` (whatever it reverted) or ``failed`` (it raised)."""
    _m(metrics).janitor_runs.inc(outcome=outcome)


def set_rollback_stuck(kind: str, workflow_id: str, step: str, stuck: bool, *, metrics: Metrics | None = None) -> bool:
    """Report that ``workflow_id``'s rollback step ``step`` keeps failing (``stuck``) or is done.

    While stuck, call again at every re-attempt: a report expires after the metrics' TTL. Returns
    True when this changed what this worker shows (newly stuck, another step, or cleared).
    """
    return _m(metrics).rollback_stuck.report(kind, workflow_id, step, stuck)


def fault_injected(*, metrics: Metrics | None = None) -> None:
    _m(metrics).active_faults.inc()


def fault_removed(*, metrics: Metrics | None = None) -> None:
    gauge = _m(metrics).active_faults
    # Removal is idempotent (a retried activity may remove twice); never report a negative count.
    with gauge.lock:
        if gauge.value() > 0:
            gauge.dec()


def set_active_faults(count: int, *, metrics: Metrics | None = None) -> None:
    _m(metrics).active_faults.set(count)


def observe_step(kind: Kind | str, step: str, seconds: float, *, metrics: Metrics | None = None) -> None:
    _m(metrics).step_duration.observe(seconds, kind=kind, step=step)


def observe_time_to_rollback(kind: Kind | str, seconds: float, *, metrics: Metrics | None = None) -> None:
    _m(metrics).time_to_rollback.observe(seconds, kind=kind)


def set_worker_ready(ready: bool, *, metrics: Metrics | None = None) -> None:
    _m(metrics).worker_ready.set(1 if ready else 0)


def render(metrics: Metrics | None = None) -> str:
    return _m(metrics).render()


def sdk_runtime(bind_address: str) -> Any:
    """A Temporal ``Runtime`` whose core serves the SDK's metrics on ``bind_address`` (host:port).

    Metric names keep their ``temporal_`` prefix and gain no unit suffix, matching the SDK's docs.
    """
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

    from orchestrator.errors import SpecError

    try:
        return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind_address)))
    except ValueError as exc:  # the core reports a failed bind as ValueError("Failed starting ...: <os error>")
        reason = str(exc).split(": ", 1)[-1]
        raise SpecError([f"<command line>:0: --sdk-metrics-port: cannot serve metrics on {bind_address}: "
                         f"{reason}"]) from None


def install_sdk_metrics(bind_address: str) -> Any:
    """Make the SDK metrics runtime the process default, so every client connected afterwards uses it.

    Call once, before the worker connects to Temporal.
    """
    from temporalio.runtime import Runtime

    runtime = sdk_runtime(bind_address)
    Runtime.set_default(runtime, error_if_already_set=True)
    return runtime
