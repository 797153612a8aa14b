"""The protected-namespaces rail: no change of any kind in kube-system & co. or the orchestrator's own namespace.

It runs first and alone: when it refuses, ``Rails.check`` reports it without running the other rails, because
they read the cluster in the target namespace, where the worker holds no rights on a least-privilege install
(the chart refuses to grant any there), and a read that fails would turn a clear refusal into an error. The
set is fixed (``ALWAYS_PROTECTED`` plus the own namespace, ``own_namespace``); a policy's
``namespaces.protected`` adds chaos-only protections on top (the ``namespace`` rail), never fewer.
"""

from __future__ import annotations

from orchestrator.chaos.safety import check_protected
from orchestrator.errors import RefusedError
from orchestrator.rails.models import RailStatus, Verdict

__all__ = ["PROTECTED_NAMESPACE", "protected_namespace"]

PROTECTED_NAMESPACE = "protected-namespace"


def protected_namespace(namespace: str | None, own: str) -> Verdict:
    if not namespace:
        return Verdict(rail=PROTECTED_NAMESPACE, status=RailStatus.SKIPPED, reason="the change names no namespace")
    try:
        check_protected(namespace, own)
    except RefusedError as exc:
        return Verdict(rail=PROTECTED_NAMESPACE, status=RailStatus.REFUSED, reason=str(exc).removeprefix("refused: "))
    return Verdict(rail=PROTECTED_NAMESPACE, status=RailStatus.OK, reason=f"{namespace} is not protected")
