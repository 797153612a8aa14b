"""The chaos scenarios of the fault-injection suite: whatever dies mid-fault, no fault is left behind.

Each scenario injects a scale-down (``victim``: 4 replicas -> 1) through the real worker process and kills
something while the fault is in. Each owns its Temporal dev server (on a database file): the janitor is a
Temporal Schedule with a fixed id, which must not meet a neighbouring test's.

* the chaos worker SIGKILLed mid-fault and never restarted: a second worker, serving only the janitor's
  schedule on its own task queue, reverts the fault once its expiry has passed (and not before); a
  chaos worker that comes back much later finds the fault reverted and writes nothing more;
* the Temporal server SIGKILLed mid-fault and started again on its database: the experiment goes on
  and reverts the fault itself, once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s

from orchestrator.api.chaos import ChaosInput, ChaosPhase, ChaosStatus
from orchestrator.chaos.models import ALLOW_ANNOTATION, EXPERIMENT_LABEL, EXPIRES_ANNOTATION
from orchestrator.client import chaos as control
from orchestrator.specs.chaos import ChaosExperiment
from tests.fixtures_kube import deployment_manifest
from tests.reliability.harness import (
    TemporalServer,
    Workers,
    connect,
    scheduled_counts,
    stopping,
    until,
    worker_env,
    writes,
)
from tests.reliability.runs import Ran, Stage
from tests.reliability.scenarios import Outcome

VICTIM = "victim"
REPLICAS = 4
JANITOR_EVERY = 2.0  # seconds between the janitor schedule's sweeps
# How late after its expiry the janitor may revert: one sweep interval, plus a busy machine's slack
# (a schedule action starts a workflow whose activity lists and patches).
JANITOR_SLACK = 20.0
RESULT_TIMEOUT = 180.0
CLEAN_VICTIM_WRITES = 3


def experiment(namespace: str, duration: str) -> ChaosExperiment:
    """Scale ``victim`` down to 1 for ``duration``; expiry = injection + 1 s + duration + 3 s + 3 s."""
    return ChaosExperiment.model_validate({
        "apiVersion": "orchestrator.dev/v1",
        "kind": "ChaosExperiment",
        "metadata": {"name": "scale-victim"},
        "spec": {
            "target": {"namespace": namespace, "selector": {"app": VICTIM}, "mode": "all"},
            "fault": {"type": "scale-down", "replicas": 1},
            "duration": duration,
            "steadyState": {"checks": [{"name": "up", "query": "vector(1)", "condition": {"min": 1},
                                        "interval": "1s", "count": 1}],
                            "recoverWithin": "3s"},
            "blastRadius": {"maxPodsPercent": 100, "expiryMargin": "3s"},
        },
    })


def deploy_victim(stage: Stage) -> None:
    body = deployment_manifest(VICTIM, replicas=REPLICAS)
    body["metadata"]["annotations"] = {ALLOW_ANNOTATION: "true"}
    k8s.AppsV1Api(stage.api_client).create_namespaced_deployment(stage.namespace, body)


def victim(stage: Stage) -> Any:
    return k8s.AppsV1Api(stage.api_client).read_namespaced_deployment(VICTIM, stage.namespace)


def marked(dep: Any) -> bool:
    return EXPERIMENT_LABEL in (dep.metadata.labels or {})


def chaos_workers(stage: Stage, temporal: TemporalServer, queue: str, janitor_every: float, log: str) -> Workers:
    env = worker_env(temporal=temporal.address, task_queue=queue, kubeconfig=stage.kubeconfig,
                     prom_url=stage.prom_url, workdir=stage.workdir,
                     ORCHESTRATOR_CHAOS_NAMESPACES=stage.namespace,
                     ORCHESTRATOR_JANITOR_INTERVAL=f"{janitor_every:g}")
    return Workers(env, stage.workdir / log)


async def injected(stage: Stage) -> datetime:
    """Wait until the scale-down is in (scaled and marked); its expiry, from the mark."""
    async def in_place() -> bool:
        dep = victim(stage)
        return dep.spec.replicas == 1 and marked(dep)

    await until(in_place, 90, "the scale-down in place")
    expires = (victim(stage).metadata.annotations or {})[EXPIRES_ANNOTATION]
    return datetime.fromisoformat(expires.replace("Z", "+00:00"))


def restored(stage: Stage) -> bool:
    dep = victim(stage)
    return dep.spec.replicas == REPLICAS and not marked(dep)


def victim_writes(stage: Stage) -> Counter[str]:
    seen = writes(stage.audit(), stage.namespace)
    return Counter({key: n for key, n in seen.items() if key.startswith(f"deployments/{VICTIM}")})


async def chaos_worker_killed_for_good(stage: Stage) -> Ran:
    """SIGKILL the chaos worker mid-fault; only the janitor (its own worker and queue) is left to revert."""
    deploy_victim(stage)
    problems: list[str] = []
    temporal = TemporalServer(stage.workdir / "temporal").start()
    chaos = chaos_workers(stage, temporal, stage.task_queue, 0, "chaos-worker.log")  # 0: no schedule of its own
    janitor = chaos_workers(stage, temporal, f"{stage.task_queue}-janitor", JANITOR_EVERY, "janitor-worker.log")
    with stopping(chaos, janitor, temporal):
        client = await connect(temporal.address)
        first = chaos.start()
        handle = await control.start(client, ChaosInput(experiment=experiment(stage.namespace, "20s"),
                                                        source="reliability"), stage.task_queue)
        expires_at = await injected(stage)
        janitor.start()  # after the chaos worker's start, so the schedule is the janitor worker's
        chaos.kill(first)
        early = False
        while not restored(stage):
            now = datetime.now(UTC)
            if (now - expires_at).total_seconds() > JANITOR_EVERY + JANITOR_SLACK:
                break
            await asyncio.sleep(0.2)
        reverted_at = datetime.now(UTC)
        back = restored(stage)
        late = (reverted_at - expires_at).total_seconds()
        if back and late < -1.0:  # the mark's time has whole-second precision
            early = True
            problems.append(f"the janitor reverted {-late:.1f}s before the fault's expiry")
        if not back:
            problems.append(f"the fault was still in {late:.1f}s after its expiry")
        before = victim_writes(stage)
        # Much later, a chaos worker comes back: the run ends, and finds nothing left to revert.
        chaos.start()
        result: ChaosStatus = await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
        after = victim_writes(stage)
        counts = await scheduled_counts(handle)
    repeated = sum((after - before).values())
    if repeated:
        problems.append(f"writes to the victim after the janitor's revert: {dict(after - before)}")
    if not restored(stage):
        problems.append("the victim is not back at 4 replicas, unmarked, at the end")
    if counts["chaos.inject"] != 1:
        problems.append(f"chaos.inject scheduled {counts['chaos.inject']} time(s)")
    finished = back and not early and result.finished_at is not None
    outcome = Outcome(result.phase.value, finished, repeated, int(not restored(stage)), 0, problems)
    ended = "" if result.phase is ChaosPhase.COMPLETED else f", the run ended {result.phase.value}: {result.reason}"
    return Ran(outcome, chaos.kills, f"janitor reverted {late:+.1f}s after the expiry{ended}")


async def temporal_restarted_mid_fault(stage: Stage) -> Ran:
    """SIGKILL the Temporal server while the fault is in; start it again on its database."""
    deploy_victim(stage)
    problems: list[str] = []
    temporal = TemporalServer(stage.workdir / "temporal").start()
    chaos = chaos_workers(stage, temporal, stage.task_queue, 0, "chaos-worker.log")
    with stopping(chaos, temporal):
        client = await connect(temporal.address)
        chaos.start()
        inp = ChaosInput(experiment=experiment(stage.namespace, "12s"), source="reliability")
        handle = await control.start(client, inp, stage.task_queue)
        await injected(stage)
        temporal.kill()
        await asyncio.sleep(3)  # the worker sees connection errors meanwhile
        temporal.start()
        client = await connect(temporal.address)
        handle = client.get_workflow_handle(handle.id, result_type=ChaosStatus)
        result: ChaosStatus = await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
        counts = await scheduled_counts(handle)
    if result.phase is not ChaosPhase.COMPLETED:
        problems.append(f"phase {result.phase.value}: {result.reason}")
    if not restored(stage):
        problems.append("the victim is not back at 4 replicas, unmarked")
    seen = victim_writes(stage)
    # A clean run writes the victim three times: the ledger's marks, the fault, and the revert (which
    # unmarks in the same patch). A conflict retried is still one write that landed.
    landed = sum(seen.values())
    repeated = max(counts["chaos.inject"] - 1, 0) + max(landed - CLEAN_VICTIM_WRITES, 0)
    if repeated:
        problems.append(f"repeated: chaos.inject x{counts['chaos.inject']}, victim writes {dict(seen)}")
    finished = result.phase is ChaosPhase.COMPLETED and restored(stage)
    return Ran(Outcome(result.phase.value, finished, repeated, int(not restored(stage)), 0, problems),
               temporal.kills)
