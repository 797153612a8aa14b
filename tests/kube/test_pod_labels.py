"""The sandbox labels series as a real cluster does: from pod labels, so stable series carry no ``track``.

On a real cluster an application does not know its track; Prometheus' Kubernetes service discovery adds
the pod's labels to its series through relabelling, and the user's stable pods have no ``track`` label.
The sandbox must be no kinder: the demo service puts no track on a stable pod's metrics, the targets file
carries pod labels as ``__meta_kubernetes_pod_label_*`` and the scrape config maps them, with no
``honor_labels`` to let a process claim labels of its own.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from orchestrator.sandbox.prometheus import Target, TargetsFile, render_config, targets_for
from orchestrator.sandbox.runtime import PORT_ANNOTATION, ProcessRuntime, pod_environment
from tests.fixtures_prom import _binary
from tests.fixtures_temporal import free_port

pytestmark = pytest.mark.timeout(90)


def _pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "shop", "labels": labels, "annotations": {}},
        "spec": {"containers": [{"image": "demo:v1"}]},
        "status": {"phase": "Running"},
    }


def test_a_stable_pod_gets_no_track() -> None:
    assert pod_environment(_pod("web-1", {"app": "web"}), 1)["TRACK"] == ""
    assert pod_environment(_pod("web-c", {"app": "web", "track": "canary"}), 1)["TRACK"] == "canary"


def test_scrape_config_relabels_pod_labels_without_honor_labels(tmp_path: Path) -> None:
    config = json.loads(render_config(2.0, tmp_path / "targets.json"))
    job = config["scrape_configs"][0]
    assert job.get("honor_labels", False) is False
    assert {"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)"} in job["relabel_configs"]

    targets = TargetsFile(tmp_path / "targets.json")
    pod = Target("shop", "web-1", 1001, (("app", "web"), ("app.kubernetes.io/name", "web")))
    assert targets.update([pod])
    (group,) = json.loads((tmp_path / "targets.json").read_text())
    assert group["labels"]["__meta_kubernetes_pod_label_app"] == "web"
    assert group["labels"]["__meta_kubernetes_pod_label_app_kubernetes_io_name"] == "web"
    assert targets.read() == [pod]


def _query(url: str, promql: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}", timeout=5) as r:
        result: list[dict[str, Any]] = json.load(r)["data"]["result"]
    return result


def test_prometheus_sees_the_stable_without_track_and_the_canary_with_it(tmp_path: Path) -> None:
    runtime = ProcessRuntime(tmp_path / "pods")
    pods = [_pod("web-1", {"app": "web"}), _pod("web-canary-1", {"app": "web", "track": "canary"})]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    prom: subprocess.Popen[bytes] | None = None
    try:
        for pod in pods:
            fields = runtime.start(pod)
            assert fields is not None
            pod["metadata"]["annotations"].update(fields["annotations"])
        targets_file = tmp_path / "targets.json"
        endpoints = [
            Target("shop", p["metadata"]["name"], int(p["metadata"]["annotations"][PORT_ANNOTATION])) for p in pods
        ]
        TargetsFile(targets_file).update(targets_for(endpoints, pods))
        config = tmp_path / "prometheus.yml"
        config.write_text(render_config(2.0, targets_file))
        prom = subprocess.Popen(
            [_binary("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 45
        series: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                series = _query(url, 'http_requests_total{namespace="shop",app="web",code="200"}')
            except OSError:
                series = []
            if len(series) == 2:
                break
            time.sleep(0.5)
        assert len(series) == 2, series
        by_pod = {s["metric"]["pod"]: s["metric"] for s in series}
        assert "track" not in by_pod["web-1"], by_pod["web-1"]
        assert by_pod["web-canary-1"]["track"] == "canary"
        stable = _query(url, 'http_requests_total{namespace="shop",app="web",code="200",track!~"canary|baseline"}')
        assert [s["metric"]["pod"] for s in stable] == ["web-1"]
        assert _query(url, 'http_requests_total{app="web",track="stable"}') == []
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(timeout=10)
        runtime.stop_all()
