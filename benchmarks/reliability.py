"""Faults injected into real runs, counted: does a rollout finish correctly, once, leaving nothing behind?

Runs the scenarios of ``tests/reliability/`` on their own stack (the sandbox Kubernetes API server, a
Prometheus over promtool-built live data, a Temporal dev server with a database file, workers as
processes) and prints one table:

    scenario | runs | faults injected | finished correctly | steps repeated | faults left behind | data lost

The worker-kill row loops over boundary indices: a clean run's history lists every activity event
(scheduled and completed), and each later run SIGKILLs the worker the moment the N-th of those events
is recorded, for every N (``--stride`` samples every k-th index on a busy machine). The chaos rows kill
the chaos worker for good mid-fault (only the janitor's schedule, on its own worker, is left to revert
the fault at its expiry) and the Temporal server mid-fault. Every damage column must read 0.

    python benchmarks/reliability.py                 # every boundary, every scenario
    python benchmarks/reliability.py --stride 4 --only kill,prom
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from orchestrator.sandbox.apiserver import ApiServer
from tests.reliability import chaos_runs, runs
from tests.reliability.harness import PromServer, TemporalServer, connect
from tests.reliability.runs import Ran, Stage

SCENARIOS = ("kill", "temporal", "prom", "api", "workers", "chaos")


@dataclass
class Row:
    scenario: str
    runs: int = 0
    faults: int = 0
    finished: int = 0
    repeated: int = 0
    left_behind: int = 0
    lost: int = 0
    problems: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def add(self, ran: Ran) -> None:
        self.runs += 1
        self.faults += ran.faults
        self.finished += int(ran.outcome.finished)
        self.repeated += ran.outcome.repeated
        self.left_behind += ran.outcome.left_behind
        self.lost += ran.outcome.lost
        self.problems += ran.outcome.problems
        if ran.detail:
            self.details.append(ran.detail)


class Bench:
    def __init__(self, root: Path, server: ApiServer, prom: PromServer, temporal: TemporalServer) -> None:
        self.root, self.server, self.prom, self.temporal = root, server, prom, temporal
        self.client: Any = None
        kubeconfig = server.write_kubeconfig(root / "kubeconfig")
        configuration = k8s.Configuration()
        k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        self.api_client = k8s.ApiClient(configuration)
        self.kubeconfig = kubeconfig

    async def stage(self) -> Stage:
        if self.client is None:
            self.client = await connect(self.temporal.address)
        ns = f"r-{uuid.uuid4().hex[:8]}"
        k8s.CoreV1Api(self.api_client).create_namespace({"metadata": {"name": ns}})
        start = self.server.audit_log.last_seq
        workdir = self.root / ns
        workdir.mkdir()
        return Stage(api_client=self.api_client, server=self.server, kubeconfig=self.kubeconfig, namespace=ns,
                     prom_url=self.prom.url, prom_data=self.prom.data_dir, temporal_address=self.temporal.address,
                     client=self.client, task_queue=f"rel-{ns}", workdir=workdir,
                     audit=lambda: [e for e in self.server.audit(since=start) if e.get("namespace") == ns])

    async def run(self, row: Row, scenario: Callable[[Stage], Awaitable[Ran]]) -> None:
        began = time.monotonic()
        try:
            ran = await scenario(await self.stage())
        except Exception as exc:  # a scenario that could not finish counts as not finished, with its reason
            row.runs += 1
            row.problems.append(f"{type(exc).__name__}: {str(exc)[:300]}")
            print(f"  {row.scenario}: run failed: {exc}", flush=True)
            return
        row.add(ran)
        state = "ok" if ran.outcome.ok else "DAMAGE " + "; ".join(ran.outcome.problems)
        print(f"  {row.scenario}: {ran.outcome.phase} in {time.monotonic() - began:.0f} s, {state}", flush=True)


# The scenarios run --repeat times each, by group (--only): (row label, scenario).
REPEATED: dict[str, list[tuple[str, Callable[[Stage], Awaitable[Ran]]]]] = {
    "temporal": [("Temporal server SIGKILL + restart (db file)", runs.temporal_restarted)],
    "prom": [
        ("Prometheus down beyond error budget",
         lambda st: runs.prometheus_down(st, back_after=None, error_limit=1)),
        ("Prometheus down 2 s, within budget", lambda st: runs.prometheus_down(st, back_after=2.0, error_limit=4)),
    ],
    "api": [
        ("Kubernetes API 500/409/429 storms (1 s of 3)", runs.api_storm),
        ("Kubernetes API down during rollback", runs.api_down_in_rollback),
    ],
    "workers": [("two workers, one SIGKILLed mid-step", runs.two_workers_one_killed)],
    "chaos": [
        ("chaos worker SIGKILLed mid-fault, never restarted (janitor)", chaos_runs.chaos_worker_killed_for_good),
        ("Temporal server SIGKILL + restart mid-fault", chaos_runs.temporal_restarted_mid_fault),
    ],
}


async def _kill_at(stage: Stage, *, what: str, activity: str, n: int) -> Ran:
    return await runs.worker_killed_at(stage, what, activity, n)


async def main(args: argparse.Namespace) -> list[Row]:
    only = set(args.only.split(",")) if args.only else set(SCENARIOS)
    root = Path(tempfile.mkdtemp(prefix="reliability-"))
    server = ApiServer().start()
    prom = PromServer(root / "prom-main").build().start()
    temporal = TemporalServer(root / "temporal-main").start()
    bench = Bench(root, server, prom, temporal)
    rows: list[Row] = []
    try:
        if "kill" in only:
            row = Row("worker SIGKILL at activity boundary N")
            _, events = await runs.clean(await bench.stage())
            boundaries = []
            seen: dict[tuple[str, str], int] = {}
            for what, name in events:
                if name.startswith("notify.") or name.startswith("rails."):
                    continue
                seen[(what, name)] = seen.get((what, name), 0) + 1
                boundaries.append((what, name, seen[(what, name)]))
            picked = boundaries[::args.stride]
            print(f"{len(boundaries)} boundaries in a clean run; killing at {len(picked)}", flush=True)
            for what, name, n in picked:
                print(f"  boundary: {what} {name} #{n}", flush=True)
                await bench.run(row, functools.partial(_kill_at, what=what, activity=name, n=n))
            rows.append(row)
        for group, scenarios in REPEATED.items():
            if group not in only:
                continue
            for label, scenario in scenarios:
                row = Row(label)
                for _ in range(args.repeat):
                    await bench.run(row, scenario)
                rows.append(row)
    finally:
        temporal.stop()
        prom.stop()
        server.stop()
    return rows


def table(rows: list[Row], args: argparse.Namespace) -> str:
    head = ("scenario", "runs", "faults injected", "finished correctly", "steps repeated", "faults left behind",
            "data lost")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(f"| {r.scenario} | {r.runs} | {r.faults} | {r.finished}/{r.runs} | {r.repeated} | "
                     f"{r.left_behind} | {r.lost} |")
    lines.append("")
    lines.append(f"settings: boundary stride {args.stride}, repeats {args.repeat}; canary of 3 replicas, steps "
                 "setWeight 34, pause 2s, analysis (error ratio, 1s interval, count 2), setWeight 67, pause 1s, "
                 "background check (1s interval); replicas routing; progressDeadline 30s; Prometheus scenarios: "
                 "analysis count 8, consecutiveErrorLimit 1 (down for good) or 4 (down 2 s + restart), "
                 "onInconclusive rollback; API storm: every request answered 500, 409 or 429 for 1 s of every 3 s; "
                 "API outage: "
                 "connection refused from abort until rollback-stuck is shown, then `retry`; chaos scenarios: "
                 "scale-down of a 4-replica Deployment to 1 for 20 s (12 s with the Temporal restart), expiry margin "
                 f"3 s, janitor schedule every {chaos_runs.JANITOR_EVERY:g} s on its own worker and task queue; "
                 f"{os.cpu_count()} cores")
    for r in rows:
        if r.details:
            lines.append(f"{r.scenario}: " + "; ".join(r.details))
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stride", type=int, default=1, help="kill at every k-th boundary (1: every one)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each other scenario")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    arguments = parser.parse_args()
    result = asyncio.run(main(arguments))
    print()
    print(table(result, arguments))
    problems = [p for r in result for p in r.problems]
    if problems:
        print("\nproblems:\n  " + "\n  ".join(problems))
    sys.stdout.flush()
    os._exit(0 if not problems else 1)
