"""Protected namespaces: no canary, flag ramp or experiment in kube-system & co. or the orchestrator's own
namespace, whatever the spec and the policy say; the refusal comes before any rail reads the cluster."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.chaos.safety import own_namespace
from orchestrator.rails.models import RailsRequest, RailStatus
from orchestrator.specs.flags import FlagRamp
from tests.fixtures_kube import KubeTestEnv
from tests.rails.conftest import canary_spec, policy
from tests.rails.test_exclusion import experiment

pytestmark = pytest.mark.timeout(60)


def ramp(namespace: str | None) -> FlagRamp:
    return FlagRamp.model_validate({
        "kind": "FlagRamp", "metadata": {"name": "r"},
        "spec": {"provider": {"type": "flagd", "name": "main"}, "flag": "f", "stages": [{"percent": 100}],
                 "target": {"namespace": namespace, "app": "web"} if namespace else {}},
    })


@pytest.mark.parametrize(
    ("kind", "namespace"),
    [("canary", "kube-system"), ("canary", "orchestrator"), ("flag", "kube-public"), ("flag", "orchestrator"),
     ("chaos", "kube-node-lease"), ("chaos", "orchestrator")],
)
async def test_every_kind_is_refused_in_a_protected_namespace(
    make_rails: Any, kube: KubeTestEnv, kind: str, namespace: str
) -> None:
    spec: Any = (canary_spec(namespace, "web") if kind == "canary" else ramp(namespace) if kind == "flag"
                 else experiment(namespace))
    # "*": even a policy allowing chaos anywhere does not reach these namespaces.
    rails = make_rails(policy(namespaces={"allowed": ["*"]}))
    report = await rails.check(RailsRequest(kind=kind, spec=spec))
    assert report.refused
    assert report.reason.startswith(f"protected-namespace: namespace {namespace} is protected"), report.reason
    # Nothing else looked: a refused namespace is not read (the worker may hold no rights there).
    assert [v.rail for v in report.verdicts] == ["protected-namespace"]
    assert [e for e in kube.audit(all_namespaces=True) if e.get("namespace") == namespace] == []


async def test_an_ordinary_namespace_passes_the_rail(make_rails: Any, kube: KubeTestEnv) -> None:
    report = await make_rails().check(RailsRequest(kind="canary", spec=canary_spec(kube.namespace, "web")))
    first = report.verdicts[0]
    assert first.rail == "protected-namespace" and first.status is RailStatus.OK, first
    assert len(report.verdicts) > 1


async def test_a_ramp_naming_no_namespace_is_not_judged_by_it(make_rails: Any) -> None:
    report = await make_rails().check(RailsRequest(kind="flag", spec=ramp(None)))
    first = report.verdicts[0]
    assert first.rail == "protected-namespace" and first.status is RailStatus.SKIPPED, first


def test_the_own_namespace_comes_from_the_setting_else_the_pod() -> None:
    assert own_namespace({"ORCHESTRATOR_NAMESPACE": "ops"}) == "ops"
    # Outside a pod (no service account namespace file) and without the setting: the chart's default name.
    assert own_namespace({}) == "orchestrator"
