"""Running the CLI the way a user does: in-process through click's runner, or as a real process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from orchestrator.cli.main import cli

REPO = Path(__file__).resolve().parents[2]

# A canary spec whose line numbers the tests rely on (see the comments).
BASE = """\
apiVersion: orchestrator.dev/v1
kind: CanaryRollout
metadata:
  name: web
spec:
  target:
    namespace: shop
    deployment: web
  change:
    image: registry.local/web:1.0
  steps:
    - setWeight: 20
    - pause: {duration: 10s}
    - analysis:
        checks:
          - name: errors
            query: sum(rate(http_requests_total[1m]))
            condition: {max: 0.1}
            count: 3
            interval: 10s
  progressDeadline: 10m
"""
# line 2 kind, 4 metadata.name, 12 setWeight, 13 pause, 16 check name, 18 condition, 19 count, 20 interval,
# 21 progressDeadline


@dataclass
class Outcome:
    code: int
    out: str
    err: str
    # CPU seconds the command used (this process's for ``invoke``, the child's for ``run_process``): a bound on
    # it catches a pathological input on any machine, where wall time would measure how busy the machine is.
    # A command that waits instead of working (a FIFO, a connect) is caught by the wall-clock timeouts.
    seconds: float
    wall: float = 0.0

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def invoke(args: list[str], env: dict[str, str] | None = None) -> Outcome:
    """The CLI in this process, through click's test runner (no traceback may reach it)."""
    runner = CliRunner()
    started, cpu = time.monotonic(), time.process_time()
    result = runner.invoke(cli, args, env=env, catch_exceptions=True)
    seconds, wall = time.process_time() - cpu, time.monotonic() - started
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args}: uncaught {type(result.exception).__name__}: {result.exception}")
    return Outcome(result.exit_code, result.stdout, _without_server_noise(result.stderr), seconds, wall)


_NOISE = re.compile(r"-{40}\nException occurred during processing of request.*?\n-{40}\n", re.S)


def _without_server_noise(err: str) -> str:
    """click's runner swaps the process-wide ``sys.stderr``; under xdist a session fixture's HTTP server thread
    (from another test module on the same worker) may report a dropped client there meanwhile. That block is
    socketserver's, not the CLI's."""
    return _NOISE.sub("", err)


def validate_text(tmp_path: Path, text: str, name: str = "spec.yaml") -> tuple[Outcome, str]:
    path = tmp_path / name
    path.write_text(text)
    return invoke(["validate", str(path)]), str(path)


def run_process(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 60, memory_bytes: int | None = None
) -> Outcome:
    """``python -m orchestrator ARGS`` as a real process, optionally under an address-space limit."""

    def limit() -> None:
        if memory_bytes is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    full_env.update(env or {})
    started, before = time.monotonic(), _children_cpu()
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=REPO,
        preexec_fn=limit,
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr, _children_cpu() - before, time.monotonic() - started)


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def assert_one_line(outcome: Outcome, code: int, pattern: str) -> str:
    """Exactly one line on stderr, matching ``pattern`` (a regex), no traceback, the expected exit code."""
    import re

    assert "Traceback" not in outcome.err, outcome.err[-2000:]
    assert outcome.code == code, (outcome.code, outcome.err[-2000:])
    assert len(outcome.err_lines) == 1, outcome.err[-2000:]
    line = outcome.err_lines[0]
    assert re.search(pattern, line), (pattern, line)
    return line
