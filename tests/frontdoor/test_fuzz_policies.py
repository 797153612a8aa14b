"""Property: whatever is done to a shipped rails policy, ``validate`` answers exit 0 or 2 with well-formed lines,
and a policy it accepts is one every rail can evaluate.

Hypothesis (derandomized, so the suite is repeatable) mutates the policies in examples/rails/ -- values replaced
by hostile ones (alert-label injections, misspelt or misplaced placeholders, zone names that are paths or
directories, times with offsets or as YAML numbers, huge integers, trailing newlines), keys dropped or added, and
text-level damage (truncation, YAML bombs, deep nesting, stray tags, duplicate keys) -- and drives the real CLI
in-process through click's runner. Whenever the answer is exit 0, the rails' own pure code must take the policy
too: the alert query and every health query render for a target, and the clock rails judge a moment, so a
policy that validates can never make a rail fail or silently skip later. A few mutations also run as real
processes under an address-space limit.
"""

from __future__ import annotations

import resource
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from orchestrator.gates.template import render
from orchestrator.rails import clock, signals
from orchestrator.rails.models import RailTarget
from orchestrator.specs.policy import load_policy
from orchestrator.specs.promql import TEMPLATE_VAR
from tests.frontdoor.helpers import REPO, invoke, run_process
from tests.frontdoor.test_fuzz import BOMB, HOSTILE_VALUES, LINE, SNIPPETS, _paths, _set

POLICIES = sorted((REPO / "examples" / "rails").glob("*.yaml"))
TEXTS = {p: p.read_text() for p in POLICIES}
DATA = {p: yaml.safe_load(t) for p, t in TEXTS.items()}
EXAMPLES = 600  # about 8 s of suite time on a busy 2-core machine

INJECTION = 'critical"} and on() vector(0) > 1 or ALERTS{x="'
POLICY_VALUES: list[Any] = [
    INJECTION, "{{namspace}}", "{{namespace", "{{ app }}", "{{track_selector}}", "{{version}}", "x-{{app}}",
    'up > {{app}}', 'up{app="{{app}}"}', 'up{app=~"{{app}}"} # {{app}}', "`{{app}}`", "}", '"', "\\",
    "10:00+05:00", "10:00Z", "24:00", "25:61", "09:00", 36000, 600, -1, 10**400, "9" * 400, 1e308,
    "Europe", "Europe/", "Europe/Berlin", "a" * 5000, "../../../etc/passwd", "Etc/../UTC", "UTC", "Mars/Olympus",
    "/usr/share/zoneinfo/UTC", "shop\n", "payments\n", "*", "kube-system", "2026-12-24T00:00:00",
    "2026-12-24T00:00:00+01:00", "9999-12-31T23:59:59+14:00", "0001-01-01T00:00:00-14:00", "P1D", "1000000000d",
    ["mon", "funday"], ["chaos", "canary", "flag", "x"], {"severity": INJECTION}, {"__name__": "x"},
    {"a-b": "c"}, {"namespace": "{{namespace}}"}, [{"namespace": "shop\n"}], [{"app": "{{app}}"}],
]

TARGETS = [RailTarget(namespace="shop", app="checkout"), RailTarget(namespace="shop", flag="f"),
           RailTarget(namespace="shop", app="web", selector={"app": "web"})]
MOMENTS = [datetime(2026, 12, 25, 12, 0, tzinfo=UTC), datetime(2027, 3, 29, 0, 30, tzinfo=UTC)]


@st.composite
def mutated_policies(draw: st.DrawFn) -> str:
    policy = draw(st.sampled_from(POLICIES))
    data, text = DATA[policy], TEXTS[policy]
    kind = draw(st.sampled_from(["value", "value", "value", "delete", "add", "truncate", "snippet", "line", "bomb"]))
    if kind in ("value", "delete", "add"):
        path = draw(st.sampled_from(_paths(data)[1:]))
        if kind == "value":
            value = draw(st.one_of(st.sampled_from(POLICY_VALUES), st.sampled_from(HOSTILE_VALUES), st.integers(),
                                   st.text(max_size=20)))
            data = _set(data, path, value)
        elif kind == "delete":
            data = _set(data, path, None, delete=True)
        else:
            parent = path[:-1]
            target: Any = data
            for part in parent:
                target = target[part]
            if isinstance(target, dict):
                extra = draw(st.sampled_from(["bogus", "kinds", "name", "query", "timezone", "matchLabels", "<<"]))
                data = _set(data, parent, {**target, extra: draw(st.sampled_from(POLICY_VALUES))})
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if kind == "truncate":
        return text[: draw(st.integers(0, len(text)))]
    if kind == "bomb":
        return text + BOMB
    lines = text.splitlines(keepends=True)
    index = draw(st.integers(0, len(lines) - 1))
    line = lines[index]
    if kind == "line":
        how = draw(st.sampled_from(["drop", "double", "dedent", "indent"]))
        replacement = {"drop": "", "double": line + line, "dedent": line.lstrip(), "indent": "   " + line}[how]
        return "".join(lines[:index]) + replacement + "".join(lines[index + 1 :])
    snippet = draw(st.sampled_from([*SNIPPETS, "10:00", "36000", "'10:00+05:00'", "Europe", "'{{namspace}}'"]))
    if ":" in line and not line.rstrip().endswith(":"):
        line = f"{line.split(':', 1)[0]}: {snippet}\n"
    else:
        line = snippet + "\n"
    return "".join(lines[:index]) + line + "".join(lines[index + 1 :])


def _rails_take(path: Path) -> None:
    """What the rails do with an accepted policy, minus the remote queries: nothing may raise or skip."""
    spec = load_policy(path).spec
    for target in TARGETS:
        query = signals.incidents_query(spec, target)
        names = set(TEMPLATE_VAR.findall(",".join(spec.incidents.match_labels.values())))
        assert query is not None or not names <= set(signals.variables(target)), (target, spec.incidents)
        for q in spec.health:
            if not set(TEMPLATE_VAR.findall(q.query)) - set(signals.variables(target)):
                render(q.query, signals.variables(target))
        for at in MOMENTS:
            for kind in ("canary", "flag", "chaos"):
                clock.freeze(spec, kind, target.namespace, at)
                clock.staffed_hours(spec, kind, at)


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
@given(text=mutated_policies())
def test_mutated_policies_exit_0_or_2_and_an_accepted_one_works(tmp_path: Path, text: str) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    outcome = invoke(["validate", str(path)])
    assert outcome.code in (0, 2), (outcome.code, outcome.err[-2000:], text[:2000])
    event(f"exit {outcome.code}")  # --hypothesis-show-statistics: how many mutations were accepted
    assert "Traceback" not in outcome.err
    assert outcome.seconds < 5, (outcome.seconds, text[:500])
    if outcome.code == 2:
        assert outcome.err_lines, text[:500]
        for line in outcome.err_lines:
            assert LINE.match(line) and str(path) in line, (line, text[:500])
    elif "RailsPolicy" in outcome.out:
        _rails_take(path)
    # ru_maxrss is the peak (KiB): one validation must not add hundreds of MB to it.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024


@pytest.mark.parametrize("damage", ["bomb", "deep", "timezone", "huge-duration"])
def test_damaged_policies_in_a_real_process_stay_bounded(tmp_path: Path, damage: str) -> None:
    text = TEXTS[REPO / "examples" / "rails" / "production.yaml"]
    text = {
        "bomb": text + BOMB,
        "deep": text + "deep: " + "[" * 100_000 + "]" * 100_000 + "\n",
        "timezone": text.replace("Europe/Berlin", "Europe"),
        "huge-duration": text.replace("30m", "9" * 400),
    }[damage]
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    outcome = run_process(["validate", str(path)], memory_bytes=1024 * 1024 * 1024, timeout=60)
    assert outcome.code == 2, outcome.err[-2000:]
    assert "Traceback" not in outcome.err and outcome.err_lines, outcome.err[-2000:]
    assert all(LINE.match(line) for line in outcome.err_lines), outcome.err[-2000:]
    assert outcome.seconds < 5
