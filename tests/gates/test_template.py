"""Template rendering: values land inside quoted label matchers, so anything that could leave them is refused."""

from __future__ import annotations

import pytest

from orchestrator.errors import MetricError
from orchestrator.gates import render

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
