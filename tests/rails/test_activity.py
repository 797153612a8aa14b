"""The ``rails.check`` activity the workflows call first: registered with the worker, report in, report out."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import ActivityEnvironment

from orchestrator.activities.rails import RailsActivities
from orchestrator.config import PrometheusSettings, Settings
from orchestrator.gates.prometheus import PrometheusProvider
from orchestrator.rails.models import RailsReport, RailsRequest
from orchestrator.worker import collect
from tests.fixtures_kube import KubeTestEnv, deployment_manifest
from tests.rails.conftest import RailsProm, canary_spec, policy

pytestmark = pytest.mark.timeout(60)


def test_the_worker_registers_rails_check() -> None:
    _, activities = collect(Settings())
    names = {getattr(a, "__temporal_activity_definition").name for a in activities}
    assert "rails.check" in names


async def test_rails_check_refuses_with_the_first_rails_reason(
    kube: KubeTestEnv, rails_prom: RailsProm, temporal_client: Client
) -> None:
    kube.apps.create_namespaced_deployment(kube.namespace, deployment_manifest("checkout", replicas=2))
    kube.settle(4)
    acts = RailsActivities(Settings(), api_client=kube.api_client,
                           metrics=PrometheusProvider(PrometheusSettings(url=rails_prom.url)),
                           temporal=temporal_client,
                           rails_policy=policy(incidents={"matchLabels": {"severity": "critical", "app": "{{app}}"}}))
    req: Any = RailsRequest(kind="canary", spec=canary_spec(kube.namespace, "checkout"),
                            workflow_id=f"canary-{kube.namespace}-checkout")
    # Through the data converter, as a workflow would send it.
    [sent] = pydantic_data_converter.payload_converter.from_payloads(
        pydantic_data_converter.payload_converter.to_payloads([req]), [RailsRequest])
    report = await ActivityEnvironment().run(acts.check, sent)
    assert isinstance(report, RailsReport)
    assert report.refused and report.reason.startswith("incidents: 1 alert(s) firing for the target: CheckoutDown")
    assert [v.rail for v in report.verdicts] == ["protected-namespace", "change-freeze", "staffed-hours",
                                                 "mutual-exclusion", "recent-deployments", "capacity", "incidents",
                                                 "health"]


async def test_a_workflow_gets_the_report_through_temporal(
    kube: KubeTestEnv, rails_prom: RailsProm, temporal_client: Client, task_queue: str
) -> None:
    from temporalio.worker import Worker

    from tests.rails.probe_workflow import RailsProbe

    kube.apps.create_namespaced_deployment(kube.namespace, deployment_manifest("checkout", replicas=2))
    kube.settle(4)
    acts = RailsActivities(Settings(), api_client=kube.api_client,
                           metrics=PrometheusProvider(PrometheusSettings(url=rails_prom.url)),
                           rails_policy=policy(incidents={"matchLabels": {"severity": "critical", "app": "{{app}}"}}))
    async with Worker(temporal_client, task_queue=task_queue, workflows=[RailsProbe], activities=acts.activities()):
        report = await temporal_client.execute_workflow(
            RailsProbe.run, RailsRequest(kind="canary", spec=canary_spec(kube.namespace, "checkout")),
            id=f"canary-{kube.namespace}-checkout", task_queue=task_queue)
    assert report.refused and report.reason.startswith("incidents: 1 alert(s) firing for the target: CheckoutDown")
    # Its own id is no conflict: the mutual-exclusion rail looked and passed.
    assert next(v for v in report.verdicts if v.rail == "mutual-exclusion").status.value == "ok"
