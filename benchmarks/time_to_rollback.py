"""Time to rollback of a bad canary, measured on the sandbox, beside the false rollbacks of good ones.

Runs N pairs of canaries under the same settings: a version that fails 10 % of its requests, and
a healthy one. For the bad runs it prints the median and p95 of:

  (a) detection + revert: from the bad version receiving traffic (its first weight
      confirmed) to canary weight 0;
  (b) the revert alone: from the rollback decision to canary weight 0;

counting a rollback only when the regression decided it (a failed gate whose deciding look had
data), not missing data. For the good runs it prints how many were rolled back (false rollbacks).
Times come from the workflow's own timestamps (Temporal's deterministic clock). Checks start at
once (initial delay 0): the engine waits for the canary's series to appear instead.

    python benchmarks/time_to_rollback.py --runs 5 --scrape-interval 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]


async def bench(runs: int, scrape_interval: float, check_interval: str, initial_delay: str) -> int:
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    from orchestrator.config import PrometheusSettings, Settings
    from orchestrator.kube.client import load_api_client
    from orchestrator.sandbox import demo, manager
    from orchestrator.worker import build_worker
    from tests.fixtures_temporal import free_port

    state_dir = Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    info = manager.up(state_dir, temporal_port=free_port(), ui_port=free_port(), api_port=free_port(),
                      prometheus_port=free_port(), scrape_interval=scrape_interval)
    try:
        settings = Settings(temporal_address=info.temporal_address, task_queue="bench",
                            prometheus=PrometheusSettings(url=info.prometheus_url), kubeconfig=info.kubeconfig)
        api_client = load_api_client(info.kubeconfig)
        demo.deploy_app(api_client)
        await asyncio.to_thread(demo.wait_for_metrics, info.prometheus_url)
        client = await Client.connect(info.temporal_address, data_converter=pydantic_data_converter)
        detect: list[float] = []
        revert: list[float] = []
        other: list[str] = []
        false_rollbacks = 0
        async with build_worker(client, settings, api_client=api_client):
            for i in range(runs):
                for kind, image, env in (("bad", f"registry.local/shop:bad{i}", {"ERROR_RATE": "0.1"}),
                                         ("good", f"registry.local/shop:good{i}", {})):
                    spec = demo.rollout_spec(image, env)
                    for step in spec["spec"]["steps"]:
                        for check in step.get("analysis", {}).get("checks", []):
                            check["interval"] = check_interval
                            check["initialDelay"] = initial_delay
                    _, st = await demo.run_canary(client, settings, spec, lambda _m: None)
                    gate = st.decisive_gate
                    by_regression = (st.phase.value == "rolled-back" and st.reason_kind == "gate"
                                     and gate is not None and gate.last is not None and not gate.last.no_data)
                    if kind == "good":
                        false_rollbacks += st.phase.value != "promoted"
                        print(f"run {i + 1}/{runs} good: {st.phase.value} — {st.reason}")
                    elif by_regression and st.canary_traffic_at and st.weight_zero_at:
                        a = (st.weight_zero_at - st.canary_traffic_at).total_seconds()
                        b = (st.weight_zero_at - st.rollback_started_at).total_seconds() if st.rollback_started_at \
                            else 0.0
                        detect.append(a)
                        revert.append(b)
                        print(f"run {i + 1}/{runs} bad: (a) {a:.2f}s  (b) {b:.3f}s  — {st.reason}")
                    else:
                        other.append(f"{st.phase.value}: {st.reason}")
                        print(f"run {i + 1}/{runs} bad: not decided by the regression: {st.phase.value}: {st.reason}")
                    time.sleep(2)  # let the stable-only window refill before the next version
        print()
        print(f"settings: scrape interval {scrape_interval:g}s, check interval {check_interval}, "
              f"initial delay {initial_delay} (waitForData default), {runs} bad + {runs} good runs")
        if detect:
            print(f"(a) bad version receives traffic -> weight 0: median {statistics.median(detect):.2f}s, "
                  f"p95 {p95(detect):.2f}s  ({len(detect)}/{runs} rolled back by the regression)")
            print(f"(b) rollback decision -> weight 0:          median {statistics.median(revert):.3f}s, "
                  f"p95 {p95(revert):.3f}s")
        print(f"bad runs not decided by the regression: {len(other)}/{runs}")
        print(f"good runs rolled back (false rollbacks): {false_rollbacks}/{runs}")
        return 0 if len(detect) == runs and false_rollbacks == 0 else 1
    finally:
        manager.down(state_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scrape-interval", type=float, default=5.0)
    parser.add_argument("--check-interval", default="2s")
    parser.add_argument("--initial-delay", default="0s")
    args = parser.parse_args()
    code = asyncio.run(bench(args.runs, args.scrape_interval, args.check_interval, args.initial_delay))
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
