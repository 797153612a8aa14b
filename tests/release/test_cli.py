"""``orchestrator release`` as a CI job sees it: the client reads canaryFile, refuses bad input with
``file:line`` and exit 2, and follows a release to its verdict with the matrix in Markdown or JSON."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from temporalio.client import Client

from orchestrator.client.release import load
from orchestrator.config import Settings
from orchestrator.specs.operator import ClusterEntry, OperatorSettings, OperatorSpec
from orchestrator.worker import build_worker
from tests.test_cli_imports import HEAVY, probe

pytestmark = pytest.mark.timeout(90)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sandbox" / "release.yaml"

CANARY = """\
apiVersion: orchestrator.dev/v1
kind: CanaryRollout
metadata: {name: shop}
spec:
  target: {namespace: shop, deployment: shop}
  change: {image: "shop:2"}
  steps:
    - setWeight: 50
    - analysis:
        checks:
          - {name: errors, query: 'sum(x{app="{{app}}"})', condition: {max: 0.01}, count: 2}
"""

RELEASE = """\
apiVersion: orchestrator.dev/v1
kind: Release
metadata: {name: shop-v2}
spec:
  canaryFile: canary.yaml
  waves:
    - clusters: [east]
    - clusters: [mars]
"""


async def orchestrator(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orchestrator", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def write(tmp_path: Path, release: str = RELEASE, canary: str = CANARY) -> Path:
    (tmp_path / "canary.yaml").write_text(canary)
    path = tmp_path / "release.yaml"
    path.write_text(release)
    return path


def test_release_help_imports_no_client_library() -> None:
    output, loaded = probe(["release", "--help"])
    assert "approve" in output and "status" in output
    assert loaded.isdisjoint(HEAVY), sorted(loaded.intersection(HEAVY))


def test_the_client_inlines_the_canary_file_and_checks_each_cluster_against_it(tmp_path: Path) -> None:
    model = load(EXAMPLE)
    assert model.spec.canary is not None and model.spec.canary_file is None
    assert model.spec.canary.spec.target.deployment == "shop"
    model = load(write(tmp_path))
    assert model.spec.canary is not None and model.spec.canary.spec.change.image == "shop:2"


@pytest.mark.parametrize(("change", "expected"), [
    (("canaryFile: canary.yaml", "canaryFile: ../canary.yaml"), "release.yaml:5: spec.canaryFile: must stay beside"),
    (("canaryFile: canary.yaml", "canaryFile: missing.yaml"), "release.yaml:5: spec.canaryFile: 'missing.yaml' is not"),
    (("    - clusters: [mars]\n", "    - clusters: [mars]\n  overrides: {mars: {weights: [10, 20]}}\n"),
     "release.yaml:4: spec: overrides.mars.weights: 2 weight(s) given for the canary's 1"),
])
async def test_bad_input_is_one_line_at_its_place_and_exit_2(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    path = write(tmp_path, RELEASE.replace(*change))
    code, _, err = await orchestrator("release", "run", str(path))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert "Traceback" not in err


async def test_a_canary_file_reached_through_a_link_out_of_the_directory_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "canary.yaml").write_text(CANARY)
    inside = tmp_path / "release"
    inside.mkdir()
    (inside / "release.yaml").write_text(RELEASE)
    (inside / "canary.yaml").symlink_to(outside / "canary.yaml")
    code, _, err = await orchestrator("release", "run", str(inside / "release.yaml"))
    assert code == 2 and "leads out of the Release file's directory" in err, err


async def test_clusters_missing_from_the_clients_operator_settings_are_refused_before_starting(tmp_path: Path) -> None:
    settings = tmp_path / "operator.yaml"
    settings.write_text("apiVersion: orchestrator.dev/v1\nkind: OperatorSettings\nmetadata: {name: t}\n"
                        "spec:\n  clusters:\n    - name: east\n")
    code, _, err = await orchestrator("release", "run", str(write(tmp_path)),
                                      env={"ORCHESTRATOR_SETTINGS_FILE": str(settings)})
    assert code == 2 and "spec.waves.1.clusters: 'mars' is not in the operator settings' cluster map" in err, err


async def test_run_wait_follows_the_release_to_its_verdict_and_status_prints_the_matrix(
    tmp_path: Path, temporal_client: Client, temporal_address: str
) -> None:
    # The client has no operator settings here: the worker's cluster map refuses "mars" at start.
    operator = OperatorSettings(spec=OperatorSpec(clusters=[ClusterEntry(name="east")]), source="operator.yaml")
    central = f"central-cli-{os.getpid()}"
    env = {"ORCHESTRATOR_TEMPORAL_ADDRESS": temporal_address, "ORCHESTRATOR_TASK_QUEUE": central}
    async with build_worker(temporal_client, Settings(task_queue=central), operator=operator):
        code, out, err = await orchestrator("release", "run", str(write(tmp_path)), "--wait", "-o", "markdown",
                                            env=env)
        assert code == 1, err
        assert out.startswith("### Release shop-v2: refused — cluster(s) mars are not in the operator settings'")
        assert "| 1 | east | pending |" in out and "| 2 | mars | pending |" in out
        code, out, err = await orchestrator("release", "status", "shop-v2", "-o", "json", env=env)
    assert code == 0, err
    shown = json.loads(out)
    assert shown["phase"] == "refused" and [r["cluster"] for r in shown["matrix"]] == ["east", "mars"]
    assert shown["stop"]["kind"] == "refused"
