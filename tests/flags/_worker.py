"""A flag-ramp worker in its own process, so a test can kill -9 it mid-ramp.

Usage: python -m tests.flags._worker TEMPORAL_ADDRESS TASK_QUEUE KUBECONFIG PROMETHEUS_URL
"""

from __future__ import annotations

import asyncio
import sys


async def main(address: str, task_queue: str, kubeconfig: str, prom_url: str) -> None:
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    from orchestrator.kube.client import load_api_client
    from orchestrator.specs.operator import operator_settings_from_env
    from tests.flags.helpers import ramp_worker

    client = await Client.connect(address, data_converter=pydantic_data_converter)
    async with ramp_worker(client, task_queue, prom_url, api_client=load_api_client(kubeconfig),
                           operator=operator_settings_from_env()):
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
