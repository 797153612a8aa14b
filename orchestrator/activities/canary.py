"""Activities of the canary rollout: Deployments, traffic and metric checks.

Every activity is idempotent: it converges the cluster to a described state, so the
retry after a worker crash changes nothing the first attempt already changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from orchestrator import telemetry
from orchestrator.activities.clients import ActivityClients
from orchestrator.activities.errors import temporal_errors
from orchestrator.api.requests import (
    CopyRequest,
    DeploymentRef,
    EvaluateRequest,
    NotifyRequest,
    RollbackStuckRequest,
    RouteRequest,
    ScaleRequest,
    StableSnapshot,
    TemplateRestore,
    TemplateUpdate,
    WaitRequest,
    WeightResult,
)
from orchestrator.gates.model import Measurement

if TYPE_CHECKING:

    from orchestrator.kube.routers.base import RouteTarget


class CanaryActivities(ActivityClients):
    def _workloads(self) -> Any:
        from orchestrator.kube.workloads import Workloads

        return Workloads(self.api)

    def activities(self) -> list[Callable[..., Any]]:
        return [
            self.snapshot_stable,
            self.ensure_copy,
            self.wait_available,
            self.scale,
            self.set_weight,
            self.reset_traffic,
            self.update_stable,
            self.restore_stable,
            self.delete_copy,
            self.evaluate_check,
            self.notify,
            self.notify_rollback_stuck,
        ]

    @activity.defn(name="canary.snapshot_stable")
    @temporal_errors
    def snapshot_stable(self, ref: DeploymentRef) -> StableSnapshot:
        if activity.info().attempt == 1:
            telemetry.record_rollout_started("canary")
        snap = self._workloads().snapshot(ref.namespace, ref.name, ref.container)
        return StableSnapshot(
            namespace=ref.namespace,
            name=ref.name,
            replicas=snap.replicas,
            template=snap.template,
            container=snap.container,
            image=snap.image,
            source=snap.model_dump(mode="json"),
        )

    @activity.defn(name="canary.ensure_copy")
    @temporal_errors
    def ensure_copy(self, req: CopyRequest) -> None:
        from orchestrator.kube.workloads import DeploymentSnapshot

        self._workloads().ensure_copy(
            namespace=req.snapshot.namespace,
            source=DeploymentSnapshot.model_validate(req.snapshot.source),
            name=req.name,
            role=req.role,
            rollout=req.rollout,
            replicas=req.replicas,
            container=req.snapshot.container,
            image=req.image,
            env=req.env,
        )

    @activity.defn(name="canary.wait_available")
    @temporal_errors
    def wait_available(self, req: WaitRequest) -> None:
        workloads = self._workloads()
        deadline = time.monotonic() + req.deadline_seconds
        while True:
            state = workloads.availability(req.namespace, req.name)
            activity.heartbeat(state.model_dump(mode="json"))
            if state.complete:
                return
            if state.progress_deadline_exceeded or time.monotonic() > deadline:
                raise ApplicationError(
                    f"Deployment {req.namespace}/{req.name} did not become available within "
                    f"{req.deadline_seconds:.0f}s ({state.available}/{state.desired} available)",
                    type="ProgressDeadlineExceeded",
                    non_retryable=True,
                )
            time.sleep(0.25)

    @activity.defn(name="canary.scale")
    @temporal_errors
    def scale(self, req: ScaleRequest) -> None:
        self._workloads().scale(req.namespace, req.name, req.replicas)

    def _router(self, req: RouteRequest) -> tuple[Any, RouteTarget]:
        from orchestrator.kube.routers import router_for
        from orchestrator.kube.routers.base import RouteTarget

        target = RouteTarget(
            namespace=req.namespace,
            rollout=req.rollout,
            stable=req.stable,
            canary=req.canary,
            total_replicas=req.total_replicas,
            routing=req.routing,
        )
        return router_for(req.routing, self.api), target

    @activity.defn(name="canary.set_weight")
    @temporal_errors
    def set_weight(self, req: RouteRequest) -> WeightResult:
        """Shift the weight (growing before shrinking, waiting for ready pods), then wait until the router
        confirms it; the result is the weight in effect. Pods that never get ready fail the activity
        (``PodsNotReadyError``) with the other side untouched."""
        router, target = self._router(req)
        router.set_weight(target, req.weight, self._progress(req), req.replicas)
        return self._confirm(router, target, req, req.weight, req.replicas)

    @activity.defn(name="canary.reset_traffic")
    @temporal_errors
    def reset_traffic(self, req: RouteRequest) -> WeightResult:
        """All traffic back to the stable: its full replica count ready first, then the canary removed."""
        router, target = self._router(req)
        router.reset(target, self._progress(req))
        return self._confirm(router, target, req, 0, None)

    @staticmethod
    def _progress(req: RouteRequest) -> Any:
        from orchestrator.kube.routers.base import Progress

        return Progress(deadline_seconds=req.verify_seconds, beat=activity.heartbeat)

    @staticmethod
    def _confirm(
        router: Any, target: RouteTarget, req: RouteRequest, weight: int, replicas: int | None
    ) -> WeightResult:
        deadline = time.monotonic() + req.verify_seconds
        while True:
            report = router.verify_weight(target, weight, replicas)
            activity.heartbeat(report.detail)
            if report.verified is not False or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        requested = weight if replicas is None else round(report.effective)
        return WeightResult(
            requested=requested, effective=report.effective, verified=report.verified, detail=report.detail
        )

    @activity.defn(name="canary.update_stable")
    @temporal_errors
    def update_stable(self, req: TemplateUpdate) -> None:
        self._workloads().update_template(req.namespace, req.name, req.container, req.image, req.env)

    @activity.defn(name="canary.restore_stable")
    @temporal_errors
    def restore_stable(self, req: TemplateRestore) -> None:
        self._workloads().restore_template(req.namespace, req.name, req.template)

    @activity.defn(name="canary.delete_copy")
    @temporal_errors
    def delete_copy(self, ref: DeploymentRef) -> None:
        self._workloads().delete(ref.namespace, ref.name, only_if_ours=True)

    @activity.defn(name="canary.evaluate_check")
    @temporal_errors
    def evaluate_check(self, req: EvaluateRequest) -> Measurement:
        from orchestrator.gates.evaluate import evaluate

        measurement = evaluate(req.check, self.metrics, req.variables, at=None)
        telemetry.record_gate(measurement.phase.value)
        return measurement

    @activity.defn(name="notify.outcome")
    def notify(self, req: NotifyRequest) -> None:
        # Notification failures never fail or delay a rollback: send_outcome never raises.
        telemetry.record_rollout_finished(req.kind, req.outcome)
        for step, seconds in req.step_seconds:
            telemetry.observe_step(req.kind, step, seconds)
        if req.time_to_rollback_seconds is not None:
            telemetry.observe_time_to_rollback(req.kind, req.time_to_rollback_seconds)
        if req.outcome not in ("promoted", "completed"):
            telemetry.record_rollback(req.kind, req.reason_kind or req.outcome)
        if not self._settings.notify_webhook:
            return
        from orchestrator.notify import Outcome, send_outcome

        metrics_only = {"reason_kind", "step_seconds", "time_to_rollback_seconds"}
        send_outcome(self._settings.notify_webhook, Outcome(**req.model_dump(exclude=metrics_only)))

    @activity.defn(name="notify.rollback_stuck")
    def notify_rollback_stuck(self, req: RollbackStuckRequest) -> None:
        from orchestrator.notify import report_rollback_stuck

        report_rollback_stuck(self._settings.notify_webhook, req)
