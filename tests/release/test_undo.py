"""Undo of a promoted cluster (``release.undo``) on a sandbox cluster with pods that take time to be ready.

Given 4 stable pods serving a promoted template, when the previous template is restored, then the
ready pods never fall below 4 while it rolls — where the plain template roll under the Deployment's
own strategy (``maxUnavailable: 25%``) is seen to drop to 3 by the same sampler — the Deployment's
strategy is put back, and a second call (a retried attempt) writes nothing.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from orchestrator.activities.release import UNDO_STRATEGY, ReleaseActivities
from orchestrator.api.release import UndoRequest
from orchestrator.config import Settings
from orchestrator.kube.workloads import Workloads
from tests.release.fleet import NAMESPACE, Cluster, Sampler, fleet, make_stable

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with fleet(["solo"], tmp_path_factory.mktemp("undo")) as started:
        yield started["solo"]


def template(cluster: Cluster, app: str) -> dict[str, Any]:
    dep = cluster.server.list("apps", "v1", "deployments", NAMESPACE, f"app={app}")
    return copy.deepcopy(next(d for d in dep if d["metadata"]["name"] == app)["spec"]["template"])


def settle(cluster: Cluster, app: str, replicas: int = 4) -> None:
    deadline = time.monotonic() + 20
    while Workloads(cluster.api).availability(NAMESPACE, app).complete is False or \
            cluster.ready_stable_pods(app) < replicas:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_the_undo_restores_the_previous_template_without_dropping_below_the_floor(cluster: Cluster) -> None:
    app = "undo"
    make_stable({"solo": cluster}, app)
    previous = template(cluster, app)
    # The promotion, as the canary does it: a template roll under the Deployment's own strategy.
    with Sampler(cluster, app) as plain:
        Workloads(cluster.api).update_template(NAMESPACE, app, None, "demo:2")
        settle(cluster, app)
    assert plain.low < 4, "the sampler must see the dip a 25 % maxUnavailable roll makes (else it proves nothing)"

    activities = ReleaseActivities(Settings(task_queue="unused"), api_client=cluster.api)
    request = UndoRequest(namespace=NAMESPACE, name=app, template=previous, deadline_seconds=30)
    with Sampler(cluster, app) as undo:
        result = ActivityEnvironment().run(activities.undo, request)
    assert result.changed and result.ready == 4
    assert len(undo.samples) > 10 and undo.low >= 4, f"ready pods fell to {undo.low} during the undo"
    assert cluster.image(app) == "demo:1"
    dep = cluster.apps.read_namespaced_deployment(app, NAMESPACE)
    assert dep.spec.strategy.rolling_update.max_unavailable == "25%"
    assert UNDO_STRATEGY not in (dep.metadata.annotations or {})

    since = cluster.server.audit_log.last_seq
    again = ActivityEnvironment().run(activities.undo, request)
    assert not again.changed
    entries = cluster.server.audit(since)
    assert any(e.get("verb") == "get" and e.get("name") == app for e in entries), "the audit saw the undo's reads"
    writes = [e for e in entries if e.get("verb") not in ("get", "list", "watch")]
    assert writes == [], f"a repeated undo wrote {writes}"
