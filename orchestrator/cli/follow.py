"""Following a run from the terminal: its new events as they come, and a word when its status cannot be read.

A run's status keeps its last events only (``events_dropped`` counts the rest), so what is new is counted
from the start of the log, not from the window. While the status query fails (no worker answers, the
workflow task fails after a bad upgrade, the server is away), ``--wait`` and ``--watch`` used to print
nothing at all; now they say so on stderr after ``NOTICE_AFTER`` seconds and again every
``NOTICE_EVERY`` seconds, with the reason, and once more when the status is readable again. The run
itself goes on meanwhile: this is about what the terminal can see.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click

QUERY_TIMEOUT = 10.0  # seconds one status query may take before it counts as unanswered
NOTICE_AFTER = 10.0
NOTICE_EVERY = 60.0


def query_failure(exc: BaseException) -> str:
    """Why a status query failed, in one line."""
    if isinstance(exc, TimeoutError):
        return f"no worker answered within {QUERY_TIMEOUT:g} s (is `orchestrator worker` running on its task queue?)"
    text = " ".join(str(getattr(exc, "message", "") or exc).split())
    return text[:300] or type(exc).__name__


class Follower:
    """Prints what is new in each status it is given, and notices about the ones it could not read."""

    def __init__(self, run_id: str, *, live: bool, echo: Callable[[str], None] = click.echo) -> None:
        self.run_id, self.live, self.echo = run_id, live, echo
        self.seen = 0
        self.failing_since: float | None = None
        self.noticed_at: float | None = None

    def new_events(self, status: Any, indent: str = "") -> None:
        """Print the events not printed yet (the log is bounded: ``events_dropped`` came before the window)."""
        self.readable()
        if not self.live:
            return
        dropped = int(getattr(status, "events_dropped", 0) or 0)
        for event in status.events[max(0, self.seen - dropped):]:
            self.echo(f"{indent}{event.at:%H:%M:%S} {event.message}")
        self.seen = dropped + len(status.events)

    def unreadable(self, why: str) -> None:
        """The status could not be read this time: say so once it has lasted, then now and again."""
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
        waited = now - self.failing_since
        due = self.noticed_at is None and waited >= NOTICE_AFTER
        again = self.noticed_at is not None and now - self.noticed_at >= NOTICE_EVERY
        if due or again:
            self.noticed_at = now
            click.echo(f"status of {self.run_id} unreadable for {waited:.0f} s: {why}; the run goes on, and this "
                       "keeps watching", err=True)

    def readable(self) -> None:
        if self.noticed_at is not None:
            click.echo(f"status of {self.run_id} readable again", err=True)
        self.failing_since = self.noticed_at = None


__all__ = ["NOTICE_AFTER", "NOTICE_EVERY", "QUERY_TIMEOUT", "Follower", "query_failure"]
