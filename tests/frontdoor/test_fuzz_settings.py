"""Property: whatever an operator puts in an ``ORCHESTRATOR_*`` setting or a ``--db`` URL, the CLI answers exit
0, 2 or 3 with one well-formed line, no traceback, in under 5 s and 200 MB -- and never a secret it was given.

Hypothesis (derandomized, so the suite is repeatable) draws hostile values per kind of setting -- URLs,
``host:port`` addresses, credentials, numbers of seconds, file paths, booleans, free text -- and drives the real
CLI in-process through click's runner with the command that reads the setting (``replay`` for Prometheus,
``canary list`` for Temporal and everything read with it, ``score`` for the run store and the scoring config).
Hosts are 127.0.0.1 (nothing listens on its port 1) or names malformed enough to be refused before any lookup,
so no case sends traffic elsewhere or waits for DNS; ``--db`` URLs are drawn the same way. A value that names
another host must be refused (exit 2): reaching it would mean the check let it through to a lookup.
"""

from __future__ import annotations

import re
import resource
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.frontdoor.helpers import REPO, Outcome, invoke

SPEC = str(REPO / "examples" / "checkout-canary.yaml")
REPLAY = ["replay", SPEC, "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T00:01:00Z"]
LIST = ["canary", "list"]
SCORE = ["score"]
SECRET = "FUZZx7SECRETq3"
CLOSED = "127.0.0.1:1"

# Every setting the CLI reads, the kind of value it takes, and the command that reads it.
SETTINGS: dict[str, tuple[str, list[str]]] = {
    "ORCHESTRATOR_TEMPORAL_ADDRESS": ("address", LIST),
    "ORCHESTRATOR_TEMPORAL_NAMESPACE": ("text", LIST),
    "ORCHESTRATOR_TASK_QUEUE": ("text", LIST),
    "ORCHESTRATOR_TEMPORAL_TLS": ("bool", LIST),
    "ORCHESTRATOR_TEMPORAL_TLS_CERT": ("path", LIST),
    "ORCHESTRATOR_TEMPORAL_TLS_KEY": ("path", LIST),
    "ORCHESTRATOR_TEMPORAL_TLS_CA": ("path", LIST),
    "ORCHESTRATOR_TEMPORAL_TLS_SERVER_NAME": ("text", LIST),
    "ORCHESTRATOR_TEMPORAL_API_KEY": ("secret", LIST),
    "ORCHESTRATOR_TEMPORAL_UI": ("url", LIST),
    "ORCHESTRATOR_PROMETHEUS_URL": ("url", REPLAY),
    "ORCHESTRATOR_PROMETHEUS_TOKEN": ("secret", REPLAY),
    "ORCHESTRATOR_PROMETHEUS_TOKEN_FILE": ("path", REPLAY),
    "ORCHESTRATOR_PROMETHEUS_USERNAME": ("secret", REPLAY),
    "ORCHESTRATOR_PROMETHEUS_PASSWORD": ("secret", REPLAY),
    "ORCHESTRATOR_PROMETHEUS_CA_FILE": ("path", REPLAY),
    "ORCHESTRATOR_PROMETHEUS_INSECURE": ("bool", REPLAY),
    "ORCHESTRATOR_PROMETHEUS_TIMEOUT": ("seconds", REPLAY),
    "ORCHESTRATOR_KUBECONFIG": ("path", LIST),
    "ORCHESTRATOR_KUBE_CONTEXT": ("text", LIST),
    "ORCHESTRATOR_KUBE_TIMEOUT": ("seconds", LIST),
    "ORCHESTRATOR_STATE_DIR": ("path", SCORE),
    "ORCHESTRATOR_DB": ("path", SCORE),
    "ORCHESTRATOR_DATABASE_URL": ("db", SCORE),
    "ORCHESTRATOR_SCORING_CONFIG": ("path", SCORE),
    "ORCHESTRATOR_NOTIFY_WEBHOOK": ("url", LIST),
    "ORCHESTRATOR_UNLEASH_TOKEN": ("secret", LIST),
    "ORCHESTRATOR_SETTINGS_FILE": ("path", LIST),
    "ORCHESTRATOR_LOG_FORMAT": ("text", LIST),
}

TEXT = ["", " ", "x" * 5000, "a\nb", "\u202e", "caf\u00e9", "\U0001f600", "'; DROP", "{{x}}", "-1", "nan"]
SECONDS = ["abc", "0", "-5", "nan", "inf", "-inf", "1e400", "1" * 400, "0.000001", "3600.5", "2", " 2 ", "\u0662"]
BOOLS = ["1", "0", "true", "FALSE", "yes", "", "maybe", "\u0131"]
# Host parts: 127.0.0.1, or names refused before any lookup (a label over 63 characters, an empty label).
BAD_HOSTS = ["a" * 64 + ".invalid", "a..invalid", "x" * 300, ".", "127.0.0.1]", "[127.0.0.1", "[::1"]
HOSTS = ["127.0.0.1", *BAD_HOSTS, ""]
PORTS = ["1", "0", "99999", "-1", "x", "", "1" * 30, "\u0661"]
# A user name alone is shown (it is not a secret); everything after its ":" is.
USERINFO = ["", f"u:{SECRET}@", f"u:{SECRET}@{SECRET}@", "user@", f"{SECRET}@{SECRET}@", f":{SECRET}@", "u:p%zz@",
            "\u00fc:\u00e9@"]
QUERIES = ["", f"?token={SECRET}", f"?password={SECRET}&x=1", f"/?api_key={SECRET}", "?a=%", "#frag", "/../..\n"]
SCHEMES = ["http://", "https://", "ftp://", "file://", "HTTP://", "", "http:/", "javascript:"]


@st.composite
def urls(draw: st.DrawFn, schemes: list[str]) -> str:
    port = draw(st.sampled_from(PORTS))
    return (draw(st.sampled_from(schemes)) + draw(st.sampled_from(USERINFO)) + draw(st.sampled_from(HOSTS))
            + (f":{port}" if port else "") + draw(st.sampled_from(QUERIES)))


@st.composite
def addresses(draw: st.DrawFn) -> str:
    return (draw(st.sampled_from(["", f"u:{SECRET}@", f"{SECRET}@x@", "dns:///"])) + draw(st.sampled_from(HOSTS))
            + ":" + draw(st.sampled_from(PORTS)))


def paths(tmp: Path) -> st.SearchStrategy[str]:
    return st.sampled_from([
        str(tmp / "missing"), str(tmp), "/dev/zero", "/dev/null", "", "x" * 5000, str(tmp / "a\nb"),
        str(tmp / "dir" / "runs.db"), "/proc/self/environ", str(REPO / "README.md"), "~nobody/x",
    ])


def secrets() -> st.SearchStrategy[str]:
    return st.sampled_from([
        SECRET, f"{SECRET}\n", f"{SECRET}\nX-Injected: {SECRET}", f"{SECRET}\u20ac", f"{SECRET}\r", f" {SECRET} ",
        f"Bearer {SECRET}", f"{SECRET}\x7f", "", f"{SECRET}:{SECRET}", "x" * 20000 + SECRET,
    ])


DB_SCHEMES = ["postgresql://", "postgres://", "postgresql+psycopg://", "postgresql+asyncpg://", "sqlite://",
              "sqlite:///", "mysql://", "://", "postgresql:/"]
DB_QUERIES = ["", f"?password={SECRET}", "?sslmode=bogus", "?connect_timeout=1", "?port=abc", "?bogus=1",
              "?options=-c%20statement_timeout%3D1", "?sslpassword=" + SECRET, "?%zz"]


@st.composite
def db_urls(draw: st.DrawFn) -> str:
    port = draw(st.sampled_from(["1", "notaport", "99999", ""]))
    return (draw(st.sampled_from(DB_SCHEMES)) + draw(st.sampled_from(USERINFO))
            + draw(st.sampled_from(["127.0.0.1", "[::1", "a" * 64 + ".invalid", "127.0.0.1]"]))
            + (f":{port}" if port else "") + draw(st.sampled_from(["/x", "", "/", "/a b"]))
            + draw(st.sampled_from(DB_QUERIES)))


def value_for(kind: str, tmp: Path) -> st.SearchStrategy[str]:
    text = st.sampled_from(TEXT)
    return {
        "address": addresses(),
        "url": urls(SCHEMES),
        "db": db_urls(),
        "secret": secrets(),
        "seconds": st.sampled_from(SECONDS),
        "bool": st.sampled_from(BOOLS),
        "path": paths(tmp),
        "text": text,
    }[kind]


LINE = re.compile(r"^\S.*?:\d+: \S+: \S|^error: \S")


def _base(tmp: Path) -> dict[str, str]:
    # Every dependency at a closed port of 127.0.0.1, short timeouts, files in the case's own folder.
    return {"ORCHESTRATOR_TEMPORAL_ADDRESS": CLOSED, "ORCHESTRATOR_PROMETHEUS_URL": f"http://{CLOSED}",
            "ORCHESTRATOR_PROMETHEUS_TIMEOUT": "2", "ORCHESTRATOR_KUBE_TIMEOUT": "2",
            "ORCHESTRATOR_DB": str(tmp / "runs.db"), "ORCHESTRATOR_KUBECONFIG": str(tmp / "no-kubeconfig")}


def _check(args: list[str], env: dict[str, str], what: str) -> Outcome:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcome = invoke(args, env=env)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert "Traceback" not in outcome.err, (what, outcome.err[-2000:])
    assert outcome.code in (0, 2, 3), (what, outcome.code, outcome.err[-2000:])
    assert outcome.seconds < 5, (what, outcome.seconds)
    assert grown < 200 * 1024, (what, grown)
    if outcome.code:
        assert len(outcome.err_lines) == 1, (what, outcome.err[-2000:])
        assert LINE.match(outcome.err_lines[0]), (what, outcome.err_lines[0])
    for text in (outcome.out, outcome.err):
        assert SECRET not in text, (what, text[-2000:])
    return outcome


def _names_another_host(value: str) -> bool:
    return any(host in value for host in BAD_HOSTS if host not in (".",))


FUZZ = settings(
    derandomize=True, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)


# Cases per surface: every setting gets its own derandomized search (one from a short list of values stops once
# it has tried them all, after 8 to 13 cases; URLs and addresses take the full count).
CASES_PER_SETTING = 60
CASES_PER_DB_SURFACE = 120


@pytest.mark.parametrize("name", sorted(SETTINGS))
@settings(FUZZ, max_examples=CASES_PER_SETTING)
@given(data=st.data())
def test_every_setting_exit_0_2_or_3_in_one_line(name: str, tmp_path: Path, data: st.DataObject) -> None:
    kind, command = SETTINGS[name]
    value = data.draw(value_for(kind, tmp_path), label="value")
    outcome = _check(command, {**_base(tmp_path), name: value}, f"{name}={value[:300]!r}")
    if kind in ("url", "address") and _names_another_host(value) and name != "ORCHESTRATOR_TEMPORAL_UI":
        assert outcome.code == 2, (name, value, outcome.err)


@pytest.mark.parametrize("surface", ["--db", "ORCHESTRATOR_DATABASE_URL"])
@settings(FUZZ, max_examples=CASES_PER_DB_SURFACE)
@given(url=db_urls())
def test_db_urls_exit_2_or_3_in_one_line(surface: str, tmp_path: Path, url: str) -> None:
    env = _base(tmp_path)
    if surface == "--db":
        outcome = _check([*SCORE, "--db", url], env, f"--db {url!r}")
    else:
        outcome = _check(SCORE, {**env, surface: url}, f"{surface}={url!r}")
    assert outcome.code in (2, 3), (url, outcome.err)
    if _names_another_host(url):
        assert outcome.code == 2, (url, outcome.err)
