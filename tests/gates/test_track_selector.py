"""The control side on a real cluster: stable pods carry no ``track`` label, so relative checks select it by absence.

The Prometheus data (tests/fixtures_prom.py) labels series the way a real cluster does: canary and baseline
series have ``track``, stable series have none. A relative check written with ``track="{{track}}"`` would
compare the canary with nothing and roll back every release; ``{{track_selector}}`` renders the stable side
as ``track!~"canary|baseline"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator.config import PrometheusSettings
from orchestrator.gates import evaluate
from orchestrator.gates.model import Phase
from orchestrator.gates.prometheus import PrometheusProvider
from orchestrator.gates.template import track_selector
from orchestrator.specs.canary import CanaryRollout
from orchestrator.specs.checks import Check
from orchestrator.specs.loader import load_file
from tests.fixtures_prom import ERROR_RATIO_QUERY, PromData

pytestmark = pytest.mark.timeout(60)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "checkout-canary.yaml"


def _provider(prom: PromData) -> PrometheusProvider:
    return PrometheusProvider(PrometheusSettings(url=prom.url))


def _example_check() -> Check:
    spec = load_file(EXAMPLE)
    assert isinstance(spec, CanaryRollout)
    (check,) = [c for c in spec.spec.background_checks if c.name == "p95-latency-vs-stable"]
    return check


@pytest.mark.parametrize(("scenario", "expected"), [("healthy", Phase.SUCCESSFUL), ("slow", Phase.FAILED)])
def test_the_example_relative_check_finds_the_unlabelled_stable(
    prom_backfilled: PromData, scenario: str, expected: Phase
) -> None:
    check = _example_check()
    m = evaluate(check, _provider(prom_backfilled), {"namespace": "prod", "app": scenario}, at=prom_backfilled.at)
    assert m.control_value is not None, m.message  # the stable side has data, so the decision is about latency
    assert m.phase is expected, m.message
    assert m.control_query is not None and 'track!~"canary|baseline"' in m.control_query
    assert 'track="canary"' in m.query


def test_track_equals_stable_finds_nothing_on_realistic_data(prom_backfilled: PromData) -> None:
    # Why the selector exists: the literal stable matcher selects no series on a real cluster.
    assert prom_backfilled.query('http_requests_total{namespace="prod",app="healthy",track="stable"}') == []
    assert prom_backfilled.query('http_requests_total{namespace="prod",app="healthy",track!~"canary|baseline"}')


def test_stable_threshold_check_uses_the_selector(prom_backfilled: PromData) -> None:
    check = Check.model_validate(
        {"name": "stable-errors", "query": ERROR_RATIO_QUERY, "condition": {"max": 0.02}, "track": "stable"}
    )
    m = evaluate(check, _provider(prom_backfilled), {"namespace": "prod", "app": "broken"}, at=prom_backfilled.at)
    assert m.phase is Phase.SUCCESSFUL, m.message
    assert m.value == pytest.approx(0.005)


@pytest.mark.parametrize(
    ("track", "rendered"),
    [("canary", 'track="canary"'), ("baseline", 'track="baseline"'), ("stable", 'track!~"canary|baseline"')],
)
def test_selector_rendering(track: str, rendered: str) -> None:
    assert track_selector(track) == rendered


def _check(**fields: Any) -> dict[str, Any]:
    return {"name": "c", "condition": {"compareTo": "stable", "maxRatio": 2}, **fields}


@pytest.mark.parametrize(
    "body",
    [
        _check(query='sum(rate(x{app="{{app}}",track="{{track}}"}[1m]))'),
        {"name": "c", "query": 'sum(x{track="{{track}}"})', "condition": {"max": 1}, "track": "stable"},
    ],
)
def test_track_value_on_the_stable_side_is_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="track_selector"):
        Check.model_validate(body)


def test_relative_check_without_a_side_placeholder_is_refused() -> None:
    with pytest.raises(ValidationError, match="both sides"):
        Check.model_validate(_check(query='sum(rate(x{app="{{app}}"}[1m]))'))


def test_canary_track_value_stays_valid() -> None:
    Check.model_validate({"name": "c", "query": 'sum(x{track="{{track}}"})', "condition": {"max": 1}})
