"""Property: the inputs that are not specs get the spec front door's answers too -- Argo templates
(``import argo``), scoring configs (``score --config``) and ``replay``'s arguments: exit 0 (1 where the
command means "not everything converted") or 2 or 3, never a traceback, one well-formed line for an
error, under 5 s and 200 MB per case.

Hypothesis (derandomized, so the suite is repeatable) mutates the Argo templates of tests/ecosystem/argo and
a full scoring config the way test_fuzz mutates specs -- hostile values, dropped and added keys, text-level
damage -- and draws ``replay`` windows, limits and selectors from hostile and ordinary values. Everything
runs in-process through click's runner; the only address is 127.0.0.1 (Prometheus at port 1, where nothing
listens, so a replay that passes its checks ends at once with exit 3).
"""

from __future__ import annotations

import re
import resource
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from orchestrator.scoring.store import RunStore
from orchestrator.specs.checks import Check
from tests.frontdoor.helpers import REPO, Outcome, invoke
from tests.frontdoor.test_fuzz import BOMB, HOSTILE_VALUES, LINE, SNIPPETS, _paths, _set
from tests.scoring import T0, error_rate, make_run

ARGO = sorted((REPO / "tests" / "ecosystem" / "argo").glob("*.yaml"))
ARGO_TEXTS = {p: p.read_text() for p in ARGO}
ARGO_DOCS = {p: [d for d in yaml.safe_load_all(t) if d is not None] for p, t in ARGO_TEXTS.items()}

SCORING = """\
weights:
  detection: 0.2
  autoRecovery: 0.3
  containment: 0.2
  customerImpact: 0.2
  recoveryTime: 0.1
recoveryZeroAt: 3
detectionZeroAt: 3
autoRecoveryZeroAt: 3
impactZeroAt: 0.1
budgetMaxBurn: 0.05
neverRecoveredCap: 0.25
halfLife: 14d
repeatabilityK: 1
evidenceTarget: 1
resilientAt: 80
degradedAt: 50
trendWindow: 3
trendEpsilon: 5
"""

# What a hostile Argo template adds to the spec fuzz's values: YAML in a name, catastrophic or broken
# regular expressions, digits that are not ASCII, and text that would close a PromQL string.
ARGO_VALUES: list[Any] = [
    *HOSTILE_VALUES, "x\n- name: injected\n  query: vector(1)", "(a+)+b", "(unclosed", "\u00b3", "1" * 5000,
    '"} or vector(1) #', "{{args.service}}", "{{args.nope}}", {"query": "up"}, ["up"], "result[0] <= 1e999",
    "len(result) == 0", "isNaN(result[0])", "a" * 300,
]
# Selectors, times and limits as a user (or a script gone wrong) might pass them to ``replay``.
TIMES = [
    "2025-03-04T10:00Z", "2025-03-04T11:00:00+00:00", "9999-12-31T23:59:58Z", "0001-01-01T00:00:00+01:00",
    "1969-12-31T23:59:59Z", "8999-12-31T00:00Z", "yesterday", "", "2025-13-45T00:00Z", "2025-03-04T10:00+14:00",
    "2025-03-04T10:00:00.123456Z", "1" * 5000, "2025-03-04T10:00Z\n",
]
SELECTORS = [
    'version="v2"', 'version="v2"} or vector(1) #', 'a=~".+"', "", " ", 'a="\\"', "x" * 5000, 'a="b",c!~"d"',
    'a="b"\n', None,
]
LIMITS = ["1", "10000", "0", "-1", "abc", "1e3", "99999999999999999999", "", " 5", "\u0665", None]
INTERVALS = ["1ms", "1s", "30s", "1m", "365d", "0s", "99999999999999999999d", "-1s", "nan"]

REPLAY_SPEC = """\
apiVersion: orchestrator.dev/v1
kind: CanaryRollout
metadata: {name: checkout}
spec:
  target: {namespace: shop, deployment: checkout}
  change: {image: IMAGE}
  steps:
    - setWeight: 20
    - analysis:
        checks:
          - name: errors
            query: sum(rate(http_requests_total{app="{{app}}",version="{{version}}",{{track_selector}}}[1m]))
            condition: {max: 1}
            interval: INTERVAL
            count: COUNT
  backgroundChecks:
    - name: background
      query: sum(up{app="{{app}}"})
      condition: {min: 0}
      interval: INTERVAL
"""
NOWHERE = {"ORCHESTRATOR_PROMETHEUS_URL": "http://127.0.0.1:1"}

FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)


def mutate(draw: st.DrawFn, data: Any, text: str, values: list[Any], dump: Callable[[Any], str]) -> str:
    """One mutation of a YAML document (``data``, written as ``text``), the way test_fuzz mutates specs."""
    kind = draw(st.sampled_from(["value", "value", "delete", "add", "truncate", "snippet", "line", "bomb"]))
    paths = _paths(data)
    if kind in ("value", "delete", "add") and len(paths) > 1:
        path = draw(st.sampled_from(paths[1:]))
        if kind == "value":
            value = draw(st.one_of(st.sampled_from(values), st.integers(), st.floats(), st.text(max_size=20)))
            return dump(_set(data, path, value))
        if kind == "delete":
            return dump(_set(data, path, None, delete=True))
        target: Any = data
        for part in path[:-1]:
            target = target[part]
        if isinstance(target, dict):
            extra = draw(st.sampled_from(["bogus", "kind", "name", "metrics", "<<", "1", "query", "count"]))
            return dump(_set(data, path[:-1], {**target, extra: draw(st.sampled_from(values))}))
        return dump(data)
    lines = text.splitlines(keepends=True)
    if kind == "truncate":
        return text[: draw(st.integers(0, len(text)))]
    index = draw(st.integers(0, len(lines) - 1))
    line = lines[index]
    if kind == "line":
        how = draw(st.sampled_from(["drop", "double", "dedent", "indent"]))
        replacement = {"drop": "", "double": line + line, "dedent": line.lstrip(), "indent": "   " + line}[how]
        return "".join(lines[:index]) + replacement + "".join(lines[index + 1 :])
    if kind == "bomb":
        return text + BOMB
    snippet = draw(st.sampled_from(SNIPPETS))
    if ":" in line and not line.rstrip().endswith(":"):
        line = f"{line.split(':', 1)[0]}: {snippet}\n"
    else:
        line = snippet + "\n"
    return "".join(lines[:index]) + line + "".join(lines[index + 1 :])


@st.composite
def argo_files(draw: st.DrawFn) -> str:
    path = draw(st.sampled_from(ARGO))
    docs = ARGO_DOCS[path]
    at = draw(st.integers(0, len(docs) - 1))

    def dump(doc: Any) -> str:
        return yaml.safe_dump_all([*docs[:at], doc, *docs[at + 1 :]], sort_keys=False, allow_unicode=True)

    return mutate(draw, docs[at], ARGO_TEXTS[path], ARGO_VALUES, dump)


@st.composite
def scoring_configs(draw: st.DrawFn) -> str:
    data = yaml.safe_load(SCORING)
    return mutate(draw, data, SCORING, HOSTILE_VALUES, lambda d: yaml.safe_dump(d, sort_keys=False))


def _bounded(run: Callable[[], Outcome]) -> Outcome:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcome = run()
    # ru_maxrss is the peak (KiB): one case must not add hundreds of MB to it.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024
    event(f"exit {outcome.code}")  # the spread of answers, in --hypothesis-show-statistics
    assert "Traceback" not in outcome.err, outcome.err[-2000:]
    assert outcome.seconds < 5, outcome.seconds
    return outcome


def _error_lines(outcome: Outcome, *names: str, spec: bool = False) -> None:
    """One well-formed line; a spec file (validated like ``validate`` does) may name each of its mistakes."""
    assert outcome.err_lines and (spec or len(outcome.err_lines) == 1), outcome.err[-2000:]
    for line in outcome.err_lines:
        assert LINE.match(line), line
        assert any(line.startswith(name) for name in names), (names, line)


@settings(FUZZ, max_examples=400)
@given(text=argo_files())
def test_mutated_argo_templates_exit_0_1_or_2_and_print_only_valid_checks(tmp_path: Path, text: str) -> None:
    path = tmp_path / "argo.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    outcome = _bounded(lambda: invoke(["import", "argo", str(path), "--var", "service=app"]))
    assert outcome.code in (0, 1, 2), (outcome.code, outcome.err[-2000:], text[:2000])
    if outcome.code == 2:
        _error_lines(outcome, str(path), "<command line>")
        return
    assert all(line.startswith(("note: ", "cannot convert: ")) for line in outcome.err_lines), outcome.err
    # Whatever the names and queries were, the output is YAML whose every check is a valid check.
    for doc in yaml.safe_load_all(outcome.out):
        assert isinstance(doc, dict) and set(doc) <= {"analysis", "backgroundChecks"}, doc
        for check in [*doc.get("analysis", {}).get("checks", []), *doc.get("backgroundChecks", [])]:
            Check.model_validate(check)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A run store with a few runs of one service, so that a config's every constant is used by the report."""
    location = str(tmp_path_factory.mktemp("scoring") / "runs.db")
    with RunStore(location) as runs:
        for i, during in enumerate([[0.0, 0.0], [0.01, 0.09], [0.2, 0.3], [0.0, 0.01]]):
            runs.save(make_run(run_id=f"r{i}", ended_at=T0 + timedelta(days=i, seconds=90),
                                  checks=[error_rate(during=during)]))
    return location


@settings(FUZZ, max_examples=300)
@given(text=scoring_configs(), fmt=st.sampled_from(["text", "json", "markdown", "html"]))
def test_mutated_scoring_configs_exit_0_or_2(tmp_path: Path, store: str, text: str, fmt: str) -> None:
    path = tmp_path / "scoring.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    outcome = _bounded(lambda: invoke(["score", "--config", str(path), "--db", store, "--format", fmt]))
    assert outcome.code in (0, 2), (outcome.code, outcome.err[-2000:], text[:2000])
    if outcome.code == 2:
        _error_lines(outcome, str(path))
    else:
        assert outcome.out and not re.search(r"\bnan\b|\binf\b", outcome.out, re.I), outcome.out[:2000]


def _optional(name: str, value: str | None) -> list[str]:
    return [] if value is None else [name, value]


def _mostly(draw: st.DrawFn, usual: list[Any], hostile: list[Any]) -> Any:
    """A usual value four times out of five: hostile values are tried, and so is a replay that gets going."""
    return draw(st.sampled_from(usual)) if draw(st.integers(0, 4)) else draw(st.sampled_from(hostile))


@st.composite
def replay_arguments(draw: st.DrawFn) -> list[str]:
    how = draw(st.sampled_from(["window", "window", "window", "window", "listed", "any"]))
    if how == "window":
        start = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 1, 1),
                                  timezones=st.just(UTC)))
        length = _mostly(draw, [timedelta(minutes=1), timedelta(hours=1), timedelta(hours=6)],
                         [timedelta(days=365), timedelta(0), -timedelta(hours=1)])
        times = [start.isoformat(), (start + length).isoformat()]
    elif how == "listed":
        times = [draw(st.sampled_from(TIMES)), draw(st.sampled_from(TIMES))]
    else:
        anything = st.one_of(st.text(max_size=30), st.datetimes(timezones=st.just(UTC)).map(str))
        times = [draw(anything), draw(anything)]
    return [
        "--from", times[0], "--to", times[1],
        *_optional("--max-queries", _mostly(draw, [None, "10000", "100000"], LIMITS)),
        *_optional("--canary-selector", _mostly(draw, [None, 'version="v2"'], SELECTORS)),
        *_optional("--control-selector", _mostly(draw, [None, 'version="v1"'], SELECTORS)),
        "-o", draw(st.sampled_from(["text", "json", "markdown"])),
    ]


@st.composite
def replay_specs(draw: st.DrawFn) -> str:
    image = _mostly(draw, ["reg:5000/app", "reg:5000/app:1.2", "app@sha256:abc", "app"], ["app:{{x}}", ""])
    count = _mostly(draw, ["1", "10"], ["1000000", "0", "-1", "abc", "99999999999999999999"])
    interval = _mostly(draw, ["30s", "1m", "10m", "1h"], INTERVALS)
    return REPLAY_SPEC.replace("IMAGE", image).replace("COUNT", count).replace("INTERVAL", interval)


@settings(FUZZ, max_examples=300)
@given(spec=replay_specs(), args=replay_arguments(), env_limit=st.sampled_from(LIMITS))
def test_replay_arguments_exit_2_or_3_in_one_line(tmp_path: Path, spec: str, args: list[str],
                                                  env_limit: str | None) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(spec)
    env = {**NOWHERE, **({} if env_limit is None else {"ORCHESTRATOR_REPLAY_MAX_QUERIES": env_limit})}
    outcome = _bounded(lambda: invoke(["replay", str(path), *args], env=env))
    # Nothing listens at 127.0.0.1:1: a replay that passes every check is refused a connection (3).
    assert outcome.code in (2, 3), (outcome.code, outcome.err[-2000:], args)
    if outcome.code == 2:
        _error_lines(outcome, str(path), "<command line>", "<environment>", spec=True)
    else:
        assert len(outcome.err_lines) == 1 and "127.0.0.1:1" in outcome.err_lines[0], outcome.err


def test_the_fuzzed_surfaces_have_their_seeds() -> None:
    # The mutations start from real files: if they disappeared the fuzz would test nothing.
    assert len(ARGO) >= 4 and all(ARGO_DOCS.values())
    assert yaml.safe_load(SCORING)["weights"]["autoRecovery"] == 0.3
