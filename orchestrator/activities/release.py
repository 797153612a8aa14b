"""Activities of the fleet release: which clusters exist, whether a cluster's worker listens, and undo.

* ``release.clusters`` runs on the central worker: the operator settings' cluster map is read there,
  so a Release that names a cluster the operator did not list is refused before anything runs.
* ``release.ping`` runs on a cluster's queue, with a short schedule-to-start timeout: a ping nobody
  picks up is how the release learns "no worker in eu-west-1" instead of waiting silently.
* ``release.undo`` runs on a cluster's queue and restores the stable template its canary replaced.
  A plain template roll under the default strategy (``maxUnavailable: 25%``) takes a quarter of the
  pods down before their replacements serve; this one sets ``maxSurge: 1, maxUnavailable: 0`` in the
  same write as the template, so each old pod goes only once a new one is ready, then puts the
  Deployment's own strategy back once the roll completed. The original strategy rides in an
  annotation written with the template, so a retried attempt (a worker killed mid-roll) finds it and
  finishes the same undo; an undo already landed changes nothing.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from orchestrator.activities.clients import ActivityClients
from orchestrator.activities.errors import temporal_errors
from orchestrator.api.release import ClusterQueues, ClusterQueuesRequest, PingRequest, UndoRequest, UndoResult

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from orchestrator.config import Settings
    from orchestrator.gates.prometheus import MetricProvider
    from orchestrator.specs.operator import OperatorSettings

__all__ = ["SURGE_ONLY", "UNDO_STRATEGY", "ReleaseActivities"]

UNDO_STRATEGY = "orchestrator.dev/undo-strategy"  # the Deployment's own strategy while an undo rolls
SURGE_ONLY = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


class ReleaseActivities(ActivityClients):
    def __init__(self, settings: Settings, api_client: ApiClient | None = None,
                 metrics: MetricProvider | None = None, operator: OperatorSettings | None = None) -> None:
        super().__init__(settings, api_client, metrics)
        # None: read ``ORCHESTRATOR_SETTINGS_FILE`` at each call, so the operator's edit applies to the next release.
        self._operator = operator

    def activities(self) -> list[Callable[..., Any]]:
        return [self.clusters, self.ping, self.undo]

    @activity.defn(name="release.clusters")
    @temporal_errors
    def clusters(self, req: ClusterQueuesRequest) -> ClusterQueues:
        from orchestrator.specs.operator import operator_settings_from_env

        settings = self._operator if self._operator is not None else operator_settings_from_env()
        known = settings.cluster_queues()
        return ClusterQueues(queues={n: known[n] for n in req.names if n in known},
                             unknown=[n for n in req.names if n not in known], source=settings.source)

    @activity.defn(name="release.ping")
    def ping(self, req: PingRequest) -> str:
        return activity.info().task_queue

    @activity.defn(name="release.undo")
    @temporal_errors
    def undo(self, req: UndoRequest) -> UndoResult:
        from kubernetes import client as k8s

        from orchestrator.kube.client import kube_errors, read_json, retry_on_conflict
        from orchestrator.kube.workloads import availability_of

        apps = k8s.AppsV1Api(self.api)
        wanted = _plain(req.template)

        def read() -> dict[str, Any]:
            with kube_errors(f"get deployment {req.namespace}/{req.name}", self.api):
                return read_json(apps.read_namespaced_deployment(req.name, req.namespace, _preload_content=False))

        def replace(body: dict[str, Any]) -> None:
            body.pop("status", None)
            with kube_errors(f"update deployment {req.namespace}/{req.name}", self.api):
                apps.replace_namespaced_deployment(req.name, req.namespace, body, _preload_content=False)

        def start_roll() -> bool:
            current = read()
            spec, meta = current["spec"], current["metadata"]
            annotations = meta.get("annotations") or {}
            if _plain(spec.get("template") or {}) == wanted:
                return False  # the template is back already (this or an earlier attempt)
            body = copy.deepcopy(current)
            if UNDO_STRATEGY not in annotations:
                body["metadata"].setdefault("annotations", {})[UNDO_STRATEGY] = json.dumps(
                    spec.get("strategy") or {}, sort_keys=True)
            body["spec"]["strategy"] = SURGE_ONLY
            body["spec"]["template"] = copy.deepcopy(wanted)
            replace(body)
            return True

        changed = retry_on_conflict(start_roll)
        deadline = time.monotonic() + req.deadline_seconds
        while True:
            state = availability_of(read())
            activity.heartbeat(state.model_dump(mode="json"))
            if state.complete:
                break
            if state.progress_deadline_exceeded or time.monotonic() > deadline:
                raise ApplicationError(
                    f"{req.namespace}/{req.name} did not become available on its previous template within "
                    f"{req.deadline_seconds:.0f}s ({state.available}/{state.desired} available)",
                    type="ProgressDeadlineExceeded")
            time.sleep(0.5)

        def put_strategy_back() -> None:
            current = read()
            annotations = (current["metadata"].get("annotations") or {})
            if UNDO_STRATEGY not in annotations:
                return
            body = copy.deepcopy(current)
            original = json.loads(body["metadata"]["annotations"].pop(UNDO_STRATEGY))
            if original:
                body["spec"]["strategy"] = original
            else:
                body["spec"].pop("strategy", None)
            replace(body)

        retry_on_conflict(put_strategy_back)
        return UndoResult(changed=changed, ready=state.ready, replicas=state.desired)


def _plain(template: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(template)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        meta.pop("creationTimestamp", None)  # filled with null by the server, meaningless in a template
    return out
