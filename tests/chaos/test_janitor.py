"""The janitor reverts expired faults from the marks on the objects alone: no workflow is involved."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrator.chaos import ledger
from orchestrator.chaos.faults import injector_for
from orchestrator.chaos.janitor import run_janitor, sweep
from orchestrator.chaos.models import EXPERIMENT_LABEL
from orchestrator.chaos.objects import Objects
from orchestrator.chaos.planning import plan_fault
from orchestrator.chaos.safety import ChaosPolicy
from orchestrator.config import Settings
from tests.chaos.conftest import deploy, experiment, now
from tests.fixtures_kube import KubeTestEnv

pytestmark = pytest.mark.timeout(60)


def _inject(objects: Objects, policy: ChaosPolicy, namespace: str, app: str, run: str, replicas: int) -> None:
    exp = experiment(namespace, {"type": "scale-down", "replicas": replicas}, app=app, mode="all", max_percent=100)
    plan = plan_fault(objects=objects, policy=policy, experiment=exp, run=run, now=now())
    for entry in plan.entries:
        injector_for(entry.fault, objects).inject(ledger.record(objects, entry))


def test_expired_fault_is_reverted_and_a_live_one_is_left(kube: KubeTestEnv, objects: Objects,
                                                          policy: ChaosPolicy) -> None:
    deploy(kube, "web", replicas=4)
    deploy(kube, "api", replicas=3)
    _inject(objects, policy, kube.namespace, "web", "orphan-1", 1)
    assert kube.apps.read_namespaced_deployment("web", kube.namespace).spec.replicas == 1
    # Planned "now": expiry is minutes away. A janitor running now leaves it alone...
    report = sweep(objects)
    assert any("orphan-1" in p for p in report.pending)
    assert kube.apps.read_namespaced_deployment("web", kube.namespace).spec.replicas == 1
    # ...and once the expiry has passed, reverts it with no workflow anywhere.
    _inject(objects, policy, kube.namespace, "api", "young-1", 1)
    later = now() + timedelta(minutes=30)
    report = sweep(objects, later, runs={"orphan-1", "young-1"})
    assert len(report.reverted) == 2
    web = kube.apps.read_namespaced_deployment("web", kube.namespace)
    assert web.spec.replicas == 4
    assert EXPERIMENT_LABEL not in (web.metadata.labels or {})
    assert kube.apps.read_namespaced_deployment("api", kube.namespace).spec.replicas == 3
    assert sweep(objects, later, runs={"orphan-1", "young-1"}).reverted == []  # nothing left


def test_force_reverts_before_expiry_and_dry_run_writes_nothing(kube: KubeTestEnv, objects: Objects,
                                                                policy: ChaosPolicy) -> None:
    deploy(kube, "web", replicas=4)
    _inject(objects, policy, kube.namespace, "web", "forced-1", 2)
    kube._audit_start = kube.server.audit_log.last_seq
    report = sweep(objects, force=True, runs={"forced-1"}, dry_run=True)
    assert report.reverted and "would revert" in report.reverted[0]
    assert [e for e in kube.audit() if e["verb"] not in ("get", "list")] == []
    sweep(objects, force=True, runs={"forced-1"})
    assert kube.apps.read_namespaced_deployment("web", kube.namespace).spec.replicas == 4


def test_worker_entry_point(kube: KubeTestEnv, objects: Objects, policy: ChaosPolicy,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    deploy(kube, "web", replicas=4)
    _inject(objects, policy, kube.namespace, "web", "entry-1", 1)
    # As the worker is configured in production: it looks where faults may be, the allowed namespaces.
    monkeypatch.setenv("ORCHESTRATOR_CHAOS_NAMESPACES", kube.namespace)
    lines = run_janitor(Settings(kubeconfig=str(kube.kubeconfig)), now() + timedelta(hours=1))
    assert any("entry-1" in line and "restored" in line for line in lines)
    assert kube.apps.read_namespaced_deployment("web", kube.namespace).spec.replicas == 4
