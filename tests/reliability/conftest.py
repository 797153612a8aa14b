"""The ``stage`` of every reliability scenario, from the shared fixtures: the session's sandbox API server
(a fresh namespace), the live Prometheus data and Temporal dev server, a task queue and a work directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from tests.reliability.runs import Stage


@pytest.fixture
def stage(kube: Any, prom_live: Any, temporal_client: Client, temporal_address: str, task_queue: str,
          tmp_path: Path) -> Stage:
    return Stage(api_client=kube.api_client, server=kube.server, kubeconfig=kube.kubeconfig,
                 namespace=kube.namespace, prom_url=prom_live.url, prom_data=prom_live.data_dir,
                 temporal_address=temporal_address, client=temporal_client, task_queue=task_queue,
                 workdir=tmp_path, audit=kube.audit)
