"""A chaos worker in its own process, so a test can kill it with SIGKILL mid-experiment.

Usage: python -m tests.chaos.worker_proc TEMPORAL_ADDRESS TASK_QUEUE KUBECONFIG PROMETHEUS_URL DB_PATH
(the allowed namespaces come from ORCHESTRATOR_CHAOS_NAMESPACES, as in production).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker
from temporalio.workflow import NondeterminismError

from orchestrator.activities.chaos import ChaosActivities
from orchestrator.config import PrometheusSettings, Settings
from workflows.chaos import ChaosExperimentWorkflow


async def main(address: str, task_queue: str, kubeconfig: str, prom_url: str, db: str) -> None:
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    settings = Settings(temporal_address=address, kubeconfig=kubeconfig, db_path=db,
                        prometheus=PrometheusSettings(url=prom_url))
    worker = Worker(
        client, task_queue=task_queue, workflows=[ChaosExperimentWorkflow],
        activities=ChaosActivities(settings).activities(),  # the rails use the worker's own client
        activity_executor=concurrent.futures.ThreadPoolExecutor(8),
        workflow_failure_exception_types=[NondeterminismError],
    )
    print("ready", flush=True)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
