"""Template rendering: values land inside quoted label matchers, so anything that could leave them is refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from orchestrator.config import PrometheusSettings
from orchestrator.errors import MetricError
from orchestrator.gates import PrometheusProvider, render
from orchestrator.gates.template import track_selector
from orchestrator.specs.checks import Check
from tests.fixtures_prom import PromData

QUERY = 'sum(rate(http_requests_total{namespace="{{namespace}}",app="{{ app }}",track="{{track}}"}[1m]))'


def test_substitutes_every_placeholder_with_or_without_spaces() -> None:
    got = render(QUERY, {"namespace": "prod", "app": "web-1", "track": "canary"})
    assert got == 'sum(rate(http_requests_total{namespace="prod",app="web-1",track="canary"}[1m]))'


def test_accepts_image_references_and_versions() -> None:
    image = "registry.example.com:5000/team/web@sha256:0a1b2c"
    assert render('x{image="{{image}}",version="{{version}}"}', {"image": image, "version": "1.2.3+build.4"}) == (
        f'x{{image="{image}",version="1.2.3+build.4"}}'
    )


@pytest.mark.parametrize(
    "value",
    [
        'prod"} or vector(1) or {a="',  # closes the matcher and appends a query
        'prod"',
        "prod}",
        "prod{",
        "{{app}}",
        "prod\\",  # a backslash would escape the closing quote
        "prod\nx",
        "prod\x00",
        "a b",
        "prod|staging",  # would widen a regex matcher
        ".*",
        "prød",  # non-ASCII letters are outside the allowed set
        "",  # app="" matches every series without the label
        "a" * 254,
    ],
)
def test_refuses_values_that_could_change_the_query(value: str) -> None:
    with pytest.raises(MetricError) as caught:
        render(QUERY, {"namespace": value, "app": "web", "track": "canary"})
    assert caught.value.retryable is False
    assert "{{namespace}}" in str(caught.value)


def test_longest_allowed_value_is_accepted() -> None:
    assert render('x{app="{{app}}"}', {"app": "a" * 253}) == 'x{app="' + "a" * 253 + '"}'


def test_a_placeholder_without_a_value_is_an_error() -> None:
    with pytest.raises(MetricError) as caught:
        render(QUERY, {"namespace": "prod", "track": "canary"})
    assert caught.value.retryable is False
    assert "{{app}}" in str(caught.value)


def test_a_malformed_placeholder_is_an_error() -> None:
    with pytest.raises(MetricError):
        render('x{app="{{ app-name }}"}', {"app": "web"})


def test_unused_unsafe_variables_are_ignored() -> None:
    # Only what is substituted can inject; a spec's other variables must not block a query.
    assert render('x{app="{{app}}"}', {"app": "web", "image": 'not safe"'}) == 'x{app="web"}'


# -- positions: values only inside quoted label values (issue: `.+` and `> {{version}}`) ----------------


@pytest.mark.parametrize(
    "query",
    [
        "sum(x) > {{version}}",  # a value would become part of the expression
        "x{app={{app}}}",  # unquoted matcher value
        'label_replace(x, "dst", "{{app}}", "src", "")',  # a string, but not a label value
        'x{app="a"} or on() vector({{version}})',
    ],
)
def test_value_placeholders_outside_quoted_label_values_are_refused(query: str) -> None:
    with pytest.raises(MetricError, match="quoted label value") as caught:
        render(query, {"app": "web", "version": "1"})
    assert caught.value.retryable is False
    with pytest.raises(ValidationError, match="quoted label value"):
        Check.model_validate({"name": "c", "query": query, "condition": {"max": 1}})


@pytest.mark.parametrize(
    ("query", "value", "rendered"),
    [
        ('x{version=~"{{version}}"}', "1.2.3", 'x{version=~"1\\\\.2\\\\.3"}'),
        ('x{version!~"{{version}}"}', ".+", 'x{version!~"\\\\.\\\\+"}'),
        ("x{version=~'{{version}}'}", "1.2", "x{version=~'1\\\\.2'}"),
        ("x{version=~`{{version}}`}", "1.2", "x{version=~`1\\.2`}"),
        ('x{version="{{version}}"}', "1.2.3+b", 'x{version="1.2.3+b"}'),  # equality: no regex, no escaping
        ('x{version=~"v-{{version}}|none"}', "1.2", 'x{version=~"v-1\\\\.2|none"}'),
    ],
)
def test_values_inside_regex_matchers_are_escaped(query: str, value: str, rendered: str) -> None:
    assert render(query, {"version": value}) == rendered


def test_escaped_regex_values_are_literal_in_prometheus(prom_backfilled: PromData) -> None:
    provider = PrometheusProvider(PrometheusSettings(url=prom_backfilled.url))
    query = 'count(http_requests_total{namespace="prod",app=~"{{app}}"})'
    assert provider.query(render(query, {"app": "healthy"}), prom_backfilled.at)
    # Unescaped, "heal.hy" and "h.+" would match the app "healthy"; escaped they are text that no app has.
    for value in ("heal.hy", "h.+"):
        assert provider.query(render(query, {"app": value}), prom_backfilled.at) == []
    assert provider.query(query.replace("{{app}}", "heal.hy"), prom_backfilled.at)  # the danger, shown


def test_selector_placeholders_come_from_code_never_from_variables() -> None:
    query = 'x{app="{{app}}",{{track_selector}}}'
    assert render(query, {"app": "web"}, {"track_selector": track_selector("stable")}) == (
        'x{app="web",track!~"canary|baseline"}'
    )
    with pytest.raises(MetricError, match="has no value"):
        render(query, {"app": "web", "track_selector": 'track=~".*"'})


@pytest.mark.parametrize(
    "query",
    [
        'x{track="{{track_selector}}"}',  # quoted: it is a whole matcher, not a value
        "sum(x) by ({{track_selector}})",
        'x{app="a"{{track_selector}}}',  # not between matchers
    ],
)
def test_selector_placeholders_only_where_a_matcher_goes(query: str) -> None:
    with pytest.raises(MetricError, match="whole label matcher"):
        render(query, {}, {"track_selector": 'track="canary"'})


def test_a_selector_may_be_the_only_matcher() -> None:
    assert render("x{{{track_selector}}}", {}, {"track_selector": 'track="canary"'}) == 'x{track="canary"}'
