"""Run every rail for one change and collect the verdicts into a report.

Every rail runs, even after one has refused, so a dry run shows the whole picture; the report's
``reason`` is the first refusal. The order goes from what costs nothing to what asks remote systems::

    protected-namespace                   kube-system & co. and the orchestrator's own: alone, before the rest
    change-freeze, staffed-hours          the policy and a clock
    namespace, chaos-plan                 chaos only: protected/allowed namespaces; opt-in and blast radius
    mutual-exclusion                      Temporal: a canary, ramp or experiment already on the target
    recent-deployments                    Kubernetes: a rollout of a target workload within the quiet period
    capacity                              Kubernetes: canary and baseline pods fit quota and nodes (canaries)
    incidents, health                     Prometheus: firing alerts, declared health queries
    error-budget, alerts                  Prometheus: what a chaos spec declares in its safety section

A rail that cannot be evaluated (Prometheus or Kubernetes unreachable) raises instead of answering:
a rail that could not look is not a rail that passed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from orchestrator.errors import RefusedError
from orchestrator.rails import active as active_rail
from orchestrator.rails import capacity as capacity_rail
from orchestrator.rails import clock, rollouts, signals
from orchestrator.rails.chaos import (
    ActiveWork,
    ChaosPolicy,
    check_alerts,
    check_error_budget,
    check_namespace,
    own_namespace,
)
from orchestrator.rails.cluster import ClusterReader, meta, template_labels
from orchestrator.rails.models import RailsReport, RailsRequest, RailStatus, RailTarget, Verdict
from orchestrator.rails.protected import protected_namespace
from orchestrator.specs.canary import CanaryRollout
from orchestrator.specs.chaos import ChaosExperiment
from orchestrator.specs.policy import RailsPolicy

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from orchestrator.chaos.models import Plan
    from orchestrator.gates.prometheus import MetricProvider

__all__ = ["Rails", "chaos_preflight", "refuse_if_refused"]


def _verdict(rail: str, fn: object) -> Verdict:
    """A chaos rail of the raising kind (``RefusedError``) as a verdict."""
    try:
        detail = fn() if callable(fn) else None
    except RefusedError as exc:
        return Verdict(rail=rail, status=RailStatus.REFUSED, reason=str(exc).removeprefix("refused: "))
    return Verdict(rail=rail, status=RailStatus.OK, reason=str(detail) if detail else "passed")


@dataclass
class Rails:
    """The rails with their clients: Kubernetes (read only), Prometheus, Temporal, and the policy."""

    api_client: ApiClient
    metrics: MetricProvider
    active: ActiveWork
    policy: RailsPolicy
    env: Mapping[str, str] | None = None
    # The chaos namespaces as the caller already holds them (the chaos planner's own); else from ``policy``.
    chaos_policy: ChaosPolicy | None = None

    async def check(self, req: RailsRequest, plan: Plan | None = None) -> RailsReport:
        target = req.resolved_target()
        at = req.at or datetime.now(UTC)
        spec = self.policy.spec
        own = self.chaos_policy.own_namespace if self.chaos_policy is not None else own_namespace(self.env)
        protected = protected_namespace(target.namespace, own)
        if protected.refused:
            return RailsReport.of(req.kind, target.describe(), [protected])
        cluster = ClusterReader(self.api_client)
        verdicts = [protected, clock.freeze(spec, req.kind, target.namespace, at),
                    clock.staffed_hours(spec, req.kind, at)]
        if isinstance(req.spec, ChaosExperiment):
            verdicts += await self._chaos_cluster(req.spec, plan, req.workflow_id, at)
        labels = await asyncio.to_thread(self._pod_labels, cluster, req, target)
        verdicts.append(await active_rail.mutual_exclusion(self.active, req.kind, target, req.workflow_id, labels))
        verdicts.append(await asyncio.to_thread(rollouts.recent_deployments, cluster, spec, req.kind, target, at))
        if isinstance(req.spec, CanaryRollout):
            rollout = req.spec
            cap = (await asyncio.to_thread(capacity_rail.capacity, cluster, rollout) if spec.capacity else
                   Verdict(rail=capacity_rail.CAPACITY, status=RailStatus.SKIPPED, reason="off in the policy"))
            verdicts.append(cap)
        else:
            verdicts.append(Verdict(rail=capacity_rail.CAPACITY, status=RailStatus.SKIPPED,
                                    reason=f"creates no pods ({req.kind})"))
        verdicts += await asyncio.to_thread(self._prometheus, req, target)
        return RailsReport.of(req.kind, target.describe(), verdicts)

    def _pod_labels(self, cluster: ClusterReader, req: RailsRequest, target: RailTarget) -> dict[str, dict[str, str]]:
        if req.kind == "flag":
            return {}
        return {str(meta(obj).get("name")): template_labels(obj)
                for kind, obj in rollouts.target_workloads(cluster, target) if kind == "Deployment"}

    def _prometheus(self, req: RailsRequest, target: RailTarget) -> list[Verdict]:
        spec = self.policy.spec
        out = [signals.incidents(self.metrics, spec, req.kind, target),
               signals.health(self.metrics, spec, req.kind, target)]
        if isinstance(req.spec, ChaosExperiment):
            experiment = req.spec
            from orchestrator.chaos.planning import variables_for

            if experiment.spec.safety.error_budget is None:
                out.append(Verdict(rail="error-budget", status=RailStatus.SKIPPED,
                                   reason="the experiment declares no safety.errorBudget"))
            else:
                def budget() -> str:
                    reading = check_error_budget(self.metrics, experiment.spec, variables_for(experiment))
                    if reading is None or reading.remaining is None:
                        return "no data (noData: pass)"
                    floor = experiment.spec.safety.error_budget.floor if experiment.spec.safety.error_budget else 0
                    return f"remaining {reading.remaining:.4g} >= floor {floor:g} ({reading.query})"

                out.append(_verdict("error-budget", budget))
            if experiment.spec.safety.alerts is None:
                out.append(Verdict(rail="alerts", status=RailStatus.SKIPPED,
                                   reason="the experiment declares no safety.alerts"))
            else:
                def alerts() -> str:
                    check_alerts(self.metrics, experiment.spec)
                    return "none firing"

                out.append(_verdict("alerts", alerts))
        return out

    async def _chaos_cluster(
        self, experiment: ChaosExperiment, plan: Plan | None, workflow_id: str | None, at: datetime
    ) -> list[Verdict]:
        chaos_policy = self.chaos_policy or ChaosPolicy.from_policy(self.policy, self.env)
        ns = experiment.spec.target.namespace

        def namespace() -> str:
            check_namespace(ns, chaos_policy)
            return f"{ns} is allowed"

        out = [_verdict("namespace", namespace)]
        if out[0].refused:
            out.append(Verdict(rail="chaos-plan", status=RailStatus.SKIPPED,
                               reason="not planned: the namespace is refused"))
            return out
        if plan is not None:
            out.append(Verdict(rail="chaos-plan", status=RailStatus.OK,
                               reason=f"{plan.affected_pods} of {plan.total_pods} pods; opt-in and blast radius "
                                      "checked by the planner"))
            return out

        def planned() -> str:
            from orchestrator.chaos.objects import Objects
            from orchestrator.chaos.planning import plan_fault

            p = plan_fault(objects=Objects(self.api_client), policy=chaos_policy, experiment=experiment,
                           run=workflow_id or "rails-check", now=at)
            return f"{p.affected_pods} of {p.total_pods} pods; opt-in and blast radius passed"

        out.append(await asyncio.to_thread(_verdict, "chaos-plan", planned))
        return out


def refuse_if_refused(report: RailsReport) -> RailsReport:
    """Raise ``RefusedError`` with the first refusing rail's reason; the report otherwise."""
    if report.refused:
        raise RefusedError(f"refused: {report.reason}")
    return report


async def chaos_preflight(
    *,
    api_client: ApiClient,
    metrics: MetricProvider,
    active: ActiveWork,
    chaos_policy: ChaosPolicy,
    rails_policy: RailsPolicy,
    experiment: ChaosExperiment,
    plan: Plan,
    workflow_id: str | None,
    now: datetime,
) -> RailsReport:
    """Every rail for an experiment's planned round, right before it is injected; refuses by raising.

    The planner has resolved the plan (namespace, opt-in and blast radius included); this adds the policy's
    rails (freeze, staffed hours, recent deployments, incidents, health) and mutual exclusion, judged at
    ``now`` (the workflow's clock, so a schedule firing outside staffed hours is refused for that reason).
    Each verdict is appended to ``plan.lines``, so a dry run and the run's record show them all.
    """
    rails = Rails(api_client=api_client, metrics=metrics, active=active, policy=rails_policy,
                  chaos_policy=chaos_policy)
    report = await rails.check(RailsRequest(kind="chaos", spec=experiment, workflow_id=workflow_id, at=now),
                               plan=plan)
    plan.lines += [f"rail {line}" for line in report.lines()]
    return refuse_if_refused(report)
