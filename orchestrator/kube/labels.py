"""The labels and annotations that mark what the orchestrator created, and the helpers that build them.

Ownership is decided by labels on the object itself, never by its name alone: a Deployment called
``app-canary`` that lacks ``app.kubernetes.io/managed-by: orchestrator`` belongs to someone else and is
neither modified nor deleted.

On objects we create (copies of the stable Deployment, canary Services)::

    app.kubernetes.io/managed-by: orchestrator
    orchestrator.dev/rollout:     <rollout name>
    orchestrator.dev/role:        canary | baseline

On the pod templates of those copies, the source template's labels plus ``orchestrator.dev/role`` (added to
the selector too, so the copy never adopts stable pods) and the conventional ``track: canary|baseline``
that metric queries select on. The stable Deployment is not relabelled, because changing its template
would restart every stable pod; stable pods are those *without* ``track`` (or with ``track: stable`` when
the user labels them so), which a query selects with ``track!~"canary|baseline"``.

Annotations on copies record where they came from and what was changed, so a reader (or a rerun after a
crash) can tell what the object is without consulting the workflow history.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Literal

__all__ = [
    "CHANGE_ANNOTATION",
    "MANAGED_BY",
    "MANAGED_BY_VALUE",
    "ROLE",
    "ROLLOUT",
    "SOURCE_ANNOTATION",
    "TRACK",
    "Role",
    "Track",
    "change_annotation",
    "copy_annotations",
    "is_ours",
    "ownership_labels",
    "selector_for",
    "template_labels",
]

Role = Literal["canary", "baseline"]
Track = Literal["canary", "baseline", "stable"]

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "orchestrator"
ROLLOUT = "orchestrator.dev/rollout"
ROLE = "orchestrator.dev/role"
TRACK = "track"

SOURCE_ANNOTATION = "orchestrator.dev/source"
CHANGE_ANNOTATION = "orchestrator.dev/change"


def ownership_labels(rollout: str, role: Role) -> dict[str, str]:
    """Labels for the metadata of an object the orchestrator creates for ``rollout``."""
    return {MANAGED_BY: MANAGED_BY_VALUE, ROLLOUT: rollout, ROLE: role}


def is_ours(labels: Mapping[str, str] | None) -> bool:
    """Whether an object with these metadata labels was created by the orchestrator."""
    return labels is not None and labels.get(MANAGED_BY) == MANAGED_BY_VALUE


def selector_for(source_selector: Mapping[str, str], role: Role) -> dict[str, str]:
    """matchLabels of a copy: the source's plus the role, so copy and stable never select each other's pods."""
    return {**source_selector, ROLE: role}


def template_labels(source_labels: Mapping[str, str], rollout: str, role: Role) -> dict[str, str]:
    """Pod template labels of a copy: the source's (so shared Services still match) plus role and track."""
    return {**source_labels, ROLE: role, ROLLOUT: rollout, TRACK: role}


def change_annotation(container: str, image: str | None, env: Mapping[str, str]) -> str:
    """A stable JSON rendering of the applied change (sorted keys, so equal changes compare equal)."""
    return json.dumps({"container": container, "image": image, "env": dict(env)}, sort_keys=True)


def copy_annotations(
    namespace: str, source: str, container: str, image: str | None, env: Mapping[str, str]
) -> dict[str, str]:
    """Annotations for a copy of ``namespace/source``."""
    return {
        SOURCE_ANNOTATION: f"{namespace}/{source}",
        CHANGE_ANNOTATION: change_annotation(container, image, env),
    }
