"""The chaos rails, as part of the rails package (their code is in ``orchestrator.chaos.safety``, below the
chaos planner that calls them, so ``orchestrator.chaos`` never imports ``orchestrator.rails``)."""

from orchestrator.chaos.safety import (
    ALWAYS_PROTECTED,
    ActiveWork,
    CanaryId,
    ChaosPolicy,
    RunningExperiment,
    alerts_query,
    check_active,
    check_alerts,
    check_all,
    check_blast_radius,
    check_error_budget,
    check_namespace,
    check_opt_in,
    check_protected,
    own_namespace,
    read_error_budget,
    selectors_overlap,
)

__all__ = [
    "ALWAYS_PROTECTED",
    "ActiveWork",
    "CanaryId",
    "ChaosPolicy",
    "RunningExperiment",
    "alerts_query",
    "check_active",
    "check_alerts",
    "check_all",
    "check_blast_radius",
    "check_error_budget",
    "check_namespace",
    "check_opt_in",
    "check_protected",
    "own_namespace",
    "read_error_budget",
    "selectors_overlap",
]
