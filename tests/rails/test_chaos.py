"""Every policy rail right before an injection: the chaos planner's plan, then ``chaos_preflight`` on it (what the
plan activity does), judged at the workflow's clock; the chaos rails are the same functions under both names."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.client import Client

from orchestrator.chaos.models import ALLOW_ANNOTATION
from orchestrator.chaos.objects import Objects
from orchestrator.chaos.planning import prepare
from orchestrator.chaos.safety import ChaosPolicy, check_namespace
from orchestrator.errors import RefusedError
from orchestrator.gates.prometheus import PrometheusProvider
from orchestrator.rails.active import TemporalActiveWork, canary_workflow_id
from orchestrator.rails.chaos import check_namespace as moved
from orchestrator.rails.run import chaos_preflight
from orchestrator.specs.policy import RailsPolicy
from tests.fixtures_kube import KubeTestEnv, deployment_manifest
from tests.rails.conftest import policy
from tests.rails.test_exclusion import experiment

pytestmark = pytest.mark.timeout(90)

SATURDAY_NOON = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
WEDNESDAY_TEN = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)  # 10:00 in Berlin
OFFICE = {"timezone": "Europe/Berlin", "start": "09:00", "end": "17:00"}


def test_the_old_import_path_is_the_same_function() -> None:
    assert check_namespace is moved


async def plan(kube: KubeTestEnv, metrics: PrometheusProvider, client: Client, rails: RailsPolicy,
               now: datetime) -> Any:
    chaos_policy = ChaosPolicy(allowed_namespaces=frozenset({kube.namespace}))
    exp, wid, active = experiment(kube.namespace), f"chaos-{kube.namespace}-kill-web", TemporalActiveWork(client)
    planned = await prepare(
        objects=Objects(kube.api_client), metrics=metrics, active=active, policy=chaos_policy, experiment=exp,
        run="r1", now=now, workflow_id=wid, canary_id=canary_workflow_id)
    await chaos_preflight(api_client=kube.api_client, metrics=metrics, active=active, chaos_policy=chaos_policy,
                          rails_policy=rails, experiment=exp, plan=planned, workflow_id=wid, now=now)
    return planned


@pytest.fixture
def web(kube: KubeTestEnv) -> None:
    body = deployment_manifest("web", replicas=4)
    body["metadata"]["annotations"] = {ALLOW_ANNOTATION: "true"}
    kube.apps.create_namespaced_deployment(kube.namespace, body)
    kube.settle(4)


async def test_a_fresh_rollout_refuses_the_injection(
    web: None, kube: KubeTestEnv, metrics: PrometheusProvider, temporal_client: Client
) -> None:
    with pytest.raises(RefusedError, match=r"refused: recent-deployments: Deployment .*/web rolled out .* ago"):
        await plan(kube, metrics, temporal_client, policy(), datetime.now(UTC))


async def test_a_schedule_firing_outside_staffed_hours_is_refused_for_that_reason(
    web: None, kube: KubeTestEnv, metrics: PrometheusProvider, temporal_client: Client
) -> None:
    p = policy(staffedHours=OFFICE, recentDeployments={"quietPeriod": "0s"})
    with pytest.raises(RefusedError, match=r"refused: staffed-hours: outside staffed hours .* it is sat 13:00"):
        await plan(kube, metrics, temporal_client, p, SATURDAY_NOON)
    ok = await plan(kube, metrics, temporal_client, p, WEDNESDAY_TEN)
    lines = [line for line in ok.lines if line.startswith("rail ")]
    assert any("staffed-hours" in line and " ok " in line for line in lines), lines
    assert any("recent-deployments" in line and "skipped" in line for line in lines)
    assert {line.split()[1] for line in lines} >= {"change-freeze", "namespace", "chaos-plan", "mutual-exclusion",
                                                   "incidents", "health", "error-budget", "alerts"}
