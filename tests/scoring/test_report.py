"""Each report format carries the right numbers; the CLI gives one line and exit 2 on bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli.score import score
from orchestrator.errors import SpecError
from orchestrator.scoring.model import CustomerImpact, ErrorBudget, Outcome
from orchestrator.scoring.report import render_report
from orchestrator.scoring.store import RunStore
from tests.scoring import T0, error_rate, make_run

NOW = T0 + timedelta(seconds=90)


@pytest.fixture
def store(store_location: str) -> Iterator[RunStore]:
    """checkout: pod-kill scored 100 then 25 -> mean 62.5 - sd 37.5 = 25; the latest run has a NaN
    during the fault and is still broken when it ends. payments: one refused run."""
    with RunStore(store_location) as s:
        s.save(make_run(run_id="run-1", ended_at=NOW - timedelta(hours=1)))
        s.save(
            make_run(
                run_id="run-2",
                recovery_time=timedelta(seconds=120),
                detection_time=None,
                impact=CustomerImpact(failed_share=0.12, samples=4),
                error_budget=ErrorBudget(slo_target=0.999, burned=0.05),
                checks=[error_rate(during=[0.01, float("nan"), 0.01, 0.09])],
            )
        )
        s.save(make_run(run_id="run-3", service="shop/payments", outcome=Outcome.REFUSED))
        yield s


def test_json_is_complete_and_strict(store: RunStore) -> None:
    document = json.loads(render_report(store, "shop/checkout", "json", now=NOW))
    [service] = document["services"]
    assert service["service"] == "shop/checkout"
    # latest run: detection 0 (-20), auto-recovery 0 (-30), impact 0 (-20), recovery 0.5 (-5) -> 25;
    # with run-1 (100) an hour earlier, nearly equal freshness
    runs = {r["run_id"]: r for r in service["runs"]}
    assert runs["run-1"]["score"] == pytest.approx(100.0)
    assert runs["run-2"]["score"] == pytest.approx(25.0)
    subs = {s["name"]: s["value"] for s in runs["run-2"]["subscores"]}
    assert subs == {"detection": 0.0, "auto-recovery": 0.0, "containment": 1.0, "impact": 0.0, "recovery": 0.5,
                    "deviation": 0.0, "budget": 0.0}
    experiment = service["experiments"][0]
    assert experiment["runs"] == 2
    assert service["score"] == pytest.approx(experiment["mean"] - experiment["stddev"])
    assert service["score"] == pytest.approx(25.0, abs=0.2)  # 62.5 - 37.5 with equal weights
    # the evidence is all there, and NaN became null
    during = runs["run-2"]["evidence"]["checks"][0]["during"]
    assert [m["value"] for m in during] == [0.01, None, 0.01, 0.09]
    assert [p["run_id"] for p in service["trend"]] == ["run-1", "run-2"]
    assert document["config"]["weights"] == {"detection": 0.2, "auto_recovery": 0.3, "containment": 0.2,
                                             "impact": 0.2, "recovery": 0.1}


def test_json_for_all_services_includes_unscored(store: RunStore) -> None:
    document = json.loads(render_report(store, None, "json", now=NOW))
    by_name = {s["service"]: s for s in document["services"]}
    assert set(by_name) == {"shop/checkout", "shop/payments"}
    assert by_name["shop/payments"]["score"] is None
    assert by_name["shop/payments"]["status"] == "UNSCORED"


def test_markdown_has_header_subscore_table_evidence_and_trend(store: RunStore) -> None:
    text = render_report(store, "shop/checkout", "markdown", now=NOW)
    header = text.splitlines()[0]
    assert header.startswith("### Resilience score for `shop/checkout`: 25.")
    assert header.endswith("/ 100 (FRAGILE), 100 % of the weight measured")
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert rows["detection"].startswith("| detection | 0.00 | 20 % | fault never detected (objective 60s)")
    assert rows["auto-recovery"].startswith(
        "| auto-recovery | 0.00 | 30 % | error-rate: out of tolerance from 12:00:10 until the fault was removed")
    assert rows["containment"].startswith("| containment | 1.00 | 20 % | 1 reached (1 touched, affected not measured)")
    assert rows["impact"].startswith("| impact | 0.00 | 20 % | 12.00 % of requests failed during the run")
    assert rows["recovery"].startswith("| recovery | 0.50 | 10 % | recovered in 120s (objective 60s)")
    assert rows["deviation"].startswith("| deviation | 0.00 | evidence | error-rate: no data during the fault")
    assert rows["budget"].startswith("| budget | 0.00 | evidence | burned 5.00 %")
    assert rows["pod-kill"].startswith("| pod-kill | 2 | ")
    assert "Evidence: run `run-2`, workflow `chaos-pod-kill-1`, [history](http://" in text
    assert "**Trend** (oldest to newest): 100.0 -> 25.0" in text


def test_text_report_numbers(store: RunStore) -> None:
    text = render_report(store, "shop/checkout", "text", now=NOW)
    assert text.startswith("shop/checkout: 25.")
    assert "trend: 100.0 -> 25.0" in text
    assert "run run-2 (pod-kill, completed," in text


class _SvgCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.svgs: list[dict[str, object]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "svg":
            self.svgs.append({"attrs": a, "points": 0, "rects": 0, "nodata": 0})
        elif self.svgs and tag == "polyline":
            current = self.svgs[-1]
            current["points"] = int(str(current["points"])) + len((a.get("points") or "").split())
        elif self.svgs and tag == "rect" and a.get("class") == "fault":
            self.svgs[-1]["rects"] = 1
        elif self.svgs and tag == "line" and a.get("class") == "nodata":
            self.svgs[-1]["nodata"] = int(str(self.svgs[-1]["nodata"])) + 1


def test_html_has_metric_and_trend_charts(store: RunStore) -> None:
    page = render_report(store, "shop/checkout", "html", now=NOW)
    assert page.startswith("<!DOCTYPE html>")
    # self-contained: no scripts, no stylesheets or images fetched from elsewhere
    assert "<script" not in page and "<link" not in page and "<img" not in page
    parser = _SvgCollector()
    parser.feed(page)
    trend = [s for s in parser.svgs if s["attrs"]["class"] == "trend"]  # type: ignore[index]
    metric = [s for s in parser.svgs if s["attrs"]["class"] == "metric"]  # type: ignore[index]
    assert len(trend) == 1 and trend[0]["points"] == 2
    # the latest run: 3 before + 4 during (one NaN) + 3 after = 9 points drawn, one no-data tick
    assert len(metric) == 1
    assert metric[0]["points"] == 9
    assert metric[0]["nodata"] == 1
    assert metric[0]["rects"] == 1
    assert '<span class="status FRAGILE">FRAGILE</span>' in page
    assert '<span class="coverage">100 % of the weight measured</span>' in page


def test_unknown_service_and_format_are_spec_errors(store: RunStore) -> None:
    with pytest.raises(SpecError, match="unknown service 'shop/nope'"):
        render_report(store, "shop/nope", "text")
    with pytest.raises(SpecError, match="unknown format 'pdf'"):
        render_report(store, "shop/checkout", "pdf")


def test_cli_exit_codes_and_output(store: RunStore) -> None:
    runner = CliRunner()
    ok = runner.invoke(score, ["shop/checkout", "--format", "json", "--db", store.path])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["services"][0]["service"] == "shop/checkout"
    for args in (["shop/nope", "--db", store.path], ["--format", "pdf", "--db", store.path]):
        result = runner.invoke(score, args)
        assert result.exit_code == 2
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1


def test_cli_scores_with_a_teams_weights_and_refuses_a_bad_config(store: RunStore, tmp_path: Path) -> None:
    runner = CliRunner()
    # run-2 (25 under the runbook's weights) under weights that only count containment, where it has 1.0
    only_containment = tmp_path / "scoring.yaml"
    only_containment.write_text("weights:\n  detection: 0\n  autoRecovery: 0\n  containment: 1\n"
                                "  customerImpact: 0\n  recoveryTime: 0\n")
    ok = runner.invoke(score, ["shop/checkout", "--format", "json", "--db", store.path,
                               "--config", str(only_containment)])
    assert ok.exit_code == 0, ok.output
    runs = {r["run_id"]: r for r in json.loads(ok.stdout)["services"][0]["runs"]}
    assert runs["run-2"]["score"] == pytest.approx(100.0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("# team weights\nweights:\n  detection: 0.5\n  autoRecovery: 0.6\n")
    result = runner.invoke(score, ["shop/checkout", "--db", store.path, "--config", str(bad)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.strip() == f"{bad}:2: weights: weights must sum to 1, these sum to 1.6"


@pytest.fixture
def thin_store(store_location: str) -> Iterator[RunStore]:
    """demo/shop: one pod kill at 100 where detection and impact were not measured (60 % of the weight)."""
    with RunStore(store_location) as s:
        s.save(make_run(run_id="thin", service="demo/shop", detection_objective=None, detection_time=None,
                        impact=None))
        yield s


THIN_RUN = "range 60-100, 60 % of the weight measured"
THIN_WHY = ("Not measured: detection, impact. Scored 0 they give 60, scored 1 they give 100; "
            "60 % of the weight measured, below the 80 % needed for a status word.")


def test_text_states_coverage_range_and_withholds_the_status(thin_store: RunStore) -> None:
    lines = render_report(thin_store, "demo/shop", "text", now=NOW).splitlines()
    assert lines[0] == "demo/shop: 100.0/100 NOT ENOUGH EVIDENCE (60 % of the weight measured)"
    run = next(line for line in lines if line.startswith("  run thin "))
    assert run.endswith(f": 100.0 NOT ENOUGH EVIDENCE ({THIN_RUN})")
    assert f"    {THIN_WHY}" in lines
    header = next(line for line in lines if line.lstrip().startswith("experiment"))
    row = next(line for line in lines if line.lstrip().startswith("pod-kill"))
    assert header.split()[-1] == "measured" and row.split()[-2:] == ["60", "%"]


def test_markdown_states_coverage_range_and_withholds_the_status(thin_store: RunStore) -> None:
    text = render_report(thin_store, "demo/shop", "markdown", now=NOW)
    lines = text.splitlines()
    assert lines[0] == ("### Resilience score for `demo/shop`: 100.0 / 100 (NOT ENOUGH EVIDENCE), "
                        "60 % of the weight measured")
    assert f"#### pod-kill, run `thin`: 100.0 (NOT ENOUGH EVIDENCE), {THIN_RUN}" in lines
    assert f"**{THIN_WHY}**" in lines
    assert "| pod-kill | 1 | 100.0 | 0.0 | 100.0 | 1.00 | 60 % | `thin` (100.0) |" in lines


def test_html_states_coverage_range_and_withholds_the_status(thin_store: RunStore) -> None:
    page = render_report(thin_store, "demo/shop", "html", now=NOW)
    status = '<span class="status NOT_ENOUGH_EVIDENCE">NOT ENOUGH EVIDENCE</span>'
    assert f'100.0 / 100 {status} <span class="coverage">60 % of the weight measured</span></h2>' in page
    assert f'100.0 {status} <span class="coverage">{THIN_RUN}</span></h3>' in page
    assert f'<p class="unmeasured"><strong>{THIN_WHY}</strong></p>' in page
    assert '<td class="num">60 %</td>' in page


def test_json_carries_coverage_range_and_the_threshold(thin_store: RunStore) -> None:
    document = json.loads(render_report(thin_store, "demo/shop", "json", now=NOW))
    [service] = document["services"]
    assert (service["status"], service["coverage"]) == ("NOT ENOUGH EVIDENCE", pytest.approx(0.6))
    assert service["experiments"][0]["coverage"] == pytest.approx(0.6)
    [run] = service["runs"]
    assert (run["score"], run["low"], run["high"], run["coverage"]) == (
        pytest.approx(100.0), pytest.approx(60.0), pytest.approx(100.0), pytest.approx(0.6))
    assert document["config"]["min_coverage"] == 0.8


def test_cli_lowers_the_threshold_from_the_teams_config(thin_store: RunStore, tmp_path: Path) -> None:
    # The CLI scores as of now: a run that just ended, so freshness leaves its score whole.
    thin_store.save(make_run(run_id="now", service="demo/now", ended_at=datetime.now(UTC), detection_objective=None,
                             detection_time=None, impact=None))
    config = tmp_path / "scoring.yaml"
    config.write_text("minCoverage: 0.6\n")
    runner = CliRunner()
    default = runner.invoke(score, ["demo/now", "--db", thin_store.path])
    assert default.stdout.splitlines()[0] == "demo/now: 100.0/100 NOT ENOUGH EVIDENCE (60 % of the weight measured)"
    result = runner.invoke(score, ["demo/now", "--db", thin_store.path, "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "demo/now: 100.0/100 RESILIENT (60 % of the weight measured)"


def test_staleness_is_named_only_when_it_shows(thin_store: RunStore) -> None:
    a_minute = render_report(thin_store, "demo/shop", "text", now=NOW + timedelta(minutes=1))
    assert "scaled down" not in a_minute
    two_weeks = render_report(thin_store, "demo/shop", "text", now=NOW + timedelta(days=14))
    assert "; evidence 0.50 of the 1.00 needed, score scaled down for staleness." in two_weeks
