"""The first-run commands of docs/getting-started.md, run as written against the sandbox.

Given ``orchestrator sandbox up`` in an empty directory (no kubeconfig, no ~/.kube/config, no
ORCHESTRATOR_* settings), the CLI finds the sandbox by itself and names it first; every spec in
examples/sandbox/ then does what its comment says: the healthy canary is promoted (the judged one early, with
its plan), the broken one rolled back, the flag ramp reaches 100 % and the kill switch turns it off, the
pod-kill experiment recovers. Without a worker on the task queue, commands say so at once instead of waiting.

Everything goes through the ``orchestrator`` executable, as a newcomer types it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.sandbox import demo
from tests.fixtures_temporal import free_port

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "sandbox"
ORCHESTRATOR = str(Path(sys.executable).parent / "orchestrator")


@dataclass
class Sandbox:
    cwd: Path
    env: dict[str, str]
    prometheus_url: str

    def cli(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ORCHESTRATOR, *args], cwd=self.cwd, env=self.env, capture_output=True, text=True,
                              timeout=timeout)


def newcomer_env(home: Path) -> dict[str, str]:
    """The caller's environment minus every cluster setting, with an empty home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_") and k != "KUBECONFIG"}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    env["HOME"] = str(home)
    # The executable runs this checkout's code (the one under test), whatever the venv was installed from.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    cwd = tmp_path_factory.mktemp("newcomer")
    home = tmp_path_factory.mktemp("home")
    box = Sandbox(cwd, newcomer_env(home), "")
    ports = {"--temporal-port": free_port(), "--ui-port": free_port(), "--api-port": free_port(),
             "--prometheus-port": free_port()}
    up = box.cli("sandbox", "up", *(str(x) for kv in ports.items() for x in kv), "-o", "json", timeout=180)
    try:
        assert up.returncode == 0, up.stderr
        info = json.loads(up.stdout)
        assert Path(info["state_dir"]) == cwd / ".sandbox"
        assert any(c["name"] == "worker" and c["alive"] for c in info["components"])
        box.prometheus_url = info["prometheus_url"]
        demo.wait_for_metrics(box.prometheus_url)
        yield box
    finally:
        down = box.cli("sandbox", "down", timeout=120)
        assert down.returncode == 0, down.stderr
        assert "worker" in down.stdout


def first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def test_the_cli_finds_the_sandbox_by_itself_and_says_so(sandbox: Sandbox) -> None:
    listed = sandbox.cli("canary", "list")
    assert listed.returncode == 0, listed.stderr
    assert first_line(listed.stderr).startswith("cluster: the local sandbox at http://127.0.0.1:")
    assert str(sandbox.cwd / ".sandbox" / "kubeconfig") in first_line(listed.stderr)

    exports = sandbox.cli("sandbox", "env")
    assert exports.returncode == 0, exports.stderr
    lines = dict(line.removeprefix("export ").split("=", 1) for line in exports.stdout.splitlines())
    assert lines["ORCHESTRATOR_KUBECONFIG"] == str(sandbox.cwd / ".sandbox" / "kubeconfig")
    assert lines["ORCHESTRATOR_PROMETHEUS_URL"] == sandbox.prometheus_url
    # eval "$(orchestrator sandbox env)" then works with nothing discovered: no announcement.
    explicit = {**sandbox.env, **lines}
    listed = subprocess.run([ORCHESTRATOR, "canary", "list"], cwd="/", env=explicit, capture_output=True, text=True,
                            timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "the local sandbox" not in listed.stderr


def test_a_command_with_no_worker_on_its_queue_says_so_at_once(sandbox: Sandbox) -> None:
    started = time.monotonic()
    run = sandbox.cli("--task-queue", "nobody-polls", "canary", "run", str(EXAMPLES / "canary.yaml"), "--wait")
    assert time.monotonic() - started < 60  # CLI start-up and preflight on a busy 2-core machine; never the wait
    assert run.returncode == 3, run.stdout + run.stderr
    assert "no worker polls task queue 'nobody-polls'" in run.stderr
    assert "nothing was started" in run.stderr
    status = sandbox.cli("canary", "list")
    assert "canary-demo-shop" not in status.stdout


def test_canary_examples_promote_the_healthy_release_and_roll_back_the_broken_one(sandbox: Sandbox) -> None:
    healthy = sandbox.cli("canary", "run", str(EXAMPLES / "canary.yaml"), "--wait")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "result: promoted" in healthy.stdout

    broken = sandbox.cli("canary", "run", str(EXAMPLES / "canary-broken.yaml"), "--wait")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "result: rolled-back" in broken.stdout
    assert "error-rate failed" in broken.stdout


def test_the_judged_canary_example_is_planned_and_promoted_early_by_the_judge(sandbox: Sandbox) -> None:
    spec = str(EXAMPLES / "canary-judged.yaml")
    plan = sandbox.cli("canary", "plan", spec, "--window", "30s")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    # The demo app fails no request: the plan says so, and when a clean canary is shown negligible.
    assert "the stable served no error: no error ratio to judge" in plan.stdout, plan.stdout
    assert "a canary as clean is promoted after about" in plan.stdout, plan.stdout

    run = sandbox.cli("canary", "run", spec, "--wait")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "result: promoted" in run.stdout
    assert "within the negligible rate 2.0 % -> promote" in run.stdout


def test_flag_ramp_example_reaches_100_percent_and_the_kill_switch_turns_it_off(sandbox: Sandbox) -> None:
    flags_file = sandbox.cwd / ".sandbox" / "flags.flagd.json"
    ramp = sandbox.cli("flag", "ramp", str(EXAMPLES / "flag-ramp.yaml"), "--wait")
    assert ramp.returncode == 0, ramp.stdout + ramp.stderr
    assert "result: completed" in ramp.stdout
    split = json.loads(flags_file.read_text())["flags"]["new-checkout"]["targeting"]["fractional"]
    assert split == [["on", 10_000], ["off", 0]]
    # The demo app served the variant and counted it by flag and variant.
    assert demo_app_counted(sandbox.prometheus_url, "new-checkout", "on")

    kill = sandbox.cli("flag", "kill", "new-checkout", "-f", str(EXAMPLES / "flag-ramp.yaml"))
    assert kill.returncode == 0, kill.stdout + kill.stderr
    assert "flagd flag new-checkout is off" in kill.stdout
    split = json.loads(flags_file.read_text())["flags"]["new-checkout"]["targeting"]["fractional"]
    assert split == [["on", 0], ["off", 10_000]]


def demo_app_counted(prometheus_url: str, flag: str, variant: str) -> bool:
    import urllib.parse
    import urllib.request

    query = f'sum(http_requests_by_flag_total{{namespace="demo",app="shop",flag="{flag}",variant="{variant}"}})'
    url = f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        result = json.loads(resp.read())["data"]["result"]
    return bool(result) and float(result[0]["value"][1]) > 0


def test_pod_kill_example_recovers(sandbox: Sandbox) -> None:
    dry = sandbox.cli("chaos", "run", str(EXAMPLES / "pod-kill.yaml"), "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "nothing was changed" in dry.stdout

    run = sandbox.cli("chaos", "run", str(EXAMPLES / "pod-kill.yaml"), "--wait")
    assert run.returncode == 0, run.stdout + run.stderr

    # The scoring queries fire in the sandbox: the run is scored on all five factors, at full coverage.
    db = str(sandbox.cwd / ".sandbox" / "orchestrator.db")
    report = sandbox.cli("score", "demo/shop", "--format", "json", "--db", db)
    assert report.returncode == 0, report.stderr
    [service] = json.loads(report.stdout)["services"]
    [scored] = [r for r in service["runs"] if r["experiment"] == "sandbox-pod-kill"]
    measured = {s["name"] for s in scored["subscores"] if s["weight"] is not None}
    assert measured == {"detection", "auto-recovery", "containment", "impact", "recovery"}, scored["subscores"]
    assert scored["coverage"] == 1.0


def test_the_example_pod_kill_measures_what_the_demos_does() -> None:
    """The check above speaks for ``make demo``'s pod kill: the same detection objective and scoring queries."""
    import yaml

    def scoring(path: Path) -> tuple[object, object]:
        spec = yaml.safe_load(path.read_text())["spec"]
        return spec["steadyState"]["detectWithin"], spec["scoring"]

    assert scoring(EXAMPLES / "pod-kill.yaml") == scoring(demo.EXPERIMENT)
