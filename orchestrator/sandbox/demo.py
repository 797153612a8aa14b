"""``make demo``: the orchestrator doing its real job on the local sandbox.

1. bring the sandbox up (Temporal, the sandbox cluster, traffic, Prometheus, a worker);
2. deploy the demo app ``shop`` at v1 behind a Service, with steady load; it evaluates
   the flags ``new-checkout`` and ``new-payment`` through OpenFeature and flagd;
3. canary v2 (healthy) → promoted early by the sequential judge (canary vs stable);
4. canary v3 (10 % errors) → rolled back automatically on the judge's evidence;
5. flag ramp of ``new-checkout`` (healthy variant) → 100 %;
6. flag ramp of ``new-payment`` (its "on" code path fails 10 %) → reverted by its gate;
7. the kill switch on ``new-checkout`` → everyone back on "off" at once;
8. run the pod-kill chaos experiment against the promoted version and score it;
9. print a summary: outcomes, the deciding verdicts with their values, time to
   rollback, the resilience score, and links to the workflows in the Temporal UI;
10. stop the sandbox unless ``--keep`` (then the worker keeps running too, and the
    specs in examples/sandbox/ work by hand).

The same code path as on a cluster: the workflows run in the sandbox's worker process
(``orchestrator worker``), with its activities and routers talking HTTP to the
sandbox's Kubernetes API and Prometheus. The gates' queries select the stable side with
``{{track_selector}}`` (stable pods carry no ``track`` label), see gates/template.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from temporalio.client import Client

NAMESPACE = "demo"
EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "pod-kill.yaml"
APP = "shop"
REPLICAS = 4
FLAGS = ("new-checkout", "new-payment")
# The bad variant: new-payment's "on" code path fails one request in four. Each pod spreads its
# failures evenly over the requests it served with the variant, so at the 10 % stage (about 0.5
# such requests per second per pod) every pod has failed one within 8 s.
FLAG_ERROR_RATE = "new-payment:on=0.25"
# The canaries are judged against the stable side by the sequential judge (docs/judge.md) on the
# cumulative request counters: the judge reads the exact increase between its looks itself, so a new
# pod's first scrape or a window still filling cannot bias it. The stable side has no ``track`` label.
REQUESTS = 'sum by (pod) (http_requests_total{namespace="{{namespace}}",app="{{app}}",{{track_selector}}})'
ERRORS = ('sum by (pod) (http_requests_total{namespace="{{namespace}}",app="{{app}}",{{track_selector}},'
          'code=~"5.."})')
# Requests per second the sandbox sends to the app: at 25 % weight the canary serves about 10 of them,
# enough for the judge to bound a healthy canary's error rate below 2 % within about half a minute.
TRAFFIC_RATE = 40.0
LATENCY_P95 = (
    'histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{namespace="{{namespace}}",'
    'app="{{app}}",{{track_selector}}}[20s])))'
)


def variant_error_ratio(flag: str) -> str:
    """The error ratio of the requests that got the ramped variant of ``flag``."""
    sel = f'namespace="{{{{namespace}}}}",app="{{{{app}}}}",flag="{flag}",variant="{{{{variant}}}}"'
    return (f'sum(rate(http_requests_by_flag_total{{{sel},code=~"5.."}}[20s]))'
            f' / sum(rate(http_requests_by_flag_total{{{sel}}}[20s]))')


def ramp_spec(flag: str) -> dict[str, Any]:
    """The ramp of ``flag`` on the sandbox's flag definitions, named as the sandbox's operator settings name them."""
    from orchestrator.sandbox.manager import SANDBOX_FLAG_PROVIDER

    return {
        "apiVersion": "orchestrator.dev/v1",
        "kind": "FlagRamp",
        "metadata": {"name": flag},
        "spec": {
            "provider": {"type": "flagd", "name": SANDBOX_FLAG_PROVIDER},
            "flag": flag, "variant": "on", "control": "off",
            "target": {"namespace": NAMESPACE, "app": APP},
            # Every stage, the last too, holds long enough for measurements after the initial delay.
            "stages": [{"percent": 10, "hold": "20s"}, {"percent": 50, "hold": "12s"}, {"percent": 100, "hold": "10s"}],
            "checks": [{
                "name": "treatment-error-rate", "query": variant_error_ratio(flag), "condition": {"max": 0.02},
                "interval": "3s", "initialDelay": "7s", "failureLimit": 0,
            }],
            "onFailure": "revert",
        },
    }


def rollout_spec(image: str, env: dict[str, str]) -> dict[str, Any]:
    def errors_judge(name: str) -> dict[str, Any]:
        # One false-rollback bound (1 %) for the whole rollout, split over its two judge checks. The
        # demo app's healthy versions fail no request, so no error ratio can ever be bounded: a canary
        # shown to stay below 2 % errors is promoted ("negligible"), one worse than its stable is rolled
        # back as soon as the evidence says so.
        return {"name": name, "interval": "3s",
                "judge": {"errors": ERRORS, "requests": REQUESTS, "tolerance": "1.5x", "negligibleRate": "2%",
                          "maxFalseRollback": "1%"}}

    return {
        "apiVersion": "orchestrator.dev/v1",
        "kind": "CanaryRollout",
        "metadata": {"name": APP},
        "spec": {
            "target": {"namespace": NAMESPACE, "deployment": APP, "container": APP},
            "change": {"image": image, "env": env},
            "traffic": {"type": "replicas"},
            "steps": [
                {"setWeight": 25},
                {"analysis": {"duration": "120s", "checks": [errors_judge("errors-vs-stable")]}},
                {"setWeight": 50},
                {"analysis": {"duration": "90s", "checks": [errors_judge("errors-vs-stable-50")]}},
            ],
            "backgroundChecks": [{
                "name": "p95-latency", "query": LATENCY_P95, "condition": {"max": 0.5},
                "interval": "5s", "initialDelay": "8s", "failureLimit": 1, "noData": "inconclusive",
                "inconclusiveLimit": 10,
            }],
            "progressDeadline": "60s",
        },
    }


def deploy_app(api_client: Any, flags_file: str | None = None) -> None:
    """``demo/shop`` v1: 4 replicas behind a Service; with ``flags_file``, evaluating ``FLAGS`` from it."""
    from kubernetes import client as k8s

    core, apps = k8s.CoreV1Api(api_client), k8s.AppsV1Api(api_client)
    try:
        # The namespace opts in to chaos experiments: without the annotation they are refused.
        core.create_namespace({"metadata": {"name": NAMESPACE,
                                            "annotations": {"chaos.orchestrator.dev/allow": "true"}}})
    except k8s.ApiException as exc:
        if exc.status != 409:
            raise
    # Like a user's Deployment: none of the orchestrator's labels (no ``track``) on the stable pods.
    labels = {"app": APP}
    env = [{"name": "LATENCY_MS", "value": "20-60"}]
    if flags_file:
        env += [{"name": "FLAGD_FILE", "value": flags_file}, {"name": "FLAGS", "value": ",".join(FLAGS)},
                {"name": "FLAG_ERROR_RATE", "value": FLAG_ERROR_RATE}]
    for create, body in (
        (core.create_namespaced_service, {
            "metadata": {"name": APP, "labels": {"app": APP}},
            "spec": {"selector": {"app": APP}, "ports": [{"port": 80, "targetPort": 8080}]},
        }),
        (apps.create_namespaced_deployment, {
            "metadata": {"name": APP, "labels": {"app": APP}},
            "spec": {
                "replicas": REPLICAS,
                "selector": {"matchLabels": {"app": APP}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": APP, "image": "registry.local/shop:v1", "env": env}]},
                },
            },
        }),
    ):
        try:
            create(NAMESPACE, body)
        except k8s.ApiException as exc:
            if exc.status != 409:
                raise


def wait_for_metrics(prometheus_url: str, timeout: float = 90.0) -> None:
    query = f'sum(rate(http_requests_total{{namespace="{NAMESPACE}",app="{APP}",track!~"canary|baseline"}}[20s]))'
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        url = f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
        with urllib.request.urlopen(url, timeout=5) as resp:
            if b'"result":[{' in resp.read():
                return
        time.sleep(1)
    raise RuntimeError("Prometheus has no request rate for the demo app yet")


async def follow(handle: Any, query: Callable[[], Awaitable[Any]], done: Callable[[Any], bool],
                 echo: Callable[[str], None]) -> Any:
    """Print a run's events as they happen until ``done(status)``; returns that last status."""
    from orchestrator.cli.follow import Follower

    follower = Follower(handle.id, live=True, echo=echo)
    while True:
        status = await query()
        follower.new_events(status, indent="  ")
        if done(status):
            return status
        await asyncio.sleep(0.5)


async def run_canary(client: Any, settings: Any, spec: dict[str, Any], echo: Any) -> Any:
    from orchestrator.api.canary import FINAL_PHASES, CanaryInput
    from orchestrator.specs.canary import CanaryRollout
    from workflows.canary import CanaryWorkflow, workflow_id

    rollout = CanaryRollout.model_validate(spec)
    handle = await client.start_workflow(
        CanaryWorkflow.run, CanaryInput(rollout=rollout),
        id=workflow_id(NAMESPACE, APP), task_queue=settings.task_queue,
    )
    await follow(handle, lambda: handle.query(CanaryWorkflow.status), lambda st: st.phase in FINAL_PHASES, echo)
    return handle, await handle.result()


async def run_experiment(client: Client, settings: Any, path: Path, echo: Any) -> Any:
    from orchestrator.api.chaos import ChaosInput, ChaosStatus
    from orchestrator.client import chaos as control
    from orchestrator.specs.chaos import ChaosExperiment
    from orchestrator.specs.loader import load_file

    experiment = load_file(path, expect="ChaosExperiment")
    assert isinstance(experiment, ChaosExperiment)
    handle = await control.start(client, ChaosInput(experiment=experiment, source=str(path)), settings.task_queue)
    await follow(handle, lambda: handle.query("status", result_type=ChaosStatus),
                 lambda st: st.finished_at is not None, echo)
    return handle, await handle.result()


def summary(results: list[tuple[str, Any, Any]], ui: str) -> str:
    from orchestrator.cli.render import fmt_value

    lines = ["", "=" * 78, "Demo summary", "=" * 78]
    for label, handle, st in results:
        lines.append(f"{label}: {st.phase.value.upper()}  ({st.image})")
        gate = st.decisive_gate or (st.gates[0] if st.gates else None)
        if gate is not None and gate.last is not None:
            lines.append(f"  deciding verdict: {gate.reason}")
            if gate.last.outcome is None:  # a judge's verdict gives its own counts; a threshold's, its value
                lines.append(f"  last value: {fmt_value(gate.last.value)}  query: {gate.last.query.strip()[:90]}...")
        if st.canary_traffic_at and st.weight_zero_at:
            a = (st.weight_zero_at - st.canary_traffic_at).total_seconds()
            lines.append(f"  time to rollback: {a:.1f}s from the bad version receiving traffic to canary weight 0")
        if st.rollback_started_at and st.weight_zero_at:
            b = (st.weight_zero_at - st.rollback_started_at).total_seconds()
            lines.append(f"  revert alone (decision to weight 0): {b:.2f}s")
        lines.append(f"  workflow: {ui}/namespaces/default/workflows/{handle.id}/{handle.result_run_id}/history")
    return "\n".join(lines)


async def run_ramp(client: Client, settings: Any, spec: dict[str, Any], echo: Any) -> Any:
    from orchestrator.api.flags import FINAL_PHASES, FlagRampInput
    from orchestrator.specs.flags import FlagRamp
    from workflows.flag_ramp import FlagRampWorkflow

    ramp = FlagRamp.model_validate(spec)
    handle = await client.start_workflow(
        FlagRampWorkflow.run, FlagRampInput(ramp=ramp), id=ramp.workflow_id(), task_queue=settings.task_queue)
    status = await follow(handle, lambda: handle.query(FlagRampWorkflow.status),
                          lambda st: st.phase in FINAL_PHASES, echo)
    await handle.result()
    return handle, status


def ramp_summary(label: str, handle: Any, st: Any, ui: str) -> list[str]:
    lines = [f"{label}: {st.phase.value.upper()}  (variant {st.variant} at {st.percent:g}%; applied "
             + (" -> ".join(f"{p:g}%" for p in st.applied) or "nothing") + ")"]
    if st.decisive_gate is not None and st.decisive_gate.last is not None:
        lines.append(f"  deciding verdict: {st.decisive_gate.reason}")
    lines.append(f"  workflow: {ui}/namespaces/default/workflows/{handle.id}/{handle.result_run_id}/history")
    return lines


def served_share(flags_file: str, flag: str, users: int = 2000) -> float:
    """Share of simulated users the flag serves "on" now: the OpenFeature SDK on the same file."""
    from openfeature import api
    from openfeature.contrib.provider.flagd import FlagdProvider
    from openfeature.contrib.provider.flagd.config import ResolverType
    from openfeature.evaluation_context import EvaluationContext

    api.set_provider_and_wait(FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=flags_file),
                              domain="demo-check")
    try:
        c = api.get_client("demo-check")
        on = sum(c.get_boolean_value(flag, False, EvaluationContext(targeting_key=f"user-{i}")) for i in range(users))
    finally:
        api.shutdown()
    return on / users


async def demo(state_dir: Path, keep: bool) -> int:
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    from orchestrator.config import PrometheusSettings, Settings
    from orchestrator.flags.kill import kill
    from orchestrator.kube.client import load_api_client
    from orchestrator.sandbox import manager
    from orchestrator.specs.flags import FlagRamp

    def echo(msg: str) -> None:
        print(msg, flush=True)

    started = time.monotonic()
    echo("== 1. sandbox up")
    info = manager.up(state_dir, worker=True, traffic_rate=TRAFFIC_RATE,
                      worker_env={"ORCHESTRATOR_CHAOS_NAMESPACES": os.environ.get("ORCHESTRATOR_CHAOS_NAMESPACES",
                                                                                  NAMESPACE)})
    echo(f"   Temporal {info.temporal_address} (UI {info.temporal_ui_url}), Kubernetes API {info.kube_api_url},"
         f" Prometheus {info.prometheus_url}, worker on task queue {info.task_queue}")
    try:
        settings = Settings(temporal_address=info.temporal_address, task_queue=info.task_queue,
                            prometheus=PrometheusSettings(url=info.prometheus_url), kubeconfig=info.kubeconfig,
                            db_path=info.db_path)
        api_client = load_api_client(info.kubeconfig)
        echo(f"== 2. deploying {NAMESPACE}/{APP} v1 ({REPLICAS} replicas) with steady load;"
             f" flags {', '.join(FLAGS)} from {info.flags_file}")
        deploy_app(api_client, info.flags_file)
        await asyncio.to_thread(wait_for_metrics, info.prometheus_url)
        echo("   v1 serves traffic; Prometheus sees it")
        client = await Client.connect(info.temporal_address, data_converter=pydantic_data_converter)
        results = []
        echo("== 3. canary v2 (healthy)")
        handle, st = await run_canary(client, settings, rollout_spec("registry.local/shop:v2", {}), echo)
        results.append(("canary v2", handle, st))
        echo("== 4. canary v3 (10 % of requests fail)")
        handle, st = await run_canary(
            client, settings, rollout_spec("registry.local/shop:v3", {"ERROR_RATE": "0.1"}), echo)
        results.append(("canary v3", handle, st))
        echo("== 5. flag ramp: new-checkout \"on\" (healthy) 10 -> 50 -> 100 %")
        ramps = [("flag new-checkout", *await run_ramp(client, settings, ramp_spec("new-checkout"),
                                                      echo))]
        echo("== 6. flag ramp: new-payment \"on\" (its code path fails 25 % of requests)")
        ramps.append(("flag new-payment", *await run_ramp(client, settings,
                                                          ramp_spec("new-payment"), echo)))
        echo("== 7. kill switch: new-checkout off for everyone, now")
        killed = await kill("new-checkout", client=client,
                            spec=FlagRamp.model_validate(ramp_spec("new-checkout")),
                            env={**os.environ, **info.environment()},
                            reason="demo: kill switch", by="demo")
        share = await asyncio.to_thread(served_share, info.flags_file, "new-checkout")
        echo(f"  new-checkout: {killed.change.before.percent:g}% -> {killed.change.after.percent:g}% on; "
             f"OpenFeature now serves \"on\" to {share:.0%} of users")
        echo("== 8. chaos: kill one pod of shop (v2) and watch the steady state")
        chaos_handle, chaos = await run_experiment(client, settings, EXPERIMENT, echo)
        echo(summary(results, info.temporal_ui_url))
        for label, handle, rst in ramps:
            echo("\n".join(ramp_summary(label, handle, rst, info.temporal_ui_url)))
        echo(f"kill switch new-checkout: {'OFF' if killed.change.after.percent == 0 and share == 0 else 'NOT OFF'}"
             f"  ({killed.change.after.detail or 'variant at 0%'})")
        echo(f"chaos pod-kill: {chaos.phase.value.upper()}  killed {', '.join(chaos.touched) or 'nothing'}; "
             f"{'recovered' if chaos.recovered else 'did not recover'}")
        echo(f"  workflow: {info.temporal_ui_url}/namespaces/default/workflows/{chaos_handle.id}")
        from orchestrator.scoring.report import render_report
        from orchestrator.scoring.store import RunStore

        with RunStore.from_settings(settings) as store:
            echo("")
            echo(render_report(store, f"{NAMESPACE}/{APP}", "text"))
        echo(f"(orchestrator score {NAMESPACE}/{APP} --db {settings.db_path} --format markdown|html|json)")
        echo(f"\ndemo finished in {time.monotonic() - started:.0f}s")
        ok = (
            [r[2].phase.value for r in results] == ["promoted", "rolled-back"]
            and [r[2].phase.value for r in ramps] == ["completed", "reverted"]
            and killed.change.after.percent == 0 and share == 0
            and bool(chaos.recovered)
        )
        echo(f"demo outcome: {'as described' if ok else 'NOT as described'}")
        return 0 if ok else 1
    finally:
        if keep:
            echo(f"\nsandbox kept running, with a worker (stop it with: orchestrator sandbox down"
                 f" --state-dir {state_dir})")
            echo(f'point the CLI at it: eval "$(orchestrator sandbox env --state-dir {state_dir})";'
                 " then try the specs in examples/sandbox/")
        else:
            manager.down(state_dir)
            echo("sandbox stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.sandbox.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the sandbox running afterwards")
    parser.add_argument("--state-dir", type=Path, default=Path(os.environ.get("ORCHESTRATOR_STATE_DIR", ".sandbox")))
    args = parser.parse_args(argv)
    try:
        code = asyncio.run(demo(args.state_dir, args.keep))
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # a demo ends with one line, not a traceback
        from orchestrator.errors import OrchestratorError

        print(f"demo failed: {exc}", file=sys.stderr)
        code = exc.exit_code if isinstance(exc, OrchestratorError) else 1
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
