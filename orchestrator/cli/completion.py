"""``completion``: the shell completion script for bash, zsh or fish, from click's own completion support.

click completes by re-running the program with ``_ORCHESTRATOR_COMPLETE=<shell>_source``; this command
prints the same script, so users need not know that variable's name.
"""

from __future__ import annotations

import click

PROG = "orchestrator"
COMPLETE_VAR = "_ORCHESTRATOR_COMPLETE"


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL.

    \b
    bash:  eval "$(orchestrator completion bash)"     (or save it under ~/.local/share/bash-completion/completions/)
    zsh:   eval "$(orchestrator completion zsh)"      (after compinit)
    fish:  orchestrator completion fish > ~/.config/fish/completions/orchestrator.fish
    """
    from click.shell_completion import get_completion_class

    root = ctx.find_root().command
    cls = get_completion_class(shell)
    assert cls is not None  # the Choice above admits only shells click supports
    click.echo(cls(root, {}, PROG, COMPLETE_VAR).source())
