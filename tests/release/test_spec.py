"""The Release spec, the operator's cluster map and the chart values that render it.

Given Release files as CI writes them, when they are loaded, then mistakes are refused at their
line with the field named, and each cluster's canary (overrides applied) is itself a valid canary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_python.chart import Chart

from orchestrator.errors import SpecError
from orchestrator.specs.loader import load_file, schema
from orchestrator.specs.operator import load_text as load_operator
from orchestrator.specs.release import Release, canary_for
from tests.helm.test_chart import CHART, of_kind, render

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sandbox" / "release.yaml"

CANARY: dict[str, Any] = {
    "apiVersion": "orchestrator.dev/v1", "kind": "CanaryRollout", "metadata": {"name": "shop"},
    "spec": {
        "target": {"namespace": "demo", "deployment": "shop"},
        "change": {"image": "shop:v2"},
        "steps": [
            {"setWeight": 25},
            {"analysis": {"checks": [{"name": "error-rate", "query": 'sum(x{app="{{app}}"})',
                                      "condition": {"max": 0.02}, "interval": "1s", "count": 2}]}},
            {"setWeight": 50},
        ],
    },
}


def release_doc(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"canary": CANARY, "waves": [{"clusters": ["a"]}, {"clusters": ["b", "c"]}]}
    return {"apiVersion": "orchestrator.dev/v1", "kind": "Release", "metadata": {"name": "r"},
            "spec": {**base, **spec}}


def load(tmp_path: Path, doc: dict[str, Any]) -> Release:
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    model = load_file(path)
    assert isinstance(model, Release)
    return model


def refused(tmp_path: Path, doc: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as info:
        load(tmp_path, doc)
    [line] = info.value.problems
    return str(line)


def test_the_example_loads_and_names_three_clusters_in_two_waves() -> None:
    model = load_file(EXAMPLE)
    assert isinstance(model, Release)
    assert [w.clusters for w in model.spec.waves] == [["sandbox-1"], ["sandbox-2", "sandbox-3"]]
    assert model.spec.canary_file == "canary.yaml" and model.spec.on_failure.undo == "release"
    assert "Release" in str(schema("Release")["title"])


def test_overrides_make_a_valid_canary_per_cluster(tmp_path: Path) -> None:
    model = load(tmp_path, release_doc(overrides={"b": {
        "replicas": 4, "weights": [10, 60], "thresholds": {"error-rate": {"max": 0.5}},
        "env": {"ERROR_RATE": "0.2"}}}))
    b = canary_for(model.spec, "b").spec
    assert [s.set_weight for s in b.steps if hasattr(s, "set_weight")] == [10, 60]
    assert b.all_checks()[0].condition is not None and b.all_checks()[0].condition.max == 0.5  # type: ignore[union-attr]
    assert b.change.env == {"ERROR_RATE": "0.2"} and b.traffic.replicas == 4  # type: ignore[union-attr]
    assert canary_for(model.spec, "a") == model.spec.canary, "a cluster without overrides runs the canary as is"
    # 10 % of 4 pods is 25 %: the warning names the cluster it applies to.
    assert any(w.startswith("spec.overrides.b: spec.steps[0].setWeight: 10%") for w in model.warnings())


@pytest.mark.parametrize(("spec", "expected"), [
    ({"overrides": {"b": {"weights": [10]}}}, "spec: overrides.b.weights: 1 weight(s) given for the canary's 2"),
    ({"overrides": {"b": {"thresholds": {"latency": {"max": 1}}}}}, "has no check named 'latency'"),
    ({"overrides": {"z": {"replicas": 2}}}, "overrides name cluster 'z', which no wave releases"),
    ({"waves": [{"clusters": ["a"]}, {"clusters": ["a"]}]}, "cluster 'a' appears in more than one wave"),
    ({"canaryFile": "../canary.yaml", "canary": None}, "no '..'"),
    ({"canaryFile": "/etc/canary.yaml", "canary": None}, "no absolute path"),
    ({"canaryFile": "c.yaml"}, "give exactly one of canary (inline) or canaryFile"),
    ({"waves": [{"clusters": ["a"], "bake": {"checks": [CANARY["spec"]["steps"][1]["analysis"]["checks"][0]]}}]},
     "bake checks need a duration"),
    ({"waves": [{"clusters": ["EU West"]}]}, "spec.waves.0.clusters.0: String should match pattern"),
])
def test_mistakes_are_refused_at_their_line(tmp_path: Path, spec: dict[str, Any], expected: str) -> None:
    doc = release_doc(**spec)
    doc["spec"] = {k: v for k, v in doc["spec"].items() if v is not None}
    line = refused(tmp_path, doc)
    assert line.startswith(f"{tmp_path / 'release.yaml'}:"), line
    assert expected in line, line


OPERATOR = """apiVersion: orchestrator.dev/v1
kind: OperatorSettings
metadata: {name: prod}
spec:
  clusters:
    - name: eu-west-1
    - name: us-east-1
      taskQueue: workers-us
"""


def test_the_operator_cluster_map_gives_each_cluster_its_queue() -> None:
    settings = load_operator(OPERATOR, "operator.yaml")
    assert settings.cluster_queues() == {"eu-west-1": "orchestrator-eu-west-1", "us-east-1": "workers-us"}
    with pytest.raises(SpecError, match=r"operator.yaml:4: spec: each cluster has its own task queue"):
        load_operator(OPERATOR.replace("workers-us", "orchestrator-eu-west-1"), "operator.yaml")
    with pytest.raises(SpecError, match=r"operator.yaml:7: spec.clusters.0.taskQueue"):
        load_operator(OPERATOR.replace("    - name: eu-west-1\n", "    - name: eu-west-1\n      taskQueue: 'a b'\n"),
                      "operator.yaml")


def test_the_chart_renders_the_cluster_map_and_a_cluster_workers_queue(tmp_path: Path) -> None:
    with Chart.load(CHART) as chart:
        values = {"clusters": [{"name": "eu-west-1"}, {"name": "us-east-1", "taskQueue": "workers-us"}]}
        objects = render(chart, values)
        [cm] = [o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-operator")]
        settings = load_operator(cm["data"]["operator.yaml"], "operator.yaml")  # what the worker reads
        assert settings.cluster_queues() == {"eu-west-1": "orchestrator-eu-west-1", "us-east-1": "workers-us"}

        def queue(objects: list[dict[str, Any]]) -> str:
            [deploy] = of_kind(objects, "Deployment")
            env = {e["name"]: e for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
            return str(env["ORCHESTRATOR_TASK_QUEUE"]["value"])

        assert queue(objects) == "orchestrator", "the central worker keeps temporal.taskQueue"
        assert queue(render(chart, {"cluster": {"name": "eu-west-1"}})) == "orchestrator-eu-west-1"
        with pytest.raises(Exception, match="clusters"):
            render(chart, {"clusters": [{"name": "EU West"}]})
