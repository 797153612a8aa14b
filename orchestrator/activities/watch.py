"""The ``watch`` activity: one per timed step, looking at all of the step's checks every interval.

Temporal's own advice for frequent polling is to poll inside one long-running activity that
heartbeats: history then grows with steps, not with looks. The rules:

* **Looks.** Every check whose look is due is looked at in the same round (the reads run together
  on a bounded thread pool); the round is folded by the pure ``gates/watch_fold.fold``. A transient
  metric-backend error is retried until the check's next look is due; only a look that could not be
  taken at all counts as one error measurement, judged by the check's limits.
* **State.** The whole check state is heartbeated after every round and while idle (bounded in size,
  ``watch_fold.bounded``); a new attempt after a crash resumes from the last heartbeat's details.
  Counters are cumulative, so at most the looks since that heartbeat are taken again.
* **Return.** On a decision, the step's end, for a background watch on a look worth telling the
  decision core (``watch_fold`` rule 5), and after ``max_seconds`` (a hand-over: the workflow starts
  the next watch with the state returned, so a watch never runs for ever).
* **Cancellation** reaches the watch through its heartbeat's answer. A watch only reads, so the
  workflow cancels it without waiting (``TRY_CANCEL``) and acts at once.
* **Isolation.** Watches run on their own task queue (``<queue>-watch``) with their own slot budget
  (``orchestrator.worker.build_watch_worker``): undo activities never queue behind them.

What a look reads is a ``Looker``: Prometheus here; the engine's tests give an in-process stand-in.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from temporalio import activity

from orchestrator import telemetry
from orchestrator.activities.clients import ActivityClients
from orchestrator.errors import MetricError
from orchestrator.gates.judge import JudgeLookRequest, JudgeLookResult, judge_update
from orchestrator.gates.model import Measurement, Phase
from orchestrator.gates.watch_fold import (
    Batch,
    End,
    Look,
    WatchRequest,
    WatchResult,
    WatchState,
    bounded,
    due,
    fold,
    judge_state,
)
from orchestrator.specs.checks import Check

READ_THREADS = 32
"""Reads run on this many threads per worker: a thousand watches share them, their looks are brief."""


class Looker(Protocol):
    """One look at one check (blocking; run on the watch's thread pool)."""

    def look(self, check: Check, variables: Mapping[str, str], judge: JudgeLookRequest | None) -> Look: ...


class PrometheusLooker:
    """Looks through a metric provider: a threshold or relative check, or a judge's read and fold."""

    def __init__(self, metrics: Any) -> None:
        self.metrics = metrics

    def look(self, check: Check, variables: Mapping[str, str], judge: JudgeLookRequest | None) -> Look:
        if judge is not None:
            from orchestrator.gates.counts import read_look

            read = read_look(self.metrics, check, variables, judge.state, None, service=True)
            state, verdict = judge_update(check, judge.state, read, alpha=judge.alpha, checks=judge.checks)
            return JudgeLookResult(state=state, verdict=verdict, measurement=verdict.measurement(read))
        from orchestrator.gates.evaluate import evaluate

        measurement = evaluate(check, self.metrics, variables, at=None)
        telemetry.record_gate(measurement.phase.value)
        return measurement


class WatchActivities(ActivityClients):
    def __init__(self, settings: Any, api_client: Any = None, metrics: Any = None,
                 looker: Looker | None = None) -> None:
        super().__init__(settings, api_client, metrics)
        self._looker = looker
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=READ_THREADS,
                                                           thread_name_prefix="watch-read")

    def activities(self) -> list[Callable[..., Any]]:
        return [self.watch]

    @property
    def looker(self) -> Looker:
        if self._looker is None:
            self._looker = PrometheusLooker(self.metrics)
        return self._looker

    @activity.defn(name="watch.checks")
    async def watch(self, req: WatchRequest) -> WatchResult:
        spec = req.spec
        details = activity.info().heartbeat_details
        state = WatchState.model_validate(details[0]) if details else req.state
        loop = asyncio.get_running_loop()
        hand_over_at = loop.time() + req.max_seconds
        while True:
            now = datetime.now(UTC)
            due_at = due(spec, state)
            ready = [c for c in spec.checks if c.name in due_at and due_at[c.name] <= now]
            end: End | None = None
            if ready:
                looks = await asyncio.gather(*(self._look(c, req, state, due_at[c.name]) for c in ready))
                state, end = fold(spec, state, Batch(at=now, looks={c.name: lk for c, lk in zip(ready, looks,
                                                                                                 strict=True)},
                                                     scheduled={c.name: due_at[c.name] for c in ready}))
            elif not spec.background and spec.until is not None and now >= spec.until:
                state, end = fold(spec, state, Batch(at=now, ended=True))
            state = bounded(state)
            activity.heartbeat(state.model_dump(mode="json"))
            if end is not None:
                return WatchResult(state=state, end=end)
            if loop.time() >= hand_over_at:
                return WatchResult(state=state, end=End.HANDOVER)
            await asyncio.sleep(self._idle(spec.until if not spec.background else None, due(spec, state),
                                           req.beat_seconds, hand_over_at - loop.time()))

    @staticmethod
    def _idle(until: datetime | None, due_at: Mapping[str, datetime], beat: float, left: float) -> float:
        wake = min([*due_at.values(), *([until] if until is not None else [])], default=None)
        seconds = beat if wake is None else (wake - datetime.now(UTC)).total_seconds()
        return max(0.01, min(seconds, beat, left))

    async def _look(self, check: Check, req: WatchRequest, state: WatchState, scheduled: datetime) -> Look:
        judge = None
        if check.judge is not None:
            judge = JudgeLookRequest(check=check, variables=req.variables,
                                     state=judge_state(req.spec, state, check, req.step_since),
                                     alpha=req.spec.judge_alpha, checks=req.spec.judge_checks)
        # Transient errors are retried until the next look is due; only a look never taken is an error.
        give_up = time.monotonic() + max(check.interval, timedelta(seconds=5)).total_seconds()
        pause = 1.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                return await loop.run_in_executor(self._pool, self.looker.look, check, req.variables, judge)
            except MetricError as err:
                if not err.retryable or time.monotonic() + pause > give_up:
                    return _error(check, f"evaluation failed: {err}")
            except Exception as err:  # a look that raises is one error measurement: fail closed, never silent
                return _error(check, f"evaluation failed: {type(err).__name__}: {err}")
            await asyncio.sleep(pause)
            pause = min(pause * 2, max(check.interval.total_seconds() / 4, 1.0))


def _error(check: Check, message: str) -> Measurement:
    return Measurement(check=check.name, phase=Phase.ERROR, query=check.query, message=message,
                       at=datetime.now(UTC))


__all__ = ["Looker", "PrometheusLooker", "WatchActivities"]
