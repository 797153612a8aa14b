"""The chart ships the rails policy as a ConfigMap the worker reads through ORCHESTRATOR_POLICY, and what it
renders is a valid RailsPolicy (loaded here by the same code the worker runs)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import yaml
from helm_python.chart import Chart

from orchestrator.errors import SpecError
from orchestrator.specs.policy import RailsPolicy, load_text
from tests.helm.test_chart import CHART, env_of, one, render

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def chart() -> Iterator[Chart]:
    with Chart.load(CHART) as c:
        yield c


def policy_of(objects: list[dict[str, Any]]) -> str:
    cm = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-rails")]
    assert len(cm) == 1
    return str(cm[0]["data"]["policy.yaml"])


def test_the_default_policy_is_valid_and_mounted(chart: Chart) -> None:
    objects = render(chart)
    p = load_text(policy_of(objects), "policy.yaml")
    assert isinstance(p, RailsPolicy)
    assert p.spec.recent_deployments.quiet_period == timedelta(minutes=30)
    assert p.spec.freezes == [] and p.spec.staffed_hours is None
    assert env_of(objects)["ORCHESTRATOR_POLICY"]["value"] == "/etc/orchestrator/rails/policy.yaml"
    pod = one(objects, "Deployment")["spec"]["template"]
    mounts = {m["name"]: m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["rails-policy"] == "/etc/orchestrator/rails"
    assert "checksum/rails-policy" in pod["metadata"]["annotations"]


def test_declared_rails_and_chart_namespaces_reach_the_policy(chart: Chart) -> None:
    values = {
        "targetNamespaces": ["shop", "search"],
        "chaos": {"protectedNamespaces": ["payments"], "nodeDrain": {"enabled": False},
                  "chaosMesh": {"enabled": False}},
        "rails": {"policy": {
            "recentDeployments": {"quietPeriod": "0s"},
            "freezes": [{"name": "holidays", "start": "2026-12-24T00:00:00+01:00", "end": "2026-12-27T00:00:00+01:00"}],
            "staffedHours": {"timezone": "Europe/Berlin", "start": "09:00", "end": "17:00"},
            "health": [{"name": "burn", "query": 'slo:burn_rate1h{app="{{app}}"}', "max": 1}],
        }},
    }
    p = load_text(policy_of(render(chart, values)), "policy.yaml")
    assert p.spec.namespaces.allowed == ["shop", "search"] and p.spec.namespaces.protected == ["payments"]
    assert p.spec.recent_deployments.quiet_period == timedelta(0)
    assert p.spec.freezes[0].name == "holidays" and p.spec.staffed_hours is not None
    assert p.spec.health[0].query == 'slo:burn_rate1h{app="{{app}}"}'


def test_a_freeze_without_timezone_renders_but_the_worker_refuses_it_with_a_line(chart: Chart) -> None:
    values = {"rails": {"policy": {"freezes": [{"name": "x", "start": "2026-12-24T00:00:00",
                                                "end": "2026-12-27T00:00:00+01:00"}]}}}
    text = policy_of(render(chart, values))
    assert yaml.safe_load(text)["spec"]["freezes"][0]["name"] == "x"
    with pytest.raises(SpecError) as err:
        load_text(text, "policy.yaml")
    assert any(p.startswith("policy.yaml:") and "spec.freezes.0.start: give a timezone" in p
               for p in err.value.problems)


def test_the_schema_rejects_an_unknown_rails_setting(chart: Chart) -> None:
    with pytest.raises(Exception, match="quietPeriods"):
        render(chart, {"rails": {"policy": {"quietPeriods": "5m"}}})
