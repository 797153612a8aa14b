"""``orchestrator completion``: the printed scripts complete commands and options in a real shell."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = str(Path(sys.executable).parent)
ENV = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}


def script(shell: str) -> str:
    proc = subprocess.run([f"{BIN}/orchestrator", "completion", shell], capture_output=True, text=True, env=ENV,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def bash_complete(line: str) -> list[str]:
    """COMPREPLY after sourcing the script in bash and pressing tab at the end of ``line``."""
    words = line.split(" ")
    program = (
        f'{script("bash")}\n'
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        "_orchestrator_completion orchestrator\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    proc = subprocess.run(["bash", "-c", program], capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [w for w in proc.stdout.splitlines() if w]


def test_bash_completes_commands_subcommands_and_choices() -> None:
    assert {"canary", "chaos"} <= set(bash_complete("orchestrator c"))
    assert "replay" in bash_complete("orchestrator re")
    assert "run" in bash_complete("orchestrator canary r")
    assert sorted(bash_complete("orchestrator completion ")) == ["bash", "fish", "zsh"]
    assert "--canary-selector" in bash_complete("orchestrator replay --can")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_every_script_is_valid_syntax_for_its_shell(shell: str) -> None:
    text = script(shell)
    assert "_ORCHESTRATOR_COMPLETE" in text
    binary = shutil.which(shell)
    if binary is None:
        # Only bash is installed everywhere; the others are checked where their shell exists.
        assert shell != "bash"
        assert "orchestrator" in text
        return
    proc = subprocess.run([binary, "-n"], input=text, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_unknown_shell_is_invalid_input() -> None:
    proc = subprocess.run([f"{BIN}/orchestrator", "completion", "powershell"], capture_output=True, text=True,
                          env=ENV, timeout=30)
    assert proc.returncode == 2 and "powershell" in proc.stderr
