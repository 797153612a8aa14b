"""Resilience scores: the record of each chaos run, the formula over it, the run store and the reports.

``model`` (what a run leaves behind) → ``formula`` (the runbook's five weighted factors, pure;
``config`` reads a team's weights) → ``store`` (SQLite or PostgreSQL through SQLAlchemy Core,
Alembic migrations in ``migrations/``, schema in ``tables``) → ``report`` (text, Markdown, JSON,
HTML). The formula is documented in docs/scoring.md. Nothing here imports the workflow package.
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
    Weights,
    freshness,
    score_run,
    score_service,
)
from orchestrator.scoring.model import (
    BlastRadius,
    CheckEvidence,
    CustomerImpact,
    Detection,
    ErrorBudget,
    Outcome,
    RunRecord,
    Stage,
    Tolerance,
)
from orchestrator.scoring.report import FORMATS, render_report, render_run
from orchestrator.scoring.store import RunStore, StoreError, StorePathError, StoreUnreachableError

__all__ = [
    "DEFAULT_CONFIG",
    "FORMATS",
    "BlastRadius",
    "CheckEvidence",
    "CustomerImpact",
    "Detection",
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
    "StorePathError",
    "StoreUnreachableError",
    "SubScore",
    "Tolerance",
    "TrendPoint",
    "Weights",
    "freshness",
    "render_report",
    "render_run",
    "score_run",
    "score_service",
]
