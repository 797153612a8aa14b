"""Mutual exclusion: one change at a time on a target, whichever workflow holds it.

Running workflows are found in Temporal with the conventions their starters already use:

* canary rollouts: workflow id ``canary-<namespace>-<deployment>`` (``workflows.canary.workflow_id``);
* flag ramps: ``flag-ramp-<provider>-<flag>`` (``orchestrator.specs.flags.ramp_workflow_id``);
* chaos experiments: visibility query on the workflow type, each carrying a memo with its target
  ``namespace`` and pod ``selector`` (``workflows.chaos.memo_for``).

The conventions are restated here rather than imported, so this package never imports ``workflows``.
A canary refuses while an experiment's selector matches its Deployment's pods; an experiment refuses
while a canary runs on a Deployment it would touch, or another experiment overlaps; a flag ramp refuses
while an experiment runs on the app it declares. Every refusal names the other workflow's id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.rails.chaos import ActiveWork, RunningExperiment, selectors_overlap
from orchestrator.rails.models import RailStatus, RailTarget, Verdict

if TYPE_CHECKING:
    from temporalio.client import Client

__all__ = [
    "CHAOS_WORKFLOW_TYPE",
    "MUTUAL_EXCLUSION",
    "TemporalActiveWork",
    "canary_workflow_id",
    "mutual_exclusion",
]

MUTUAL_EXCLUSION = "mutual-exclusion"
CHAOS_WORKFLOW_TYPE = "ChaosExperiment"


def canary_workflow_id(namespace: str, deployment: str) -> str:
    return f"canary-{namespace}-{deployment}"


class TemporalActiveWork:
    """``ActiveWork`` answered by Temporal: workflow descriptions and visibility queries."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def running(self, workflow_id: str) -> bool:
        from temporalio.client import WorkflowExecutionStatus
        from temporalio.service import RPCError, RPCStatusCode

        try:
            desc = await self.client.get_workflow_handle(workflow_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return desc.status == WorkflowExecutionStatus.RUNNING

    async def experiments(self) -> list[RunningExperiment]:
        out = []
        query = f"WorkflowType='{CHAOS_WORKFLOW_TYPE}' AND ExecutionStatus='Running'"
        async for wf in self.client.list_workflows(query):
            memo = await wf.memo()
            namespace, selector = memo.get("namespace"), memo.get("selector")
            if isinstance(namespace, str) and isinstance(selector, dict):
                out.append(RunningExperiment(wf.id, namespace, {str(k): str(v) for k, v in selector.items()}))
        return out


async def mutual_exclusion(
    active: ActiveWork,
    kind: str,
    target: RailTarget,
    own_workflow_id: str | None,
    pod_labels: dict[str, dict[str, str]],
) -> Verdict:
    """``pod_labels``: the pod template labels of each Deployment the change touches (by name)."""
    ns = target.namespace
    checked: list[str] = []
    if kind == "chaos":
        for deployment in sorted(pod_labels):
            wid = canary_workflow_id(str(ns), deployment)
            if wid != own_workflow_id and await active.running(wid):
                return Verdict(rail=MUTUAL_EXCLUSION, status=RailStatus.REFUSED,
                               reason=f"a canary rollout is active on {ns}/{deployment} (workflow {wid})")
            checked.append(f"no canary on {ns}/{deployment}")
    elif kind == "canary":
        for deployment in target.workloads:
            wid = canary_workflow_id(str(ns), deployment)
            if wid != own_workflow_id and await active.running(wid):
                return Verdict(rail=MUTUAL_EXCLUSION, status=RailStatus.REFUSED,
                               reason=f"a canary rollout of {ns}/{deployment} is already running (workflow {wid})")
    if ns is None:
        return Verdict(rail=MUTUAL_EXCLUSION, status=RailStatus.SKIPPED,
                       reason=f"{target.describe()} declares no namespace/app to check experiments against")
    experiments = [e for e in await active.experiments() if e.workflow_id != own_workflow_id and e.namespace == ns]
    for other in sorted(experiments, key=lambda e: e.workflow_id):
        if kind == "chaos":
            hit = selectors_overlap(other.selector, target.selector)
            what = "another experiment is running on the same target"
        elif kind == "canary":
            hit = any(all(labels.get(k) == v for k, v in other.selector.items()) for labels in pod_labels.values())
            what = f"a chaos experiment is active on {ns}/{', '.join(target.workloads)}"
        else:
            hit = target.app is not None and selectors_overlap(other.selector, {"app": target.app})
            what = f"a chaos experiment is active on {ns}/{target.app}"
        if hit:
            sel = ",".join(f"{k}={v}" for k, v in sorted(other.selector.items()))
            return Verdict(rail=MUTUAL_EXCLUSION, status=RailStatus.REFUSED,
                           reason=f"{what} (workflow {other.workflow_id}, selector {sel})")
    checked.append(f"no overlapping experiment among {len(experiments)} running in {ns}")
    return Verdict(rail=MUTUAL_EXCLUSION, status=RailStatus.OK, reason="; ".join(checked))
