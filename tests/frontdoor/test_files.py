"""Every file the program reads goes through one bounded reader: a device, a FIFO, a directory, a missing file,
non-UTF-8 bytes or an oversized file is exit 2 and one ``file:0: field: message`` line, at once and in bounded
memory, whichever command or setting names it.

Devices and FIFOs are driven through real processes under an address-space limit and a timeout, so a
reader that loads ``/dev/zero`` whole or waits for a FIFO's writer fails the test instead of the machine.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.errors import SpecError
from orchestrator.specs.files import read_bytes, read_text
from tests.frontdoor.helpers import REPO, Outcome, assert_one_line, invoke, run_process

pytestmark = pytest.mark.timeout(120)

SPEC = str(REPO / "examples" / "checkout-canary.yaml")
# Nothing listens on port 1 of 127.0.0.1: a command that got past the file would fail with exit 3, not 2.
NOWHERE = {"ORCHESTRATOR_PROMETHEUS_URL": "http://127.0.0.1:1", "ORCHESTRATOR_TEMPORAL_ADDRESS": "127.0.0.1:1"}
REPLAY = ["replay", SPEC, "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T01:00:00Z"]

# Each surface: how a file reaches the program (a command line, or a setting and the command that reads it).
SURFACES: dict[str, Callable[[str], tuple[list[str], dict[str, str]]]] = {
    "score --config": lambda f: (["score", "--config", f], {}),
    "ORCHESTRATOR_SCORING_CONFIG": lambda f: (["score"], {"ORCHESTRATOR_SCORING_CONFIG": f}),
    "import argo": lambda f: (["import", "argo", f], {}),
    "validate": lambda f: (["validate", f], {}),
    "ORCHESTRATOR_PROMETHEUS_TOKEN_FILE": lambda f: (REPLAY, {"ORCHESTRATOR_PROMETHEUS_TOKEN_FILE": f}),
    "ORCHESTRATOR_PROMETHEUS_CA_FILE": lambda f: (REPLAY, {"ORCHESTRATOR_PROMETHEUS_CA_FILE": f}),
    "ORCHESTRATOR_TEMPORAL_TLS_CA": lambda f: (["canary", "list"], {"ORCHESTRATOR_TEMPORAL_TLS_CA": f}),
    "ORCHESTRATOR_TEMPORAL_TLS_CERT": lambda f: (["canary", "list"], {"ORCHESTRATOR_TEMPORAL_TLS_CERT": f,
                                                                      "ORCHESTRATOR_TEMPORAL_TLS_KEY": f}),
}


def _drive(surface: str, path: str, tmp_path: Path, *, process: bool) -> Outcome:
    args, env = SURFACES[surface](path)
    env = {**NOWHERE, "ORCHESTRATOR_DB": str(tmp_path / "runs.db"), **env}
    if process:
        return run_process(args, env=env, timeout=20, memory_bytes=768 * 1024 * 1024)
    return invoke(args, env=env)


def _refused(outcome: Outcome, path: str, reason: str) -> None:
    line = assert_one_line(outcome, 2, rf"^{re.escape(path)}:0: \S+: .*{reason}")
    assert outcome.seconds < 5, (outcome.seconds, line)


@pytest.fixture
def fifo(tmp_path: Path) -> str:
    path = tmp_path / "fifo.yaml"
    os.mkfifo(path)
    return str(path)


@pytest.mark.parametrize("surface", SURFACES)
def test_dev_zero_is_refused_without_reading_it(surface: str, tmp_path: Path) -> None:
    _refused(_drive(surface, "/dev/zero", tmp_path, process=True), "/dev/zero", "is a device")


@pytest.mark.parametrize("surface", SURFACES)
def test_a_fifo_is_refused_without_waiting_for_a_writer(surface: str, fifo: str, tmp_path: Path) -> None:
    _refused(_drive(surface, fifo, tmp_path, process=True), fifo, "FIFO")


@pytest.mark.parametrize("surface", SURFACES)
def test_a_directory_or_a_missing_file_is_exit_2(surface: str, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    _refused(_drive(surface, str(folder), tmp_path, process=False), str(folder), "is a directory")
    missing = str(tmp_path / "missing.yaml")
    _refused(_drive(surface, missing, tmp_path, process=False), missing, "no such file")


@pytest.mark.parametrize("surface", ["score --config", "ORCHESTRATOR_SCORING_CONFIG", "import argo", "validate",
                                     "ORCHESTRATOR_PROMETHEUS_TOKEN_FILE"])
def test_latin_1_bytes_are_exit_2_naming_the_file(surface: str, tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("kind: AnalysisTemplate\nmetadata: {name: caf\u00e9}\n".encode("latin-1"))
    _refused(_drive(surface, str(path), tmp_path, process=False), str(path), r"not UTF-8 text \(byte 0xe9")


@pytest.mark.parametrize("surface", ["score --config", "import argo", "ORCHESTRATOR_PROMETHEUS_TOKEN_FILE",
                                     "ORCHESTRATOR_TEMPORAL_TLS_CA"])
def test_an_oversized_file_is_refused(surface: str, tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# " + b"x" * (2 * 1024 * 1024) + b"\n")
    _refused(_drive(surface, str(path), tmp_path, process=False), str(path), "larger than")


def test_a_file_name_with_a_newline_stays_one_line(tmp_path: Path) -> None:
    outcome = invoke(["import", "argo", str(tmp_path / "a\nb.yaml")])
    line = assert_one_line(outcome, 2, r"no such file")
    assert "a\\nb.yaml" in line


def test_the_reader_reads_at_most_limit_plus_one_bytes(tmp_path: Path) -> None:
    path = tmp_path / "exact"
    path.write_bytes(b"abc")
    assert read_bytes(path, limit=3) == b"abc"
    with pytest.raises(SpecError, match=r"larger than 2 bytes"):
        read_bytes(path, limit=2)
    assert read_text(path, limit=3, field="X") == "abc"
    with pytest.raises(SpecError, match=r"^.*:0: X: not a usable file name$"):
        read_bytes("a\0b", limit=3, field="X")
