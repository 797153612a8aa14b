"""``--dry-run`` of ``canary run``, ``flag ramp`` and ``chaos run``: every rail's verdict, nothing touched.

The commands call ``dry_run`` instead of starting a workflow. It reads (Kubernetes lists and gets,
Prometheus queries, Temporal visibility) and never writes, prints one line per rail, and returns the
exit code the contract gives a refusal: 1 with the first refusing rail's reason, 0 when every rail
passed or was skipped. ``--policy`` (or ``ORCHESTRATOR_POLICY``) names the policy file; a bad one is
exit 2 with ``file:line: field: message``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from orchestrator.cli.common import EXIT_FAILED, EXIT_OK, emit_json

if TYPE_CHECKING:
    from orchestrator.chaos.models import Plan
    from orchestrator.config import Settings
    from orchestrator.rails.models import RailsReport, RailsRequest
    from orchestrator.specs.policy import RailsPolicy

__all__ = ["check", "policy_option", "print_report", "report_exit"]

policy_option = click.option(
    "--policy", "policy_path", type=click.Path(dir_okay=False), default=None, envvar="ORCHESTRATOR_POLICY",
    help="The rails policy file (RailsPolicy YAML); default: $ORCHESTRATOR_POLICY, else built-in defaults.",
)


async def check(s: Settings, req: RailsRequest, policy: RailsPolicy, plan: Plan | None = None) -> RailsReport:
    from orchestrator.client.temporal import connect_temporal
    from orchestrator.gates.prometheus import PrometheusProvider
    from orchestrator.kube.client import load_api_client
    from orchestrator.rails.active import TemporalActiveWork
    from orchestrator.rails.run import Rails

    client = await connect_temporal(s)
    rails = Rails(api_client=load_api_client(s.kubeconfig, s.kube_context, s.kube_timeout),
                  metrics=PrometheusProvider(s.prometheus), active=TemporalActiveWork(client), policy=policy)
    return await rails.check(req, plan=plan)


def print_report(report: RailsReport, output: str, policy: RailsPolicy) -> None:
    if output == "json":
        emit_json({**report.model_dump(mode="json"), "policy": policy.source})
        return
    click.echo(f"rails for {report.kind} on {report.target} (policy: {policy.source}):")
    for line in report.lines():
        click.echo(f"  {line}")
    click.echo(f"refused: {report.reason}" if report.refused else "every rail passed (dry run: nothing was changed)")


def report_exit(report: RailsReport) -> int:
    return EXIT_FAILED if report.refused else EXIT_OK
