"""The sandbox API server, exercised only through the official ``kubernetes`` client (and plain HTTP for the
sandbox's own audit endpoint). Pods converge through synchronous controller passes (``kube.settle()``), never
through sleeps."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, dynamic, watch
from kubernetes.client.exceptions import ApiException

from orchestrator.sandbox.apiserver import ApiServer
from tests.fixtures_kube import KubeTestEnv, deployment_manifest

NODES = {"sandbox-node-1", "sandbox-node-2"}


def _status_reason(exc: ApiException) -> str:
    return str(json.loads(exc.body)["reason"])


def _ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


# ------------------------------------------------------------------------------------------------------- CRUD


def test_deployment_crud(kube: KubeTestEnv) -> None:
    created = kube.apps.create_namespaced_deployment(kube.namespace, deployment_manifest("web"))
    assert created.metadata.uid
    assert created.metadata.generation == 1
    assert int(created.metadata.resource_version) > 0
    assert created.metadata.creation_timestamp is not None

    # Held, so no status write by the controller makes the read-modify-replace below a conflict.
    with kube.server.controller_paused():
        read = kube.apps.read_namespaced_deployment("web", kube.namespace)
        assert read.spec.replicas == 3
        assert read.metadata.uid == created.metadata.uid

        read.spec.replicas = 2
        replaced = kube.apps.replace_namespaced_deployment("web", kube.namespace, read)
    assert replaced.spec.replicas == 2
    assert replaced.metadata.generation == 2
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)

    names = [d.metadata.name for d in kube.apps.list_namespaced_deployment(kube.namespace).items]
    assert names == ["web"]

    kube.apps.delete_namespaced_deployment("web", kube.namespace)
    with pytest.raises(ApiException) as err:
        kube.apps.read_namespaced_deployment("web", kube.namespace)
    assert err.value.status == 404


def test_create_twice_is_already_exists_and_generate_name_makes_names(kube: KubeTestEnv) -> None:
    kube.core.create_namespaced_config_map(kube.namespace, {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    with pytest.raises(ApiException) as err:
        kube.core.create_namespaced_config_map(kube.namespace, {"metadata": {"name": "cfg"}})
    assert err.value.status == 409
    assert _status_reason(err.value) == "AlreadyExists"

    made = [
        kube.core.create_namespaced_config_map(kube.namespace, {"metadata": {"generateName": "gen-"}}) for _ in range(2)
    ]
    assert all(m.metadata.name.startswith("gen-") and len(m.metadata.name) > 4 for m in made)
    assert made[0].metadata.name != made[1].metadata.name


def test_not_found_cases(kube: KubeTestEnv) -> None:
    cases: list[Callable[[], object]] = [
        lambda: kube.core.read_namespaced_pod("nope", kube.namespace),
        lambda: kube.core.delete_namespaced_config_map("nope", kube.namespace),
        lambda: kube.apps.patch_namespaced_deployment("nope", kube.namespace, {"spec": {"replicas": 1}}),
        lambda: kube.core.create_namespaced_config_map("no-such-namespace", {"metadata": {"name": "x"}}),
        lambda: kube.custom.get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", kube.namespace, "httproutes", "nope"
        ),
    ]
    for call in cases:
        with pytest.raises(ApiException) as err:
            call()
        assert err.value.status == 404
        assert _status_reason(err.value) == "NotFound"


def test_invalid_deployment_is_rejected(kube: KubeTestEnv) -> None:
    manifest = deployment_manifest("bad")
    manifest["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    with pytest.raises(ApiException) as err:
        kube.apps.create_namespaced_deployment(kube.namespace, manifest)
    assert err.value.status == 422
    assert _status_reason(err.value) == "Invalid"


def test_list_with_label_and_field_selectors(kube: KubeTestEnv) -> None:
    for name, labels in [
        ("a", {"app": "web", "tier": "front"}),
        ("b", {"app": "web", "tier": "back"}),
        ("c", {"app": "db"}),
    ]:
        kube.core.create_namespaced_config_map(kube.namespace, {"metadata": {"name": name, "labels": labels}})

    def names(**kwargs: Any) -> list[str]:
        return [c.metadata.name for c in kube.core.list_namespaced_config_map(kube.namespace, **kwargs).items]

    assert names(label_selector="app=web") == ["a", "b"]
    assert names(label_selector="app==web,tier=back") == ["b"]
    assert names(label_selector="app!=web") == ["c"]
    assert names(label_selector="tier in (front, back)") == ["a", "b"]
    assert names(label_selector="tier notin (front)") == ["b", "c"]
    assert names(label_selector="tier") == ["a", "b"]
    assert names(label_selector="!tier") == ["c"]
    assert names(field_selector="metadata.name=c") == ["c"]
    assert names(field_selector="metadata.name!=c", label_selector="app=web") == ["a", "b"]
    all_namespaces = kube.core.list_config_map_for_all_namespaces(label_selector="app=db").items
    assert [(c.metadata.namespace, c.metadata.name) for c in all_namespaces] == [(kube.namespace, "c")]


def test_deletecollection_by_selector(kube: KubeTestEnv) -> None:
    for name, app in [("a", "x"), ("b", "x"), ("c", "y")]:
        kube.core.create_namespaced_config_map(kube.namespace, {"metadata": {"name": name, "labels": {"app": app}}})
    kube.core.delete_collection_namespaced_config_map(kube.namespace, label_selector="app=x")
    assert [c.metadata.name for c in kube.core.list_namespaced_config_map(kube.namespace).items] == ["c"]


# ---------------------------------------------------------------------------------------------------- patches


def _two_container_deployment(kube: KubeTestEnv) -> None:
    manifest = deployment_manifest("web")
    manifest["spec"]["template"]["spec"]["containers"] = [
        {"name": "app", "image": "demo:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
        {"name": "sidecar", "image": "proxy:1"},
    ]
    kube.apps.create_namespaced_deployment(kube.namespace, manifest)


def test_strategic_merge_patch_merges_containers_and_env_by_name(kube: KubeTestEnv) -> None:
    _two_container_deployment(kube)
    patched = kube.apps.patch_namespaced_deployment(
        "web",
        kube.namespace,
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "sidecar", "image": "proxy:2"},
                            {"name": "app", "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}]},
                        ]
                    }
                }
            }
        },
    )
    containers = {c.name: c for c in patched.spec.template.spec.containers}
    assert containers["sidecar"].image == "proxy:2"
    assert containers["app"].image == "demo:1"
    assert [(e.name, e.value) for e in containers["app"].env] == [("A", "1"), ("B", "20"), ("C", "3")]
    assert kube.audit()[-1]["patchType"] == "application/strategic-merge-patch+json"


def test_merge_patch_replaces_lists_and_null_deletes(kube: KubeTestEnv) -> None:
    _two_container_deployment(kube)
    kube.apps.patch_namespaced_deployment(
        "web",
        kube.namespace,
        {"metadata": {"labels": {"extra": "yes"}}},
        _content_type="application/merge-patch+json",
    )
    patched = kube.apps.patch_namespaced_deployment(
        "web",
        kube.namespace,
        {
            "metadata": {"labels": {"extra": None}},
            "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "proxy:3"}]}}},
        },
        _content_type="application/merge-patch+json",
    )
    assert [(c.name, c.image) for c in patched.spec.template.spec.containers] == [("sidecar", "proxy:3")]
    assert "extra" not in patched.metadata.labels


def test_json_patch(kube: KubeTestEnv) -> None:
    kube.apps.create_namespaced_deployment(kube.namespace, deployment_manifest("web"))
    patched = kube.apps.patch_namespaced_deployment(
        "web",
        kube.namespace,
        [
            {"op": "replace", "path": "/spec/replicas", "value": 5},
            {"op": "add", "path": "/metadata/labels/track", "value": "canary"},
            {"op": "add", "path": "/spec/template/spec/containers/-", "value": {"name": "b", "image": "b:1"}},
            {"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "app"},
        ],
    )
    assert patched.spec.replicas == 5
    assert patched.metadata.labels["track"] == "canary"
    assert [c.name for c in patched.spec.template.spec.containers] == ["app", "b"]

    with pytest.raises(ApiException) as err:
        kube.apps.patch_namespaced_deployment(
            "web", kube.namespace, [{"op": "test", "path": "/spec/replicas", "value": 1}]
        )
    assert err.value.status == 422
    assert kube.apps.read_namespaced_deployment("web", kube.namespace).spec.replicas == 5


def test_stale_resource_version_is_a_conflict(kube: KubeTestEnv) -> None:
    kube.apps.create_namespaced_deployment(kube.namespace, deployment_manifest("web"))
    stale = kube.apps.read_namespaced_deployment("web", kube.namespace)
    kube.apps.patch_namespaced_deployment("web", kube.namespace, {"spec": {"replicas": 4}})

    stale.spec.replicas = 1
    with pytest.raises(ApiException) as err:
        kube.apps.replace_namespaced_deployment("web", kube.namespace, stale)
    assert err.value.status == 409
    assert _status_reason(err.value) == "Conflict"

    with pytest.raises(ApiException) as err:
        kube.apps.patch_namespaced_deployment(
            "web",
            kube.namespace,
            {"metadata": {"resourceVersion": stale.metadata.resource_version}, "spec": {"replicas": 1}},
        )
    assert err.value.status == 409
    assert kube.apps.read_namespaced_deployment("web", kube.namespace).spec.replicas == 4


def test_generation_moves_with_spec_only_and_status_is_a_subresource(kube: KubeTestEnv) -> None:
    kube.apps.create_namespaced_deployment(kube.namespace, deployment_manifest("web", replicas=0))
    labelled = kube.apps.patch_namespaced_deployment("web", kube.namespace, {"metadata": {"labels": {"x": "y"}}})
    assert labelled.metadata.generation == 1

    # Status sent to the main resource is ignored; the status subresource changes status and nothing else.
    ignored = kube.apps.patch_namespaced_deployment(
        "web",
        kube.namespace,
        {"status": {"observedGeneration": 42}, "spec": {"paused": True}},
    )
    assert ignored.metadata.generation == 2
    assert ignored.status.observed_generation != 42
    status_only = kube.apps.patch_namespaced_deployment_status(
        "web",
        kube.namespace,
        {"status": {"observedGeneration": 42}, "spec": {"paused": False}},
    )
    assert status_only.status.observed_generation == 42
    assert status_only.spec.paused is True


# ----------------------------------------------------------------------------------------------------- scale


def test_scale_subresource(kube: KubeTestEnv) -> None:
    kube.apps.create_namespaced_deployment(kube.namespace, deployment_manifest("web", replicas=2))
    scale = kube.apps.read_namespaced_deployment_scale("web", kube.namespace)
    assert isinstance(scale, client.V1Scale)
    assert (scale.kind, scale.api_version, scale.spec.replicas) == ("Scale", "autoscaling/v1", 2)
    assert scale.status.selector == "app=web"

    patched = kube.apps.patch_namespaced_deployment_scale("web", kube.namespace, {"spec": {"replicas": 4}})
    assert patched.spec.replicas == 4
    assert kube.apps.read_namespaced_deployment("web", kube.namespace).spec.replicas == 4

    # No resourceVersion: an unconditional update (the controller thread may have written status meanwhile).
    kube.apps.replace_namespaced_deployment_scale(
        "web",
        kube.namespace,
        {"metadata": {"name": "web"}, "spec": {"replicas": 1}},
    )
    kube.settle()
    assert len(kube.core.list_namespaced_pod(kube.namespace).items) == 1
    assert kube.apps.read_namespaced_deployment_scale("web", kube.namespace).status.replicas == 1


# ------------------------------------------------------------------------------------------------ controller


def test_controller_makes_ready_pods_and_deployment_status(kube: KubeTestEnv) -> None:
    dep = kube.apps.create_namespaced_deployment(kube.namespace, deployment_manifest("web", labels={"tier": "x"}))
    kube.settle()
    pods = kube.core.list_namespaced_pod(kube.namespace, label_selector="app=web,tier=x").items
    assert len(pods) == 3
    hashes = {p.metadata.labels["pod-template-hash"] for p in pods}
    assert len(hashes) == 1
    for pod in pods:
        assert pod.metadata.owner_references[0].uid == dep.metadata.uid
        assert pod.metadata.owner_references[0].kind == "Deployment"
        assert pod.spec.containers[0].image == "demo:1"
        assert pod.spec.node_name in NODES
        assert pod.status.phase == "Running"
        assert pod.status.pod_ip == "127.0.0.1"
        assert _ready(pod)
    assert {p.spec.node_name for p in pods} == NODES  # spread over both nodes

    status = kube.apps.read_namespaced_deployment("web", kube.namespace).status
    assert (status.replicas, status.updated_replicas, status.ready_replicas, status.available_replicas) == (3, 3, 3, 3)
    assert status.observed_generation == 1
    conditions = {c.type: c for c in status.conditions}
    assert conditions["Available"].status == "True"
    assert conditions["Progressing"].reason == "NewReplicaSetAvailable"


def test_deleted_pod_is_recreated(kube: KubeTestEnv) -> None:
    kube.apps.create_namespaced_deployment(kube.namespace, deployment_manifest("web"))
    kube.settle()
    victim = kube.core.list_namespaced_pod(kube.namespace).items[0].metadata.name
    deleted = kube.core.delete_namespaced_pod(victim, kube.namespace)
    assert deleted.metadata.name == victim
    kube.settle()
    names = [p.metadata.name for p in kube.core.list_namespaced_pod(kube.namespace).items]
    assert len(names) == 3
    assert victim not in names


def test_template_change_replaces_pods(kube: KubeTestEnv) -> None:
    kube.apps.create_namespaced_deployment(kube.namespace, deployment_manifest("web"))
    kube.settle()
    before = {p.metadata.name for p in kube.core.list_namespaced_pod(kube.namespace).items}
    kube.apps.patch_namespaced_deployment(
        "web",
        kube.namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "demo:2"}]}}}},
    )
    kube.settle()
    pods = kube.core.list_namespaced_pod(kube.namespace).items
    assert len(pods) == 3
    assert {p.metadata.name for p in pods}.isdisjoint(before)
    assert {p.spec.containers[0].image for p in pods} == {"demo:2"}
    status = kube.apps.read_namespaced_deployment("web", kube.namespace).status
    assert (status.observed_generation, status.updated_replicas, status.available_replicas) == (2, 3, 3)


def test_deleting_a_deployment_cascades_to_its_pods(kube: KubeTestEnv) -> None:
    kube.apps.create_namespaced_deployment(kube.namespace, deployment_manifest("web"))
    kube.apps.create_namespaced_deployment(kube.namespace, deployment_manifest("other", replicas=1))
    kube.settle()
    assert len(kube.core.list_namespaced_pod(kube.namespace).items) == 4
    kube.apps.delete_namespaced_deployment("web", kube.namespace)
    remaining = kube.core.list_namespaced_pod(kube.namespace).items
    assert [p.metadata.labels["app"] for p in remaining] == ["other"]


def test_cordoned_node_gets_no_new_pods(kube: KubeTestEnv) -> None:
    kube.core.patch_node("sandbox-node-1", {"spec": {"unschedulable": True}})
    try:
        kube.apps.create_namespaced_deployment(kube.namespace, deployment_manifest("web", replicas=4))
        kube.settle()
        pods = kube.core.list_namespaced_pod(kube.namespace).items
        assert len(pods) == 4
        assert {p.spec.node_name for p in pods} == {"sandbox-node-2"}
    finally:
        kube.core.patch_node("sandbox-node-1", {"spec": {"unschedulable": None}})


# -------------------------------------------------------------------------------------------------- eviction


def test_eviction_respects_pod_disruption_budget(kube: KubeTestEnv) -> None:
    kube.apps.create_namespaced_deployment(kube.namespace, deployment_manifest("web"))
    kube.policy.create_namespaced_pod_disruption_budget(
        kube.namespace,
        {
            "metadata": {"name": "web"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
        },
    )
    kube.settle()

    def evict(name: str) -> None:
        kube.core.create_namespaced_pod_eviction(
            name,
            kube.namespace,
            {"metadata": {"name": name, "namespace": kube.namespace}},
        )

    # Held, so the controller does not replace the first evicted pod before the second eviction.
    with kube.server.controller_paused():
        first, second = (p.metadata.name for p in kube.core.list_namespaced_pod(kube.namespace).items[:2])
        pdb = kube.policy.read_namespaced_pod_disruption_budget("web", kube.namespace)
        assert (pdb.status.current_healthy, pdb.status.disruptions_allowed) == (3, 1)

        evict(first)
        assert first not in {p.metadata.name for p in kube.core.list_namespaced_pod(kube.namespace).items}
        with pytest.raises(ApiException) as err:
            evict(second)
        assert err.value.status == 429
        assert _status_reason(err.value) == "TooManyRequests"
        assert second in {p.metadata.name for p in kube.core.list_namespaced_pod(kube.namespace).items}

        # Once the replacement is ready, the budget allows the next eviction.
        kube.settle()
        evict(second)


def test_eviction_without_budget_deletes_the_pod(kube: KubeTestEnv) -> None:
    kube.apps.create_namespaced_deployment(kube.namespace, deployment_manifest("web", replicas=1))
    kube.settle()
    name = kube.core.list_namespaced_pod(kube.namespace).items[0].metadata.name
    kube.core.create_namespaced_pod_eviction(name, kube.namespace, {"metadata": {"name": name}})
    assert name not in {p.metadata.name for p in kube.core.list_namespaced_pod(kube.namespace).items}


# ------------------------------------------------------------------------------------------ custom resources


HTTPROUTE = ("gateway.networking.k8s.io", "v1", "httproutes")


def _route(name: str, weights: tuple[int, int]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {
            "rules": [
                {
                    "backendRefs": [
                        {"name": "web", "port": 80, "weight": weights[0]},
                        {"name": "web-canary", "port": 80, "weight": weights[1]},
                    ]
                }
            ]
        },
    }


def test_custom_resource_httproute(kube: KubeTestEnv) -> None:
    group, version, plural = HTTPROUTE
    created = kube.custom.create_namespaced_custom_object(
        group, version, kube.namespace, plural, _route("web", (100, 0))
    )
    assert created["kind"] == "HTTPRoute"
    assert created["metadata"]["generation"] == 1

    got = kube.custom.get_namespaced_custom_object(group, version, kube.namespace, plural, "web")
    assert got["spec"]["rules"][0]["backendRefs"][1]["weight"] == 0

    patched = kube.custom.patch_namespaced_custom_object(
        group,
        version,
        kube.namespace,
        plural,
        "web",
        {
            "spec": {
                "rules": [
                    {
                        "backendRefs": [
                            {"name": "web", "port": 80, "weight": 90},
                            {"name": "web-canary", "port": 80, "weight": 10},
                        ]
                    }
                ]
            }
        },
    )
    assert [b["weight"] for b in patched["spec"]["rules"][0]["backendRefs"]] == [90, 10]
    assert patched["metadata"]["generation"] == 2

    kube.custom.create_namespaced_custom_object(group, version, kube.namespace, plural, _route("other", (1, 0)))
    listed = kube.custom.list_namespaced_custom_object(group, version, kube.namespace, plural)
    assert listed["kind"] == "HTTPRouteList"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["other", "web"]

    # The same object is visible through another version of its group.
    beta = kube.custom.get_namespaced_custom_object(group, "v1beta1", kube.namespace, plural, "web")
    assert beta["apiVersion"] == "gateway.networking.k8s.io/v1beta1"

    kube.custom.delete_namespaced_custom_object(group, version, kube.namespace, plural, "web")
    with pytest.raises(ApiException) as err:
        kube.custom.get_namespaced_custom_object(group, version, kube.namespace, plural, "web")
    assert err.value.status == 404


def test_crd_declares_a_cluster_scoped_custom_resource(kube: KubeTestEnv) -> None:
    ext = client.ApiextensionsV1Api(kube.api_client)
    group = f"{kube.namespace}.example.com"
    ext.create_custom_resource_definition(
        {
            "metadata": {"name": f"widgets.{group}"},
            "spec": {
                "group": group,
                "scope": "Cluster",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                "versions": [
                    {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {"type": "object"}}}
                ],
            },
        }
    )
    try:
        crd = ext.read_custom_resource_definition(f"widgets.{group}")
        assert any(c.type == "Established" and c.status == "True" for c in crd.status.conditions)
        kube.custom.create_cluster_custom_object(group, "v1", "widgets", {"metadata": {"name": "w"}, "spec": {}})
        widget = kube.custom.get_cluster_custom_object(group, "v1", "widgets", "w")
        assert widget["kind"] == "Widget"
        with pytest.raises(ApiException) as err:
            kube.custom.get_namespaced_custom_object(group, "v1", kube.namespace, "widgets", "w")
        assert err.value.status == 404
    finally:
        ext.delete_custom_resource_definition(f"widgets.{group}")
    # Deleting the CRD deleted its objects.
    assert kube.server.list(group, "v1", "widgets") == []


def test_dynamic_client_discovers_and_patches(kube: KubeTestEnv) -> None:
    dyn = dynamic.DynamicClient(kube.api_client)
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    deployments.create(body=deployment_manifest("web", replicas=1), namespace=kube.namespace)
    deployments.patch(
        name="web",
        namespace=kube.namespace,
        body={"spec": {"replicas": 2}},
        content_type="application/merge-patch+json",
    )
    assert deployments.get(name="web", namespace=kube.namespace).spec.replicas == 2


def test_watch_streams_events(kube: KubeTestEnv) -> None:
    kube.core.create_namespaced_config_map(kube.namespace, {"metadata": {"name": "a"}})
    start = kube.core.list_namespaced_config_map(kube.namespace).metadata.resource_version
    kube.core.patch_namespaced_config_map("a", kube.namespace, {"data": {"k": "v"}})
    kube.core.delete_namespaced_config_map("a", kube.namespace)
    events = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(
            kube.core.list_namespaced_config_map,
            kube.namespace,
            resource_version=start,
            timeout_seconds=1,
        )
    ]
    assert events == [("MODIFIED", "a"), ("DELETED", "a")]


# --------------------------------------------------------------------------------------- kubeconfig and audit


def test_kubeconfig_loads_with_the_stock_loader(kube: KubeTestEnv) -> None:
    _, active = config.list_kube_config_contexts(config_file=str(kube.kubeconfig))
    assert active["context"]["cluster"] == "sandbox"
    api_client = config.new_client_from_config(config_file=str(kube.kubeconfig))
    try:
        version = client.VersionApi(api_client).get_code()
        assert version.major == "1"
        names = {n.metadata.name for n in client.CoreV1Api(api_client).list_node().items}
        assert names >= NODES
        namespaces = {n.metadata.name for n in client.CoreV1Api(api_client).list_namespace().items}
        assert namespaces >= {"default", "kube-system", kube.namespace}
    finally:
        api_client.close()


def test_audit_records_each_request(kube: KubeTestEnv) -> None:
    kube.apps.create_namespaced_deployment(kube.namespace, deployment_manifest("web"))
    kube.apps.read_namespaced_deployment("web", kube.namespace)
    kube.apps.list_namespaced_deployment(kube.namespace)
    kube.apps.patch_namespaced_deployment_scale("web", kube.namespace, {"spec": {"replicas": 1}})
    with pytest.raises(ApiException):
        kube.apps.read_namespaced_deployment("missing", kube.namespace)
    kube.apps.delete_namespaced_deployment("web", kube.namespace)

    seen = [(e["verb"], e["resource"], e["subresource"], e["name"], e["code"]) for e in kube.audit()]
    assert seen == [
        ("create", "deployments", None, None, 201),
        ("get", "deployments", None, "web", 200),
        ("list", "deployments", None, None, 200),
        ("patch", "deployments", "scale", "web", 200),
        ("get", "deployments", None, "missing", 404),
        ("delete", "deployments", None, "web", 200),
    ]
    assert all(e["group"] == "apps" and e["namespace"] == kube.namespace for e in kube.audit())

    # The same log over HTTP, and clearing it.
    with urllib.request.urlopen(f"{kube.server.url}/_sandbox/audit") as resp:
        over_http = json.load(resp)
    assert [e["seq"] for e in over_http][-6:] == [e["seq"] for e in kube.audit()]
    urllib.request.urlopen(urllib.request.Request(f"{kube.server.url}/_sandbox/audit", method="DELETE")).close()
    assert kube.server.audit() == []


# --------------------------------------------------------------------------------------------- pod runtime


class ScriptedRuntime:
    """A PodRuntime whose pods are ready or dead when the test says so."""

    def __init__(self) -> None:
        self.ready_names: set[str] = set()
        self.dead_names: set[str] = set()
        self.stopped: list[str] = []

    def start(self, pod: dict[str, Any]) -> dict[str, Any]:
        return {"annotations": {"sandbox.test/started": "yes"}, "status": {"hostIP": "127.0.0.2"}}

    def stop(self, pod: dict[str, Any]) -> None:
        self.stopped.append(pod["metadata"]["name"])

    def ready(self, pod: dict[str, Any]) -> bool:
        return pod["metadata"]["name"] in self.ready_names

    def alive(self, pod: dict[str, Any]) -> bool:
        return pod["metadata"]["name"] not in self.dead_names


def test_runtime_paces_a_rolling_update_and_restarts_dead_pods(tmp_path: Path) -> None:
    runtime = ScriptedRuntime()
    with ApiServer(runtime=runtime, controller=False) as server:
        api_client = config.new_client_from_config(config_file=str(server.write_kubeconfig(tmp_path / "kc")))
        apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)

        def pods() -> tuple[list[client.V1Pod], list[client.V1Pod]]:
            items = core.list_namespaced_pod("default", label_selector="app=web").items
            images: dict[str, list[client.V1Pod]] = {"demo:1": [], "demo:2": []}
            for pod in items:
                images[pod.spec.containers[0].image].append(pod)
            return images["demo:1"], images["demo:2"]

        def make_ready(items: list[client.V1Pod]) -> None:
            runtime.ready_names.update(p.metadata.name for p in items)

        apps.create_namespaced_deployment("default", deployment_manifest("web"))
        server.reconcile_once()
        old, _ = pods()
        assert len(old) == 3
        assert all(p.metadata.annotations["sandbox.test/started"] == "yes" for p in old)
        assert {p.status.host_ip for p in old} == {"127.0.0.2"}
        assert not any(_ready(p) for p in old)
        status = apps.read_namespaced_deployment("web", "default").status
        assert status.ready_replicas == 0
        assert {c.type: c.status for c in status.conditions}["Available"] == "False"

        make_ready(old)
        server.reconcile_once()
        assert apps.read_namespaced_deployment("web", "default").status.available_replicas == 3

        # maxSurge 25% of 3 rounds up to 1 and maxUnavailable rounds down to 0: one pod at a time.
        apps.patch_namespaced_deployment(
            "web", "default", {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "demo:2"}]}}}},
        )
        server.reconcile_once()
        old, new = pods()
        assert (len(old), len(new)) == (3, 1)
        make_ready(new)
        server.reconcile_once()
        old, new = pods()
        assert (len(old), len(new)) == (2, 2)
        for _ in range(3):
            make_ready(new)
            server.reconcile_once()
            old, new = pods()
        assert (len(old), len(new)) == (0, 3)
        assert set(runtime.stopped) >= set(runtime.ready_names) - {p.metadata.name for p in new}
        assert apps.read_namespaced_deployment("web", "default").status.updated_replicas == 3

        # A pod the runtime reports dead is stopped and replaced.
        victim = new[0].metadata.name
        runtime.dead_names.add(victim)
        server.reconcile_once()
        _, new = pods()
        assert len(new) == 3
        assert victim not in {p.metadata.name for p in new}
        assert victim in runtime.stopped
        api_client.close()


def test_a_client_that_drops_its_connection_leaves_no_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    # A worker SIGKILLed mid-request resets its connection: a real API server carries on without a word; the
    # sandbox printed a socketserver traceback into the reliability report's output.
    import socket
    import struct
    import time

    server = ApiServer().start()
    try:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n")  # never finished
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        time.sleep(0.5)
        with urllib.request.urlopen(f"{server.url}/version", timeout=5) as answer:  # still serving
            assert answer.status == 200
    finally:
        server.stop()
    assert "Traceback" not in capfd.readouterr().err
