"""Entry point: ``orchestrator``. Sub-command modules are imported only when used.

``orchestrator --help`` and shell completion list every command with its short help. Importing a command's
module to read that help would pull in its clients (Temporal, Kubernetes, SQLAlchemy, pydantic models) and
cost a second on a busy machine, so the short help is declared here, beside the module's name, and a test
(``tests/test_cli_imports.py``) checks that it equals what the command itself carries.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any, NamedTuple

import click

from orchestrator.cli.common import ORIGINS, OVERRIDES

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem


class Entry(NamedTuple):
    module: str
    attribute: str
    short_help: str  # the command's first sentence: ``get_short_help_str`` of the real command, untruncated


# One line per command group.
COMMANDS: dict[str, Entry] = {
    "validate": Entry("orchestrator.cli.specs", "validate",
                      "Check spec files; print each mistake as file:line: field: message (exit 2 if any)."),
    "schema": Entry("orchestrator.cli.specs", "schema",
                    "Print the JSON Schema of a spec KIND (CanaryRollout, FlagRamp, ChaosExperiment, GameDay, "
                    "RailsPolicy), or of Result: the output of `canary run|status -o json`."),
    "canary": Entry("orchestrator.cli.canary", "canary",
                    "Canary rollouts: run, status, pause, resume, promote, abort, approve, retry, list."),
    "release": Entry("orchestrator.cli.release", "release",
                     "Fleet releases: run, status, pause, resume, abort, approve, retry."),
    "worker": Entry("orchestrator.cli.worker", "worker", "Run the worker (graceful shutdown on SIGTERM/SIGINT)."),
    "sandbox": Entry("orchestrator.cli.sandbox", "sandbox",
                     "A local sandbox: Temporal, a Kubernetes API whose pods are local processes, traffic, "
                     "Prometheus."),
    "flag": Entry("orchestrator.cli.flag", "flag",
                  "Feature-flag ramps: ramp, status, pause, resume, promote, abort, retry, list, kill."),
    "chaos": Entry("orchestrator.cli.chaos", "chaos",
                   "Chaos experiments with safety rails: run, abort (--all is the big red button), retry, "
                   "schedule, janitor."),
    "score": Entry("orchestrator.cli.score", "score",
                   "Resilience score of SERVICE (namespace/app), or of every service in the store."),
    "replay": Entry("orchestrator.cli.replay", "replay",
                    "Evaluate FILE's checks at the times they would have run between --from and --to."),
    "calibrate": Entry("orchestrator.cli.calibrate", "calibrate",
                       "Measure how often FILE's judge checks roll back identical versions, on the stable's own "
                       "history."),
    "import": Entry("orchestrator.cli.importers", "import_", "Convert other tools' analysis definitions into checks."),
    "completion": Entry("orchestrator.cli.completion", "completion", "Print the completion script for SHELL."),
}


def installed(name: str) -> bool:
    """Whether the command's module is part of this installation (found without importing it)."""
    return importlib.util.find_spec(COMMANDS[name].module) is not None


def summary(name: str) -> click.Command:
    """A stand-in carrying only the declared help, so click shortens it exactly as it would the real one's."""
    return click.Command(name, help=COMMANDS[name].short_help)


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if installed(name))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's own layout (column, width, truncation), fed with stand-ins instead of imported commands.
        rows = [(name, summary(name)) for name in self.list_commands(ctx)]
        if not rows:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in rows)
        with formatter.section("Commands"):
            formatter.write_dl([(name, command.get_short_help_str(limit)) for name, command in rows])

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        from click.shell_completion import CompletionItem

        commands = [
            CompletionItem(name, help=summary(name).get_short_help_str())
            for name in self.list_commands(ctx)
            if name.startswith(incomplete)
        ]
        # The group's options: what ``click.Command.shell_complete`` offers after a dash.
        return commands + click.Command.shell_complete(self, ctx, incomplete)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
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
