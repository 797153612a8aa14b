"""The one interface every fault implements, and the context it is planned in.

A fault is three idempotent operations::

    plan(ctx)      read-only: which objects it will touch, the state to restore (recorded in
                   each ``LedgerEntry``), and a human-readable plan; never writes
    inject(entry)  apply the fault to one recorded object; running it twice changes nothing more
    revert(entry)  restore the recorded state and remove the ledger marks; a no-op once done

The ledger marks (label + expiry + entry) are written by ``orchestrator.chaos.ledger`` between
``plan`` and ``inject``; ``revert`` only restores an object still marked by the same run, so a
revert that already happened (or an object somebody else took over) is left alone.
"""

from __future__ import annotations

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


class FaultInjector(Protocol):
    def plan(self, ctx: PlanContext) -> Plan:
        """Resolve what the fault will do; reads only."""
        ...

    def inject(self, entry: LedgerEntry) -> str:
        """Apply the fault to the recorded object; returns what was done, for the journal."""
        ...

    def revert(self, entry: LedgerEntry) -> str:
        """Restore what ``inject`` changed and unmark the object; returns what was done."""
        ...
