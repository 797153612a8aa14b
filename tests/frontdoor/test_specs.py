"""Spec files written by a hostile or careless hand: every one ends in exit 2 and one ``file:line: field:`` line."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from orchestrator.specs.loader import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES, load_text
from tests.frontdoor.helpers import BASE, assert_one_line, run_process, validate_text


def _sub(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


# (id, spec text, line, field) — the field is matched as a prefix of what follows ``line: ``.
CASES = [
    ("huge-days", _sub("{duration: 10s}", "{duration: 99999999999999999999d}"), 13, "spec.steps.1.pause.duration"),
    ("billion-days", _sub("{duration: 10s}", "{duration: 1000000000d}"), 13, "spec.steps.1.pause.duration"),
    ("inf-interval", _sub("interval: 10s", "interval: .inf"), 20, "spec.steps.2.analysis.checks.0.interval"),
    ("nan-interval", _sub("interval: 10s", "interval: .nan"), 20, "spec.steps.2.analysis.checks.0.interval"),
    ("huge-deadline", _sub("progressDeadline: 10m", "progressDeadline: 99999999999999999999d"), 21,
     "spec.progressDeadline"),
    ("iso-huge", _sub("progressDeadline: 10m", "progressDeadline: P99999999999D"), 21, "spec.progressDeadline"),
    ("huge-count", _sub("count: 3", "count: 99999999999999999999"), 19, "spec.steps.2.analysis.checks.0.count"),
    ("kind-list", _sub("kind: CanaryRollout", "kind: [CanaryRollout]"), 2, "kind"),
    ("kind-map", _sub("kind: CanaryRollout", "kind: {a: 1}"), 2, "kind"),
    ("key-not-scalar", _sub("  name: web\n", "  name: web\n  [a, b]: 1\n"), 5, "metadata"),
    ("int-tag", _sub("setWeight: 20", "setWeight: !!int twenty"), 12, "yaml"),
    ("unknown-tag", _sub("name: errors", "name: !secret errors"), 16, "yaml"),
    ("timestamp-bad", _sub("name: web\n", "name: web\n  labels: {built: 2026-13-45}\n"), 5, "yaml"),
    ("duplicate-key", _sub("  name: web\n", "  name: web\n  name: web2\n"), 5, "metadata.name"),
    ("nan-max", _sub("{max: 0.1}", "{max: .nan}"), 18, "spec.steps.2.analysis.checks.0.condition.max"),
    ("inf-max", _sub("{max: 0.1}", "{max: .inf}"), 18, "spec.steps.2.analysis.checks.0.condition.max"),
    ("bool-weight", _sub("setWeight: 20", "setWeight: true"), 12, "spec.steps.0.setWeight"),
    ("bool-count", _sub("count: 3", "count: yes"), 19, "spec.steps.2.analysis.checks.0.count"),
    ("bool-max", _sub("{max: 0.1}", "{max: false}"), 18, "spec.steps.2.analysis.checks.0.condition.max"),
    ("zero-pause", _sub("{duration: 10s}", "{duration: 0s}"), 13, "spec.steps.1.pause"),
    ("recursive-alias", _sub("  name: web\n", "  name: web\n  labels: &a {x: *a}\n"), 5, "metadata.labels.x"),
]


@pytest.mark.parametrize(("text", "line", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_spec_is_one_line_exit_2(tmp_path: Path, text: str, line: int, field: str) -> None:
    outcome, path = validate_text(tmp_path, text)
    assert_one_line(outcome, 2, rf"^{re.escape(path)}:{line}: {re.escape(field)}[.:]")
    assert outcome.seconds < 2


def test_base_spec_is_valid(tmp_path: Path) -> None:
    outcome, _ = validate_text(tmp_path, BASE)
    assert outcome.code == 0, outcome.err


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    text = _sub("  name: web\n", "  name: web\n  labels: &l {team: a}\n  annotations:\n    <<: *l\n    note: x\n")
    outcome, _ = validate_text(tmp_path, text)
    assert outcome.code == 0, outcome.err


def _nested(depth: int) -> str:
    body = "x"
    for _ in range(depth):
        body = "{a: " + body + "}"
    return body


@pytest.mark.parametrize("style", ["flow", "block", "sequence"])
def test_deep_nesting_is_refused_at_its_line(tmp_path: Path, style: str) -> None:
    if style == "flow":
        deep = "  labels: " + _nested(500) + "\n"
    elif style == "sequence":
        deep = "  labels: " + "[" * 500 + "]" * 500 + "\n"
    else:
        deep = "  labels:\n" + "".join("  " * (i + 2) + f"k{i}:\n" for i in range(500)) + "  " * 502 + "v: 1\n"
    outcome, path = validate_text(tmp_path, _sub("  name: web\n", "  name: web\n" + deep))
    line = assert_one_line(outcome, 2, rf"^{re.escape(path)}:\d+: metadata\.labels[.\w]*: .*nest")
    assert int(line.split(":")[1]) >= 5
    assert str(MAX_DEPTH) in line
    assert outcome.seconds < 2


def _laughs(levels: int = 9) -> str:
    out = ['  labels:\n    l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n']
    for i in range(1, levels):
        prev = ",".join([f"*l{i - 1}"] * 9)
        out.append(f"    l{i}: &l{i} [{prev}]\n")
    return "".join(out)


def test_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    outcome, path = validate_text(tmp_path, _sub("  name: web\n", "  name: web\n" + _laughs()))
    line = assert_one_line(outcome, 2, rf"^{re.escape(path)}:\d+: metadata\.labels\.l\d: .*alias")
    assert str(MAX_NODES) in line.replace(",", "")
    assert outcome.seconds < 2


def test_alias_bomb_stays_within_memory_in_a_real_process(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(_sub("  name: web\n", "  name: web\n" + _laughs()))
    outcome = run_process(["validate", str(path)], memory_bytes=768 * 1024 * 1024, timeout=30)
    assert_one_line(outcome, 2, rf"^{re.escape(str(path))}:\d+: metadata\.labels\.l\d: ")


def test_big_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("w") as f:
        f.write(BASE)
        f.write("# " + "x" * 1000 + "\n")
        for _ in range(24 * 1024):
            f.write("# " + "x" * 1021 + "\n")
    outcome = run_process(["validate", str(path)], memory_bytes=768 * 1024 * 1024, timeout=30)
    line = assert_one_line(outcome, 2, rf"^{re.escape(str(path))}:0: \(file\): .*larger than")
    assert f"{MAX_FILE_BYTES // 1024} KiB" in line


def test_too_many_steps(tmp_path: Path) -> None:
    steps = "".join("    - setWeight: 10\n" for _ in range(1000))
    outcome, path = validate_text(tmp_path, _sub("    - setWeight: 20\n", steps))
    assert_one_line(outcome, 2, rf"^{re.escape(path)}:11: spec\.steps: .*at most")
    assert outcome.seconds < 3


def test_too_many_checks(tmp_path: Path) -> None:
    checks = "".join(
        f"          - {{name: c{i}, query: up, condition: {{max: 1}}, count: 1}}\n" for i in range(300)
    )
    text = _sub("          - name: errors\n", checks + "          - name: errors\n")
    outcome, path = validate_text(tmp_path, text)
    assert_one_line(outcome, 2, rf"^{re.escape(path)}:15: spec\.steps\.2\.analysis\.checks: .*at most")


def test_duplicate_check_names_are_found_in_linear_time() -> None:
    from orchestrator.specs.base import first_duplicate

    # names.count() took 31 s for 20,000 names; one pass over 50,000 takes milliseconds even on a busy machine.
    names = [f"c{i}" for i in range(50_000)]
    started = time.monotonic()
    assert first_duplicate(names) is None
    assert first_duplicate([*names, "c7"]) == "c7"
    assert time.monotonic() - started < 5


def test_duplicate_check_names_in_a_spec(tmp_path: Path) -> None:
    text = _sub("    - setWeight: 20\n", "    - setWeight: 20\n" + BASE[BASE.index("    - analysis:"):BASE.index(
        "  progressDeadline")])
    outcome, path = validate_text(tmp_path, text)
    assert_one_line(outcome, 2, rf"^{re.escape(path)}:\d+: spec: .*'errors' appears more than once")


def test_load_text_never_raises_anything_but_spec_errors() -> None:
    from orchestrator.errors import SpecError

    for text in ["[", "{", "a: b: c", "\t- x", "%YAML 9.9\n---\na: 1", "--- !!set\n? a", "!!binary x", "*x", "&a"]:
        with pytest.raises(SpecError):
            load_text(text, "t.yaml")


def test_too_many_values(tmp_path: Path) -> None:
    labels = "".join(f"    k{i}: v\n" for i in range(MAX_NODES))
    outcome, path = validate_text(tmp_path, _sub("  name: web\n", "  name: web\n  labels:\n" + labels))
    assert_one_line(outcome, 2, rf"^{re.escape(path)}:\d+: metadata\.labels\.k\d+: .*more than 10,000 values")


def _replace_block(path: Path, key: str, items: str) -> str:
    """The shipped spec at ``path`` with the list under ``key:`` (two-space indent) replaced by ``items``."""
    lines = path.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {key}:"))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("    ")), len(lines))
    return "".join(lines[: start + 1]) + items + "".join(lines[end:])


LONG_LISTS = [
    ("ramp-stages", "examples/flag-ramp-flagd.yaml", "stages",
     "".join(f"    - {{percent: {i / 10:g}, hold: 1m}}\n" for i in range(1, 1001))),
    ("ramp-checks", "examples/flag-ramp-flagd.yaml", "checks",
     "".join(f"    - {{name: c{i}, query: up, condition: {{max: 1}}}}\n" for i in range(300))),
    ("gameday-experiments", "experiments/gameday.yaml", "experiments", "    - pod-kill.yaml\n" * 1000),
]


@pytest.mark.parametrize(("base", "key", "items"), [c[1:] for c in LONG_LISTS], ids=[c[0] for c in LONG_LISTS])
def test_every_list_a_spec_repeats_has_a_limit(tmp_path: Path, base: str, key: str, items: str) -> None:
    text = _replace_block(Path(__file__).resolve().parents[2] / base, key, items)
    outcome, path = validate_text(tmp_path, text)
    assert_one_line(outcome, 2, rf"^{re.escape(path)}:\d+: spec\.{key}: .*at most")


def test_too_many_steady_state_checks(tmp_path: Path) -> None:
    exp = (Path(__file__).resolve().parents[2] / "experiments" / "pod-kill.yaml").read_text()
    checks = "".join(f"      - {{name: c{i}, query: up, condition: {{max: 1}}}}\n" for i in range(300))
    text = exp.replace("    checks:\n", "    checks:\n" + checks, 1)
    assert text != exp
    outcome, path = validate_text(tmp_path, text)
    assert_one_line(outcome, 2, rf"^{re.escape(path)}:\d+: spec\.steadyState\.checks: .*at most")


def test_validate_checks_a_rails_policy(tmp_path: Path) -> None:
    policy = Path(__file__).resolve().parents[2] / "examples" / "rails" / "production.yaml"
    outcome, _ = validate_text(tmp_path, policy.read_text())
    assert outcome.code == 0, outcome.err
    protected = "".join(f"      - ns{i}\n" for i in range(2000))
    text = policy.read_text().replace("    protected: [payments]", "    protected:\n" + protected.rstrip("\n"), 1)
    outcome, path = validate_text(tmp_path, text)
    assert_one_line(outcome, 2, rf"^{re.escape(path)}:\d+: spec\.namespaces\.protected: .*at most")


def test_a_huge_policy_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    from orchestrator.errors import SpecError
    from orchestrator.specs.policy import load_policy

    path = tmp_path / "policy.yaml"
    path.write_text("# " + "x" * (MAX_FILE_BYTES + 10) + "\n")
    with pytest.raises(SpecError, match=r":0: \(file\): larger than"):
        load_policy(path)


# A trailing newline must not slip through a check whose pattern ends in ``$`` (``re.match`` lets
# "web\n" pass ``^...$``); each line is (id, old text in experiments/pod-kill.yaml, new text, field), and the
# error stands at the line of the old text.
NEWLINES = [
    ("selector-value", "selector: {app: shop}", 'selector: {app: "shop\\n"}', "spec.target.selector"),
    ("selector-key", "selector: {app: shop}", 'selector: {"app\\n": shop}', "spec.target.selector"),
    ("alert-label", "matchLabels: {namespace: demo", 'matchLabels: {"namespace\\n": demo',
     "spec.safety.alerts.matchLabels"),
    ("namespace", "namespace: demo", 'namespace: "demo\\n"', "spec.target.namespace"),
    ("metadata-name", "name: pod-kill", 'name: "pod-kill\\n"', "metadata.name"),
]


@pytest.mark.parametrize(("old", "new", "field"), [c[1:] for c in NEWLINES], ids=[c[0] for c in NEWLINES])
def test_a_value_ending_in_a_newline_is_refused(tmp_path: Path, old: str, new: str, field: str) -> None:
    exp = (Path(__file__).resolve().parents[2] / "experiments" / "pod-kill.yaml").read_text()
    assert old in exp, old
    line = exp[: exp.index(old)].count("\n") + 1
    outcome, path = validate_text(tmp_path, exp.replace(old, new, 1))
    assert_one_line(outcome, 2, rf"^{re.escape(path)}:{line}: {re.escape(field)}[.:]")


def test_tolerances_and_burn_rate_selectors_refuse_a_trailing_newline() -> None:
    from orchestrator.specs.judge import BurnRate, parse_tolerance

    assert parse_tolerance(" 1.2x ") == pytest.approx(1.2)
    with pytest.raises(ValueError, match="is not a tolerance"):
        parse_tolerance("1.2x\nx")
    with pytest.raises(ValueError, match="give the counter as a selector"):
        BurnRate.model_validate({"objective": "99.9%", "total": 'http_requests_total{app="a"}\nor vector(1)'})


def test_a_duration_written_as_a_huge_integer_is_refused_at_its_line(tmp_path: Path) -> None:
    outcome, path = validate_text(tmp_path, _sub("progressDeadline: 10m", "progressDeadline: " + "9" * 400))
    line = assert_one_line(outcome, 2, rf"^{re.escape(path)}:21: spec\.progressDeadline: ")
    assert "longer than the longest duration" in line and len(line) < 300


def test_a_gameday_states_how_long_it_waits_for_recovery() -> None:
    from orchestrator.specs.chaos import GameDay

    text = "apiVersion: orchestrator.dev/v1\nkind: GameDay\nmetadata: {name: g}\nspec:\n  experiments: [a.yaml]\n"
    default = load_text(text, "g.yaml")
    assert isinstance(default, GameDay) and default.spec.recovery_wait.total_seconds() == 120
    waited = load_text(text + "  recoveryWait: 30s\n", "g.yaml")
    assert isinstance(waited, GameDay) and waited.spec.recovery_wait.total_seconds() == 30
    with pytest.raises(Exception, match=r"g.yaml:6: spec.recoveryWait: "):
        load_text(text + "  recoveryWait: soon\n", "g.yaml")
