"""The ledger: every fault is written down before it is applied, on the object itself.

Two copies of each ``LedgerEntry`` exist while a fault is in:

* the workflow's own state (the activity that records it returns the entry, so it is in the
  history before ``inject`` is scheduled), which drives the revert in the workflow's ``finally``;
* marks on the touched object: label ``chaos.orchestrator.dev/experiment: <run>``, annotation
  ``chaos.orchestrator.dev/expires-at`` and the entry as JSON in ``chaos.orchestrator.dev/ledger``.
  Objects a fault creates (Chaos Mesh CRs) carry the same marks from birth.

The marks are what make the janitor possible: it needs no workflow, only a label selector and
the clock. ``unmark_patch`` is merged into the revert's own patch, so restoring the state and
removing the marks is one write: an object is never restored but still marked, or unmarked but
not restored.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from orchestrator.chaos.models import (
    EXPERIMENT_LABEL,
    EXPIRES_ANNOTATION,
    LEDGER_ANNOTATION,
    LedgerEntry,
)
from orchestrator.chaos.objects import Objects, annotations_of, labels_of
from orchestrator.errors import RefusedError
from orchestrator.kube.client import retry_on_conflict

__all__ = ["marked", "marks", "owner_of", "read_entry", "record", "unmark_patch", "write_marked"]


def marks(entry: LedgerEntry) -> dict[str, Any]:
    """The metadata that marks an object as holding ``entry``'s fault."""
    return {
        "labels": {EXPERIMENT_LABEL: entry.run},
        "annotations": {
            EXPIRES_ANNOTATION: entry.expires_at.isoformat(),
            LEDGER_ANNOTATION: entry.model_dump_json(),
        },
    }


def unmark_patch() -> dict[str, Any]:
    return {
        "labels": {EXPERIMENT_LABEL: None},
        "annotations": {EXPIRES_ANNOTATION: None, LEDGER_ANNOTATION: None},
    }


def owner_of(obj: dict[str, Any]) -> str | None:
    """The run whose fault the object holds, if any."""
    return labels_of(obj).get(EXPERIMENT_LABEL)


def read_entry(obj: dict[str, Any]) -> LedgerEntry | None:
    """The ledger entry recorded on ``obj``; None when absent or unreadable (the janitor reports those)."""
    raw = annotations_of(obj).get(LEDGER_ANNOTATION)
    if not raw:
        return None
    try:
        return LedgerEntry.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        return None


def expiry_of(obj: dict[str, Any]) -> datetime | None:
    raw = annotations_of(obj).get(EXPIRES_ANNOTATION)
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None


def record(objects: Objects, entry: LedgerEntry) -> LedgerEntry:
    """Mark the object ``entry`` will touch; returns the entry as recorded.

    Idempotent: when the object already holds this run's mark (a retry after a crash), the entry
    recorded first is kept and returned, so the state to restore is the one from before the first
    injection, never a state the fault itself produced. An object marked by another run is refused.
    """
    if entry.creates:
        return entry  # created objects carry their marks from birth (see the fault's inject)

    def attempt() -> LedgerEntry:
        obj = objects.get(entry.object)
        owner = owner_of(obj)
        if owner == entry.run:
            first = read_entry(obj)
            # Keep the state recorded first; the action is this call's (a later round of a repeated kill).
            return entry.model_copy(update={"revert": first.revert}) if first else entry
        if owner is not None:
            raise RefusedError(f"{entry.object} already holds a fault of experiment run {owner}")
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        objects.patch(entry.object, {"metadata": {**marks(entry), "resourceVersion": rv}})
        return entry

    return retry_on_conflict(attempt)


def restore(objects: Objects, entry: LedgerEntry, body: dict[str, Any]) -> bool:
    """Apply ``body`` (the state to restore) and remove the marks in one conditional write.

    Only when the object is still marked by ``entry.run``: False when it is gone or no longer ours
    (already reverted, by the workflow or the janitor), which makes every revert idempotent.
    """

    def attempt() -> bool:
        obj = objects.get_or_none(entry.object)
        if obj is None or owner_of(obj) != entry.run:
            return False
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        meta = {**unmark_patch(), "resourceVersion": rv}
        objects.patch(entry.object, {**body, "metadata": meta})
        return True

    return retry_on_conflict(attempt)


def marked(objects: Objects, entry: LedgerEntry) -> dict[str, Any]:
    """The object as read now, which must still hold ``entry.run``'s mark; else ``RefusedError``.

    An injection that finds its mark gone stops: the revert (or the janitor) already ran, and a write
    after it would leave a fault that nothing records.
    """
    obj = objects.get(entry.object)
    if owner_of(obj) != entry.run:
        raise RefusedError(f"{entry.object} is not marked by run {entry.run} (reverted or taken over); "
                           "refusing to change it")
    return obj


def write_marked(objects: Objects, entry: LedgerEntry, change: Callable[[dict[str, Any]], dict[str, Any] | None]
                 ) -> bool:
    """Patch the object with ``change(obj)``, preconditioned on the read that found this run's mark.

    The patch carries the ``resourceVersion`` read together with the mark, so when the revert unmarks
    the object in between, the API server refuses the write (409) and the fresh read finds no mark
    (``RefusedError``): the revert wins. ``change`` answers None when there is nothing to write (False).
    """

    def attempt() -> bool:
        obj = marked(objects, entry)
        body = change(obj)
        if body is None:
            return False
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        objects.patch(entry.object, {**body, "metadata": {**(body.get("metadata") or {}), "resourceVersion": rv}})
        return True

    return retry_on_conflict(attempt)
