"""The chaos rails: every reason to refuse an experiment, checked before anything is touched.

They are part of the rails (``orchestrator.rails`` re-exports them as ``orchestrator.rails.chaos``
and reports them as verdicts) but live here, below the chaos planner that calls them, so the
dependency runs one way: ``orchestrator.rails`` imports ``orchestrator.chaos``, never the reverse.
Each rail is a function that returns nothing or raises ``RefusedError`` with one line saying
which rail refused and why. ``check_all`` runs them in order from cheapest to most remote::

    protected namespace   kube-system & co. and the orchestrator's own: never, whatever the spec says
                          (``check_protected``; the rails apply it to canaries and flag ramps too)
    allowed namespaces    the operator's list (``ChaosPolicy.allowed_namespaces``); empty allows none
    opt-in                chaos.orchestrator.dev/allow: "true" on the namespace, or on every touched
                          workload (the pod or its Deployment, the VirtualService, the node)
    blast radius          affected pods / matching pods <= blastRadius.maxPodsPercent
    active change         a canary rollout (workflow ``canary-<ns>-<deployment>``) or another
                          experiment on the same target is running
    error budget          the declared budget query is below its floor (or has no data, by default)
    firing alerts         ALERTS{alertstate="firing", <matchLabels>} returns any series

The Temporal and Prometheus lookups are behind small protocols (``ActiveWork``, ``MetricProvider``)
so the rails are plain functions of what those answer.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from orchestrator.chaos.models import ALLOW_ANNOTATION, BudgetReading, Plan
from orchestrator.chaos.objects import DEPLOYMENT, KINDS, NAMESPACE, POD, Objects, annotations_of, ref
from orchestrator.errors import RefusedError
from orchestrator.gates.prometheus import MetricProvider
from orchestrator.gates.template import render, validate_value
from orchestrator.specs.base import SYSTEM_NAMESPACES
from orchestrator.specs.chaos import ChaosSpec, ErrorBudget
from orchestrator.specs.checks import NoDataPolicy

if TYPE_CHECKING:
    from orchestrator.specs.policy import RailsPolicy

__all__ = [
    "ALWAYS_PROTECTED",
    "ActiveWork",
    "ChaosPolicy",
    "RunningExperiment",
    "check_active",
    "check_alerts",
    "check_all",
    "check_blast_radius",
    "check_error_budget",
    "check_namespace",
    "check_opt_in",
    "check_protected",
    "own_namespace",
    "read_error_budget",
    "selectors_overlap",
]

ALWAYS_PROTECTED = SYSTEM_NAMESPACES
_SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


@dataclass(frozen=True)
class ChaosPolicy:
    """What the operator allows; not part of any spec, so a spec cannot widen it."""

    allowed_namespaces: frozenset[str] = frozenset()
    allow_any_namespace: bool = False  # "*" in the list: any namespace that is not protected
    own_namespace: str = "orchestrator"
    extra_protected: frozenset[str] = field(default_factory=frozenset)

    @property
    def protected(self) -> frozenset[str]:
        return ALWAYS_PROTECTED | {self.own_namespace} | self.extra_protected

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ChaosPolicy:
        """The namespaces of the policy file (``ORCHESTRATOR_POLICY``) or, without one, of the older
        ``ORCHESTRATOR_CHAOS_NAMESPACES`` (comma list, ``*`` for any) and ``ORCHESTRATOR_CHAOS_PROTECTED``;
        the orchestrator's namespace from ``ORCHESTRATOR_NAMESPACE`` or the service account."""
        from orchestrator.specs.policy import policy_from_env

        return cls.from_policy(policy_from_env(env=env), env)

    @classmethod
    def from_policy(cls, rails: RailsPolicy, env: Mapping[str, str] | None = None) -> ChaosPolicy:
        allowed = set(rails.spec.namespaces.allowed)
        extra = set(rails.spec.namespaces.protected)
        return cls(
            allowed_namespaces=frozenset(allowed - {"*"}),
            allow_any_namespace="*" in allowed,
            own_namespace=own_namespace(env),
            extra_protected=frozenset(extra),
        )


def own_namespace(env: Mapping[str, str] | None = None) -> str:
    """The orchestrator's own namespace: ``ORCHESTRATOR_NAMESPACE`` (the chart sets it from the pod), else the
    service account's namespace file, else ``orchestrator``."""
    e = os.environ if env is None else env
    own = e.get("ORCHESTRATOR_NAMESPACE", "").strip()
    if not own:
        try:
            with open(_SA_NAMESPACE, encoding="utf-8") as fh:
                own = fh.read(256).strip()  # a namespace name is at most 63 characters
        except (OSError, UnicodeDecodeError):
            own = ""
    return own or "orchestrator"


def check_protected(namespace: str, own: str) -> None:
    """Refuse kube-system & co. and the orchestrator's own namespace: for every kind of change, not only chaos."""
    if namespace in ALWAYS_PROTECTED or namespace == own:
        why = "the orchestrator's own namespace" if namespace == own else "a system namespace"
        raise RefusedError(f"refused: namespace {namespace} is protected ({why}): nothing changes there")


@dataclass(frozen=True)
class RunningExperiment:
    workflow_id: str
    namespace: str
    selector: dict[str, str]


class ActiveWork(Protocol):
    """What is running in Temporal right now."""

    async def running(self, workflow_id: str) -> bool: ...

    async def experiments(self) -> list[RunningExperiment]: ...


def check_namespace(namespace: str, policy: ChaosPolicy) -> None:
    if namespace in policy.protected:
        raise RefusedError(f"refused: namespace {namespace} is protected and is never a chaos target")
    if not policy.allow_any_namespace and namespace not in policy.allowed_namespaces:
        allowed = ", ".join(sorted(policy.allowed_namespaces)) or "none"
        raise RefusedError(
            f"refused: namespace {namespace} is not in the allowed namespaces ({allowed}); "
            "add it to spec.namespaces.allowed of the rails policy"
        )


def _allowed(obj: Mapping[str, object] | None) -> bool:
    return obj is not None and annotations_of(dict(obj)).get(ALLOW_ANNOTATION) == "true"


def check_opt_in(objects: Objects, plan: Plan) -> None:
    """The namespace opts in, or every workload the plan touches does (pods through pod or Deployment)."""
    ns = plan.targets.namespace
    if _allowed(objects.get_or_none(ref(NAMESPACE, ns))):
        # Nodes are shared by every namespace: a namespace's consent does not cover them.
        missing = [e.object for e in plan.entries if e.object.kind == "Node" and not _allowed(objects.get(e.object))]
        if missing:
            raise RefusedError(f"refused: {missing[0]} has not opted in (annotation {ALLOW_ANNOTATION}: \"true\")")
        return
    missing_names: list[str] = []
    deployments: dict[str, bool] = {}
    for pod in plan.targets.chosen:
        if pod.owner is not None:
            # The owner may be a StatefulSet (PodInfo.owner_kind); its kind is what the annotation sits on.
            kind = KINDS.get(pod.owner_kind, DEPLOYMENT)
            key = f"{kind.kind} {ns}/{pod.owner}"
            if key not in deployments:
                deployments[key] = _allowed(objects.get_or_none(ref(kind, pod.owner, ns)))
            if deployments[key]:
                continue
            missing_names.append(key)
        elif not _allowed(objects.get_or_none(ref(POD, pod.name, ns))):
            missing_names.append(f"Pod {ns}/{pod.name}")
    for entry in plan.entries:
        if entry.creates or entry.object.kind in ("Pod",):
            continue
        if not _allowed(objects.get_or_none(entry.object)):
            missing_names.append(str(entry.object))
    if missing_names:
        raise RefusedError(
            f"refused: {sorted(set(missing_names))[0]} has not opted in: annotate it (or namespace {ns}) "
            f"with {ALLOW_ANNOTATION}: \"true\""
        )


def check_blast_radius(plan: Plan, max_percent: int) -> None:
    if plan.total_pods == 0:
        raise RefusedError(
            f"refused: the selector {plan.targets.selector} matches no running pod in {plan.targets.namespace}"
        )
    share = 100.0 * plan.affected_pods / plan.total_pods
    if share > max_percent + 1e-9:
        raise RefusedError(
            f"refused: the fault would hit {plan.affected_pods} of {plan.total_pods} pods ({share:.0f}%), "
            f"more than blastRadius.maxPodsPercent {max_percent}%"
        )


def selectors_overlap(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """Whether one pod could match both equality selectors (no key required with two values)."""
    return all(b[k] == v for k, v in a.items() if k in b)


class CanaryId(Protocol):
    def __call__(self, namespace: str, deployment: str) -> str: ...


async def check_active(
    active: ActiveWork, spec: ChaosSpec, plan: Plan, own_workflow_id: str | None, canary_id: CanaryId
) -> None:
    ns = plan.targets.namespace
    names = set(plan.targets.deployments) | {e.object.name for e in plan.entries if e.object.kind == "Deployment"}
    for deployment in sorted(names):
        wid = canary_id(ns, deployment)
        if await active.running(wid):
            raise RefusedError(f"refused: a canary rollout is active on {ns}/{deployment} (workflow {wid})")
    for other in await active.experiments():
        if other.workflow_id == own_workflow_id:
            continue
        if other.namespace == ns and selectors_overlap(other.selector, spec.target.selector):
            raise RefusedError(
                f"refused: experiment {other.workflow_id} is already running on the same target in {ns}"
            )


def _finite(values: Iterable[float]) -> list[float]:
    # NaN and ±inf are what a broken recording rule produces; neither is a remaining budget.
    return [v for v in values if math.isfinite(v)]


def read_error_budget(metrics: MetricProvider, budget: ErrorBudget, variables: Mapping[str, str]) -> BudgetReading:
    """The remaining budget fraction now: the lowest series when several answer (the most spent one)."""
    query = render(budget.query, variables)
    at = datetime.now(UTC)
    values = _finite(s.value for s in metrics.query(query))
    if not values:
        return BudgetReading(query=query, at=at, message=f"the error budget query returned no data: {query}")
    return BudgetReading(query=query, remaining=min(values), at=at)


def check_error_budget(
    metrics: MetricProvider, spec: ChaosSpec, variables: Mapping[str, str]
) -> BudgetReading | None:
    """Refuse below the floor (or without data, unless ``noData: pass``); the reading, for the run's record."""
    budget = spec.safety.error_budget
    if budget is None:
        return None
    reading = read_error_budget(metrics, budget, variables)
    if reading.remaining is None:
        if budget.no_data is NoDataPolicy.PASS:
            return reading
        raise RefusedError(
            f"refused: the error budget query returned no data (noData: {budget.no_data.value}): {reading.query}"
        )
    if reading.remaining < budget.floor:
        raise RefusedError(
            f"refused: error budget remaining {reading.remaining:.3g} is below the floor {budget.floor:g} "
            f"({reading.query})"
        )
    return reading


def alerts_query(match_labels: Mapping[str, str]) -> str:
    matchers = ",".join(f'{k}="{validate_value(k, v)}"' for k, v in sorted(match_labels.items()))
    return f'ALERTS{{alertstate="firing",{matchers}}}'


def check_alerts(metrics: MetricProvider, spec: ChaosSpec) -> None:
    alerts = spec.safety.alerts
    if alerts is None:
        return
    query = alerts_query(alerts.match_labels)
    firing = metrics.query(query)
    if firing:
        names = sorted({s.labels.get("alertname", "?") for s in firing})
        raise RefusedError(f"refused: alert(s) firing for the target: {', '.join(names)} ({query})")


async def check_all(
    *,
    objects: Objects,
    metrics: MetricProvider,
    active: ActiveWork,
    policy: ChaosPolicy,
    spec: ChaosSpec,
    plan: Plan,
    variables: Mapping[str, str],
    own_workflow_id: str | None,
    canary_id: CanaryId,
) -> None:
    check_namespace(plan.targets.namespace, policy)
    check_opt_in(objects, plan)
    check_blast_radius(plan, spec.blast_radius.max_pods_percent)
    await check_active(active, spec, plan, own_workflow_id, canary_id)
    check_error_budget(metrics, spec, variables)
    check_alerts(metrics, spec)
