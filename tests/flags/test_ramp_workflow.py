"""The flag ramp end to end: real Temporal dev server, real Prometheus, a flagd flag file.

Given a flag at 0 % and per-variant traffic in Prometheus, when a FlagRamp runs, then
the flag file goes through the stages (or back to 0 %) and the status explains why.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHandle

from orchestrator.api.flags import ControlRequest, FlagRampInput, FlagRampStatus, Phase
from orchestrator.flags.kill import kill
from tests.flags.conftest import ERROR_RATIO, FlagProm, flags_json
from tests.flags.helpers import (
    TEST_FLAGS,
    file_percent,
    flagd_operator,
    load_ramp,
    ramp_worker,
    ramp_yaml,
    sample_yaml,
)
from workflows.flag_ramp import FlagRampWorkflow

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def flag_key() -> str:
    return f"new-checkout-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def flag_file(tmp_path: Path, flag_key: str) -> Path:
    path = tmp_path / "flags.flagd.json"
    flags_json(path, flag_key)
    return path


def flagd(path: Path) -> str:
    """The spec names the provider; ``flagd_operator(path)`` is the operator's settings that place it at ``path``."""
    return f"{{type: flagd, name: {TEST_FLAGS}}}"


async def start(client: Client, task_queue: str, text: str) -> WorkflowHandle[FlagRampWorkflow, FlagRampStatus]:
    ramp = load_ramp(text)
    return await client.start_workflow(
        FlagRampWorkflow.run, FlagRampInput(ramp=ramp), id=ramp.workflow_id(), task_queue=task_queue)


async def wait_status(handle: WorkflowHandle[FlagRampWorkflow, FlagRampStatus], pred: object,
                      timeout: float = 30.0) -> FlagRampStatus:
    assert callable(pred)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        st = await handle.query(FlagRampWorkflow.status)
        if pred(st):
            return st
        if loop.time() > deadline:
            pytest.fail(f"status never matched; last: phase {st.phase} at {st.percent}% applied {st.applied}")
        await asyncio.sleep(0.2)


async def test_a_healthy_ramp_walks_every_stage(
    temporal_client: Client, task_queue: str, flag_prom: FlagProm, app_name: str, flag_key: str, flag_file: Path,
) -> None:
    flag_prom.traffic(app_name, {"on": (40, 0.005), "off": (40, 0.005)})
    async with ramp_worker(temporal_client, task_queue, flag_prom.url, operator=flagd_operator(flag_file)):
        handle = await start(temporal_client, task_queue, ramp_yaml(
            flag_key, app_name, flagd(flag_file), minimum_sample=sample_yaml(5)))
        st = await handle.result()
    assert st.phase is Phase.COMPLETED, st.reason
    assert st.applied == [10, 50, 100]
    assert file_percent(flag_file, flag_key) == 100
    assert [r.outcome for r in st.history] == ["passed", "passed", "passed"]
    for record in st.history:
        assert {g.check for g in record.gates} == {"error-rate", "error-rate-vs-control"}
        assert all(g.phase.value == "successful" and g.last is not None for g in record.gates)
        assert record.sample is not None and record.sample >= 5
    vs = next(g for g in st.history[0].gates if g.check == "error-rate-vs-control")
    assert vs.last is not None and vs.last.control_value == pytest.approx(0.005, rel=0.3)
    assert 'variant="off"' in (vs.last.control_query or "")


async def test_a_breaking_treatment_reverts_to_zero_naming_the_check_and_values(
    temporal_client: Client, task_queue: str, flag_prom: FlagProm, app_name: str, flag_key: str, flag_file: Path,
) -> None:
    # The treatment fails 20 % of requests, control 0.5 %: both the absolute and the relative gate break.
    flag_prom.traffic(app_name, {"on": (40, 0.20), "off": (40, 0.005)})
    checks = f"""
    - name: error-rate-vs-control
      query: '{ERROR_RATIO}'
      condition: {{compareTo: stable, maxRatio: 3}}
      interval: 1s"""
    async with ramp_worker(temporal_client, task_queue, flag_prom.url, operator=flagd_operator(flag_file)):
        handle = await start(temporal_client, task_queue, ramp_yaml(
            flag_key, app_name, flagd(flag_file), checks=checks))
        st = await handle.result()
    assert st.phase is Phase.REVERTED
    assert st.applied == [10, 0], "reverted from the first stage, never reaching the next"
    assert file_percent(flag_file, flag_key) == 0
    gate = st.decisive_gate
    assert gate is not None and gate.check == "error-rate-vs-control"
    assert gate.last is not None
    assert gate.last.value == pytest.approx(0.20, rel=0.3)
    assert gate.last.control_value == pytest.approx(0.005, rel=0.3)
    assert st.reason is not None and "error-rate-vs-control" in st.reason and "maxRatio 3" in st.reason
    assert "(on " in st.reason and ", off " in st.reason, st.reason


async def test_not_enough_traffic_extends_then_reverts(
    temporal_client: Client, task_queue: str, flag_prom: FlagProm, app_name: str, flag_key: str, flag_file: Path,
) -> None:
    flag_prom.traffic(app_name, {"on": (1, 0.0), "off": (40, 0.0)})
    # "Not enough traffic" is a kind of inconclusive: it follows onInconclusive (here: revert at once).
    text = ramp_yaml(flag_key, app_name, flagd(flag_file), checks="[]", on_inconclusive="{action: rollback}",
                     minimum_sample=sample_yaml(10_000, extend_by="1s", max_extensions=2))
    async with ramp_worker(temporal_client, task_queue, flag_prom.url, operator=flagd_operator(flag_file)):
        st = await (await start(temporal_client, task_queue, text)).result()
    assert st.phase is Phase.REVERTED
    assert st.not_enough_traffic
    assert st.reason is not None and st.reason.startswith("not enough traffic at 10%")
    assert st.history[0].extensions == 2
    assert st.history[0].outcome == "not-enough-traffic"
    assert st.applied == [10, 0]
    assert file_percent(flag_file, flag_key) == 0


async def test_the_kill_switch_turns_the_flag_off_and_the_ramp_ends_aborted(
    temporal_client: Client, task_queue: str, flag_prom: FlagProm, app_name: str, flag_key: str, flag_file: Path,
) -> None:
    flag_prom.traffic(app_name, {"on": (40, 0.005), "off": (40, 0.005)})
    text = ramp_yaml(flag_key, app_name, flagd(flag_file), stages="[{percent: 25, hold: 5m}, {percent: 100}]")
    async with ramp_worker(temporal_client, task_queue, flag_prom.url, operator=flagd_operator(flag_file)):
        handle = await start(temporal_client, task_queue, text)
        await wait_status(handle, lambda s: s.applied == [25])
        assert file_percent(flag_file, flag_key) == 25
        result = await kill(flag_key, client=temporal_client, reason="pager went off",
                            operator=flagd_operator(flag_file))
        # Off at the provider by the time kill returns, whatever the workflow does next.
        assert file_percent(flag_file, flag_key) == 0
        assert result.change.changed and result.change.before.percent == 25
        assert result.workflow_id == handle.id and result.ramp == "aborted"
        st = await handle.result()
    assert st.phase is Phase.ABORTED
    assert st.reason is not None and "pager went off" in st.reason
    assert file_percent(flag_file, flag_key) == 0


async def test_pause_holds_resume_continues_promote_jumps_to_100(
    temporal_client: Client, task_queue: str, flag_prom: FlagProm, app_name: str, flag_key: str, flag_file: Path,
) -> None:
    flag_prom.traffic(app_name, {"on": (40, 0.005), "off": (40, 0.005)})
    text = ramp_yaml(flag_key, app_name, flagd(flag_file),
                     stages="[{percent: 5, hold: 1s}, {percent: 20, hold: 1s}, {percent: 60, hold: 1h}, "
                            "{percent: 100}]")
    async with ramp_worker(temporal_client, task_queue, flag_prom.url, operator=flagd_operator(flag_file)):
        handle = await start(temporal_client, task_queue, text)
        await wait_status(handle, lambda s: s.applied == [5])
        await handle.execute_update(FlagRampWorkflow.pause, ControlRequest(by="sre"))
        # Held well past the 1 s hold: the next stage does not start while paused.
        await asyncio.sleep(3)
        st = await handle.query(FlagRampWorkflow.status)
        assert st.phase is Phase.PAUSED and st.applied == [5]
        assert file_percent(flag_file, flag_key) == 5
        await handle.execute_update(FlagRampWorkflow.resume, ControlRequest(by="sre"))
        await wait_status(handle, lambda s: s.applied == [5, 20, 60])
        await handle.execute_update(FlagRampWorkflow.promote, ControlRequest(by="owner"))
        st = await handle.result()
    assert st.phase is Phase.COMPLETED and st.reason == "promoted on request: 100%"
    assert st.applied == [5, 20, 60, 100]
    assert file_percent(flag_file, flag_key) == 100


async def test_abort_reverts_and_a_finished_ramp_refuses_controls(
    temporal_client: Client, task_queue: str, flag_prom: FlagProm, app_name: str, flag_key: str, flag_file: Path,
) -> None:
    from temporalio.client import WorkflowUpdateFailedError

    flag_prom.traffic(app_name, {"on": (40, 0.005), "off": (40, 0.005)})
    text = ramp_yaml(flag_key, app_name, flagd(flag_file), stages="[{percent: 30, hold: 1h}, {percent: 100}]")
    async with ramp_worker(temporal_client, task_queue, flag_prom.url, operator=flagd_operator(flag_file)):
        handle = await start(temporal_client, task_queue, text)
        await wait_status(handle, lambda s: s.applied == [30])
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(FlagRampWorkflow.resume, ControlRequest())  # not paused
        await handle.execute_update(FlagRampWorkflow.abort, ControlRequest(reason="wrong flag"))
        st = await handle.result()
        assert st.phase is Phase.ABORTED and st.applied == [30, 0]
        assert file_percent(flag_file, flag_key) == 0


async def test_on_failure_pause_keeps_the_flag_and_waits(
    temporal_client: Client, task_queue: str, flag_prom: FlagProm, app_name: str, flag_key: str, flag_file: Path,
) -> None:
    flag_prom.traffic(app_name, {"on": (40, 0.30), "off": (40, 0.005)})
    text = ramp_yaml(flag_key, app_name, flagd(flag_file), on_failure="pause")
    async with ramp_worker(temporal_client, task_queue, flag_prom.url, operator=flagd_operator(flag_file)):
        handle = await start(temporal_client, task_queue, text)
        st = await wait_status(handle, lambda s: s.phase is Phase.PAUSED)
        assert st.applied == [10] and file_percent(flag_file, flag_key) == 10
        assert st.reason is not None and "gate failed at 10%" in st.reason
        await handle.execute_update(FlagRampWorkflow.abort, ControlRequest(reason="treatment is broken"))
        st = await handle.result()
    assert st.phase is Phase.ABORTED and file_percent(flag_file, flag_key) == 0
