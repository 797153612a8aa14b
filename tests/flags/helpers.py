"""Helpers of the flag-ramp tests: spec text, an in-process worker, reading a flag file."""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from orchestrator.activities.flags import FlagActivities
from orchestrator.config import PrometheusSettings, Settings
from orchestrator.flags.base import FlagTarget
from orchestrator.flags.flagd import read_allocation
from orchestrator.specs.flags import FlagRamp
from orchestrator.specs.loader import load_text
from orchestrator.specs.operator import OperatorSettings
from tests.flags.conftest import ERROR_RATIO, REQUESTS


def ramp_yaml(
    key: str,
    app: str,
    provider: str,
    *,
    stages: str = "[{percent: 10, hold: 2s}, {percent: 50, hold: 2s}, {percent: 100, hold: 1s}]",
    checks: str | None = None,
    minimum_sample: str = "",
    on_failure: str = "revert",
    on_inconclusive: str = "{action: pause}",
) -> str:
    if checks is None:
        checks = f"""
    - name: error-rate
      query: '{ERROR_RATIO}'
      condition: {{max: 0.05}}
      interval: 1s
    - name: error-rate-vs-control
      query: '{ERROR_RATIO}'
      condition: {{compareTo: stable, maxRatio: 3}}
      interval: 1s"""
    return f"""apiVersion: orchestrator.dev/v1
kind: FlagRamp
metadata:
  name: {key}
spec:
  provider: {provider}
  flag: {key}
  variant: "on"
  control: "off"
  target: {{app: {app}}}
  stages: {stages}
  checks: {checks}
  onFailure: {on_failure}
  onInconclusive: {on_inconclusive}
{minimum_sample}"""


def sample_yaml(min_count: int, extend_by: str = "1s", max_extensions: int = 2) -> str:
    return f"""  minimumSample:
    query: '{REQUESTS}'
    min: {min_count}
    extendBy: {extend_by}
    maxExtensions: {max_extensions}
"""


TEST_FLAGS = "test-flags"


def flagd_operator(path: Path, name: str = TEST_FLAGS) -> OperatorSettings:
    """Operator settings naming ``path`` as the flagd provider ``name`` (what specs write)."""
    return OperatorSettings.model_validate(
        {"kind": "OperatorSettings", "spec": {"flagProviders": [{"name": name, "type": "flagd", "file": str(path)}]}}
    )


def unleash_operator(url: str, name: str = "main", token_env: str = "ORCHESTRATOR_UNLEASH_TOKEN") -> OperatorSettings:
    return OperatorSettings.model_validate(
        {"kind": "OperatorSettings",
         "spec": {"flagProviders": [{"name": name, "type": "unleash", "url": url, "tokenEnv": token_env}]}}
    )


def load_ramp(text: str) -> FlagRamp:
    ramp = load_text(text, "test-ramp.yaml", expect="FlagRamp")
    assert isinstance(ramp, FlagRamp)
    return ramp


def file_percent(path: Path, key: str) -> float:
    return read_allocation(json.loads(path.read_text()), FlagTarget(key, "on", "off")).percent


@asynccontextmanager
async def ramp_worker(
    client: Client,
    task_queue: str,
    prom_url: str,
    *,
    api_client: Any = None,
    env: Mapping[str, str] | None = None,
    operator: OperatorSettings | None = None,
) -> AsyncIterator[Worker]:
    from orchestrator.activities.rails import RailsActivities
    from workflows.flag_ramp import FlagRampWorkflow

    settings = Settings(prometheus=PrometheusSettings(url=prom_url))
    activities = FlagActivities(settings, api_client=api_client, env=env or {}, operator=operator)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as executor:
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=[FlagRampWorkflow],
            activities=activities.activities() + RailsActivities(settings, api_client=api_client).activities(),
            activity_executor=executor,
        )
        async with worker:
            yield worker
