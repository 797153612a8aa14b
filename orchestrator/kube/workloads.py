"""Deployments (and the Services beside them) as a canary rollout needs them.

``Workloads`` is a thin, idempotent layer over ``AppsV1Api`` / ``CoreV1Api``: every method reads first and
writes only when the object differs from the desired state, so an activity that ran, crashed and runs again
changes nothing more and leaves no extra resourceVersion behind. Read-modify-write goes through
``retry_on_conflict`` with the resourceVersion of the read, so a concurrent writer is never overwritten.

Objects travel as plain JSON dicts (read with ``_preload_content=False``), not as the client's typed models:
the snapshot a rollback restores must be exactly what the server returned, and dicts are what Temporal
serialises anyway.

Comparison is "desired is contained in actual" (``_contains``): the API server adds defaults (dnsPolicy,
terminationMessagePath, ...) to what we send, and those must not make every call look like a change.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any, Literal

from kubernetes import client as k8s
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.errors import KubeError, NotFoundError
from orchestrator.kube.client import kube_errors, read_json, retry_on_conflict
from orchestrator.kube.labels import (
    ROLE,
    SOURCE_ANNOTATION,
    Role,
    copy_annotations,
    is_ours,
    ownership_labels,
    selector_for,
    template_labels,
)

__all__ = [
    "Availability",
    "DeleteResult",
    "DeploymentSnapshot",
    "EnsureResult",
    "Workloads",
    "apply_change",
    "availability_of",
]

EnsureResult = Literal["created", "updated", "unchanged", "foreign"]
DeleteResult = Literal["deleted", "absent", "not-ours"]

_MERGE_PATCH = "application/merge-patch+json"


class DeploymentSnapshot(BaseModel):
    """What the stable Deployment looked like before the rollout touched anything."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    name: str
    replicas: int
    selector: dict[str, str]  # spec.selector.matchLabels
    selector_expressions: list[dict[str, Any]] = Field(default_factory=list)
    template: dict[str, Any]  # spec.template as the server returned it, JSON-ready
    labels: dict[str, str] = Field(default_factory=dict)
    container_names: list[str]
    container: str  # the target container: the one asked for, else the first
    image: str
    resource_version: str
    generation: int
    min_ready_seconds: int | None = None
    progress_deadline_seconds: int | None = None


class Availability(BaseModel):
    """Rollout progress of one Deployment, in the terms of ``kubectl rollout status``."""

    model_config = ConfigDict(frozen=True)

    desired: int
    current: int  # status.replicas: pods of every revision, old ones included
    updated: int
    ready: int
    available: int
    observed: bool  # the controller has seen the latest spec (observedGeneration >= generation)
    progress_deadline_exceeded: bool
    complete: bool
    message: str | None = None


def _contains(actual: Any, desired: Any) -> bool:
    """Whether every field of ``desired`` is present and equal in ``actual`` (lists: same length, itemwise)."""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(k in actual and _contains(actual[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(desired)
            and all(_contains(a, d) for a, d in zip(actual, desired, strict=True))
        )
    return bool(actual == desired)


def _sanitise_template(template: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(template))
    meta = out.get("metadata")
    if isinstance(meta, dict):
        # The server fills this with null; it carries no meaning for a template and breaks equality.
        meta.pop("creationTimestamp", None)
    return out


def _containers(template: Mapping[str, Any]) -> list[dict[str, Any]]:
    containers = (template.get("spec") or {}).get("containers") or []
    return [c for c in containers if isinstance(c, dict)]


def _pick_container(template: Mapping[str, Any], container: str | None, where: str) -> dict[str, Any]:
    containers = _containers(template)
    if not containers:
        raise KubeError(f"{where}: the pod template has no containers", retryable=False)
    if container is None:
        return containers[0]
    for c in containers:
        if c.get("name") == container:
            return c
    names = ", ".join(str(c.get("name")) for c in containers)
    raise KubeError(f"{where}: no container {container!r} (containers: {names})", retryable=False)


def apply_change(
    template: dict[str, Any],
    container: str | None,
    image: str | None,
    env: Mapping[str, str],
    where: str = "pod template",
) -> str:
    """Set the image and env vars of one container of ``template`` in place; returns the container's name.

    Env vars keep their order; a var that exists (even as ``valueFrom``) is replaced by the literal value,
    new ones are appended.
    """
    target = _pick_container(template, container, where)
    if image is not None:
        target["image"] = image
    if env:
        current = [e for e in (target.get("env") or []) if isinstance(e, dict)]
        pending = dict(env)
        merged: list[dict[str, Any]] = []
        for entry in current:
            name = entry.get("name")
            if name in pending:
                merged.append({"name": name, "value": pending.pop(str(name))})
            else:
                merged.append(entry)
        merged += [{"name": k, "value": v} for k, v in pending.items()]
        target["env"] = merged
    return str(target["name"])


def availability_of(deployment: Mapping[str, Any]) -> Availability:
    """Read a Deployment (as JSON) the way ``kubectl rollout status`` does."""
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    desired = int(spec.get("replicas", 1))
    current = int(status.get("replicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    ready = int(status.get("readyReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    observed = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    progressing = next(
        (c for c in status.get("conditions") or [] if isinstance(c, dict) and c.get("type") == "Progressing"),
        None,
    )
    deadline = bool(progressing and progressing.get("reason") == "ProgressDeadlineExceeded")
    # Every pod updated, old ones gone, updated ones available; a blown deadline is never complete.
    complete = observed and updated >= desired and current <= updated and available >= updated and not deadline
    return Availability(
        desired=desired,
        current=current,
        updated=updated,
        ready=ready,
        available=available,
        observed=observed,
        progress_deadline_exceeded=deadline,
        complete=complete,
        message=(progressing or {}).get("message"),
    )


class Workloads:
    """Deployments and Services of one cluster; every method is idempotent."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.api_client = api_client
        self.apps = k8s.AppsV1Api(api_client)
        self.core = k8s.CoreV1Api(api_client)

    # -- reads -------------------------------------------------------------------------------------------

    def _read(self, namespace: str, name: str) -> dict[str, Any]:
        with kube_errors(f"get deployment {namespace}/{name}", self.api_client):
            resp = self.apps.read_namespaced_deployment(
                name, namespace, _preload_content=False
            )
        return read_json(resp)

    def _read_or_none(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._read(namespace, name)
        except NotFoundError:
            return None

    def _replace(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        # body carries the resourceVersion of the read, so a concurrent change answers 409 (retried).
        with kube_errors(f"update deployment {namespace}/{name}", self.api_client):
            resp = self.apps.replace_namespaced_deployment(
                name, namespace, body, _preload_content=False
            )
        return read_json(resp)

    def snapshot(self, namespace: str, name: str, container: str | None = None) -> DeploymentSnapshot:
        """Record the Deployment before anything changes, so a rollback can put it back exactly."""
        obj = self._read(namespace, name)
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        selector = spec.get("selector") or {}
        template = _sanitise_template(spec.get("template") or {})
        target = _pick_container(template, container, f"deployment {namespace}/{name}")
        return DeploymentSnapshot(
            namespace=namespace,
            name=name,
            replicas=int(spec.get("replicas", 1)),
            selector=dict(selector.get("matchLabels") or {}),
            selector_expressions=list(selector.get("matchExpressions") or []),
            template=template,
            labels=dict(meta.get("labels") or {}),
            container_names=[str(c.get("name")) for c in _containers(template)],
            container=str(target["name"]),
            image=str(target.get("image", "")),
            resource_version=str(meta.get("resourceVersion", "")),
            generation=int(meta.get("generation", 0)),
            min_ready_seconds=spec.get("minReadySeconds"),
            progress_deadline_seconds=spec.get("progressDeadlineSeconds"),
        )

    # -- canary / baseline copies ------------------------------------------------------------------------

    def _desired_copy(
        self,
        namespace: str,
        source: DeploymentSnapshot,
        name: str,
        role: Role,
        rollout: str,
        replicas: int,
        container: str | None,
        image: str | None,
        env: Mapping[str, str],
    ) -> dict[str, Any]:
        template = copy.deepcopy(source.template)
        meta = template.setdefault("metadata", {})
        meta["labels"] = template_labels(meta.get("labels") or {}, rollout, role)
        changed = apply_change(template, container or source.container, image, env, f"copy {namespace}/{name}")
        selector: dict[str, Any] = {"matchLabels": selector_for(source.selector, role)}
        if source.selector_expressions:
            selector["matchExpressions"] = copy.deepcopy(source.selector_expressions)
        spec: dict[str, Any] = {"replicas": replicas, "selector": selector, "template": template}
        if source.min_ready_seconds is not None:
            spec["minReadySeconds"] = source.min_ready_seconds
        if source.progress_deadline_seconds is not None:
            spec["progressDeadlineSeconds"] = source.progress_deadline_seconds
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {**source.labels, **ownership_labels(rollout, role)},
                "annotations": copy_annotations(namespace, source.name, changed, image, env),
            },
            "spec": spec,
        }

    def ensure_copy(
        self,
        namespace: str,
        source: DeploymentSnapshot,
        name: str,
        role: Role,
        rollout: str,
        replicas: int,
        container: str | None = None,
        image: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> EnsureResult:
        """Create or converge the ``role`` copy ``name`` of the stable Deployment.

        The copy has the source's template with ``image``/``env`` applied to ``container`` (pass neither for
        the baseline, which keeps the old template). A same-named Deployment that the orchestrator did not
        create is never touched: that is a non-retryable :class:`KubeError`.
        """
        desired = self._desired_copy(namespace, source, name, role, rollout, replicas, container, image, env or {})

        def attempt() -> EnsureResult:
            current = self._read_or_none(namespace, name)
            if current is None:
                with kube_errors(f"create deployment {namespace}/{name}", self.api_client):
                    self.apps.create_namespaced_deployment(
                        namespace, desired, _preload_content=False
                    )
                return "created"
            meta = current.get("metadata") or {}
            if not is_ours(meta.get("labels")):
                raise KubeError(
                    f"deployment {namespace}/{name} exists and is not managed by the orchestrator; "
                    "refusing to take it over (rename or delete it)",
                    status=409,
                    retryable=False,
                )
            spec = current.get("spec") or {}
            if not _contains(spec.get("selector"), desired["spec"]["selector"]):
                raise KubeError(
                    f"deployment {namespace}/{name} has selector {spec.get('selector')}, expected "
                    f"{desired['spec']['selector']}; the selector is immutable, delete the copy first",
                    status=422,
                    retryable=False,
                )
            if _contains(
                current,
                {"metadata": {k: desired["metadata"][k] for k in ("labels", "annotations")}, "spec": desired["spec"]},
            ):
                return "unchanged"
            body = copy.deepcopy(current)
            body["metadata"]["labels"] = {**(meta.get("labels") or {}), **desired["metadata"]["labels"]}
            body["metadata"]["annotations"] = {
                **(meta.get("annotations") or {}),
                **desired["metadata"]["annotations"],
            }
            body["spec"].update(desired["spec"])
            body.pop("status", None)
            self._replace(namespace, name, body)
            return "updated"

        return retry_on_conflict(attempt)

    # -- the stable Deployment ---------------------------------------------------------------------------

    def scale(self, namespace: str, name: str, replicas: int) -> bool:
        """Set spec.replicas through the scale subresource; False when it already had that value."""
        if replicas < 0:
            raise ValueError("replicas must be >= 0")
        what = f"scale deployment {namespace}/{name}"
        with kube_errors(what, self.api_client):
            current = read_json(
                self.apps.read_namespaced_deployment_scale(
                    name, namespace, _preload_content=False
                )
            )
        if (current.get("spec") or {}).get("replicas", 0) == replicas:
            return False
        # A merge patch has no resourceVersion: the last writer of a replica count should win.
        with kube_errors(what, self.api_client):
            self.apps.patch_namespaced_deployment_scale(
                name,
                namespace,
                {"spec": {"replicas": replicas}},
                _content_type=_MERGE_PATCH,
                _preload_content=False,
            )
        return True

    def _rewrite_template(self, namespace: str, name: str, change: Callable[[dict[str, Any]], dict[str, Any]]) -> bool:
        def attempt() -> bool:
            current = self._read(namespace, name)
            spec = current.get("spec") or {}
            before = _sanitise_template(spec.get("template") or {})
            after = change(copy.deepcopy(before))
            if after == before:
                return False
            body = copy.deepcopy(current)
            body["spec"]["template"] = after
            body.pop("status", None)
            self._replace(namespace, name, body)
            return True

        return retry_on_conflict(attempt)

    def update_template(
        self,
        namespace: str,
        name: str,
        container: str | None,
        image: str | None,
        env: Mapping[str, str] | None = None,
    ) -> bool:
        """Promotion: set the image/env of one container of ``name``; everything else stays. False if no-op."""

        def change(template: dict[str, Any]) -> dict[str, Any]:
            apply_change(template, container, image, env or {}, f"deployment {namespace}/{name}")
            return template

        return self._rewrite_template(namespace, name, change)

    def restore_template(self, namespace: str, name: str, template: Mapping[str, Any]) -> bool:
        """Rollback of a promotion: put back the snapshot's pod template verbatim. False if already equal."""
        wanted = _sanitise_template(template)
        return self._rewrite_template(namespace, name, lambda _current: copy.deepcopy(wanted))

    # -- deletion ----------------------------------------------------------------------------------------

    def delete(self, namespace: str, name: str, only_if_ours: bool = True) -> DeleteResult:
        """Delete a Deployment (and, in the background, its pods). An absent one is success."""
        current = self._read_or_none(namespace, name)
        if current is None:
            return "absent"
        meta = current.get("metadata") or {}
        if only_if_ours and not is_ours(meta.get("labels")):
            return "not-ours"
        # The uid precondition keeps us from deleting a same-named object created since the read.
        options = {"propagationPolicy": "Background", "preconditions": {"uid": meta.get("uid")}}
        try:
            with kube_errors(f"delete deployment {namespace}/{name}", self.api_client):
                self.apps.delete_namespaced_deployment(
                    name, namespace, body=options, _preload_content=False
                )
        except NotFoundError:
            return "absent"
        return "deleted"

    # -- progress ----------------------------------------------------------------------------------------

    def availability(self, namespace: str, name: str) -> Availability:
        """One look at the Deployment's status; the caller polls (with heartbeats) until ``complete``."""
        return availability_of(self._read(namespace, name))

    # -- Services ----------------------------------------------------------------------------------------

    def _read_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            with kube_errors(f"get service {namespace}/{name}", self.api_client):
                resp = self.core.read_namespaced_service(
                    name, namespace, _preload_content=False
                )
        except NotFoundError:
            return None
        return read_json(resp)

    def ensure_service_copy(
        self, namespace: str, source_service: str, name: str, rollout: str, role: Role = "canary"
    ) -> EnsureResult:
        """A ClusterIP Service ``name`` with the ports of ``source_service``, selecting only ``role`` pods.

        A same-named Service the orchestrator did not create is taken to be one the user prepared for the
        canary (as Argo Rollouts expects) and is used as it is: ``"foreign"``.
        """
        source = self._read_service(namespace, source_service)
        if source is None:
            raise NotFoundError(f"service {namespace}/{source_service} not found")
        source_spec = source.get("spec") or {}
        if not source_spec.get("selector"):
            raise KubeError(
                f"service {namespace}/{source_service} has no selector; cannot derive a canary Service",
                retryable=False,
            )
        ports = [
            {k: p[k] for k in ("name", "port", "targetPort", "protocol", "appProtocol") if k in p}
            for p in source_spec.get("ports") or []
        ]
        desired_labels = ownership_labels(rollout, role)
        desired_spec: dict[str, Any] = {"selector": {**source_spec["selector"], ROLE: role}, "ports": ports}

        def attempt() -> EnsureResult:
            current = self._read_service(namespace, name)
            if current is None:
                fresh: dict[str, Any] = {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {
                        "name": name,
                        "namespace": namespace,
                        "labels": desired_labels,
                        "annotations": {SOURCE_ANNOTATION: f"{namespace}/{source_service}"},
                    },
                    "spec": {"type": "ClusterIP", **desired_spec},
                }
                with kube_errors(f"create service {namespace}/{name}", self.api_client):
                    self.core.create_namespaced_service(
                        namespace, fresh, _preload_content=False
                    )
                return "created"
            meta = current.get("metadata") or {}
            if not is_ours(meta.get("labels")):
                return "foreign"
            if _contains(current, {"metadata": {"labels": desired_labels}, "spec": desired_spec}):
                return "unchanged"
            body = copy.deepcopy(current)
            body["metadata"]["labels"] = {**(meta.get("labels") or {}), **desired_labels}
            body["spec"].update(desired_spec)
            body.pop("status", None)
            with kube_errors(f"update service {namespace}/{name}", self.api_client):
                self.core.replace_namespaced_service(
                    name, namespace, body, _preload_content=False
                )
            return "updated"

        return retry_on_conflict(attempt)

    def delete_service(self, namespace: str, name: str, only_if_ours: bool = True) -> DeleteResult:
        current = self._read_service(namespace, name)
        if current is None:
            return "absent"
        meta = current.get("metadata") or {}
        if only_if_ours and not is_ours(meta.get("labels")):
            return "not-ours"
        try:
            with kube_errors(f"delete service {namespace}/{name}", self.api_client):
                self.core.delete_namespaced_service(
                    name,
                    namespace,
                    body={"preconditions": {"uid": meta.get("uid")}},
                    _preload_content=False,
                )
        except NotFoundError:
            return "absent"
        return "deleted"
