"""Activities of the flag ramp: read, set and turn off a flag at its provider; measure its gates.

Each activity is idempotent: ``flags.set_percent`` reads the provider first and writes
nothing when the flag already has that percentage, so the retry that follows a worker
crash (the write landed, the completion did not) changes nothing more. The request
models live here, free of client imports, because workflow code imports them.

Treatment-vs-control checks render the query twice, with ``{{variant}}`` set to the
ramped variant and then to the control variant, and judge the pair with the gates'
relative condition; the measurement's message names the two variants.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from temporalio import activity

from orchestrator.activities.clients import ActivityClients
from orchestrator.activities.errors import temporal_errors
from orchestrator.api.flag_requests import FlagCheckRequest, FlagRef, SampleRequest, SetPercentRequest
from orchestrator.config import Settings
from orchestrator.errors import MetricError
from orchestrator.flags.base import Allocation, Change, FlagTarget, ProviderClients
from orchestrator.gates.model import Measurement, Phase
from orchestrator.specs.checks import Check, Relative

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from orchestrator.flags.base import FlagProvider
    from orchestrator.gates.prometheus import MetricProvider
    from orchestrator.specs.operator import OperatorSettings


class FlagActivities(ActivityClients):
    def __init__(
        self,
        settings: Settings,
        api_client: ApiClient | None = None,
        metrics: MetricProvider | None = None,
        env: Mapping[str, str] | None = None,
        operator: OperatorSettings | None = None,
        **_other_clients: Any,  # the worker hands every capability the same clients
    ) -> None:
        super().__init__(settings, api_client, metrics)
        self._env = env
        # None: read ``ORCHESTRATOR_SETTINGS_FILE`` at each call, so an edit of the operator's file (a
        # re-rendered ConfigMap) reaches running workers without a restart.
        self._operator = operator

    def _kube(self) -> ApiClient:
        return self.api

    def provider(self, ref: FlagRef) -> FlagProvider:
        import os

        from orchestrator.flags import build_provider

        clients = ProviderClients(
            kube_api_client=self._kube, env=self._env if self._env is not None else os.environ, operator=self._operator
        )
        return build_provider(ref.provider, FlagTarget(ref.flag, ref.variant, ref.control), clients)

    def activities(self) -> list[Callable[..., Any]]:
        return [self.read, self.set_percent, self.turn_off, self.evaluate_check, self.sample]

    @activity.defn(name="flags.read")
    @temporal_errors
    def read(self, ref: FlagRef) -> Allocation:
        return self.provider(ref).current()

    @activity.defn(name="flags.set_percent")
    @temporal_errors
    def set_percent(self, req: SetPercentRequest) -> Change:
        change = self.provider(req.ref).set_percent(req.percent)
        activity.logger.info(
            "flag %s: %s%% -> %s%% (%s)", req.ref.flag, change.before.percent, req.percent,
            "written" if change.changed else "already set",
        )
        return change

    @activity.defn(name="flags.turn_off")
    @temporal_errors
    def turn_off(self, ref: FlagRef) -> Change:
        return self.provider(ref).turn_off()

    @activity.defn(name="flags.evaluate_check")
    @temporal_errors
    def evaluate_check(self, req: FlagCheckRequest) -> Measurement:
        return evaluate_variants(req.check, self.metrics, req.variables, req.treatment, req.control)

    @activity.defn(name="flags.sample")
    @temporal_errors
    def sample(self, req: SampleRequest) -> float | None:
        """The current value of a cumulative count (None when the query returns nothing)."""
        from orchestrator.gates.template import render

        samples = self.metrics.query(render(req.query, req.variables))
        values = [s.value for s in samples if not math.isnan(s.value)]
        return sum(values) if values else None


def evaluate_variants(
    check: Check,
    metrics: MetricProvider,
    variables: Mapping[str, str],
    treatment: str,
    control: str,
    at: datetime | None = None,
) -> Measurement:
    """One measurement of ``check`` for the ramped variant; relative checks compare it with control."""
    from orchestrator.gates.evaluate import _Recorder, _relative, evaluate
    from orchestrator.gates.template import render

    if not isinstance(check.condition, Relative):
        return evaluate(check, metrics, {**variables, "variant": treatment}, at)
    # The gates' relative evaluation varies ``track``; a flag ramp varies ``variant`` instead,
    # so render both sides here and reuse the gates' judgement of the pair.
    record = _Recorder(check, at if at is not None else datetime.now(UTC))
    try:
        record.query = render(check.query, {**variables, "variant": treatment, "track": "canary"})
        record.values = metrics.query(record.query, at)
        record.control_query = render(check.query, {**variables, "variant": control, "track": "stable"})
        record.control_values = metrics.query(record.control_query, at)
    except MetricError as exc:
        if exc.retryable:
            raise
        return record(Phase.ERROR, str(exc))
    measurement = _relative(record, check.condition)
    message = (
        measurement.message.replace(f"({check.track} ", f"({treatment} ")
        .replace(f", {check.condition.compare_to} ", f", {control} ")
        .replace(f"for {check.track}", f"for {treatment}")
        .replace(f"control track {check.condition.compare_to}", f"control variant {control}")
    )
    return measurement.model_copy(update={"message": message})


__all__ = [
    "FlagActivities",
    "FlagCheckRequest",
    "FlagRef",
    "SampleRequest",
    "SetPercentRequest",
    "evaluate_variants",
]
