"""Each fault injects and reverts exactly what it touched: checked in the sandbox API server's audit log
and by comparing the objects before and after."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.chaos import ledger
from orchestrator.chaos.faults import injector_for
from orchestrator.chaos.models import EXPERIMENT_LABEL, LEDGER_ANNOTATION, Plan
from orchestrator.chaos.objects import Objects
from orchestrator.chaos.planning import plan_fault
from orchestrator.chaos.safety import ChaosPolicy
from orchestrator.errors import RefusedError
from orchestrator.specs.chaos import ChaosExperiment
from tests.chaos.conftest import deploy, experiment, now, writes
from tests.fixtures_kube import KubeTestEnv

pytestmark = pytest.mark.timeout(60)


def _essential(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    # An emptied map and an absent one are the same object (the real API server omits empty maps).
    return {"labels": meta.get("labels") or None, "annotations": meta.get("annotations") or None,
            "spec": obj.get("spec")}


def _run(objects: Objects, policy: ChaosPolicy, exp: ChaosExperiment, run: str = "exp-run1") -> Plan:
    plan = plan_fault(objects=objects, policy=policy, experiment=exp, run=run, now=now())
    injector = injector_for(exp.spec.fault.type, objects)
    for entry in plan.entries:
        injector.inject(ledger.record(objects, entry))
    return plan


def _revert(objects: Objects, plan: Plan) -> None:
    for entry in plan.entries:
        injector_for(entry.fault, objects).revert(entry)


def test_pod_kill_deletes_only_the_chosen_pods_and_unmarks(kube: KubeTestEnv, objects: Objects,
                                                         policy: ChaosPolicy) -> None:
    deploy(kube, replicas=4, max_unavailable="50%")  # two of four may be down at once
    before = objects.get(ref_dep(kube))
    start = kube.server.audit_log.last_seq
    kube._audit_start = start
    plan = _run(objects, policy, experiment(kube.namespace, {"type": "pod-kill"}, mode={"type": "fixed", "value": 2}))
    chosen = sorted(p.name for p in plan.targets.chosen)
    assert len(chosen) == 2
    marked = objects.get(ref_dep(kube))
    assert marked["metadata"]["labels"][EXPERIMENT_LABEL] == "exp-run1"
    assert LEDGER_ANNOTATION in marked["metadata"]["annotations"]
    _revert(objects, plan)
    assert writes(kube) == [
        ("patch", "deployments", None, "web"),
        *[("delete", "pods", None, name) for name in chosen],
        ("patch", "deployments", None, "web"),
    ]
    assert _essential(objects.get(ref_dep(kube))) == _essential(before)
    remaining = {p["metadata"]["name"] for p in kube.pods("app=web")}
    assert not remaining & set(chosen)


def test_same_seed_same_pods(kube: KubeTestEnv, objects: Objects, policy: ChaosPolicy) -> None:
    deploy(kube, replicas=5)
    exp = experiment(kube.namespace, {"type": "pod-kill"}, mode={"type": "fixed", "value": 2}, seed=42)
    a = plan_fault(objects=objects, policy=policy, experiment=exp, run="r1", now=now())
    b = plan_fault(objects=objects, policy=policy, experiment=exp, run="r2", now=now())
    assert [p.name for p in a.targets.chosen] == [p.name for p in b.targets.chosen]


def test_scale_down_restores_the_recorded_replicas(kube: KubeTestEnv, objects: Objects,
                                                   policy: ChaosPolicy) -> None:
    deploy(kube, replicas=4)
    before = objects.get(ref_dep(kube))
    kube._audit_start = kube.server.audit_log.last_seq
    plan = _run(objects, policy, experiment(kube.namespace, {"type": "scale-down", "replicas": 1},
                                            mode="all", max_percent=100))
    assert objects.get(ref_dep(kube))["spec"]["replicas"] == 1
    # Recording again (a retried activity) keeps the first recorded count, not the faulted one.
    again = ledger.record(objects, plan.entries[0])
    assert again.revert == {"replicas": 4}
    _revert(objects, plan)
    _revert(objects, plan)  # idempotent
    after = objects.get(ref_dep(kube))
    assert _essential(after) == _essential(before)
    assert [w for w in writes(kube) if w[1] == "deployments"] == [("patch", "deployments", None, "web")] * 3
    assert all(w[1] == "deployments" for w in writes(kube))


VS_ROUTES = [
    {"name": "primary", "route": [{"destination": {"host": "web", "subset": "v1"}, "weight": 100}]},
    {"name": "other", "route": [{"destination": {"host": "web-admin"}}], "timeout": "3s"},
]


def _virtual_service(kube: KubeTestEnv) -> dict[str, Any]:
    body = {
        "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
        "metadata": {"name": "web", "namespace": kube.namespace,
                     "annotations": {"chaos.orchestrator.dev/allow": "true"}},
        "spec": {"hosts": ["web"], "http": VS_ROUTES},
    }
    return dict(kube.custom.create_namespaced_custom_object(
        "networking.istio.io", "v1beta1", kube.namespace, "virtualservices", body))


def test_http_fault_sets_the_fault_and_restores_the_recorded_routes(kube: KubeTestEnv, objects: Objects,
                                                                    policy: ChaosPolicy) -> None:
    deploy(kube, replicas=4)
    _virtual_service(kube)
    vs_ref = ref_vs(kube)
    before = objects.get(vs_ref)
    kube._audit_start = kube.server.audit_log.last_seq
    fault = {"type": "http-fault", "virtualService": "web", "route": "primary",
             "delay": {"percent": 50, "fixedDelay": "1500ms"}, "abort": {"percent": 10, "httpStatus": 503}}
    plan = _run(objects, policy, experiment(kube.namespace, fault))
    http = objects.get(vs_ref)["spec"]["http"]
    assert http[0]["fault"] == {"delay": {"percentage": {"value": 50.0}, "fixedDelay": "1.5s"},
                                "abort": {"percentage": {"value": 10.0}, "httpStatus": 503}}
    assert "fault" not in http[1]
    _revert(objects, plan)
    assert _essential(objects.get(vs_ref)) == _essential(before)
    assert {(w[0], w[1]) for w in writes(kube)} == {("patch", "virtualservices")}
    assert len(writes(kube)) == 3  # mark, inject, restore-and-unmark


def test_node_drain_cordons_evicts_through_pdbs_and_uncordons(kube: KubeTestEnv, objects: Objects,
                                                              policy: ChaosPolicy) -> None:
    deploy(kube, replicas=4, max_unavailable="50%")
    node_name = sorted({p["spec"]["nodeName"] for p in kube.pods("app=web")})[0]
    kube.core.patch_node(node_name, {"metadata": {"annotations": {"chaos.orchestrator.dev/allow": "true"}}})
    on_node = sorted(p["metadata"]["name"] for p in kube.pods("app=web") if p["spec"]["nodeName"] == node_name)
    exp = experiment(kube.namespace, {"type": "node-drain", "evictionTimeout": "1s"}, max_percent=100)
    # Pick a pod on that node so the drain targets it.
    exp = exp.model_copy(update={"spec": exp.spec.model_copy(update={"target": exp.spec.target.model_copy(
        update={"seed": _seed_for(kube, objects, policy, exp, node_name)})})})
    kube._audit_start = kube.server.audit_log.last_seq
    try:
        plan = plan_fault(objects=objects, policy=policy, experiment=exp, run="exp-run1", now=now())
        assert plan.skipped is None
        # A PDB that appears after planning and allows no disruption at all: the drain reads the floors again
        # right before each eviction and leaves the pods in place without asking.
        kube.policy.create_namespaced_pod_disruption_budget(kube.namespace, {
            "metadata": {"name": "web"}, "spec": {"minAvailable": 4, "selector": {"matchLabels": {"app": "web"}}}})
        kube.settle(2)
        done = [injector_for(entry.fault, objects).inject(ledger.record(objects, entry)) for entry in plan.entries]
        node = kube.core.read_node(node_name)
        assert node.spec.unschedulable is True
        evictions = [e for e in kube.audit(all_namespaces=True) if e.get("subresource") == "eviction"
                     and e.get("namespace") == kube.namespace]
        assert evictions == []
        assert all(f"{kube.namespace}/{name} (Deployment {kube.namespace}/web would keep 3 ready pod(s), below its "
                   "floor of 4)" in done[0] for name in on_node), done
        assert sorted(p["metadata"]["name"] for p in kube.pods("app=web")
                      if p["spec"]["nodeName"] == node_name) == on_node
        _revert(objects, plan)
        node = kube.core.read_node(node_name)
        assert not node.spec.unschedulable
        assert EXPERIMENT_LABEL not in (node.metadata.labels or {})
    finally:
        kube.core.patch_node(node_name, {"spec": {"unschedulable": None}, "metadata": {
            "annotations": {"chaos.orchestrator.dev/allow": None}, "labels": {EXPERIMENT_LABEL: None}}})


def _seed_for(kube: KubeTestEnv, objects: Objects, policy: ChaosPolicy, exp: ChaosExperiment, node: str) -> int:
    for seed in range(50):
        e = exp.model_copy(update={"spec": exp.spec.model_copy(update={
            "target": exp.spec.target.model_copy(update={"seed": seed})})})
        from orchestrator.chaos.targets import resolve

        if resolve(objects, e.spec.target, seed).chosen[0].node == node:
            return seed
    raise AssertionError("no seed picks a pod on the node")


NETWORK = {"type": "network-chaos", "action": "delay", "delay": {"latency": "100ms"}}


def test_chaos_mesh_refuses_without_the_crds(kube: KubeTestEnv, objects: Objects, policy: ChaosPolicy) -> None:
    deploy(kube, replicas=4)
    kube._audit_start = kube.server.audit_log.last_seq
    with pytest.raises(RefusedError, match=r"Chaos Mesh.*networkchaos\.chaos-mesh\.org"):
        plan_fault(objects=objects, policy=policy, experiment=experiment(kube.namespace, NETWORK), run="r",
                   now=now())
    assert writes(kube, all_namespaces=True) == []


@pytest.fixture
def chaos_mesh_crds(kube: KubeTestEnv) -> Any:
    from kubernetes import client

    ext = client.ApiextensionsV1Api(kube.api_client)
    names = []
    for plural, kind in (("networkchaos", "NetworkChaos"), ("stresschaos", "StressChaos")):
        name = f"{plural}.chaos-mesh.org"
        ext.create_custom_resource_definition({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {"group": "chaos-mesh.org", "scope": "Namespaced",
                     "names": {"plural": plural, "kind": kind, "singular": plural},
                     "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {"type": "object",
                                                                  "x-kubernetes-preserve-unknown-fields": True}}}]},
        })
        names.append(name)
    yield
    for name in names:
        ext.delete_custom_resource_definition(name)


@pytest.mark.usefixtures("chaos_mesh_crds")
def test_chaos_mesh_creates_a_marked_cr_and_deletes_it(kube: KubeTestEnv, objects: Objects,
                                                      policy: ChaosPolicy) -> None:
    deploy(kube, replicas=4)
    kube._audit_start = kube.server.audit_log.last_seq
    plan = _run(objects, policy, experiment(kube.namespace, NETWORK, mode={"type": "fixed", "value": 2}))
    cr = kube.custom.get_namespaced_custom_object("chaos-mesh.org", "v1alpha1", kube.namespace, "networkchaos",
                                                  "exp-run1")
    assert cr["metadata"]["labels"][EXPERIMENT_LABEL] == "exp-run1"
    assert cr["spec"]["selector"] == {"pods": {kube.namespace: sorted(p.name for p in plan.targets.chosen)}}
    assert cr["spec"]["delay"]["latency"] == "100ms" and cr["spec"]["mode"] == "all"
    _run_again = injector_for("network-chaos", objects).inject(plan.entries[0])  # idempotent
    assert "already" in _run_again
    _revert(objects, plan)
    assert writes(kube) == [("create", "networkchaos", None, None), ("delete", "networkchaos", None, "exp-run1")]


def ref_dep(kube: KubeTestEnv) -> Any:
    from orchestrator.chaos.objects import DEPLOYMENT, ref

    return ref(DEPLOYMENT, "web", kube.namespace)


def ref_vs(kube: KubeTestEnv) -> Any:
    from orchestrator.chaos.objects import VIRTUAL_SERVICE, ref

    return ref(VIRTUAL_SERVICE, "web", kube.namespace)
