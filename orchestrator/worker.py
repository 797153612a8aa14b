"""The Temporal worker: every workflow and activity of the project on one task queue, watches beside it.

Capabilities register here, one entry each: a workflow module and an activities class
built from the settings. ``run_worker`` connects, migrates the run store (before any activity
can write to it), runs the chaos janitor once (faults whose
expiry passed are reverted even if their workflow is gone), serves health and metrics,
and shuts down gracefully on SIGTERM/SIGINT, letting running activities finish.

The looks of timed steps run in ``watch`` activities (``orchestrator/activities/watch.py``) on their
own queue, ``<queue>-watch``, served by a second worker in the same process with its own slot budget
(``build_watch_worker``; ``build_worker`` starts and stops it with the main one): a thousand watches
never hold a slot an undo activity needs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import inspect
import logging
import os
import signal
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from orchestrator.config import Settings

log = logging.getLogger("orchestrator.worker")

# (workflow module, workflow class names, activities module, activities class)
CAPABILITIES: list[tuple[str, list[str], str, str]] = [
    ("workflows.canary", ["CanaryWorkflow"], "orchestrator.activities.canary", "CanaryActivities"),
    ("workflows.flag_ramp", ["FlagRampWorkflow"], "orchestrator.activities.flags", "FlagActivities"),
    ("workflows.chaos", ["ChaosExperimentWorkflow"], "orchestrator.activities.chaos", "ChaosActivities"),
    ("workflows.gameday", ["GameDayWorkflow"], "", ""),
    ("workflows.janitor", ["JanitorWorkflow"], "", ""),
    # Fleet releases: the parent on the central queue; ping and undo run on each cluster's own queue.
    ("workflows.release", ["ReleaseWorkflow"], "orchestrator.activities.release", "ReleaseActivities"),
    # The pre-flight rails every workflow above calls first: activities only, no workflow of their own.
    ("workflows.canary", [], "orchestrator.activities.rails", "RailsActivities"),
    # The sequential judge's looks (canary and flag-ramp gates): activities only.
    ("workflows.canary", [], "orchestrator.activities.judge", "JudgeActivities"),
]


def collect(settings: Settings, **clients: Any) -> tuple[list[type], list[Callable[..., Any]]]:
    """The workflows and activities of every capability present in this installation."""
    workflows: list[type] = []
    activities: list[Callable[..., Any]] = []
    for wf_module, wf_names, act_module, act_class in CAPABILITIES:
        try:
            wf = importlib.import_module(wf_module)
        except ModuleNotFoundError as exc:
            if exc.name == wf_module:
                continue
            raise
        workflows += [getattr(wf, n) for n in wf_names]
        if act_module:
            cls = getattr(importlib.import_module(act_module), act_class)
            accepted = inspect.signature(cls).parameters
            given = {k: v for k, v in clients.items() if k in accepted}
            activities += cls(settings, **given).activities()
    return workflows, activities


WORKFLOW_FAILURE_TYPES: list[type[BaseException]] = []


class PairedWorker(Worker):
    """The project's worker with its watch worker beside it: both run, and stop, together."""

    def __init__(self, *args: Any, watcher: Worker, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watcher = watcher

    async def run(self) -> None:
        watching = asyncio.create_task(self.watcher.run())
        try:
            await super().run()
        finally:
            await self.watcher.shutdown()
            await asyncio.gather(watching, return_exceptions=True)


def build_worker(
    client: Client,
    settings: Settings,
    *,
    task_queue: str | None = None,
    executor: concurrent.futures.ThreadPoolExecutor | None = None,
    max_concurrent_activities: int = 64,
    max_concurrent_workflow_tasks: int | None = None,
    max_cached_workflows: int = 2000,
    **clients: Any,
) -> Worker:
    """The worker; the limits were measured with ``benchmarks/scale.py`` (docs/benchmarks.md, "Scale").

    The activities are synchronous, so the thread pool is as large as the activity limit: a task the
    worker accepts starts at once instead of queueing behind a thread while its timeout runs. The
    sticky cache holds more workflows than one worker runs at once (a thousand rollouts): an evicted
    rollout replays its whole history at its next look.
    """
    workflows, activities = collect(settings, **clients)
    return PairedWorker(
        client,
        watcher=build_watch_worker(client, settings, task_queue=task_queue, **clients),
        task_queue=task_queue or settings.task_queue,
        workflows=workflows,
        activities=activities,
        activity_executor=executor
        or concurrent.futures.ThreadPoolExecutor(max_workers=max_concurrent_activities),
        max_concurrent_activities=max_concurrent_activities,
        max_concurrent_workflow_tasks=max_concurrent_workflow_tasks,
        max_cached_workflows=max_cached_workflows,
        # Nothing turns a workflow-task failure into a workflow failure: a failed workflow skips its
        # ``finally``, so a canary would stay at N % traffic for ever. A nondeterminism error (code that
        # cannot replay a running history) stays a workflow-task failure that Temporal retries until
        # code that can replay it is deployed; the SDK's temporal_workflow_task_execution_failed metric
        # and the chart's alert tell the operator (docs/upgrades.md).
        workflow_failure_exception_types=WORKFLOW_FAILURE_TYPES,
        graceful_shutdown_timeout=timedelta(seconds=20),
    )


WATCH_SLOTS = 2000
"""Concurrent watches per worker: each is an idle coroutine between looks (its reads share a thread pool)."""


def build_watch_worker(client: Client, settings: Settings, *, task_queue: str | None = None,
                       max_concurrent_activities: int = WATCH_SLOTS, **clients: Any) -> Worker:
    """The worker of the ``watch`` activities, on the watch queue of ``task_queue``."""
    from orchestrator.activities.watch import WatchActivities
    from orchestrator.gates.watch_fold import WATCH_THROTTLE, watch_queue

    accepted = inspect.signature(WatchActivities).parameters
    watches = WatchActivities(settings, **{k: v for k, v in clients.items() if k in accepted})
    return Worker(client, task_queue=watch_queue(task_queue or settings.task_queue),
                  activities=watches.activities(), max_concurrent_activities=max_concurrent_activities,
                  max_heartbeat_throttle_interval=WATCH_THROTTLE, graceful_shutdown_timeout=timedelta(seconds=5))


def run_janitor(settings: Settings) -> Sequence[str]:
    try:
        janitor = importlib.import_module("orchestrator.chaos.janitor")
    except ModuleNotFoundError:
        return []
    from orchestrator import telemetry

    try:
        reverted: Sequence[str] = janitor.run_janitor(settings)
    except Exception:
        log.exception("chaos janitor failed on start")
        telemetry.record_janitor_run("failed")
        return []
    telemetry.record_janitor_run("ok")
    return reverted


async def ensure_janitor_schedule(client: Client, settings: Settings) -> None:
    """Create or update the janitor's every-minute Temporal Schedule; a failure is logged, never fatal."""
    try:
        schedule = importlib.import_module("orchestrator.client.janitor")
    except ModuleNotFoundError:
        return
    try:
        log.info("%s", await schedule.ensure(client, settings.task_queue, schedule.interval_from_env()))
    except Exception as exc:
        # The start-up sweep has run; the worker is still useful without the schedule, so say it in one line.
        log.warning("the chaos janitor schedule could not be created or updated: %s", exc)


def migrate_store(settings: Settings) -> None:
    """Bring the run store to the newest schema before any activity can write to it."""
    from orchestrator.scoring.store import migrate

    done = migrate(settings=settings)
    log.info("run store %s at schema %s (found %s) in %.3fs", done.location, done.after, done.before, done.seconds)


async def run_worker(client: Client, settings: Settings, health_port: int | None = None) -> None:
    ready = asyncio.Event()
    health = None
    if health_port is not None:
        from orchestrator.health import start_health

        health = start_health(health_port, ready.is_set)
    await asyncio.to_thread(migrate_store, settings)
    # A bad rails policy stops the worker here, before the janitor or any rail reads it (file:line, exit 2).
    from orchestrator.specs.policy import policy_from_env

    policy_from_env()
    # Likewise the operator settings: the flag providers every ramp names must be there before one starts.
    from orchestrator.redact import remember
    from orchestrator.specs.operator import UnleashEndpoint, operator_settings_from_env

    operator = operator_settings_from_env()
    # The token variables the operator named are secrets like the built-in ones: redacted in every log line.
    remember(*(os.environ.get(p.token_env) for p in operator.spec.flag_providers if isinstance(p, UnleashEndpoint)))
    for item in await asyncio.to_thread(run_janitor, settings):
        log.info("janitor reverted %s", item)
    await ensure_janitor_schedule(client, settings)
    worker = build_worker(client, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        ready.set()
        log.info("worker polling task queue %s on %s", settings.task_queue, settings.temporal_address)
        await stop.wait()
        ready.clear()
        log.info("shutting down: letting running activities finish")
    if health is not None:
        health.stop()
