"""The ``rails.check`` activity: every pre-flight rail for a canary, a flag ramp or a chaos experiment.

Workflows call it first thing (and chaos right before each injection) and end "refused" when the
report says so. Built with its clients like the other activity classes; the Temporal client the
mutual-exclusion rail needs is the worker's own (``activity.client()``) unless one is given, and the
policy is read from ``ORCHESTRATOR_POLICY`` when the worker is built, unless one is given. The activity only reads, so a
retry is always safe; an unreachable backend is a retryable error, never a pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from temporalio import activity

from orchestrator.activities.clients import ActivityClients
from orchestrator.activities.errors import application_error
from orchestrator.config import Settings
from orchestrator.errors import OrchestratorError
from orchestrator.rails.models import RailsReport, RailsRequest

if TYPE_CHECKING:
    from kubernetes.client import ApiClient
    from temporalio.client import Client

    from orchestrator.gates.prometheus import MetricProvider
    from orchestrator.rails.run import Rails
    from orchestrator.specs.policy import RailsPolicy

__all__ = ["RailsActivities"]


class RailsActivities(ActivityClients):
    def __init__(
        self,
        settings: Settings,
        api_client: ApiClient | None = None,
        metrics: MetricProvider | None = None,
        temporal: Client | None = None,
        rails_policy: RailsPolicy | None = None,
    ) -> None:
        from orchestrator.specs.policy import policy_from_env

        super().__init__(settings, api_client, metrics)
        self._temporal = temporal
        # Read when the worker is built, so a bad policy file stops the worker at start (file:line, exit 2)
        # rather than failing the first rollout that asks.
        self.policy = rails_policy or policy_from_env()

    def rails(self, kind: str = "canary") -> Rails:
        from orchestrator.rails.active import TemporalActiveWork
        from orchestrator.rails.run import Rails

        temporal = self._temporal or activity.client()
        # A flag ramp's rails read no Kubernetes object (its provider may be a file or Unleash): a worker
        # with no cluster configured still checks them.
        api = self._api_client if kind == "flag" else self.api
        return Rails(api_client=api, metrics=self.metrics, active=TemporalActiveWork(temporal),
                     policy=self.policy)

    def activities(self) -> list[Callable[..., Any]]:
        return [self.check]

    @activity.defn(name="rails.check")
    async def check(self, req: RailsRequest) -> RailsReport:
        try:
            return await self.rails(req.kind).check(req)
        except OrchestratorError as exc:
            raise application_error(exc) from None
