"""Entry point: ``orchestrator``. Sub-command modules are imported only when used."""

from __future__ import annotations

import importlib
from typing import Any

import click

from orchestrator.cli.common import ORIGINS, OVERRIDES

# name -> (module, attribute); one line per command group.
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("orchestrator.cli.specs", "validate"),
    "schema": ("orchestrator.cli.specs", "schema"),
    "canary": ("orchestrator.cli.canary", "canary"),
    "worker": ("orchestrator.cli.worker", "worker"),
    "sandbox": ("orchestrator.cli.sandbox", "sandbox"),
    "flag": ("orchestrator.cli.flag", "flag"),
    "chaos": ("orchestrator.cli.chaos", "chaos"),
    "score": ("orchestrator.cli.score", "score"),
    "replay": ("orchestrator.cli.replay", "replay"),
    "import": ("orchestrator.cli.importers", "import_"),
    "completion": ("orchestrator.cli.completion", "completion"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if self._load(name) is not None)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name]
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:  # a capability not present in this installation
                return None
            raise
        command: click.Command = getattr(mod, attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--temporal-address", envvar="ORCHESTRATOR_TEMPORAL_ADDRESS", help="Temporal frontend host:port.")
@click.option("--temporal-namespace", envvar="ORCHESTRATOR_TEMPORAL_NAMESPACE", help="Temporal namespace.")
@click.option("--task-queue", envvar="ORCHESTRATOR_TASK_QUEUE", help="Task queue of the worker.")
@click.option("--prometheus-url", envvar="ORCHESTRATOR_PROMETHEUS_URL", help="Prometheus base URL.")
@click.option("--kubeconfig", envvar="ORCHESTRATOR_KUBECONFIG",
              help="Kubeconfig path (default: in-cluster, else ~/.kube/config).")
@click.pass_context
def cli(
    ctx: click.Context,
    temporal_address: str | None,
    temporal_namespace: str | None,
    task_queue: str | None,
    prometheus_url: str | None,
    kubeconfig: str | None,
) -> None:
    """Canary rollouts, feature-flag ramps and chaos experiments, gated on Prometheus, run by Temporal.

    Exit codes: 0 success, 1 rolled back/aborted/refused, 2 invalid input,
    3 Temporal/Prometheus/Kubernetes unreachable, 4 still running at timeout or waiting for approval.
    """
    # Settings are built on first use (``common.settings``), inside the command's error handling: a bad
    # value then exits 2 with one line, and commands that need no settings (``validate``) are unaffected.
    overrides = {
        "temporal_address": temporal_address,
        "temporal_namespace": temporal_namespace,
        "task_queue": task_queue,
        "kubeconfig": kubeconfig,
        "prometheus_url": prometheus_url,
    }
    ctx.meta[OVERRIDES] = {k: v for k, v in overrides.items() if v is not None}
    ctx.meta[ORIGINS] = {
        name: "--" + name.replace("_", "-")
        for name in overrides
        if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
    }
    ctx.obj = None


def main(argv: list[str] | None = None) -> Any:
    from orchestrator.cli import common

    common.HARD_EXIT = True
    return cli.main(args=argv, prog_name="orchestrator")
