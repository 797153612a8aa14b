"""The one interface every fault implements, and the context it is planned in.

A fault is three idempotent operations::

    plan(ctx)      read-only: which objects it will touch, the state to restore (recorded in
                   each ``LedgerEntry``), and a human-readable plan; never writes
    inject(entry, alive)
                   apply the fault to one recorded object; running it twice changes nothing more.
                   Every write is preconditioned on the run's mark (``ledger.write_marked``: the
                   resourceVersion read together with the mark), so a write racing the revert's unmark
                   is refused and the revert wins; a fault that takes pods down re-checks readiness and
                   the ready-pod floors right before each write; ``alive()`` (which heartbeats in the
                   activity) is asked before each write and a False stops the injection there
    revert(entry)  restore the recorded state and remove the ledger marks; a no-op once done

The ledger marks (label + expiry + entry) are written by ``orchestrator.chaos.ledger`` between
``plan`` and ``inject``; ``revert`` only restores an object still marked by the same run, so a
revert that already happened (or an object somebody else took over) is left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from orchestrator.chaos.models import LedgerEntry, Plan, TargetSet
from orchestrator.specs.chaos import Fault


@dataclass(frozen=True)
class PlanContext:
    run: str
    fault: Fault
    targets: TargetSet
    duration: timedelta
    expires_at: datetime
    protected_namespaces: frozenset[str] = frozenset()
    # The experiment's own ``blastRadius.maxUnavailable``: recorded in the entries of faults that take pods
    # down, so ``inject`` can re-check every floor right before each write.
    max_unavailable: int | str | None = None


Alive = Callable[[], bool]
"""Asked before each write of an injection: False (the activity was cancelled) stops it there."""


def always() -> bool:
    return True


class FaultInjector(Protocol):
    def plan(self, ctx: PlanContext) -> Plan:
        """Resolve what the fault will do; reads only."""
        ...

    def inject(self, entry: LedgerEntry, alive: Alive = always) -> str:
        """Apply the fault to the recorded object; returns what was done, for the journal."""
        ...

    def revert(self, entry: LedgerEntry) -> str:
        """Restore what ``inject`` changed and unmark the object; returns what was done."""
        ...
