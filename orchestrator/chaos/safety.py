"""The chaos rails' old home: they live in ``orchestrator.rails.chaos`` now, with the rails of canaries and flag
ramps. These names stay importable from here so existing callers keep working."""

from orchestrator.rails.chaos import (
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
    "read_error_budget",
    "selectors_overlap",
]
