"""The fault registry: one module per fault type, chosen by the spec's ``type`` field.

Adding a fault is one module implementing ``FaultInjector`` and one line in ``_REGISTRY``
(plus its model in ``orchestrator.specs.chaos``). Injectors are built per call with the
object access they need; there is no mutable global state.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.chaos.faults.base import Alive, FaultInjector, PlanContext, always
from orchestrator.chaos.objects import Objects

__all__ = ["Alive", "FaultInjector", "PlanContext", "always", "fault_types", "injector_for"]


def _registry() -> dict[str, Callable[[Objects], FaultInjector]]:
    from orchestrator.chaos.faults.chaos_mesh import IoChaosInjector, NetworkChaosInjector, StressChaosInjector
    from orchestrator.chaos.faults.http_fault import HttpFaultInjector
    from orchestrator.chaos.faults.node_drain import NodeDrainInjector
    from orchestrator.chaos.faults.pod_kill import PodKillInjector
    from orchestrator.chaos.faults.scale_down import ScaleDownInjector

    return {
        "pod-kill": PodKillInjector,
        "scale-down": ScaleDownInjector,
        "http-fault": HttpFaultInjector,
        "node-drain": NodeDrainInjector,
        "network-chaos": NetworkChaosInjector,
        "stress-chaos": StressChaosInjector,
        "io-chaos": IoChaosInjector,
    }


def fault_types() -> list[str]:
    return sorted(_registry())


def injector_for(fault_type: str, objects: Objects) -> FaultInjector:
    registry = _registry()
    if fault_type not in registry:
        raise KeyError(f"unknown fault type {fault_type!r} (known: {', '.join(sorted(registry))})")
    return registry[fault_type](objects)
