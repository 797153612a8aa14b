"""The chart's run store: SQLite and one replica by default, PostgreSQL from a Secret, and no
``replicas > 1`` without it (rendered by the real Helm engine)."""

from __future__ import annotations

from collections.abc import Iterator

import helm_python
import pytest
from helm_python.chart import Chart, lint

from tests.helm.test_chart import CHART, NAMESPACE, RELEASE, env_of, one, render

POSTGRES = {"store": {"databaseUrlSecret": {"name": "orchestrator-db", "key": "url"}}}


@pytest.fixture(scope="module")
def chart() -> Iterator[Chart]:
    with Chart.load(CHART) as c:
        yield c


def test_default_is_one_replica_on_sqlite(chart: Chart) -> None:
    objects = render(chart)
    assert one(objects, "Deployment")["spec"]["replicas"] == 1
    assert "ORCHESTRATOR_DATABASE_URL" not in env_of(objects)


def test_the_database_url_comes_from_the_secret(chart: Chart) -> None:
    objects = render(chart, {**POSTGRES, "replicas": 3})
    assert one(objects, "Deployment")["spec"]["replicas"] == 3
    assert env_of(objects)["ORCHESTRATOR_DATABASE_URL"] == {
        "name": "ORCHESTRATOR_DATABASE_URL",
        "valueFrom": {"secretKeyRef": {"name": "orchestrator-db", "key": "url"}},
    }
    report = lint(CHART, {**POSTGRES, "replicas": 3}, strict=True, namespace=NAMESPACE)
    assert report["errors"] == [], report


def test_several_replicas_on_sqlite_are_refused(chart: Chart) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=r"replicas > 1 needs the PostgreSQL run store"):
        chart.render({"replicas": 2}, name=RELEASE, namespace=NAMESPACE, is_install=True)


def test_store_values_are_checked_by_the_schema(chart: Chart) -> None:
    with pytest.raises(helm_python.HelmValuesError, match="additional properties 'url' not allowed"):
        chart.render({"store": {"url": "postgresql://x"}}, name=RELEASE, namespace=NAMESPACE)
