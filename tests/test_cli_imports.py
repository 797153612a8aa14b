"""``orchestrator --help``, ``canary --help`` and completion stay fast: they import no client library.

Timing depends on the machine, so the tests check its cause instead: which modules a real ``orchestrator``
process has loaded when it exits (``benchmarks/cli_help.py`` measures the time). The command list in
``--help`` comes from short help declared in ``orchestrator/cli/main.py``; the tests below hold that table
to what the commands themselves say, so it cannot drift.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import click
import pytest

from orchestrator.cli.main import COMMANDS, LazyGroup, cli

# What made ``--help`` take seconds: each is only needed once a command talks to a system or reads a spec.
HEAVY = ("sqlalchemy", "kubernetes", "temporalio", "scipy", "numpy", "prometheus_api_client", "pydantic", "yaml")

# Runs the console script's own ``main`` and prints, as the last line, every module loaded by then.
PROBE = """
import json, sys
from orchestrator.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
sys.stdout.flush()
print()
print(json.dumps(sorted(sys.modules)))
"""


def probe(args: list[str], env: dict[str, str] | None = None) -> tuple[str, set[str]]:
    """The output of ``orchestrator ARGS`` and the top-level packages loaded when it ended."""
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr
    output, _, last = proc.stdout.rstrip("\n").rpartition("\n")
    return output, {name.partition(".")[0] for name in json.loads(last)}


def completion_env(line: str) -> dict[str, str]:
    """The variables bash's completion function sets when tab is pressed at the end of ``line``."""
    words = line.split(" ")
    return {"_ORCHESTRATOR_COMPLETE": "bash_complete", "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}


# Every group's help too, but ``score`` (its --format choices come from the report module, which needs
# SQLAlchemy) and ``import`` (YAML, a light import).
@pytest.mark.parametrize(("args", "expected"), [
    (["--help"], "canary      Canary rollouts"),
    (["canary", "--help"], "promote"),
    (["canary", "run", "--help"], "--image"),
    (["flag", "--help"], "kill"),
    (["chaos", "--help"], "gameday"),
    (["worker", "--help"], "--health-port"),
    (["sandbox", "--help"], "up"),
    (["validate", "--help"], "FILE"),
    (["replay", "--help"], "--from"),
])
def test_help_imports_no_client_library(args: list[str], expected: str) -> None:
    output, loaded = probe(args)
    assert expected in output
    assert loaded.isdisjoint(HEAVY), sorted(loaded.intersection(HEAVY))


@pytest.mark.parametrize(("line", "expected"), [
    ("orchestrator c", "plain,canary"),
    ("orchestrator canary r", "plain,run"),
])
def test_completion_imports_no_client_library(line: str, expected: str) -> None:
    output, loaded = probe([], env=completion_env(line))
    assert expected in output.splitlines()
    assert loaded.isdisjoint(HEAVY), sorted(loaded.intersection(HEAVY))


def test_the_probe_sees_what_a_command_imports() -> None:
    # The counterpart of the tests above: a command that reads the spec models does load pydantic, and the
    # probe reports it, so an empty intersection above means "not imported", not "not seen".
    output, loaded = probe(["schema", "CanaryRollout"])
    assert json.loads(output)["title"] == "CanaryRollout"
    assert "pydantic" in loaded


def real_commands() -> dict[str, click.Command]:
    commands = {name: LazyGroup._load(name) for name in COMMANDS}
    return {name: command for name, command in commands.items() if command is not None}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_declared_short_help_is_the_commands_own(name: str) -> None:
    command = real_commands()[name]
    # Untruncated: the first sentence of the help's first paragraph, as click shortens it.
    own = command.get_short_help_str(limit=10_000)
    assert own == COMMANDS[name].short_help, f"declare {own!r} for {name!r} in orchestrator/cli/main.py COMMANDS"


def eager_group() -> click.Group:
    """The same root command as a plain click group holding the imported commands."""
    return click.Group("orchestrator", commands=real_commands(), params=cli.params, help=cli.help,
                       context_settings=cli.context_settings)


@pytest.mark.parametrize("width", [60, 80, 120])
def test_help_reads_as_if_every_command_were_imported(width: int) -> None:
    def help_text(group: click.Group) -> str:
        # The group's own context settings, as click applies them when it runs: a bare Context would
        # depend on whether an earlier test already made click cache the help option with them.
        with click.Context(group, info_name="orchestrator", terminal_width=width, **cli.context_settings) as ctx:
            return group.get_help(ctx)

    assert help_text(cli) == help_text(eager_group())


@pytest.mark.parametrize("incomplete", ["", "c", "sc", "--", "x"])
def test_completion_offers_what_an_eager_group_would(incomplete: str) -> None:
    def items(group: click.Group) -> list[tuple[str, str | None]]:
        with click.Context(group, info_name="orchestrator", **cli.context_settings) as ctx:
            return [(item.value, item.help) for item in group.shell_complete(ctx, incomplete)]

    assert items(cli) == items(eager_group())
