"""What every command shares: settings, error-to-exit-code mapping, the Temporal connection, output.

Exit codes (the contract CI jobs rely on): 0 success/promoted, 1 rolled back, aborted or
refused, 2 invalid input, 3 a backing system unreachable, 4 still running at timeout or
waiting for a manual approval.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from orchestrator.errors import OrchestratorError, SpecError
from orchestrator.redact import redact

if TYPE_CHECKING:
    # Imported where used: every command module imports this one, and ``--help`` should not pay for pydantic.
    from orchestrator.config import Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_UNREACHABLE = 3
EXIT_PENDING = 4

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

output_option = click.option(
    "--output",
    "-o",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
    help="How to print the result.",
)


# Set by ``orchestrator.cli.main.main``: only a real ``orchestrator`` process leaves through ``os._exit``.
# Invoked through click's test runner (or any embedding caller) the exit is an ordinary ``SystemExit``, so
# the caller's process survives and sees the exit code.
HARD_EXIT = False


class Seconds(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click stubs
    """A positive, finite number of seconds (``float`` would let ``nan``, ``inf`` and ``-5`` through)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(seconds) or seconds <= 0:
            self.fail(f"{value!r} is not a positive, finite number of seconds", param, ctx)
        return seconds


SECONDS = Seconds()


def finish(code: int) -> NoReturn:
    """Exit with ``code`` reliably (the Temporal SDK can abort the interpreter at exit otherwise)."""
    sys.stdout.flush()
    sys.stderr.flush()
    if not HARD_EXIT:
        raise SystemExit(code)
    os._exit(code)


def fail(message: str, code: int) -> NoReturn:
    # Every error line leaves through here or ``handle_errors``: both mask credentials (one redaction).
    click.echo(redact(message), err=True)
    finish(code)


def handle_errors(fn: F) -> F:
    """Turn the project's errors into one line on stderr and their exit code; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SpecError as exc:
            for problem in exc.problems:
                click.echo(redact(problem), err=True)
            finish(EXIT_INVALID)
        except OrchestratorError as exc:
            fail(f"error: {exc}", exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)

    return wrapper  # type: ignore[return-value]


def run(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio

    return asyncio.run(coro)


# Keys of the root context's ``meta``: the global options given, and which of them came from the command line.
OVERRIDES = "orchestrator.overrides"
ORIGINS = "orchestrator.origins"


def settings(ctx: click.Context) -> Settings:
    from orchestrator.config import Settings

    root = ctx.find_root()
    obj = root.obj
    if not isinstance(obj, Settings):
        obj = Settings.from_env(origins=root.meta.get(ORIGINS), **root.meta.get(OVERRIDES, {}))
        root.obj = obj
    if "orchestrator.cluster" not in root.meta:
        # Once per command: fall back to a running sandbox when no cluster is configured, and say which.
        from orchestrator.sandbox.discover import ANNOUNCING, cluster_line, resolve

        obj, sandbox = resolve(obj)
        root.obj = obj
        root.meta["orchestrator.cluster"] = sandbox
        if sandbox and root.invoked_subcommand in ANNOUNCING:
            click.echo(cluster_line(obj, sandbox), err=True)
    return obj


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def print_runs(rows: list[dict[str, str]], output: str, noun: str, show_all: bool) -> None:
    if output == "json":
        emit_json(rows)
    elif not rows:
        click.echo(f"no {noun}" + ("" if show_all else " running"))
    else:
        for row in rows:
            click.echo(f"{row['workflow_id']:<50} {row['status']:<12} {row['started']}")
