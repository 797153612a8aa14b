"""Settings from the environment and the command line: a bad value is exit 2 and one line, before any connection."""

from __future__ import annotations

import re

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
