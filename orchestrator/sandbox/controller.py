"""The sandbox cluster's control loop: Deployment controller, scheduler and kubelet in one pass.

``Controller.reconcile_once()`` does, in order:

1. kubelet, for every pod: stop in the runtime the pods that were deleted, schedule unscheduled pods onto a
   schedulable Node (fewest pods first, never a cordoned one), start scheduled pods in the runtime, restart
   pods the runtime reports dead, and write pod status (phase, Ready from the runtime, podIP 127.0.0.1);
2. Deployment controller, for every Deployment: pods are owned directly by the Deployment (no ReplicaSet
   objects) and labelled ``pod-template-hash``; missing pods of the current template are created (and started
   at once), then old-template pods are removed as new ones become ready (Recreate: old ones first), surplus
   pods are removed, and ``status`` is written the way ``kubectl rollout status`` reads it;
3. PodDisruptionBudget status (expectedPods, currentHealthy, desiredHealthy, disruptionsAllowed), and
   HTTPRoute status for routes attached to a Gateway of class ``sandbox`` (``gateway_status``);
4. ResourceQuota status (hard, used). Pods are scheduled only where the node's allocatable resources hold
   their requests, and quota admission can refuse a Deployment's pods (``apiserver_capacity``).

Writes go through the store, so they bump resourceVersions and reach watchers, but not the audit log (which
records HTTP requests only). A thread runs the pass every ``tick`` seconds; tests call it synchronously.

Pods become real (or not) through a ``PodRuntime``; ``InstantRuntime`` makes every pod ready at once.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from orchestrator.sandbox import apiserver_capacity as capacity
from orchestrator.sandbox import gateway_status
from orchestrator.sandbox.apiserver_disruption import budget_status, pod_ready
from orchestrator.sandbox.apiserver_resources import ApiError
from orchestrator.sandbox.apiserver_store import Obj, Store, now

log = logging.getLogger(__name__)

POD_IP = "127.0.0.1"
TEMPLATE_HASH_LABEL = "pod-template-hash"
# The alphabet Kubernetes uses for generated suffixes (no vowels, so no words).
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


class PodRuntime(Protocol):
    """What makes a pod run. ``start`` may return ``{"annotations": {...}, "labels": {...}, "status": {...}}``
    to merge into the pod (a port annotation, say); the others answer from the runtime's own state."""

    def start(self, pod: dict[str, Any]) -> Mapping[str, Any] | None: ...

    def stop(self, pod: dict[str, Any]) -> None: ...

    def ready(self, pod: dict[str, Any]) -> bool: ...

    def alive(self, pod: dict[str, Any]) -> bool: ...


class InstantRuntime:
    """Pods that are running and ready the moment they are scheduled."""

    def start(self, pod: dict[str, Any]) -> Mapping[str, Any] | None:
        return None

    def stop(self, pod: dict[str, Any]) -> None:
        return None

    def ready(self, pod: dict[str, Any]) -> bool:
        return True

    def alive(self, pod: dict[str, Any]) -> bool:
        return True


def template_hash(template: Obj) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    number = int.from_bytes(digest[:8], "big")
    chars = []
    for _ in range(10):
        number, rem = divmod(number, len(_SAFE))
        chars.append(_SAFE[rem])
    return "".join(chars)


def _meta(obj: Obj) -> dict[str, Any]:
    meta: dict[str, Any] = obj.setdefault("metadata", {})
    return meta


def _scaled(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        exact = int(value[:-1]) * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value)


def _condition(previous: list[dict[str, Any]], kind: str, status: bool, reason: str, message: str) -> dict[str, Any]:
    """A condition that keeps its transition time while its status stays the same."""
    value = "True" if status else "False"
    for old in previous:
        if old.get("type") == kind and old.get("status") == value and old.get("reason") == reason:
            return dict(old)
    stamp = now()
    return {
        "type": kind, "status": value, "reason": reason, "message": message,
        "lastTransitionTime": stamp, "lastUpdateTime": stamp,
    }


def _pod_condition(previous: list[dict[str, Any]], kind: str, status: bool, reason: str = "") -> dict[str, Any]:
    cond = _condition(previous, kind, status, reason, "")
    cond.pop("lastUpdateTime", None)  # PodCondition has lastProbeTime, not lastUpdateTime
    if not reason:
        cond.pop("reason", None)
    cond.pop("message", None)
    return cond


class Controller:
    """Reconciles Deployments, Pods and PDBs in the store against a ``PodRuntime``."""

    def __init__(self, store: Store, runtime: PodRuntime | None = None, tick: float = 0.2) -> None:
        self.store = store
        self.runtime: PodRuntime = runtime or InstantRuntime()
        self.tick = tick
        self._pass_lock = threading.Lock()
        # uid -> the pod as it was started in the runtime, so deleted pods can still be stopped.
        self._started: dict[str, Obj] = {}
        # uid -> status fields the runtime asked for when it started the pod (merged into every status write).
        self._runtime_status: dict[str, dict[str, Any]] = {}
        # Deployment uid -> why its last pod creation was refused (quota), for the ReplicaFailure condition.
        self._create_failures: dict[str, str] = {}
        self._stop = threading.Event()
        self._paused = 0
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="sandbox-controller", daemon=True)
        self._thread.start()

    def stop(self, stop_pods: bool = True) -> None:
        """Stop the loop and (by default) every pod the runtime still runs."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if stop_pods:
            with self._pass_lock:
                for pod in list(self._started.values()):
                    self._runtime_stop(pod)
                self._started.clear()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Hold the background loop (explicit ``reconcile_once`` calls still run), e.g. to look at a state
        the controller would otherwise repair within a tick. Returns once any running pass has finished."""
        with self._pass_lock:
            self._paused += 1
        try:
            yield
        finally:
            with self._pass_lock:
                self._paused -= 1

    def _loop(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                with self._pass_lock:
                    # Checked under the lock, so no pass starts after ``paused()`` has returned.
                    if not self._paused:
                        self._reconcile()
            except Exception:
                # The loop must survive a bad object or a runtime failure; the next tick retries.
                log.exception("sandbox controller pass failed")

    # ----------------------------------------------------------------------------------------------- a pass

    def reconcile_once(self) -> None:
        with self._pass_lock:
            self._reconcile()

    def _reconcile(self) -> None:
        self._kubelet_pass()
        for deployment in self.store.list("apps", "v1", "deployments"):
            try:
                self._sync_deployment(deployment)
            except ApiError as err:
                # The deployment or its namespace went away mid-pass.
                log.debug("deployment %s: %s", _meta(deployment).get("name"), err.message)
        self._pdb_pass()
        self._gateway_pass()
        self._quota_pass()

    # --------------------------------------------------------------------------------------------- kubelet

    def _kubelet_pass(self) -> None:
        pods = self.store.list("", "v1", "pods")
        present = {_meta(p)["uid"] for p in pods}
        for uid in [u for u in self._started if u not in present]:
            self._runtime_stop(self._started.pop(uid))
        nodes = self.store.list("", "v1", "nodes")
        for pod in pods:
            try:
                self._run_pod(pod, nodes, pods)
            except ApiError as err:
                log.debug("pod %s: %s", _meta(pod).get("name"), err.message)

    def _runtime_stop(self, pod: Obj) -> None:
        self._runtime_status.pop(_meta(pod).get("uid", ""), None)
        try:
            self.runtime.stop(pod)
        except Exception:
            log.exception("runtime failed to stop pod %s", _meta(pod).get("name"))

    def _run_pod(self, pod: Obj, nodes: list[Obj], pods: list[Obj]) -> Obj | None:
        """One kubelet step for one pod; returns the pod as now stored, or None when it was deleted."""
        meta = _meta(pod)
        ns, name, uid = meta.get("namespace"), meta["name"], meta["uid"]
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            return pod
        if not (pod.get("spec") or {}).get("nodeName"):
            node = self._pick_node(pod, nodes, pods)
            if node is None:
                return self._write_status(pod, {
                    "phase": "Pending",
                    "conditions": [_pod_condition(
                        (pod.get("status") or {}).get("conditions") or [], "PodScheduled", False, "Unschedulable",
                    )],
                })

            def bind(p: Obj, node: str = node) -> None:
                p.setdefault("spec", {})["nodeName"] = node

            pod = self.store.mutate("", "v1", "pods", ns, name, bind)
            pods.append(pod)  # so the next pod of this pass sees the node as one pod fuller
        restarts = 0
        if uid in self._started and not self._safe(self.runtime.alive, pod, default=True):
            self._runtime_stop(self._started.pop(uid))
            if self._owner(pod) is not None:
                # The Deployment replaces it, as a ReplicaSet would replace a pod that died.
                self.store.delete("", "v1", "pods", ns, name)
                return None
            if (pod.get("spec") or {}).get("restartPolicy") == "Never":
                return self._write_status(pod, {"phase": "Failed", "conditions": []})
            restarts = 1
        if uid not in self._started:
            pod = self._start(pod)
        return self._write_status(pod, self._running_status(pod, restarts))

    def _start(self, pod: Obj) -> Obj:
        meta = _meta(pod)
        try:
            extra = self.runtime.start(copy.deepcopy(pod)) or {}
        except Exception:
            log.exception("runtime failed to start pod %s", meta.get("name"))
            return pod
        self._started[meta["uid"]] = pod
        if extra.get("annotations") or extra.get("labels"):

            def merge(p: Obj) -> None:
                for key in ("annotations", "labels"):
                    if extra.get(key):
                        _meta(p).setdefault(key, {}).update(extra[key])

            pod = self.store.mutate("", "v1", "pods", meta.get("namespace"), meta["name"], merge)
            self._started[meta["uid"]] = pod
        if extra.get("status"):
            self._runtime_status[meta["uid"]] = dict(extra["status"])
        return pod

    def _safe(self, probe: Any, pod: Obj, default: bool) -> bool:
        try:
            return bool(probe(pod))
        except Exception:
            log.exception("runtime probe failed for pod %s", _meta(pod).get("name"))
            return default

    def _running_status(self, pod: Obj, restarts: int) -> dict[str, Any]:
        previous = pod.get("status") or {}
        conditions = previous.get("conditions") or []
        started = _meta(pod)["uid"] in self._started
        ready = started and self._safe(self.runtime.ready, pod, default=False)
        old_counts = {c.get("name"): c.get("restartCount", 0) for c in previous.get("containerStatuses") or []}
        status: dict[str, Any] = {
            **previous,
            "phase": "Running" if started else "Pending",
            "conditions": [
                _pod_condition(conditions, "PodScheduled", True),
                _pod_condition(conditions, "Initialized", True),
                _pod_condition(conditions, "ContainersReady", ready),
                _pod_condition(conditions, "Ready", ready),
            ],
            "podIP": POD_IP,
            "podIPs": [{"ip": POD_IP}],
            "hostIP": POD_IP,
            "startTime": previous.get("startTime") or now(),
            "qosClass": previous.get("qosClass", "BestEffort"),
            "containerStatuses": [
                {
                    "name": c.get("name", ""),
                    "image": c.get("image", ""),
                    "imageID": f"sandbox://{c.get('image', '')}",
                    "ready": ready,
                    "started": started,
                    "restartCount": old_counts.get(c.get("name"), 0) + restarts,
                    "state": {"running": {"startedAt": previous.get("startTime") or now()}}
                    if started else {"waiting": {"reason": "ContainerCreating"}},
                }
                for c in (pod.get("spec") or {}).get("containers") or []
            ],
        }
        status.update(self._runtime_status.get(_meta(pod)["uid"], {}))
        return status

    def _write_status(self, pod: Obj, status: dict[str, Any]) -> Obj:
        if (pod.get("status") or {}) == status:
            return pod
        meta = _meta(pod)

        def put(p: Obj) -> None:
            p["status"] = status

        return self.store.mutate("", "v1", "pods", meta.get("namespace"), meta["name"], put, subresource="status")

    def _pick_node(self, pod: Obj, nodes: list[Obj], pods: list[Obj]) -> str | None:
        spec = pod.get("spec") or {}
        tolerations = spec.get("tolerations") or []
        load: dict[str, int] = {}
        for p in pods:
            node = (p.get("spec") or {}).get("nodeName")
            if node:
                load[node] = load.get(node, 0) + 1
        candidates = []
        for node in nodes:
            node_spec = node.get("spec") or {}
            labels = _meta(node).get("labels") or {}
            if node_spec.get("unschedulable"):
                continue
            if not all(labels.get(k) == v for k, v in (spec.get("nodeSelector") or {}).items()):
                continue
            if any(not _tolerates(tolerations, t) for t in node_spec.get("taints") or []
                   if t.get("effect") in ("NoSchedule", "NoExecute")):
                continue
            ready = [c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"]
            if ready and ready[0].get("status") != "True":
                continue
            name = _meta(node)["name"]
            bound = [p for p in pods if (p.get("spec") or {}).get("nodeName") == name]
            if capacity.fits(node, bound, pod) is not None:
                continue  # a real scheduler leaves the pod Pending rather than overcommit requests
            candidates.append((load.get(_meta(node)["name"], 0), _meta(node)["name"]))
        return min(candidates)[1] if candidates else None

    # ------------------------------------------------------------------------------------------ deployments

    @staticmethod
    def _owner(obj: Obj) -> dict[str, Any] | None:
        for ref in _meta(obj).get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == "Deployment":
                return dict(ref)
        return None

    def _sync_deployment(self, dep: Obj) -> None:
        meta = _meta(dep)
        ns, uid = meta["namespace"], meta["uid"]
        spec = dep.get("spec") or {}
        desired = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        current_hash = template_hash(template)
        strategy = spec.get("strategy") or {}
        rolling = strategy.get("rollingUpdate") or {}
        surge = _scaled(rolling.get("maxSurge", "25%"), desired, round_up=True)
        unavailable = _scaled(rolling.get("maxUnavailable", "25%"), desired, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1  # the API forbids both being 0; never let a rollout stall on it

        def owned() -> tuple[list[Obj], list[Obj]]:
            pods = [
                p for p in self.store.list("", "v1", "pods", ns)
                if (self._owner(p) or {}).get("uid") == uid
            ]
            new = [p for p in pods if (_meta(p).get("labels") or {}).get(TEMPLATE_HASH_LABEL) == current_hash]
            return [p for p in pods if p not in new], new

        # Steps repeat within one pass while they make progress, so a runtime whose pods are ready at once
        # finishes a rollout in one pass, while a slow one rolls gradually over many passes.
        for _ in range(2 * (desired + surge) + 2):
            old, new = owned()
            if strategy.get("type") == "Recreate":
                changed = bool(old)
                for pod in old:
                    self._delete_pod(pod)
                changed |= self._create_pods(dep, template, current_hash, desired - len(new))
                changed |= self._remove_surplus(new, desired)
                if not changed:
                    break
                continue
            changed = self._remove_surplus(new, desired)
            room = desired + surge - len(old) - len(new)
            changed |= self._create_pods(dep, template, current_hash, min(desired - len(new), room))
            old, new = owned()
            changed |= self._retire_old(old, new, desired, desired - unavailable)
            if not changed:
                break
        old, new = owned()
        self._write_deployment_status(dep, old + new, current_hash)

    def _create_pods(self, dep: Obj, template: Obj, pod_hash: str, count: int) -> bool:
        if count <= 0:
            return False
        nodes = self.store.list("", "v1", "nodes")
        all_pods = self.store.list("", "v1", "pods")
        for _ in range(count):
            try:
                pod = self._new_pod(dep, template, pod_hash, nodes, all_pods)
            except ApiError as err:
                if err.code != 403:
                    raise
                # Quota admission refused it: the ReplicaSet controller retries later and reports the failure.
                self._create_failures[_meta(dep)["uid"]] = err.message
                return False
            self._create_failures.pop(_meta(dep)["uid"], None)
            all_pods.append(pod)
            # Started at once, so a pod that is ready immediately counts for this pass's next step.
            self._run_pod(pod, nodes, all_pods)
        return True

    def _remove_surplus(self, new: list[Obj], desired: int) -> bool:
        """Scale down current-template pods: unready ones first, then the newest."""
        if len(new) <= desired:
            return False
        surplus = sorted(new, key=_created, reverse=True)
        surplus.sort(key=pod_ready)
        for pod in surplus[: len(new) - desired]:
            self._delete_pod(pod)
        return True

    def _retire_old(self, old: list[Obj], new: list[Obj], desired: int, min_available: int) -> bool:
        """Remove old-template pods while there are more pods than desired, never dropping the ready count
        below ``min_available`` (unready old pods cost nothing to remove, so they go first)."""
        total = len(old) + len(new)
        ready = sum(1 for p in [*old, *new] if pod_ready(p))
        doomed = sorted(old, key=_created)
        doomed.sort(key=pod_ready)
        changed = False
        for pod in doomed:
            if total <= desired:
                break
            if pod_ready(pod):
                if ready - 1 < min_available:
                    break
                ready -= 1
            self._delete_pod(pod)
            total -= 1
            changed = True
        return changed

    def _delete_pod(self, pod: Obj) -> None:
        meta = _meta(pod)
        try:
            self.store.delete("", "v1", "pods", meta.get("namespace"), meta["name"])
        except ApiError:
            return  # already gone
        started = self._started.pop(meta["uid"], None)
        if started is not None:
            self._runtime_stop(started)

    def _new_pod(self, dep: Obj, template: Obj, pod_hash: str, nodes: list[Obj], pods: list[Obj]) -> Obj:
        meta = _meta(dep)
        tmeta = template.get("metadata") or {}
        pod: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": f"{meta['name']}-{pod_hash}-",
                "namespace": meta["namespace"],
                "labels": {**(tmeta.get("labels") or {}), TEMPLATE_HASH_LABEL: pod_hash},
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"], "uid": meta["uid"],
                    "controller": True, "blockOwnerDeletion": True,
                }],
            },
            "spec": copy.deepcopy(template.get("spec") or {}),
        }
        if tmeta.get("annotations"):
            pod["metadata"]["annotations"] = dict(tmeta["annotations"])
        pod["spec"].setdefault("restartPolicy", "Always")
        node = self._pick_node(pod, nodes, pods)
        if node is not None:
            pod["spec"]["nodeName"] = node
        return self.store.create("", "v1", "pods", meta["namespace"], pod)

    def _write_deployment_status(self, dep: Obj, pods: list[Obj], current_hash: str) -> None:
        spec = dep.get("spec") or {}
        desired = int(spec.get("replicas", 1))
        previous = dep.get("status") or {}
        conditions = previous.get("conditions") or []
        updated = [p for p in pods if (_meta(p).get("labels") or {}).get(TEMPLATE_HASH_LABEL) == current_hash]
        ready = sum(1 for p in pods if pod_ready(p))
        max_unavailable = ((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxUnavailable", "25%")
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            max_unavailable = 0
        minimum = desired - _scaled(max_unavailable, desired, round_up=False)
        complete = len(updated) == desired == len(pods) and ready >= desired
        status: dict[str, Any] = {
            "observedGeneration": _meta(dep).get("generation", 1),
            "replicas": len(pods),
            "updatedReplicas": len(updated),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": [
                _condition(
                    conditions, "Available", ready >= minimum,
                    "MinimumReplicasAvailable" if ready >= minimum else "MinimumReplicasUnavailable",
                    "Deployment has minimum availability." if ready >= minimum
                    else "Deployment does not have minimum availability.",
                ),
                _condition(
                    conditions, "Progressing", True,
                    "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                    f'ReplicaSet "{_meta(dep)["name"]}-{current_hash}" '
                    + ("has successfully progressed." if complete else "is progressing."),
                ),
            ],
        }
        if desired - ready > 0:
            status["unavailableReplicas"] = desired - ready
        failure = self._create_failures.get(_meta(dep)["uid"])
        if failure is not None and len(pods) < desired:
            status["conditions"].append(_condition(conditions, "ReplicaFailure", True, "FailedCreate", failure))
        if status == previous:
            return
        meta = _meta(dep)

        def put(d: Obj) -> None:
            d["status"] = status

        self.store.mutate("apps", "v1", "deployments", meta["namespace"], meta["name"], put, subresource="status")

    # ----------------------------------------------------------------------------------------------- quotas

    def _quota_pass(self) -> None:
        """The quota controller: ``status.hard`` and ``status.used`` of every ResourceQuota."""
        for quota in self.store.list("", "v1", "resourcequotas"):
            meta = _meta(quota)
            status = capacity.quota_status(quota, self.store.list("", "v1", "pods", meta["namespace"]))
            if quota.get("status") == status:
                continue

            def put(q: Obj, status: dict[str, Any] = status) -> None:
                q["status"] = status

            try:
                self.store.mutate("", "v1", "resourcequotas", meta["namespace"], meta["name"], put,
                                  subresource="status")
            except ApiError as err:
                log.debug("quota %s: %s", meta.get("name"), err.message)

    # ------------------------------------------------------------------------------------- Gateway API status

    def _gateway_pass(self) -> None:
        gateways = gateway_status.our_gateways(self.store.list(gateway_status.GROUP, "v1", "gateways"))
        if not gateways:
            return
        services = {(_meta(s)["namespace"], _meta(s)["name"]) for s in self.store.list("", "v1", "services")}
        for route in self.store.list(gateway_status.GROUP, "v1", "httproutes"):
            status = gateway_status.route_status(route, gateways, services, now())
            if status is None or status == route.get("status"):
                continue
            meta = _meta(route)

            def put(r: Obj, status: dict[str, Any] = status) -> None:
                r["status"] = status

            try:
                self.store.mutate(gateway_status.GROUP, "v1", "httproutes", meta["namespace"], meta["name"], put,
                                  subresource="status")
            except ApiError as err:
                log.debug("httproute %s: %s", meta.get("name"), err.message)

    # ------------------------------------------------------------------------------------------------- PDBs

    def _pdb_pass(self) -> None:
        budgets = self.store.list("policy", "v1", "poddisruptionbudgets")
        if not budgets:
            return
        pods = self.store.list("", "v1", "pods")
        for pdb in budgets:
            meta = _meta(pdb)
            in_ns = [p for p in pods if _meta(p).get("namespace") == meta["namespace"]]
            status = budget_status(pdb, in_ns)
            if {k: (pdb.get("status") or {}).get(k) for k in status} == status:
                continue

            def put(p: Obj, status: dict[str, Any] = status) -> None:
                p["status"] = {**(p.get("status") or {}), **status}

            try:
                self.store.mutate(
                    "policy", "v1", "poddisruptionbudgets", meta["namespace"], meta["name"], put,
                    subresource="status",
                )
            except ApiError:
                continue


def _tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    for tol in tolerations:
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists" and (not tol.get("key") or tol.get("key") == taint.get("key")):
            return True
        if tol.get("key") == taint.get("key") and tol.get("value") == taint.get("value"):
            return True
    return False


def _created(pod: Obj) -> tuple[str, str]:
    meta = _meta(pod)
    return (str(meta.get("creationTimestamp", "")), str(meta.get("name", "")))
