"""Workloads against the sandbox API server: copies, promotion, rollback, deletion and availability."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client as k8s

from orchestrator.errors import KubeError
from orchestrator.kube import labels
from orchestrator.kube.workloads import DeploymentSnapshot, Workloads, availability_of
from tests.fixtures_kube import deployment_manifest

pytestmark = pytest.mark.timeout(30)

WRITES = ("POST", "PUT", "PATCH", "DELETE")


def _writes(kube: Any) -> list[dict[str, Any]]:
    """Audited writes into this test's namespace."""
    return [
        e
        for e in kube.audit()
        if e.get("method") in WRITES and f"/namespaces/{kube.namespace}/" in str(e.get("path", ""))
    ]


def _stable(kube: Any, name: str = "app", replicas: int = 3) -> dict[str, Any]:
    body = deployment_manifest(name, replicas=replicas)
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "MODE", "value": "stable"}, {"name": "KEEP", "value": "1"}]
    created = k8s.AppsV1Api(kube.api_client).create_namespaced_deployment(kube.namespace, body)
    return dict(k8s.ApiClient().sanitize_for_serialization(created))


def _read(kube: Any, name: str) -> dict[str, Any]:
    dep = k8s.AppsV1Api(kube.api_client).read_namespaced_deployment(name, kube.namespace)
    return dict(kube.api_client.sanitize_for_serialization(dep))


def _container(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj["spec"]["template"]["spec"]["containers"][0])


def _env(obj: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in _container(obj).get("env") or []}


def test_snapshot_records_the_deployment(kube: Any) -> None:
    created = _stable(kube)
    snap = Workloads(kube.api_client).snapshot(kube.namespace, "app")
    source_container = created["spec"]["template"]["spec"]["containers"][0]
    assert snap.replicas == 3
    assert snap.selector == created["spec"]["selector"]["matchLabels"]
    assert snap.container == source_container["name"]
    assert snap.container_names == [source_container["name"]]
    assert snap.image == source_container["image"]
    assert snap.generation >= 1
    assert snap.resource_version
    assert snap.template["metadata"]["labels"] == created["spec"]["template"]["metadata"]["labels"]
    # It must survive a trip through JSON (Temporal's payloads) unchanged.
    assert DeploymentSnapshot.model_validate_json(snap.model_dump_json()) == snap
    json.dumps(snap.template)


def test_snapshot_of_an_unknown_container_is_refused(kube: Any) -> None:
    _stable(kube)
    with pytest.raises(KubeError, match="no container 'sidecar'") as err:
        Workloads(kube.api_client).snapshot(kube.namespace, "app", container="sidecar")
    assert not err.value.retryable


def test_ensure_copy_creates_the_canary(kube: Any) -> None:
    _stable(kube)
    w = Workloads(kube.api_client)
    snap = w.snapshot(kube.namespace, "app")
    result = w.ensure_copy(
        kube.namespace, snap, "app-canary", "canary", "r1", 1, image="demo:v2", env={"MODE": "canary", "NEW": "x"}
    )
    assert result == "created"
    canary = _read(kube, "app-canary")
    meta_labels = canary["metadata"]["labels"]
    assert meta_labels[labels.MANAGED_BY] == "orchestrator"
    assert meta_labels[labels.ROLLOUT] == "r1"
    assert meta_labels[labels.ROLE] == "canary"
    assert canary["metadata"]["annotations"][labels.SOURCE_ANNOTATION] == f"{kube.namespace}/app"
    change = json.loads(canary["metadata"]["annotations"][labels.CHANGE_ANNOTATION])
    assert change["image"] == "demo:v2"
    assert canary["spec"]["replicas"] == 1
    assert canary["spec"]["selector"]["matchLabels"] == {**snap.selector, labels.ROLE: "canary"}
    tpl_labels = canary["spec"]["template"]["metadata"]["labels"]
    assert tpl_labels[labels.TRACK] == "canary"
    assert tpl_labels[labels.ROLE] == "canary"
    for k, v in snap.template["metadata"]["labels"].items():
        assert tpl_labels[k] == v, "shared Services select on the source labels"
    assert _container(canary)["image"] == "demo:v2"
    # Existing vars keep their place, changed ones take the new value, new ones are appended.
    assert [(e["name"], e["value"]) for e in _container(canary)["env"]] == [
        ("MODE", "canary"),
        ("KEEP", "1"),
        ("NEW", "x"),
    ]
    # The stable Deployment is untouched.
    stable = _read(kube, "app")
    assert _container(stable)["image"] == snap.image
    assert stable["metadata"]["generation"] == snap.generation


def test_ensure_copy_of_the_baseline_keeps_the_old_template(kube: Any) -> None:
    _stable(kube)
    w = Workloads(kube.api_client)
    snap = w.snapshot(kube.namespace, "app")
    assert w.ensure_copy(kube.namespace, snap, "app-baseline", "baseline", "r1", 1) == "created"
    baseline = _read(kube, "app-baseline")
    assert _container(baseline)["image"] == snap.image
    assert _env(baseline) == {"MODE": "stable", "KEEP": "1"}
    assert baseline["spec"]["template"]["metadata"]["labels"][labels.TRACK] == "baseline"
    assert baseline["spec"]["selector"]["matchLabels"][labels.ROLE] == "baseline"


def test_ensure_copy_twice_writes_nothing_more(kube: Any) -> None:
    _stable(kube)
    w = Workloads(kube.api_client)
    snap = w.snapshot(kube.namespace, "app")

    def ensure() -> str:
        return w.ensure_copy(kube.namespace, snap, "app-canary", "canary", "r1", 1, image="demo:v2", env={"NEW": "x"})

    assert ensure() == "created"
    generation = _read(kube, "app-canary")["metadata"]["generation"]
    before = len(_writes(kube))
    assert ensure() == "unchanged"
    assert len(_writes(kube)) == before, "an idempotent call must not write"
    # (resourceVersion moves with the controller's status writes; generation only with spec changes.)
    assert _read(kube, "app-canary")["metadata"]["generation"] == generation


def test_ensure_copy_converges_a_drifted_copy(kube: Any) -> None:
    _stable(kube)
    w = Workloads(kube.api_client)
    snap = w.snapshot(kube.namespace, "app")
    w.ensure_copy(kube.namespace, snap, "app-canary", "canary", "r1", 1, image="demo:v2")
    # Somebody edits our copy; the next call puts it back.
    k8s.AppsV1Api(kube.api_client).patch_namespaced_deployment(
        "app-canary",
        kube.namespace,
        {
            "spec": {
                "replicas": 5,
                "template": {"spec": {"containers": [{"name": snap.container, "image": "demo:tampered"}]}},
            }
        },
    )
    assert w.ensure_copy(kube.namespace, snap, "app-canary", "canary", "r1", 1, image="demo:v2") == "updated"
    canary = _read(kube, "app-canary")
    assert canary["spec"]["replicas"] == 1
    assert _container(canary)["image"] == "demo:v2"


def test_ensure_copy_refuses_an_object_that_is_not_ours(kube: Any) -> None:
    _stable(kube)
    foreign = deployment_manifest("app-canary", replicas=1, image="someone:else")
    k8s.AppsV1Api(kube.api_client).create_namespaced_deployment(kube.namespace, foreign)
    w = Workloads(kube.api_client)
    snap = w.snapshot(kube.namespace, "app")
    before = len(_writes(kube))
    with pytest.raises(KubeError, match="not managed by the orchestrator") as err:
        w.ensure_copy(kube.namespace, snap, "app-canary", "canary", "r1", 1, image="demo:v2")
    assert not err.value.retryable
    assert w.delete(kube.namespace, "app-canary") == "not-ours"
    assert len(_writes(kube)) == before, "a foreign object is neither written nor deleted"
    after = _read(kube, "app-canary")
    assert _container(after)["image"] == "someone:else"
    assert labels.MANAGED_BY not in after["metadata"]["labels"]


def test_update_and_restore_template_round_trip(kube: Any) -> None:
    _stable(kube)
    w = Workloads(kube.api_client)
    snap = w.snapshot(kube.namespace, "app")
    original = _read(kube, "app")

    assert w.update_template(kube.namespace, "app", None, "demo:v2", {"MODE": "new"}) is True
    promoted = _read(kube, "app")
    assert _container(promoted)["image"] == "demo:v2"
    assert _env(promoted) == {"MODE": "new", "KEEP": "1"}
    # Everything but the container's image/env is as it was.
    assert promoted["spec"]["replicas"] == original["spec"]["replicas"]
    assert promoted["spec"]["selector"] == original["spec"]["selector"]
    assert promoted["metadata"]["labels"] == original["metadata"]["labels"]
    assert promoted["spec"]["template"]["metadata"] == original["spec"]["template"]["metadata"]
    assert promoted["metadata"]["generation"] > original["metadata"]["generation"]

    before = len(_writes(kube))
    assert w.update_template(kube.namespace, "app", snap.container, "demo:v2", {"MODE": "new"}) is False
    assert len(_writes(kube)) == before

    assert w.restore_template(kube.namespace, "app", snap.template) is True
    restored = _read(kube, "app")
    assert restored["spec"]["template"] == original["spec"]["template"]
    before = len(_writes(kube))
    assert w.restore_template(kube.namespace, "app", snap.template) is False
    assert len(_writes(kube)) == before


def test_scale_is_idempotent(kube: Any) -> None:
    _stable(kube)
    w = Workloads(kube.api_client)
    assert w.scale(kube.namespace, "app", 5) is True
    assert _read(kube, "app")["spec"]["replicas"] == 5
    before = len(_writes(kube))
    assert w.scale(kube.namespace, "app", 5) is False
    assert len(_writes(kube)) == before


def test_delete_is_idempotent(kube: Any) -> None:
    _stable(kube)
    w = Workloads(kube.api_client)
    snap = w.snapshot(kube.namespace, "app")
    w.ensure_copy(kube.namespace, snap, "app-canary", "canary", "r1", 1, image="demo:v2")
    assert w.delete(kube.namespace, "app-canary") == "deleted"
    assert w.delete(kube.namespace, "app-canary") == "absent"
    names = [d.metadata.name for d in k8s.AppsV1Api(kube.api_client).list_namespaced_deployment(kube.namespace).items]
    assert names == ["app"]


def _wait_complete(kube: Any, w: Workloads, name: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        status = w.availability(kube.namespace, name)
        if status.complete or time.monotonic() > deadline:
            return status
        kube.settle(1)  # a synchronous controller pass instead of waiting for its thread


def test_availability_completes_after_the_controller_acts(kube: Any) -> None:
    _stable(kube, replicas=2)
    w = Workloads(kube.api_client)
    status = _wait_complete(kube, w, "app")
    assert status.complete, status
    assert status.desired == 2
    assert status.available == 2
    assert status.observed
    assert not status.progress_deadline_exceeded

    w.update_template(kube.namespace, "app", None, "demo:v2", {})
    changed = w.availability(kube.namespace, "app")
    # Right after the write the controller has not caught up with the new generation.
    if not changed.observed:
        assert not changed.complete
    status = _wait_complete(kube, w, "app")
    assert status.complete, status
    assert status.updated == 2


def test_availability_of_a_copy(kube: Any) -> None:
    _stable(kube, replicas=2)
    w = Workloads(kube.api_client)
    snap = w.snapshot(kube.namespace, "app")
    w.ensure_copy(kube.namespace, snap, "app-canary", "canary", "r1", 1, image="demo:v2")
    status = _wait_complete(kube, w, "app-canary")
    assert status.complete, status
    assert (status.desired, status.ready) == (1, 1)
    w.scale(kube.namespace, "app-canary", 0)
    status = _wait_complete(kube, w, "app-canary")
    assert status.complete and status.desired == 0


def _dep(generation: int = 2, desired: int = 3, **status: Any) -> dict[str, Any]:
    return {"metadata": {"generation": generation}, "spec": {"replicas": desired}, "status": status}


@pytest.mark.parametrize(
    ("obj", "complete"),
    [
        (_dep(observedGeneration=2, replicas=3, updatedReplicas=3, readyReplicas=3, availableReplicas=3), True),
        # The controller has not seen the latest spec yet.
        (_dep(observedGeneration=1, replicas=3, updatedReplicas=3, readyReplicas=3, availableReplicas=3), False),
        # An old pod is still there.
        (_dep(observedGeneration=2, replicas=4, updatedReplicas=3, readyReplicas=4, availableReplicas=4), False),
        # Updated but not available.
        (_dep(observedGeneration=2, replicas=3, updatedReplicas=3, readyReplicas=2, availableReplicas=2), False),
        (_dep(desired=0, observedGeneration=2), True),
    ],
)
def test_availability_rules(obj: dict[str, Any], complete: bool) -> None:
    assert availability_of(obj).complete is complete


def test_availability_reports_a_blown_progress_deadline() -> None:
    obj = _dep(
        observedGeneration=2,
        replicas=3,
        updatedReplicas=1,
        availableReplicas=2,
        conditions=[
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "too slow"},
        ],
    )
    status = availability_of(obj)
    assert status.progress_deadline_exceeded
    assert not status.complete
    assert status.message == "too slow"
