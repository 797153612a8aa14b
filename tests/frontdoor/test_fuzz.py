"""Property: whatever is done to a shipped spec, ``validate`` answers exit 0 or 2, never a traceback, fast.

Hypothesis (derandomized, so the suite is repeatable) mutates every spec in examples/, examples/sandbox/,
examples/rails/ (the rails policies) and experiments/ -- values replaced by hostile ones, keys dropped or
added, and text-level damage (truncation, YAML bombs, deep nesting, stray tags, duplicate keys) -- and
drives the real CLI in-process through click's runner. A few mutations also run as real processes under an
address-space limit.
"""

from __future__ import annotations

import re
import resource
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.frontdoor.helpers import REPO, invoke, run_process

SPECS = sorted(
    p
    for folder in ("examples", "examples/sandbox", "examples/rails", "experiments")
    for p in (REPO / folder).glob("*.yaml")
)
TEXTS = {p: p.read_text() for p in SPECS}
DATA = {p: yaml.safe_load(t) for p, t in TEXTS.items()}

HOSTILE_VALUES: list[Any] = [
    None, True, False, 0, -1, -5, 2**63, 10**30, 1e308, float("inf"), float("-inf"), float("nan"), "",
    " ", "x" * 5000, "99999999999999999999d", "1000000000d", "0s", "-5s", "P99999999999D", "nan", "{{.+}}",
    "{{version}}", "a\u0000b", "\u202e", [], {}, [None], {"a": None}, ["x"] * 50, "' OR 1=1", ".+",
]

# Text-level damage a YAML value cannot express.
SNIPPETS = [
    "!!int abc",
    "!unknown x",
    "!!python/object:os.system x",
    "&a [*a]",
    "*undefined",
    "{" * 300 + "}" * 300,
    "[" * 300 + "]" * 300,
    "2026-13-45",
    "!!binary '%%%'",
    "!!timestamp nope",
    "? [a, b]\n  : c",
    "|\n  x\n y",
    "\t\tx",
    "\x00",
    "\ufeffx",
]

BOMB = "".join(
    [f"l0: &l0 [{','.join(['lol'] * 9)}]\n"]
    + [f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9)]
)


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*path, index))
    return out


def _set(node: Any, path: tuple[Any, ...], value: Any, delete: bool = False) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        node = dict(node)
        if delete and not rest:
            node.pop(head, None)
        else:
            node[head] = _set(node[head], rest, value, delete)
    elif isinstance(node, list):
        node = list(node)
        if delete and not rest:
            del node[head]
        else:
            node[head] = _set(node[head], rest, value, delete)
    return node


@st.composite
def mutated_specs(draw: st.DrawFn, specs: list[Path] = SPECS) -> str:
    spec = draw(st.sampled_from(specs))
    data, text = DATA[spec], TEXTS[spec]
    kind = draw(st.sampled_from(["value", "delete", "add", "truncate", "snippet", "line", "bomb"]))
    paths = _paths(data)
    if kind in ("value", "delete", "add"):
        path = draw(st.sampled_from(paths[1:]))
        if kind == "value":
            value = draw(st.one_of(st.sampled_from(HOSTILE_VALUES), st.integers(), st.floats(), st.text(max_size=20)))
            data = _set(data, path, value)
        elif kind == "delete":
            data = _set(data, path, None, delete=True)
        else:
            parent = path[:-1]
            extra = draw(st.sampled_from(["bogus", "kind", "name", "steps", "<<", "1"]))
            target: Any = data
            for part in parent:
                target = target[part]
            if isinstance(target, dict):
                data = _set(data, parent, {**target, extra: draw(st.sampled_from(HOSTILE_VALUES))})
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    lines = text.splitlines(keepends=True)
    if kind == "truncate":
        return text[: draw(st.integers(0, len(text)))]
    if kind == "line":
        index = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["drop", "double", "dedent", "indent"]))
        line = lines[index]
        replacement = {"drop": "", "double": line + line, "dedent": line.lstrip(), "indent": "   " + line}[how]
        return "".join(lines[:index]) + replacement + "".join(lines[index + 1 :])
    index = draw(st.integers(0, len(lines) - 1))
    line = lines[index]
    if kind == "bomb":
        return text + BOMB
    snippet = draw(st.sampled_from(SNIPPETS))
    if ":" in line and not line.rstrip().endswith(":"):
        key = line.split(":", 1)[0]
        line = f"{key}: {snippet}\n"
    else:
        line = snippet + "\n"
    return "".join(lines[:index]) + line + "".join(lines[index + 1 :])


LINE = re.compile(r"^\S.*?:\d+: \S+: \S")


def _check(outcome_path: Path, text: str) -> None:
    outcome_path.write_text(text, encoding="utf-8", errors="surrogatepass")
    outcome = invoke(["validate", str(outcome_path)])
    assert outcome.code in (0, 2), (outcome.code, outcome.err[-2000:], text[:2000])
    assert "Traceback" not in outcome.err
    assert outcome.seconds < 5, (outcome.seconds, text[:500])
    if outcome.code == 2:
        assert outcome.err_lines, text[:500]
        for line in outcome.err_lines:
            assert LINE.match(line) and str(outcome_path) in line, (line, text[:500])


def test_every_shipped_spec_is_valid() -> None:
    assert len(SPECS) >= 10
    for spec in SPECS:
        outcome = invoke(["validate", str(spec)])
        assert outcome.code == 0, outcome.err


@settings(
    max_examples=400,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
@given(text=mutated_specs())
def test_mutated_specs_exit_0_or_2_without_traceback(tmp_path: Path, text: str) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _check(tmp_path / "mutated.yaml", text)
    # ru_maxrss is the peak (KiB): one validation must not add hundreds of MB to it.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024


OPERATOR = [REPO / "examples" / "operator-settings.yaml"]


@settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
@given(text=mutated_specs(OPERATOR))
def test_mutated_operator_settings_exit_0_or_2_without_traceback(tmp_path: Path, text: str) -> None:
    # The operator's settings name every endpoint and token variable: the worker reads them through this
    # very loader when it starts, so what validate answers here is what the worker answers.
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _check(tmp_path / "operator.yaml", text)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024


@pytest.mark.parametrize(
    ("damage", "spec"),
    [("bomb", "experiments/gameday.yaml"), ("deep", "examples/flag-ramp-flagd.yaml"),
     ("huge-duration", "examples/checkout-canary.yaml"), ("tag", "experiments/pod-kill.yaml")],
)
def test_mutations_in_a_real_process_stay_bounded(tmp_path: Path, damage: str, spec: str) -> None:
    text = TEXTS[REPO / spec]
    text = {
        "bomb": text + BOMB,
        "deep": text + "deep: " + "[" * 100_000 + "]" * 100_000 + "\n",
        "huge-duration": text.replace("10s", "99999999999999999999d"),
        "tag": text.replace("kind:", "kind: !!int", 1),
    }[damage]
    path = tmp_path / "mutated.yaml"
    path.write_text(text)
    started = time.monotonic()
    outcome = run_process(["validate", str(path)], memory_bytes=1024 * 1024 * 1024, timeout=60)
    assert outcome.code == 2, outcome.err[-2000:]
    assert "Traceback" not in outcome.err and outcome.err_lines, outcome.err[-2000:]
    assert all(LINE.match(line) for line in outcome.err_lines), outcome.err[-2000:]
    assert time.monotonic() - started < 30
