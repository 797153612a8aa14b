"""Resilience scores: the record of each chaos run, the formula over it, the run store and the reports.

``model`` (what a run leaves behind) → ``formula`` (pure scoring) → ``store`` (SQLite) →
``report`` (text, Markdown, JSON, HTML). The formula is documented in docs/scoring.md.
"""

from orchestrator.scoring.formula import (
    DEFAULT_CONFIG,
    ExperimentScore,
    RunScore,
    ScoringConfig,
    ServiceScore,
    Status,
    SubScore,
    TrendPoint,
    freshness,
    score_run,
    score_service,
)
from orchestrator.scoring.model import (
    BlastRadius,
    CheckEvidence,
    ErrorBudget,
    Outcome,
    RunRecord,
    Stage,
    Tolerance,
)
from orchestrator.scoring.report import FORMATS, render_report, render_run
from orchestrator.scoring.store import RunStore, StoreError

__all__ = [
    "DEFAULT_CONFIG",
    "FORMATS",
    "BlastRadius",
    "CheckEvidence",
    "ErrorBudget",
    "ExperimentScore",
    "Outcome",
    "RunRecord",
    "RunScore",
    "RunStore",
    "ScoringConfig",
    "ServiceScore",
    "Stage",
    "Status",
    "StoreError",
    "SubScore",
    "Tolerance",
    "TrendPoint",
    "freshness",
    "render_report",
    "render_run",
    "score_run",
    "score_service",
]
