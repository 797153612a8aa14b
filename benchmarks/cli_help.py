"""How long ``orchestrator --help``, ``canary --help`` and a shell completion take, next to ``python -c pass``.

Each command is a fresh process of the installed console script (what a user's shell runs), started RUNS
times after WARMUP untimed starts; the commands take turns, so a burst of load elsewhere on the machine
lands on all of them alike. Prints the settings, then per command the median, the fastest and the 90th
percentile wall time, the median's margin over ``python -c pass`` (the goal: at most 0.15 s on an unloaded
machine), and the median CPU time (user + system) of the process, which other work on the machine disturbs
far less than the wall time. ``--limit`` makes the exit status 1 when a wall-time margin exceeds it.

    python benchmarks/cli_help.py                # 30 runs each
    python benchmarks/cli_help.py --runs 50 --limit 0.15
    python benchmarks/cli_help.py --also /tmp/old   # the same commands with another revision's code, in turn

``--also DIR`` runs each orchestrator command a second time with ``PYTHONPATH=DIR`` (a checkout or
``git archive REV orchestrator workflows`` of another revision), taking turns with this tree's, so both
see the same load.

hyperfine (Debian package) measures the same with ``hyperfine -N --warmup 3 'orchestrator --help'``; this
script needs nothing beyond the venv.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ORCHESTRATOR = str(BIN / "orchestrator")

# name -> (argv, extra environment). The completion case is what bash's completion function runs on tab.
CASES: dict[str, tuple[list[str], dict[str, str]]] = {
    "python -c pass": ([sys.executable, "-c", "pass"], {}),
    "orchestrator --help": ([ORCHESTRATOR, "--help"], {}),
    "orchestrator canary --help": ([ORCHESTRATOR, "canary", "--help"], {}),
    "completion 'orchestrator c<TAB>'": (
        [ORCHESTRATOR],
        {"_ORCHESTRATOR_COMPLETE": "bash_complete", "COMP_WORDS": "orchestrator c", "COMP_CWORD": "1"},
    ),
}
BASELINE = "python -c pass"


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run."""
    cpu = cpu_of_children()
    start = time.perf_counter()
    subprocess.run(argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)
    return time.perf_counter() - start, cpu_of_children() - cpu


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=30, help="timed starts per command (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed starts per command first (default 3)")
    parser.add_argument("--also", metavar="DIR", default=None,
                        help="also time the commands with PYTHONPATH=DIR (another revision's code)")
    parser.add_argument("--limit", type=float, default=None,
                        help="exit 1 when a command's median exceeds python -c pass's by more than this (s)")
    args = parser.parse_args()

    cases = dict(CASES)
    if args.also:
        for name, (argv, env) in CASES.items():
            if name != BASELINE:
                cases[f"{name} [{args.also}]"] = (argv, {**env, "PYTHONPATH": args.also})
    load_before = os.getloadavg()
    for _ in range(args.warmup):
        for argv, env in cases.values():
            once(argv, env)
    times: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, (argv, env) in cases.items():
            wall, used = once(argv, env)
            times[name].append(wall)
            cpu[name].append(used)
    load_after = os.getloadavg()

    print(f"settings: {args.runs} timed runs per command after {args.warmup} warm-up runs, commands in turn; "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average (1 min) "
          f"{load_before[0]:.2f} before / {load_after[0]:.2f} after; console script {ORCHESTRATOR}")
    print()
    print("| command | median | fastest | p90 | median over `python -c pass` | median CPU |")
    print("| --- | --- | --- | --- | --- | --- |")
    baseline = statistics.median(times[BASELINE])
    worst = 0.0
    for name, values in times.items():
        median = statistics.median(values)
        margin = median - baseline
        if name in CASES and name != BASELINE:
            worst = max(worst, margin)
        print(f"| `{name}` | {median * 1000:.0f} ms | {min(values) * 1000:.0f} ms | "
              f"{percentile(values, 0.9) * 1000:.0f} ms | "
              + ("—" if name == BASELINE else f"+{margin * 1000:.0f} ms")
              + f" | {statistics.median(cpu[name]) * 1000:.0f} ms |")
    if args.limit is not None and worst > args.limit:
        print(f"\nslowest margin {worst * 1000:.0f} ms exceeds the limit of {args.limit * 1000:.0f} ms")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
