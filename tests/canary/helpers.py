"""Building blocks for canary tests: specs, a worker bound to the test's clients, Deployment reads."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import yaml
from kubernetes import client as k8s
from temporalio.client import Client, WorkflowHandle

from orchestrator.api.canary import CanaryInput, CanaryStatus, Phase
from orchestrator.config import PrometheusSettings, Settings
from orchestrator.specs.canary import CanaryRollout
from orchestrator.worker import build_worker
from workflows.canary import CanaryWorkflow, workflow_id

ERROR_RATIO = (
    'sum(rate(http_requests_total{namespace="prod",app="{{app}}",track="{{track}}",code=~"5.."}[30s])) / '
    'sum(rate(http_requests_total{namespace="prod",app="{{app}}",track="{{track}}"}[30s]))'
)


def error_check(
    name: str = "error-rate", count: int | None = 2, max_ratio: float = 0.02, **extra: Any
) -> dict[str, Any]:
    return {"name": name, "query": ERROR_RATIO, "condition": {"max": max_ratio}, "interval": "1s",
            "count": count, **extra}


def rollout(namespace: str, deployment: str, steps: list[dict[str, Any]], **spec: Any) -> CanaryRollout:
    doc = {
        "apiVersion": "orchestrator.dev/v1",
        "kind": "CanaryRollout",
        "metadata": {"name": deployment},
        "spec": {
            "target": {"namespace": namespace, "deployment": deployment},
            "change": {"image": "demo:2"},
            "steps": steps,
            "progressDeadline": "30s",
            **spec,
        },
    }
    return CanaryRollout.model_validate(doc)


def rollout_yaml(model: CanaryRollout) -> str:
    return yaml.safe_dump(model.model_dump(mode="json", by_alias=True, exclude_defaults=True), sort_keys=False)


def settings_for(prom_url: str, task_queue: str, temporal_address: str = "", kubeconfig: str | None = None) -> Settings:
    return Settings(
        temporal_address=temporal_address or "127.0.0.1:7233",
        task_queue=task_queue,
        prometheus=PrometheusSettings(url=prom_url, timeout_seconds=5),
        kubeconfig=kubeconfig,
    )


@contextlib.asynccontextmanager
async def running_worker(client: Client, settings: Settings, api_client: Any) -> AsyncIterator[None]:
    worker = build_worker(client, settings, api_client=api_client)
    async with worker:
        yield


async def start(client: Client, model: CanaryRollout, task_queue: str) -> WorkflowHandle[Any, CanaryStatus]:
    target = model.spec.target
    return await client.start_workflow(
        CanaryWorkflow.run, CanaryInput(rollout=model),
        id=workflow_id(target.namespace, target.deployment),
        task_queue=task_queue,
    )


async def wait_for(handle: WorkflowHandle[Any, Any], predicate: Any, timeout: float = 60.0) -> CanaryStatus:
    """Poll the status query until ``predicate(status)`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status: CanaryStatus = await handle.query(CanaryWorkflow.status)
        if predicate(status):
            return status
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached; last status: {status.model_dump_json(indent=1)}")
        await asyncio.sleep(0.2)


def deployment(api_client: Any, namespace: str, name: str) -> Any | None:
    try:
        return k8s.AppsV1Api(api_client).read_namespaced_deployment(name, namespace)
    except k8s.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def image_of(dep: Any) -> str:
    return str(dep.spec.template.spec.containers[0].image)


__all__ = ["Phase"]
