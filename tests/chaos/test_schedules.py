"""Experiment schedules on the real Temporal dev server: created, fire, skip overlaps, pause, delete."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from temporalio.client import Client, ScheduleOverlapPolicy, WorkflowExecutionStatus

from orchestrator.api.chaos import ChaosInput, ChaosPhase, ChaosStatus
from orchestrator.client import chaos_schedules as schedules
from orchestrator.config import Settings
from orchestrator.errors import RefusedError
from tests.chaos.conftest import PromRules, deploy, experiment
from tests.chaos.test_cli import _env, orchestrator
from tests.chaos.test_workflow import _replicas, _worker
from tests.fixtures_kube import KubeTestEnv

pytestmark = pytest.mark.timeout(90)


async def test_a_schedule_fires_skips_overlaps_and_is_managed(
    kube: KubeTestEnv, temporal_client: Client, task_queue: str, settings: Settings, metrics: object,
    policy: object, prom_rules: PromRules,
) -> None:
    deploy(kube, replicas=4)
    exp = experiment(kube.namespace, {"type": "scale-down", "replicas": 2}, name="nightly", mode="all",
                     max_percent=100, duration="2s")
    inp = ChaosInput(experiment=exp)
    sid = await schedules.create(temporal_client, inp, task_queue, every=timedelta(seconds=1))
    try:
        assert sid == f"chaos-{kube.namespace}-nightly"
        desc = await temporal_client.get_schedule_handle(sid).describe()
        assert desc.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
        with pytest.raises(RefusedError, match="already exists"):
            await schedules.create(temporal_client, inp, task_queue, every=timedelta(seconds=1))

        async with _worker(temporal_client, task_queue, settings, kube, metrics, policy):  # type: ignore[arg-type]
            finished: list[ChaosStatus] = []
            deadline = time.monotonic() + 60
            while not finished and time.monotonic() < deadline:
                async for wf in temporal_client.list_workflows(f"WorkflowId STARTS_WITH '{sid}'"):
                    if wf.status == WorkflowExecutionStatus.COMPLETED:
                        finished.append(await temporal_client.get_workflow_handle(
                            wf.id, result_type=ChaosStatus).result())
                        break
                await asyncio.sleep(0.5)
            assert finished, "the schedule never started a run that completed"
            assert finished[0].phase is ChaosPhase.COMPLETED, finished[0].reason
            # A run takes several seconds against a 1 s interval: overlapping starts were skipped, never
            # run side by side.
            desc = await temporal_client.get_schedule_handle(sid).describe()
            assert desc.info.num_actions_skipped_overlap > 0
            env = {**_env(kube, settings, prom_rules)}
            paused = await asyncio.to_thread(orchestrator, "chaos", "schedules", "pause", sid, env=env)
            assert paused.returncode == 0, paused.stderr
            listed = await asyncio.to_thread(orchestrator, "chaos", "schedules", "list", env=env)
            assert f"{sid}  paused  every 0:00:01" in listed.stdout, listed.stdout
            unpaused = await asyncio.to_thread(orchestrator, "chaos", "schedules", "unpause", sid, env=env)
            assert unpaused.returncode == 0
            deleted = await asyncio.to_thread(orchestrator, "chaos", "schedules", "delete", sid, env=env)
            assert deleted.returncode == 0
            # Let a run started just before the deletion finish and revert.
            async for wf in temporal_client.list_workflows(
                    f"WorkflowId STARTS_WITH '{sid}' AND ExecutionStatus='Running'"):
                await temporal_client.get_workflow_handle(wf.id).result()
        assert _replicas(kube) == 4
        gone = await asyncio.to_thread(orchestrator, "chaos", "schedules", "delete", sid, env=env)
        assert gone.returncode == 1 and "no schedule" in gone.stderr
    finally:
        try:
            await temporal_client.get_schedule_handle(sid).delete()
        except Exception:
            pass


async def test_cli_schedule_with_cron(kube: KubeTestEnv, settings: Settings, prom_rules: PromRules,
                                      temporal_client: Client, tmp_path: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "exp.yaml"
    import yaml

    exp = experiment(kube.namespace, {"type": "pod-kill"}, name="weekly")
    path.write_text(yaml.safe_dump(exp.model_dump(mode="json", by_alias=True)))
    env = _env(kube, settings, prom_rules)
    created = await asyncio.to_thread(orchestrator, "chaos", "schedule", str(path), "--cron", "0 10 * * 1", env=env)
    sid = f"chaos-{kube.namespace}-weekly"
    try:
        assert created.returncode == 0 and created.stdout.strip() == sid, created.stderr
        desc = await temporal_client.get_schedule_handle(sid).describe()
        assert desc.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
        listed = await asyncio.to_thread(orchestrator, "chaos", "schedules", "list", env=env)
        assert f"{sid}  active  0 10 * * 1" in listed.stdout, listed.stdout
        missing = await asyncio.to_thread(orchestrator, "chaos", "schedule", str(path), env=env)
        assert missing.returncode == 2
    finally:
        await temporal_client.get_schedule_handle(sid).delete()
