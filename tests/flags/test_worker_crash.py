"""A worker killed with SIGKILL mid-ramp is replaced and the ramp goes on without repeating a stage.

The flag lives in a ConfigMap of the sandbox API server, whose audit log records every
request: each percentage must reach the ConfigMap exactly once (one successful PATCH per
stage), however the crash fell between a write and its report to Temporal.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s
from temporalio.client import Client

from orchestrator.api.flags import FlagRampInput, Phase
from orchestrator.flags.base import FlagTarget
from orchestrator.flags.flagd import read_allocation
from orchestrator.kube.client import load_api_client
from orchestrator.sandbox.apiserver import ApiServer
from tests.flags.conftest import FlagProm
from tests.flags.helpers import load_ramp, ramp_yaml
from workflows.flag_ramp import FlagRampWorkflow

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def apiserver(tmp_path: Path) -> Iterator[tuple[ApiServer, Path]]:
    server = ApiServer(controller=False).start()
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    try:
        yield server, kubeconfig
    finally:
        server.stop()


OPERATOR = """apiVersion: orchestrator.dev/v1
kind: OperatorSettings
metadata: {name: test}
spec:
  flagProviders:
    - {name: cluster-flags, type: flagd, configMap: {namespace: default, name: flags}}
"""


def start_worker(address: str, task_queue: str, kubeconfig: Path, prom_url: str) -> subprocess.Popen[str]:
    # The worker finds the ConfigMap through the operator's settings file, as a real worker does.
    operator = kubeconfig.parent / "operator.yaml"
    operator.write_text(OPERATOR)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.flags._worker", address, task_queue, str(kubeconfig), prom_url],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "ORCHESTRATOR_SETTINGS_FILE": str(operator)},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


async def test_a_killed_worker_resumes_without_repeating_a_stage_change(
    temporal_address: str, temporal_client: Client, task_queue: str, flag_prom: FlagProm, app_name: str,
    apiserver: tuple[ApiServer, Path],
) -> None:
    server, kubeconfig = apiserver
    key = f"crash-{uuid.uuid4().hex[:6]}"
    core = k8s.CoreV1Api(load_api_client(str(kubeconfig)))
    core.create_namespaced_config_map("default", {
        "metadata": {"name": "flags"},
        "data": {"flags.flagd.json": json.dumps({"flags": {key: {
            "state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off", "targeting": {}}}})},
    })

    def percent() -> float:
        cm = core.read_namespaced_config_map("flags", "default")
        return read_allocation(json.loads(cm.data["flags.flagd.json"]), FlagTarget(key, "on", "off")).percent

    def patches() -> list[dict[str, object]]:
        return [e for e in server.audit() if e.get("resource") == "configmaps" and e.get("verb") == "patch"
                and e.get("code") == 200]

    flag_prom.traffic(app_name, {"on": (40, 0.005), "off": (40, 0.005)})
    ramp = load_ramp(ramp_yaml(
        key, app_name, "{type: flagd, name: cluster-flags}",
        # The stage the worker dies in holds longer than a replacement takes to resume it (the dead worker's
        # sticky task times out after 10 s, its looks after 5 s): a stage whose every look was lost ends
        # undecided and pauses for a decision, which is right (missing data never ramps up) but not this test.
        stages="[{percent: 10, hold: 3s}, {percent: 30, hold: 25s}, {percent: 60, hold: 3s}, {percent: 100}]"))
    first = start_worker(temporal_address, task_queue, kubeconfig, flag_prom.url)
    second = None
    try:
        handle = await temporal_client.start_workflow(
            FlagRampWorkflow.run, FlagRampInput(ramp=ramp), id=ramp.workflow_id(), task_queue=task_queue)
        # Kill the moment the second stage's write lands: the activity may not have reported yet.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while percent() != 30:
            assert loop.time() < deadline, "the ramp never reached its second stage"
            await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert percent() == 30, "nothing reverted the flag while no worker ran"
        second = start_worker(temporal_address, task_queue, kubeconfig, flag_prom.url)
        try:
            st = await asyncio.wait_for(handle.result(), timeout=120)
        except TimeoutError:
            desc = await handle.describe()
            history = await handle.fetch_history()
            # Say where it stands: the last events (type, activity, failure, timer) and what is pending.
            tail = [f"{e.event_id} {e.event_type} {e.activity_task_scheduled_event_attributes.activity_type.name} "
                    f"{e.activity_task_failed_event_attributes.failure.message} "
                    f"{e.timer_started_event_attributes.start_to_fire_timeout.ToSeconds()}"
                    for e in history.events[-25:]]
            pending = [(a.activity_type.name, a.attempt) for a in desc.raw_description.pending_activities]
            raise AssertionError(f"ramp not finished: {desc.status} pending={pending} last events={tail}") from None
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert st.phase is Phase.COMPLETED, st.reason
    assert percent() == 100
    assert st.applied == [10, 30, 60, 100]
    assert len(patches()) == 4, f"each stage change written exactly once, got {len(patches())} patches"
