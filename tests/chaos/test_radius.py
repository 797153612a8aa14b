"""The blast radius is computed on what a fault really touches: every pod a drain evicts, per workload, ready pods.

Plans are made against the sandbox API server through the official client, exactly as the ``chaos.plan``
activity makes them; nothing here injects, and a refusal or a skipped round writes nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from orchestrator.chaos.models import ALLOW_ANNOTATION, Plan
from orchestrator.chaos.objects import Objects
from orchestrator.chaos.planning import plan_fault
from orchestrator.chaos.safety import ChaosPolicy
from orchestrator.chaos.targets import resolve
from orchestrator.errors import RefusedError
from orchestrator.specs.chaos import ChaosExperiment
from tests.chaos.conftest import deploy, experiment, now, writes
from tests.fixtures_kube import KubeTestEnv, deployment_manifest

pytestmark = pytest.mark.timeout(60)

KILL = {"type": "pod-kill"}
DRAIN = {"type": "node-drain", "evictionTimeout": "1s"}


def _plan(objects: Objects, policy: ChaosPolicy, exp: ChaosExperiment, round_: int = 0) -> Plan:
    return plan_fault(objects=objects, policy=policy, experiment=exp, run="r-1", now=now(), round_=round_)


def _with(exp: ChaosExperiment, **target: Any) -> ChaosExperiment:
    return exp.model_copy(update={"spec": exp.spec.model_copy(update={
        "target": exp.spec.target.model_copy(update=target)})})


def _blast(exp: ChaosExperiment, **radius: Any) -> ChaosExperiment:
    from orchestrator.specs.chaos import BlastRadius

    merged = {**exp.spec.blast_radius.model_dump(by_alias=True), **radius}
    return exp.model_copy(update={"spec": exp.spec.model_copy(update={
        "blast_radius": BlastRadius.model_validate(merged)})})


@contextmanager
def _namespace(kube: KubeTestEnv, annotations: dict[str, str] | None = None) -> Iterator[str]:
    name = f"o-{secrets.token_hex(4)}"
    kube.core.create_namespace({"metadata": {"name": name, "annotations": annotations or {}}})
    try:
        yield name
    finally:
        kube.core.delete_namespace(name)


def _not_ready(kube: KubeTestEnv, *names: str) -> None:
    """What a kubelet reports for a pod whose readiness probe fails (call with the controller paused)."""
    for name in names:
        kube.server.patch("", "v1", "pods", kube.namespace, name, {"status": {"conditions": [
            {"type": "Ready", "status": "False"}, {"type": "ContainersReady", "status": "False"}]}},
            subresource="status")


# ---- 1. a node drain evicts every pod on the node, in every namespace ----------------------------------------


def _drain_setup(kube: KubeTestEnv, other_ns: str) -> tuple[str, list[str]]:
    """web (4 pods) here, other (2 pods, one per node) in ``other_ns``; a drained node and its foreign pods."""
    deploy(kube, replicas=4, max_unavailable="50%")
    body = deployment_manifest("other", replicas=2)
    body["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}
    kube.apps.create_namespaced_deployment(other_ns, body)
    kube.settle(4)
    node = sorted({p["spec"]["nodeName"] for p in kube.pods("app=web")})[0]
    kube.core.patch_node(node, {"metadata": {"annotations": {ALLOW_ANNOTATION: "true"}}})
    foreign = sorted(p["metadata"]["name"] for p in kube.server.list("", "v1", "pods", other_ns)
                     if p["spec"].get("nodeName") == node)
    assert foreign, "the other namespace has no pod on the drained node"
    return node, foreign


def _seed_on(objects: Objects, exp: ChaosExperiment, node: str) -> ChaosExperiment:
    for seed in range(100):
        if resolve(objects, exp.spec.target, seed).chosen[0].node == node:
            return _with(exp, seed=seed)
    raise AssertionError("no seed picks a pod on the node")


def _unannotate(kube: KubeTestEnv, node: str) -> None:
    kube.core.patch_node(node, {"metadata": {"annotations": {ALLOW_ANNOTATION: None}}})


def test_drain_is_refused_naming_the_pods_of_a_namespace_that_is_not_allowed(
        kube: KubeTestEnv, objects: Objects, policy: ChaosPolicy) -> None:
    with _namespace(kube) as other_ns:
        node, foreign = _drain_setup(kube, other_ns)
        try:
            exp = _seed_on(objects, experiment(kube.namespace, DRAIN, max_percent=100), node)
            kube._audit_start = kube.server.audit_log.last_seq
            with pytest.raises(RefusedError) as refused:
                _plan(objects, policy, exp)
            message = str(refused.value)
            for name in foreign:
                assert f"{other_ns}/{name} (namespace not allowed)" in message
            assert "blastRadius.disturb" in message
            assert writes(kube, all_namespaces=True) == []
            # Allowed but not opted in is still refused; allowed and opted in passes.
            both = ChaosPolicy(allowed_namespaces=frozenset({kube.namespace, other_ns}))
            with pytest.raises(RefusedError, match=f"{other_ns}/{foreign[0]} \\(not opted in\\)"):
                _plan(objects, both, exp)
            kube.core.patch_namespace(other_ns, {"metadata": {"annotations": {ALLOW_ANNOTATION: "true"}}})
            plan = _plan(objects, both, exp)
            assert plan.skipped is None
            assert {f"{other_ns}/{n}" for n in foreign} <= {str(p) for p in plan.hits}
        finally:
            _unannotate(kube, node)


def test_drain_passes_when_the_experiment_declares_the_node_and_namespaces_it_disturbs(
        kube: KubeTestEnv, objects: Objects, policy: ChaosPolicy) -> None:
    with _namespace(kube) as other_ns:
        node, foreign = _drain_setup(kube, other_ns)
        try:
            exp = _seed_on(objects, experiment(kube.namespace, DRAIN, max_percent=100), node)
            # Declaring another node does not cover this one.
            wrong = _blast(exp, disturb={"nodes": ["elsewhere"], "namespaces": [other_ns]})
            with pytest.raises(RefusedError, match="namespace not allowed"):
                _plan(objects, policy, wrong)
            declared = _blast(exp, disturb={"nodes": [node], "namespaces": [kube.namespace, other_ns]})
            plan = _plan(objects, policy, declared)
            evicted = {str(p) for p in plan.hits}
            on_node = {f"{kube.namespace}/{p['metadata']['name']}" for p in kube.pods("app=web")
                       if p["spec"]["nodeName"] == node}
            assert evicted >= on_node | {f"{other_ns}/{n}" for n in foreign}
            # The plan's text (what --dry-run prints) names every pod the drain would evict.
            text = plan.describe()
            for pod in evicted:
                assert pod in text
            assert {f"Pod {p}" for p in evicted} <= {str(t) for t in plan.touches}
            # The other namespace's workload is held to its floor as well.
            assert any(f.key == f"Deployment {other_ns}/other" for f in plan.floors)
        finally:
            _unannotate(kube, node)


# ---- 2. a ready-pod floor per workload, counting only ready pods ---------------------------------------------


def test_floor_counts_only_ready_pods_and_a_crossing_round_is_skipped(kube: KubeTestEnv, objects: Objects,
                                                                     policy: ChaosPolicy) -> None:
    deploy(kube, replicas=4)  # the default strategy: maxUnavailable 25% -> at least 3 ready
    exp = experiment(kube.namespace, KILL)
    plan = _plan(objects, policy, exp)
    assert plan.skipped is None and plan.entries
    [floor] = plan.floors
    assert (floor.ready, floor.floor, floor.hit) == (4, 3, 1)
    pods = sorted(p["metadata"]["name"] for p in kube.pods("app=web"))
    with kube.server.controller_paused():
        # One pod is still running but not ready (a replacement coming up): the workload is at its floor.
        _not_ready(kube, pods[0])
        kube._audit_start = kube.server.audit_log.last_seq
        for round_ in (0, 3):
            plan = _plan(objects, policy, exp, round_=round_)
            assert plan.skipped is not None and plan.entries == [] and plan.targets.chosen == []
            assert "below its floor of 3" in plan.skipped and "3 of 4 ready" in plan.skipped
            assert plan.floors[0].ready == 3
            # The pod that is not ready is never picked, nor counted in the radius.
            assert pods[0] not in {p.name for p in plan.hits} and plan.total_pods == 3
        assert writes(kube, all_namespaces=True) == []


def test_floor_is_the_strictest_of_strategy_budget_and_experiment(kube: KubeTestEnv, objects: Objects,
                                                                 policy: ChaosPolicy) -> None:
    deploy(kube, replicas=6, max_unavailable="50%")  # strategy: 6 - 3 = 3
    exp = experiment(kube.namespace, KILL)
    assert _plan(objects, policy, exp).floors[0].floor == 3
    kube.policy.create_namespaced_pod_disruption_budget(kube.namespace, {
        "metadata": {"name": "web"}, "spec": {"minAvailable": "70%", "selector": {"matchLabels": {"app": "web"}}}})
    floor = _plan(objects, policy, exp).floors[0]
    assert floor.floor == 5  # ceil(6 * 0.7)
    assert any("PodDisruptionBudget web minAvailable 70% -> 5" in s for s in floor.sources)
    strict = _blast(exp, maxUnavailable=0)
    plan = _plan(objects, policy, strict)
    assert plan.floors[0].floor == 6 and plan.skipped is not None
    assert "experiment maxUnavailable 0 -> 6" in plan.floors[0].sources


def test_a_scale_down_is_held_to_percentages_but_not_to_floors(kube: KubeTestEnv, objects: Objects,
                                                               policy: ChaosPolicy) -> None:
    deploy(kube, replicas=4)
    exp = experiment(kube.namespace, {"type": "scale-down", "replicas": 1}, mode="all", max_percent=75)
    plan = _plan(objects, policy, exp)
    assert plan.skipped is None and len(plan.hits) == 3 and not plan.disrupts


# ---- 3. percentages and floors per workload, not over the whole selector --------------------------------------


def _two_workloads(kube: KubeTestEnv) -> None:
    deploy(kube, "big", replicas=8, labels={"tier": "shop"}, max_unavailable="50%")
    deploy(kube, "small", replicas=2, labels={"tier": "shop"}, max_unavailable=1)


def test_a_small_workload_inside_a_large_selector_is_not_wiped_out(kube: KubeTestEnv, objects: Objects,
                                                                   policy: ChaosPolicy) -> None:
    _two_workloads(kube)
    exp = _with(experiment(kube.namespace, KILL, mode={"type": "fixed", "value": 2}), selector={"tier": "shop"})
    # 2 of the 10 matching pods is 20 %: within the limit over the selector, yet a seed that picks both pods of
    # "small" would empty it.
    seed = next(s for s in range(500)
                if {p.owner for p in resolve(objects, exp.spec.target, s).chosen} == {"small"})
    with pytest.raises(RefusedError, match=r"2 of the 2 ready pods of Deployment t-\w+/small \(100%\)"):
        _plan(objects, policy, _with(exp, seed=seed))


def test_percent_mode_is_applied_per_workload(kube: KubeTestEnv, objects: Objects, policy: ChaosPolicy) -> None:
    _two_workloads(kube)
    exp = _with(experiment(kube.namespace, KILL, mode={"type": "percent", "value": 25}), selector={"tier": "shop"})
    for seed in range(20):
        plan = _plan(objects, policy, _with(exp, seed=seed))
        owners = sorted(p.owner or "" for p in plan.targets.chosen)
        assert owners == ["big", "big", "small"]  # 25 % of 8, and at least one of 2
        assert plan.skipped is None
        assert {f.name: f.hit for f in plan.floors} == {"big": 2, "small": 1}
