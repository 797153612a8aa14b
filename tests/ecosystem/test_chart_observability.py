"""The chart's Grafana dashboard and PrometheusRule, rendered by the real Helm engine; the alert rules
checked and unit-tested by the real ``promtool``, the dashboard's PromQL parsed by a real Prometheus."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from helm_python.chart import Chart, lint

from tests.ecosystem.prom_history import binary

CHART = Path(__file__).resolve().parents[2] / "helm" / "orchestrator"
RELEASE, NAMESPACE = "orch", "ops"
ON = {"dashboard": {"enabled": True}, "prometheusRule": {"enabled": True}, "serviceMonitor": {"enabled": True}}
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def chart() -> Iterator[Chart]:
    with Chart.load(CHART) as c:
        yield c


def render(chart: Chart, values: dict[str, Any]) -> list[dict[str, Any]]:
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return [doc for path, text in manifests.items() if not path.endswith("NOTES.txt")
            for doc in yaml.safe_load_all(text) if doc]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, [o["kind"] for o in objects]
    return found[0]


def dashboard(objects: list[dict[str, Any]]) -> dict[str, Any]:
    cm = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard"))
    parsed: dict[str, Any] = json.loads(cm["data"]["orchestrator.json"])
    return parsed


def test_both_are_off_by_default_and_lint_clean_when_on(chart: Chart) -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in render(chart, {})}
    assert not any(k == "PrometheusRule" or n.endswith("-dashboard") for k, n in kinds)
    report = lint(CHART, ON, strict=True, namespace=NAMESPACE)
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == [], report


def test_dashboard_configmap_carries_the_sidecar_label_and_the_panels(chart: Chart) -> None:
    objects = render(chart, ON)
    cm = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard"))
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == NAMESPACE
    titles = {p["title"] for p in dashboard(objects)["panels"]}
    assert {"Rollouts started", "Gate verdicts per second", "Rollbacks by reason", "Time to rollback",
            "Active faults", "Stuck rollbacks", "Workflow task failures (SDK)"} <= titles
    custom = render(chart, {**ON, "dashboard": {"enabled": True, "labels": {"grafana_dashboard": "orch"},
                                                "annotations": {"grafana_folder": "Platform"}}})
    cm = next(o for o in custom if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard"))
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "orch"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Platform"}


def test_sdk_metrics_port_is_wired_through_pod_service_and_servicemonitor(chart: Chart) -> None:
    objects = render(chart, {**ON, "health": {"port": 8080, "sdkMetricsPort": 9555}})
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ORCHESTRATOR_SDK_METRICS_PORT"] == "9555"
    assert {"name": "http-sdk", "containerPort": 9555, "protocol": "TCP"} in container["ports"]
    ports = {p["name"]: p for p in one(objects, "Service")["spec"]["ports"]}
    assert ports["http-sdk-metrics"]["port"] == 9555 and ports["http-sdk-metrics"]["targetPort"] == "http-sdk"
    endpoints = [e["port"] for e in one(objects, "ServiceMonitor")["spec"]["endpoints"]]
    assert endpoints == ["http-metrics", "http-sdk-metrics"]


def test_schema_rejects_unknown_keys_of_the_new_sections(chart: Chart) -> None:
    with pytest.raises(helm_python.HelmValuesError, match="additional properties 'severity' not allowed"):
        chart.render({"prometheusRule": {"enabled": True, "severity": "page"}}, name=RELEASE, namespace=NAMESPACE)


def rules_file(chart: Chart, tmp_path: Path) -> Path:
    rule = one(render(chart, ON), "PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def test_rules_pass_promtool_check(chart: Chart, tmp_path: Path) -> None:
    path = rules_file(chart, tmp_path)
    proc = subprocess.run([binary("promtool"), "check", "rules", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 4 rules found" in proc.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text(path.read_text().replace("> 0 unless on()", "> > 0 unless on()"))
    assert subprocess.run([binary("promtool"), "check", "rules", str(broken)], capture_output=True).returncode != 0


UNIT_TESTS = Path(__file__).parent / "alerts_test.yaml"


def test_alerts_fire_on_the_series_they_watch(chart: Chart, tmp_path: Path) -> None:
    rules_file(chart, tmp_path)
    tests = tmp_path / "tests.yaml"
    tests.write_text(UNIT_TESTS.read_text())
    proc = subprocess.run([binary("promtool"), "test", "rules", str(tests)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The same tests fail against rules that watch the wrong thing (the test can fail).
    wrong = tmp_path / "rules.yaml"
    wrong.write_text(wrong.read_text().replace("orchestrator_rollback_stuck", "orchestrator_rollback_stuck_x"))
    assert subprocess.run([binary("promtool"), "test", "rules", str(tests)], capture_output=True,
                          cwd=tmp_path).returncode != 0


GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "1m", "$namespace": "ops"}


def instant_query(prometheus: str, expr: str) -> tuple[int, dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_every_dashboard_query_parses_in_a_real_prometheus(chart: Chart, empty_prometheus: str) -> None:
    exprs = [t["expr"] for p in dashboard(render(chart, ON))["panels"] for t in p["targets"]]
    assert len(exprs) >= 15
    pattern = re.compile("|".join(re.escape(k) for k in sorted(GRAFANA_VARIABLES, key=len, reverse=True)))
    for expr in exprs:
        concrete = pattern.sub(lambda m: GRAFANA_VARIABLES[m.group(0)], expr)
        assert "$" not in concrete, concrete
        status, body = instant_query(empty_prometheus, concrete)
        assert status == 200 and body["status"] == "success", (expr, body)
    status, body = instant_query(empty_prometheus, "sum by (kind (orchestrator_rollbacks_total)")
    assert status == 400 and body["errorType"] == "bad_data"
