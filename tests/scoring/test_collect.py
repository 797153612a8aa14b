"""Evidence read at save time from the real Prometheus over the run window, recorded, stored and scored.

The backfilled scenarios (tests/fixtures_prom.py) give exact shares: ``broken``'s canary fails
10 % of its requests and answers 5 % of them slower than 0.25 s; ``sharded``'s pod ``b`` fails
1 request a second, pod ``a`` 0.05. Each record goes through both store backends.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.chaos.evidence import RunEvidence, RunStatusEvidence, StageEvidence
from orchestrator.chaos.record import build_record, collect_window, record_run
from orchestrator.config import PrometheusSettings
from orchestrator.gates.model import Measurement, Phase
from orchestrator.gates.prometheus import PrometheusProvider
from orchestrator.scoring.formula import score_run
from orchestrator.scoring.store import RunStore
from orchestrator.specs.chaos import ChaosExperiment
from tests.fixtures_prom import BACKFILL_AT, PromData

CANARY = 'namespace="{{namespace}}",app="{{app}}",track="canary"'
SCORING: dict[str, Any] = {
    "impact": {
        "failedShare": f'sum(rate(http_requests_total{{{CANARY},code=~"5.."}}[30s]))'
                       f" / sum(rate(http_requests_total{{{CANARY}}}[30s]))",
        "slowShare": f'1 - sum(rate(http_request_duration_seconds_bucket{{{CANARY},le="0.25"}}[30s]))'
                     f" / sum(rate(http_request_duration_seconds_count{{{CANARY}}}[30s]))",
    },
    "detection": f'sum(rate(http_requests_total{{{CANARY},code=~"5.."}}[30s])) > 1',
    "affected": 'sum by (pod) (rate(http_requests_total{namespace="prod",app="sharded",code=~"5.."}[30s])) > 0.5',
    "step": "10s",
}
INJECTED = BACKFILL_AT - timedelta(minutes=3)


def _experiment(scoring: dict[str, Any] | None) -> ChaosExperiment:
    spec: dict[str, Any] = {
        "target": {"namespace": "prod", "selector": {"app": "broken"}, "mode": "one"},
        "fault": {"type": "pod-kill"},
        "duration": "2m",
        "steadyState": {"checks": [{"name": "up", "query": "vector(1)", "condition": {"min": 1}}],
                        "recoverWithin": "60s", "detectWithin": "30s"},
    }
    if scoring is not None:
        spec["scoring"] = scoring
    return ChaosExperiment.model_validate(
        {"apiVersion": "orchestrator.dev/v1", "kind": "ChaosExperiment", "metadata": {"name": "kill-one"},
         "spec": spec})


def _evidence(scoring: dict[str, Any] | None, breach_after: timedelta | None = None) -> RunEvidence:
    status = RunStatusEvidence(
        name="kill-one", workflow_id="chaos-prod-kill-one", run="kill-one-1", fault="pod-kill", phase="completed",
        touched=["a"], candidates=["a", "b"], recovered=True, started_at=INJECTED - timedelta(seconds=20),
        injected_at=INJECTED, reverted_at=INJECTED + timedelta(minutes=2),
        first_breach_at=INJECTED + breach_after if breach_after is not None else None,
        recovered_at=INJECTED + timedelta(minutes=2, seconds=20), finished_at=BACKFILL_AT,
    )
    def up(offset: int) -> Measurement:
        return Measurement(check="up", phase=Phase.SUCCESSFUL, value=1.0, query="vector(1)", message="ok",
                           at=INJECTED + timedelta(seconds=offset))

    held = StageEvidence(check="up", before=[up(-10)], during=[up(30), up(90)], after=[up(150)])
    return RunEvidence(experiment=_experiment(scoring), status=status, measurements=[held])


@pytest.fixture
def metrics(prom_backfilled: PromData) -> PrometheusProvider:
    return PrometheusProvider(PrometheusSettings(url=prom_backfilled.url))


def test_window_evidence_from_prometheus(metrics: PrometheusProvider) -> None:
    window = collect_window(_evidence(SCORING), metrics)
    assert window is not None and window.notes == []
    assert window.impact is not None
    assert window.impact.failed_share == pytest.approx(0.10, abs=1e-6)
    assert window.impact.slow_share == pytest.approx(0.05, abs=1e-6)
    assert window.impact.samples == 19  # every 10 s over 3 minutes, both ends included
    assert window.detection is not None and window.detection.at == INJECTED
    assert window.affected == ["b"]


def test_recorded_stored_and_scored_on_both_backends(metrics: PrometheusProvider, store_location: str) -> None:
    # The check breached 40 s in, the detection query fired at injection: the earlier one counts.
    record = record_run(_evidence(SCORING, breach_after=timedelta(seconds=40)), metrics)
    assert record.detection_time == timedelta(0)
    assert record.detection is not None and record.detection.source.startswith("detection query")
    assert record.blast_radius.affected == ["b"]
    with RunStore(store_location) as store:
        store.save(record)
        store.save(record_run(_evidence(SCORING, breach_after=timedelta(seconds=40)), metrics))  # a retry
        assert store.count() == 1
        loaded = store.get("kill-one-1")
    assert loaded is not None
    result = score_run(loaded)
    subs = {s.name: s.value for s in result.subscores}
    # impact 15 % >= 10 %: 0; 2 reached (a touched, b seen affected) vs 1 declared: 0.5
    assert subs["impact"] == 0.0
    assert subs["containment"] == pytest.approx(0.5)
    assert subs["detection"] == 1.0
    # detection 0.2 + auto-recovery 0.3 (no check left tolerance) + containment 0.1 + impact 0 + recovery 0.1
    assert result.score == pytest.approx(70.0)


def test_an_unreadable_query_leaves_its_figure_out_and_says_why(metrics: PrometheusProvider) -> None:
    scoring = {**SCORING, "impact": {"failedShare": "sum(rate(http_requests_total[30s]"}, "detection": None}
    record = record_run(_evidence(scoring), metrics)
    assert record.impact is None
    assert "failed share not measured:" in record.message
    assert record.blast_radius.affected == ["b"]


def test_no_scoring_section_reads_nothing(metrics: PrometheusProvider) -> None:
    evidence = _evidence(None)
    assert collect_window(evidence, metrics) is None
    record = build_record(evidence)
    assert record.impact is None and record.blast_radius.affected is None
    assert next(s for s in score_run(record).subscores if s.name == "impact").value is None


def test_recording_and_scoring_never_import_the_workflow_package() -> None:
    code = ("import sys, orchestrator.chaos.record, orchestrator.chaos.evidence, orchestrator.scoring, "
            "orchestrator.scoring.store, orchestrator.scoring.config; "
            "print(sorted(m for m in sys.modules if m == 'workflows' or m.startswith('workflows.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_the_save_activity_reads_the_window_and_stores_the_run_once(
    metrics: PrometheusProvider, store_location: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``chaos.save_run`` itself, called as Temporal calls it (and called again, as a retry would)."""
    from orchestrator.activities.chaos import ChaosActivities
    from orchestrator.api.chaos import ChaosPhase, ChaosStatus, RunRecordRequest, StageMeasurements
    from orchestrator.config import Settings
    from orchestrator.scoring.store import DATABASE_URL_ENV

    evidence = _evidence(SCORING, breach_after=timedelta(seconds=40))
    status = ChaosStatus.model_validate({**evidence.status.model_dump(), "namespace": "prod",
                                         "phase": ChaosPhase.COMPLETED, "checks": []})
    request = RunRecordRequest(experiment=evidence.experiment, status=status,
                               measurements=[StageMeasurements.model_validate(m.model_dump())
                                             for m in evidence.measurements])
    monkeypatch.setenv(DATABASE_URL_ENV, store_location if "://" in store_location else f"sqlite:///{store_location}")
    activities = ChaosActivities(Settings(db_path=str(tmp_path / "unused.db")), metrics=metrics)
    assert activities.save_run(request) == "kill-one-1"
    assert activities.save_run(request) == "kill-one-1"
    with RunStore(store_location) as store:
        assert store.count() == 1
        stored = store.get("kill-one-1")
    assert stored is not None and stored.impact is not None
    assert stored.impact.failed_share == pytest.approx(0.10, abs=1e-6)
    assert stored.blast_radius.affected == ["b"]
    assert score_run(stored).score == pytest.approx(70.0)
