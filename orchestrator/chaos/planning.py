"""From an experiment spec to a checked ``Plan``: resolve targets, plan the fault, run the rails.

The one function both the workflow's first activity and ``orchestrator chaos run --dry-run`` call,
so a dry run shows exactly the targets, the changes and the refusals a real run would meet. It
never writes: the ledger and injection come after, in their own activities.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime, timedelta

from orchestrator.chaos import radius, safety
from orchestrator.chaos.faults import PlanContext, injector_for
from orchestrator.chaos.models import BudgetReading, Plan, TargetSet
from orchestrator.chaos.objects import Objects
from orchestrator.chaos.safety import ActiveWork, CanaryId, ChaosPolicy
from orchestrator.chaos.targets import resolve
from orchestrator.errors import RefusedError
from orchestrator.gates.prometheus import MetricProvider
from orchestrator.specs.chaos import ChaosExperiment

__all__ = ["check_remote", "expiry", "plan_fault", "prepare", "seed_for", "variables_for"]


def seed_for(experiment: ChaosExperiment, run: str, round_: int = 0) -> int:
    """The spec's seed, else one derived from the run id; each round of a repeated kill picks anew."""
    base = experiment.spec.target.seed
    if base is None:
        base = int.from_bytes(hashlib.sha256(run.encode()).digest()[:6], "big")
    return base + round_


def expiry(experiment: ChaosExperiment, now: datetime) -> datetime:
    """When a left-behind fault counts as orphaned: the planned end, the recovery window and a margin."""
    spec = experiment.spec
    before = max((c.interval * (c.count or 1) for c in spec.steady_state.checks), default=timedelta(0))
    return now + before + spec.duration + spec.steady_state.recover_within + spec.blast_radius.expiry_margin


def variables_for(experiment: ChaosExperiment) -> dict[str, str]:
    """Template variables of steady-state and budget queries."""
    target = experiment.spec.target
    return {"namespace": target.namespace, "app": target.app, "target": experiment.metadata.name}


def plan_fault(
    *,
    objects: Objects,
    policy: ChaosPolicy,
    experiment: ChaosExperiment,
    run: str,
    now: datetime,
    round_: int = 0,
) -> Plan:
    """Resolve and plan, with the rails the cluster alone decides (namespace, opt-in, blast radius).

    The blast radius is ``orchestrator.chaos.radius``'s: on every pod the fault hits, per workload,
    ready pods only. A round that would cross a workload's ready-pod floor comes back with
    ``Plan.skipped`` set and no entries; a refusal raises ``RefusedError``.
    """
    spec = experiment.spec
    # The namespace rail comes first: nothing in a protected namespace is even listed.
    safety.check_namespace(spec.target.namespace, policy)
    targets = resolve(objects, spec.target, seed_for(experiment, run, round_))
    if not targets.candidates:
        message = f"the selector {targets.selector} matches no running pod in {targets.namespace}"
        if round_ == 0:
            raise RefusedError(f"refused: {message}")
        return _skipped(run, spec.fault.type, targets, f"round skipped: {message}")
    if not targets.ready:
        return _skipped(run, spec.fault.type, targets,
                        f"round skipped: none of the {len(targets.candidates)} pod(s) the selector matches is ready")
    ctx = PlanContext(
        run=run, fault=spec.fault, targets=targets, duration=spec.duration,
        expires_at=expiry(experiment, now), protected_namespaces=policy.protected,
        max_unavailable=spec.blast_radius.max_unavailable,
    )
    plan = injector_for(spec.fault.type, objects).plan(ctx)
    plan.total_pods = len(plan.targets.ready)
    if not plan.touches:
        plan.touches = [e.object for e in plan.entries]
    safety.check_opt_in(objects, plan)
    return radius.apply(objects, policy, plan, experiment, round_)


def _skipped(run: str, fault: str, targets: TargetSet, reason: str) -> Plan:
    return Plan(run=run, fault=fault, targets=targets, entries=[], affected_pods=0,
                total_pods=len(targets.ready), lines=[reason], skipped=reason)


async def check_remote(
    *,
    metrics: MetricProvider,
    active: ActiveWork,
    experiment: ChaosExperiment,
    plan: Plan,
    workflow_id: str | None,
    canary_id: CanaryId,
) -> None:
    """The rails Temporal and Prometheus decide: active rollouts/experiments, error budget, alerts.

    Fills ``plan.budget`` with the budget as the rail read it.
    """
    spec = experiment.spec
    await safety.check_active(active, spec, plan, workflow_id, canary_id)

    def prometheus_rails() -> BudgetReading | None:
        reading = safety.check_error_budget(metrics, spec, variables_for(experiment))
        safety.check_alerts(metrics, spec)
        return reading

    # Kept in the plan: the "before" end of the budget burn the run record measures.
    plan.budget = await asyncio.to_thread(prometheus_rails)
    if plan.budget is not None and spec.safety.error_budget is not None:
        remaining = plan.budget.remaining
        plan.lines.append(
            f"error budget remaining {remaining:.4g} (floor {spec.safety.error_budget.floor:g})"
            if remaining is not None else "error budget: no data (noData: pass)"
        )


async def prepare(
    *,
    objects: Objects,
    metrics: MetricProvider,
    active: ActiveWork,
    policy: ChaosPolicy,
    experiment: ChaosExperiment,
    run: str,
    now: datetime,
    workflow_id: str | None,
    canary_id: CanaryId,
    round_: int = 0,
    rails: bool = True,
) -> Plan:
    """``plan_fault`` (in a thread: the client blocks) and, with ``rails``, ``check_remote``.

    The policy's rails (freeze, staffed hours, recent deployments...) come on top, from the layer above:
    ``orchestrator.rails.run.chaos_preflight`` on the plan this returns."""
    plan = await asyncio.to_thread(
        lambda: plan_fault(objects=objects, policy=policy, experiment=experiment, run=run, now=now, round_=round_)
    )
    if rails:
        await check_remote(metrics=metrics, active=active, experiment=experiment, plan=plan,
                           workflow_id=workflow_id, canary_id=canary_id)
    return plan
