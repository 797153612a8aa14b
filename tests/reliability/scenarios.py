"""The canary every scenario drives, and the check of its final state.

One rollout with every kind of step (two setWeight, a pause, an analysis, a background check) on the
``healthy`` live data of ``tests/fixtures_prom.py``. ``expect_promoted`` reads the cluster, the history
and the audit log and returns an ``Outcome`` (the report's columns) instead of asserting, so the report
can count; the suite asserts ``outcome.ok``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s
from temporalio.client import Client, WorkflowHandle

from orchestrator.api.canary import CanaryInput, CanaryStatus, Phase
from orchestrator.specs.canary import CanaryRollout
from tests.reliability.harness import scheduled_counts, writes
from workflows.canary import CanaryWorkflow, workflow_id

DEPLOYMENT = "healthy"  # the live scenario whose canary serves 0.5 % errors: every gate passes
ERROR_RATIO = (
    'sum(rate(http_requests_total{namespace="prod",app="{{app}}",track="{{track}}",code=~"5.."}[30s])) / '
    'sum(rate(http_requests_total{namespace="prod",app="{{app}}",track="{{track}}"}[30s]))'
)
# Each step applied once: the activities that change the cluster, and how often a clean run schedules them.
STEP_ACTIVITIES = {"canary.snapshot_stable": 1, "canary.ensure_copy": 1, "canary.set_weight": 2,
                   "canary.update_stable": 1, "canary.reset_traffic": 1, "canary.delete_copy": 1}


def check(name: str, count: int | None = 2, **extra: Any) -> dict[str, Any]:
    return {"name": name, "query": ERROR_RATIO, "condition": {"max": 0.02}, "interval": "1s", "count": count,
            **extra}


def all_kinds(namespace: str, *, analysis: dict[str, Any] | None = None, background: bool = True,
              **spec: Any) -> CanaryRollout:
    steps: list[dict[str, Any]] = [
        {"setWeight": 34}, {"pause": {"duration": "2s"}},
        {"analysis": analysis or {"checks": [check("errors")]}},
        {"setWeight": 67}, {"pause": {"duration": "1s"}}]
    return CanaryRollout.model_validate({
        "apiVersion": "orchestrator.dev/v1", "kind": "CanaryRollout", "metadata": {"name": DEPLOYMENT},
        "spec": {"target": {"namespace": namespace, "deployment": DEPLOYMENT}, "change": {"image": "demo:2"},
                 "steps": steps, "progressDeadline": "30s",
                 **({"backgroundChecks": [check("bg-errors", count=None)]} if background else {}), **spec}})


def create_stable(api_client: Any, namespace: str, replicas: int = 3) -> None:
    from tests.fixtures_kube import deployment_manifest

    k8s.AppsV1Api(api_client).create_namespaced_deployment(
        namespace, deployment_manifest(DEPLOYMENT, replicas=replicas, image="demo:1"))


async def start(client: Client, model: CanaryRollout, task_queue: str) -> WorkflowHandle[Any, CanaryStatus]:
    target = model.spec.target
    return await client.start_workflow(CanaryWorkflow.run, CanaryInput(rollout=model),
                                       id=workflow_id(target.namespace, target.deployment), task_queue=task_queue)


@dataclass
class Outcome:
    """One run's damage, as the report counts it."""

    phase: str
    finished: bool  # ended in the expected phase with the expected cluster state
    repeated: int  # step activities scheduled, or cluster writes made, beyond a clean run's
    left_behind: int  # objects or traffic a finished run should not have left
    lost: int  # a workflow that vanished or a status that lost its steps
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.finished and not (self.repeated or self.left_behind or self.lost)


def _deployment(api_client: Any, namespace: str, name: str) -> Any | None:
    try:
        return k8s.AppsV1Api(api_client).read_namespaced_deployment(name, namespace)
    except k8s.ApiException as exc:
        if exc.status == 404:
            return None
        raise


async def expect_promoted(handle: WorkflowHandle[Any, CanaryStatus], result: CanaryStatus, api_client: Any,
                          namespace: str, audit: list[dict[str, Any]],
                          reference_writes: Counter[str] | None = None) -> Outcome:
    problems: list[str] = []
    stable = _deployment(api_client, namespace, DEPLOYMENT)
    canary = _deployment(api_client, namespace, f"{DEPLOYMENT}-canary")
    finished = result.phase is Phase.PROMOTED
    if not finished:
        problems.append(f"phase {result.phase.value}: {result.reason}")
    if stable is None or stable.spec.template.spec.containers[0].image != "demo:2" or stable.spec.replicas != 3:
        finished = False
        problems.append("the stable Deployment does not run demo:2 at 3 replicas")
    left = 0
    if canary is not None:
        left += 1
        problems.append("the canary Deployment was left behind")
    if result.weight != 0:
        left += 1
        problems.append(f"traffic left on the canary: weight {result.weight}")
    counts = await scheduled_counts(handle)
    repeated = 0
    for name, wanted in STEP_ACTIVITIES.items():
        if counts[name] != wanted:
            repeated += max(counts[name] - wanted, 0)
            problems.append(f"{name} scheduled {counts[name]} time(s), a clean run schedules {wanted}")
    seen = writes(audit, namespace)
    if reference_writes is not None:
        for key, wanted in reference_writes.items():
            if seen[key] > wanted:
                repeated += seen[key] - wanted
                problems.append(f"{key}: {seen[key]} write(s), a clean run makes {wanted}")
    weights = [e.message for e in result.events if e.message.startswith("shifting ")]
    lost = 0
    if weights != ["shifting 34% of traffic to the canary", "shifting 67% of traffic to the canary"]:
        lost += 1
        problems.append(f"the status lost or repeated steps: {weights}")
    return Outcome(result.phase.value, finished, repeated, left, lost, problems)


async def expect_undone(handle: WorkflowHandle[Any, CanaryStatus], result: CanaryStatus, api_client: Any,
                        namespace: str, phases: tuple[Phase, ...]) -> Outcome:
    """A rollout that must not promote: it ended in one of ``phases`` and the cluster is as before."""
    problems: list[str] = []
    stable = _deployment(api_client, namespace, DEPLOYMENT)
    canary = _deployment(api_client, namespace, f"{DEPLOYMENT}-canary")
    finished = result.phase in phases
    if not finished:
        problems.append(f"phase {result.phase.value} (wanted {[p.value for p in phases]}): {result.reason}")
    if stable is None or stable.spec.template.spec.containers[0].image != "demo:1" or stable.spec.replicas != 3:
        finished = False
        problems.append("the stable Deployment does not run demo:1 at 3 replicas")
    left = int(canary is not None and bool(canary.spec.replicas)) + int(result.weight != 0)
    if left:
        problems.append(f"left behind: canary {canary is not None}, weight {result.weight}")
    counts = await scheduled_counts(handle)
    repeated = max(counts["canary.update_stable"], 0) + max(counts["canary.snapshot_stable"] - 1, 0)
    if repeated:
        problems.append(f"promoted or snapshotted again: {dict(counts)}")
    return Outcome(result.phase.value, finished, repeated, left, 0, problems)
