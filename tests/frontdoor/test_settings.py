"""Settings from the environment and the command line: a bad value is exit 2 and one line, before any connection."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.frontdoor.helpers import REPO, assert_one_line, invoke, run_process

SPEC = str(REPO / "examples" / "checkout-canary.yaml")
FLAG_SPEC = str(REPO / "examples" / "flag-ramp-flagd.yaml")

BAD_ENV = [
    ("ORCHESTRATOR_PROMETHEUS_TIMEOUT", "abc"),
    ("ORCHESTRATOR_PROMETHEUS_TIMEOUT", "0"),
    ("ORCHESTRATOR_PROMETHEUS_TIMEOUT", "-5"),
    ("ORCHESTRATOR_PROMETHEUS_TIMEOUT", "nan"),
    ("ORCHESTRATOR_PROMETHEUS_TIMEOUT", "inf"),
    ("ORCHESTRATOR_TEMPORAL_ADDRESS", "not a host:port"),
    ("ORCHESTRATOR_TEMPORAL_ADDRESS", "127.0.0.1:99999"),
    ("ORCHESTRATOR_TEMPORAL_ADDRESS", "127.0.0.1"),
    ("ORCHESTRATOR_PROMETHEUS_URL", "not-a-url"),
    ("ORCHESTRATOR_PROMETHEUS_URL", "ftp://127.0.0.1:9090"),
    ("ORCHESTRATOR_PROMETHEUS_URL", "http://127.0.0.1:99999"),
    ("ORCHESTRATOR_KUBE_TIMEOUT", "abc"),
    ("ORCHESTRATOR_KUBE_TIMEOUT", "0"),
    ("ORCHESTRATOR_KUBE_TIMEOUT", "nan"),
]


@pytest.mark.parametrize(("name", "value"), BAD_ENV, ids=[f"{n[13:]}={v}" for n, v in BAD_ENV])
def test_bad_environment_is_exit_2_one_line(name: str, value: str) -> None:
    outcome = invoke(["canary", "list"], env={name: value})
    assert_one_line(outcome, 2, rf"^<environment>:0: {name}: ")
    assert outcome.seconds < 5


@pytest.mark.parametrize(("name", "value"), BAD_ENV[:1] + BAD_ENV[5:6])
def test_validate_needs_no_settings(name: str, value: str) -> None:
    outcome = invoke(["validate", SPEC], env={name: value})
    assert outcome.code == 0, outcome.err


@pytest.mark.parametrize(
    ("option", "value"),
    [("--prometheus-url", "not-a-url"), ("--temporal-address", "127.0.0.1:99999"), ("--temporal-address", "x y:1")],
)
def test_bad_global_option_is_exit_2_one_line(option: str, value: str) -> None:
    outcome = invoke([option, value, "canary", "list"])
    assert_one_line(outcome, 2, rf"^<command line>:0: {re.escape(option)}: ")


@pytest.mark.parametrize("command", [["canary", "run", SPEC, "--wait"], ["flag", "ramp", FLAG_SPEC, "--wait"]])
@pytest.mark.parametrize("value", ["-5", "0", "nan", "inf", "1e400", "soon"])
def test_timeout_must_be_a_positive_finite_number(command: list[str], value: str) -> None:
    outcome = invoke([*command, "--timeout", value])
    assert outcome.code == 2, outcome.err
    assert "Traceback" not in outcome.err
    assert "--timeout" in outcome.err


def test_bad_environment_in_a_real_process() -> None:
    outcome = run_process(["canary", "list"], env={"ORCHESTRATOR_TEMPORAL_ADDRESS": "127.0.0.1:99999"})
    assert_one_line(outcome, 2, r"^<environment>:0: ORCHESTRATOR_TEMPORAL_ADDRESS: .*port")
    outcome = run_process(["validate", SPEC], env={"ORCHESTRATOR_PROMETHEUS_TIMEOUT": "abc"})
    assert outcome.code == 0, outcome.err


REPLAY = ["replay", SPEC, "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T00:01:00Z"]
NOWHERE = {"ORCHESTRATOR_PROMETHEUS_URL": "http://127.0.0.1:1", "ORCHESTRATOR_TEMPORAL_ADDRESS": "127.0.0.1:1"}
UNSENDABLE = [
    ("ORCHESTRATOR_PROMETHEUS_TOKEN", "tok\nX-Injected: 1", REPLAY, "newline"),
    ("ORCHESTRATOR_PROMETHEUS_TOKEN", "tok\u20ac", REPLAY, "latin-1"),
    ("ORCHESTRATOR_PROMETHEUS_PASSWORD", "pa\u20acss", REPLAY, "latin-1"),
    ("ORCHESTRATOR_PROMETHEUS_USERNAME", "u\rx", REPLAY, "control character"),
    ("ORCHESTRATOR_TEMPORAL_API_KEY", "key\nmore", ["canary", "list"], "newline"),
    ("ORCHESTRATOR_TEMPORAL_API_KEY", "k\u00e9y", ["canary", "list"], "ascii"),
    ("ORCHESTRATOR_PROMETHEUS_URL", f"http://{'a' * 64}.invalid:1", REPLAY, "63 characters"),
    ("ORCHESTRATOR_PROMETHEUS_URL", "http://127.0.0.1]:1", REPLAY, "host"),
    ("ORCHESTRATOR_TEMPORAL_ADDRESS", f"{'a' * 64}.invalid:1", ["canary", "list"], "63 characters"),
    ("ORCHESTRATOR_NOTIFY_WEBHOOK", "ftp://127.0.0.1:1/hook", ["canary", "list"], "http"),
]


@pytest.mark.parametrize(("name", "value", "command", "reason"), UNSENDABLE,
                         ids=[f"{n[13:]}-{i}" for i, (n, *_) in enumerate(UNSENDABLE)])
def test_a_value_that_cannot_be_sent_is_exit_2_before_any_connection(
    name: str, value: str, command: list[str], reason: str | None
) -> None:
    outcome = invoke(command, env={**NOWHERE, name: value})
    line = assert_one_line(outcome, 2, rf"^<environment>:0: {name}: ")
    if reason:
        assert reason in line, line
    # A credential is described, never shown.
    if "TOKEN" in name or "PASSWORD" in name or "API_KEY" in name:
        assert value.splitlines()[0] not in line, line
    assert outcome.seconds < 5


def test_a_token_with_surrounding_whitespace_is_used_trimmed() -> None:
    outcome = invoke(REPLAY, env={**NOWHERE, "ORCHESTRATOR_PROMETHEUS_TOKEN": " tok\n"})
    assert_one_line(outcome, 3, r"cannot reach Prometheus")


@pytest.mark.parametrize(("name", "value"), BAD_ENV)
def test_score_reads_only_the_store_settings(name: str, value: str, tmp_path: Path) -> None:
    outcome = invoke(["score", "--db", str(tmp_path / "none.db")], env={name: value})
    assert_one_line(outcome, 2, r"^<command line>:0: --db: no run store at ")


@pytest.mark.parametrize("db", [
    "postgresql://u:p@127.0.0.1:notaport/x", "postgresql://u:p@[::1/x", "postgresql://u:p@127.0.0.1:1/x?port=abc",
    "postgresql://u:p@127.0.0.1:1/x?sslmode=bogus", "postgresql://u:p@a@127.0.0.1:1/x",
    f"postgresql://u:p@{'a' * 64}.invalid:1/x", "mysql://u:p@127.0.0.1:1/x",
])
def test_a_malformed_db_url_is_exit_2_one_line(db: str) -> None:
    outcome = invoke(["score", "--db", db])
    line = assert_one_line(outcome, 2, r"^<command line>:0: --db: ")
    assert ":p@" not in line, line


def test_an_unreachable_db_is_exit_3_one_line() -> None:
    outcome = invoke(["score", "--db", "postgresql://u:p@127.0.0.1:1/x"])
    assert_one_line(outcome, 3, r"^error: cannot reach the run store database at postgresql://u:\*\*\*@127\.0\.0\.1:1/x")
