"""Canary weight by replica ratio: the arithmetic, shared by ``validate`` and the replicas router.

Behind one plain Service a pod's share of requests is its share of ready endpoints, so a weight can only
be a ratio of pod counts. Of the stable's ``N`` replicas, ``c = round(N*w/100)`` (half up, at least 1 when
``w > 0``) run as canary and ``max(N - c, 1)`` stay stable: the stable is never scaled to 0 before
promotion, so "100 %" is ``N`` canary pods beside one stable pod, ``N/(N+1)`` of the traffic. On 4
replicas 5 % and 20 % are really 25 %, 100 % is really 80 %; the *effective* weight is what is reported,
and ``validate`` warns when the requested one differs (given the ``traffic.replicas`` hint).

``setWeight: {replicas: c}`` names the canary pod count directly: ``c`` canary pods, ``max(N - c, 1)``
stable ones (``N`` when ``c`` is 0).

Pure functions, no client imports: spec validation and workflow code may import this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.specs.canary import CanarySpec

__all__ = ["effective_weight", "pods_split", "replica_split", "weight_warnings"]

# Closer than this (in percentage points) counts as "what was asked for".
TOLERANCE = 0.5


def replica_split(total: int, weight: int) -> tuple[int, int]:
    """``(stable, canary)`` replica counts for ``weight`` percent of ``total`` replicas."""
    if not 0 <= weight <= 100:
        raise ValueError(f"weight must be within 0..100, got {weight}")
    if weight == 0 or total == 0:
        return total, (1 if weight and total == 0 else 0)
    # Half-up, not Python's banker's rounding: 50 % of 3 is 2 canary pods, every time.
    canary = max(1, (total * weight + 50) // 100)
    return max(total - canary, 1), canary


def pods_split(total: int, canary: int) -> tuple[int, int]:
    """``(stable, canary)`` replica counts for exactly ``canary`` canary pods."""
    if canary < 0:
        raise ValueError(f"canary replicas must be >= 0, got {canary}")
    if canary == 0:
        return total, 0
    return max(total - canary, 1 if total else 0), canary


def effective_weight(stable: int, canary: int) -> float:
    """Percent of requests the canary receives when ``stable`` and ``canary`` pods are ready."""
    pods = stable + canary
    return 0.0 if pods == 0 else 100.0 * canary / pods


def _representable(total: int) -> list[float]:
    return sorted({effective_weight(*pods_split(total, c)) for c in range(1, total + 1)})


def weight_warnings(spec: CanarySpec) -> list[str]:
    """One line per ``setWeight`` the declared replica count cannot represent (replicas routing only)."""
    from orchestrator.specs.canary import CanaryReplicas, ReplicasRouting, SetWeightStep

    if not isinstance(spec.traffic, ReplicasRouting) or spec.traffic.replicas is None:
        return []
    total = spec.traffic.replicas
    out: list[str] = []
    for i, step in enumerate(spec.steps):
        if not isinstance(step, SetWeightStep):
            continue
        where = f"spec.steps[{i}].setWeight"
        if isinstance(step.set_weight, CanaryReplicas):
            if step.set_weight.replicas > total:
                out.append(
                    f"{where}: {step.set_weight.replicas} canary pods is more than the {total} declared replicas"
                )
            continue
        weight = step.set_weight
        stable, canary = replica_split(total, weight)
        got = effective_weight(stable, canary)
        if abs(got - weight) >= TOLERANCE:
            choices = ", ".join(f"{w:.3g}" for w in _representable(total))
            out.append(
                f"{where}: {weight}% cannot be represented with {total} replicas: {canary} canary beside "
                f"{stable} stable pods is {got:.3g}% of traffic (representable: {choices}%; or name pods "
                f"with setWeight: {{replicas: {canary}}})"
            )
    return out
