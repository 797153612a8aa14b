"""PrometheusProvider against a real Prometheus: result shapes, credentials, and error mapping."""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.config import PrometheusSettings
from orchestrator.errors import MetricError, SpecError, UnreachableError
from orchestrator.gates import PrometheusProvider
from tests.fixtures_prom import PromData, PromProxy, TlsProxy
from tests.fixtures_temporal import free_port

pytestmark = pytest.mark.timeout(30)

RATE = 'sum(rate(http_requests_total{namespace="prod",app="broken",track="canary",code="500"}[30s]))'


def provider(url: str, **settings: object) -> PrometheusProvider:
    return PrometheusProvider(PrometheusSettings.model_validate({"url": url, **settings}))


def test_vector_results_keep_labels_and_values(prom_backfilled: PromData) -> None:
    samples = provider(prom_backfilled.url).query(
        'sum by (track) (rate(http_requests_total{namespace="prod",app="broken",code="500"}[30s]))',
        at=prom_backfilled.at,
    )
    # Stable series carry no track label, as on a real cluster.
    assert {s.labels.get("track", "(none)"): s.value for s in samples} == {
        "(none)": pytest.approx(0.1),
        "canary": pytest.approx(2.0),
    }


def test_the_time_parameter_is_sent(prom_backfilled: PromData) -> None:
    assert prom_backfilled.at is not None
    p = provider(prom_backfilled.url)
    assert p.query(RATE, at=prom_backfilled.at)[0].value == pytest.approx(2.0)
    # Before the backfilled data begins there is nothing to see.
    assert p.query(RATE, at=prom_backfilled.at - timedelta(days=1)) == []


def test_a_naive_time_is_taken_as_utc(prom_backfilled: PromData) -> None:
    assert prom_backfilled.at is not None
    naive = prom_backfilled.at.replace(tzinfo=None)
    assert provider(prom_backfilled.url).query("time()", at=naive)[0].value == prom_backfilled.at.timestamp()


def test_scalar_results_become_one_unlabelled_sample(prom_backfilled: PromData) -> None:
    (sample,) = provider(prom_backfilled.url).query("1 / 4")
    assert sample.labels == {} and sample.value == 0.25


def test_nan_and_inf_are_kept(prom_backfilled: PromData) -> None:
    p = provider(prom_backfilled.url)
    assert math.isnan(p.query("vector(0) / vector(0)")[0].value)
    assert p.query("vector(1) / vector(0)")[0].value == math.inf


def test_matrix_results_are_rejected(prom_backfilled: PromData) -> None:
    with pytest.raises(MetricError) as caught:
        provider(prom_backfilled.url).query("http_requests_total[1m]", at=prom_backfilled.at)
    assert caught.value.retryable is False
    assert "range vector" in str(caught.value)


def test_bad_promql_is_not_retryable_and_carries_prometheus_text(prom_backfilled: PromData) -> None:
    with pytest.raises(MetricError) as caught:
        provider(prom_backfilled.url).query("sum(")
    assert caught.value.retryable is False
    assert "bad_data" in str(caught.value) and "parse error" in str(caught.value)


def test_connection_refused_is_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    p = provider(url)
    with pytest.raises(UnreachableError) as caught:
        p.query("up")
    assert caught.value.retryable is True and caught.value.address == url
    with pytest.raises(UnreachableError):
        p.check_reachable()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel backlog does) but never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield int(server.getsockname()[1])


def test_a_timeout_is_unreachable(silent_port: int) -> None:
    with pytest.raises(UnreachableError) as caught:
        provider(f"http://127.0.0.1:{silent_port}", timeout_seconds=0.3).query("up")
    assert "timed out" in str(caught.value)


def test_check_reachable(prom_backfilled: PromData) -> None:
    provider(prom_backfilled.url).check_reachable()


def test_bearer_token_is_sent(prom_backfilled: PromData, prom_proxy: PromProxy) -> None:
    prom_proxy.accept = {"Bearer s3cret"}
    with pytest.raises(MetricError) as caught:
        provider(prom_proxy.url).query(RATE, at=prom_backfilled.at)
    assert caught.value.retryable is False and "401" in str(caught.value)
    assert provider(prom_proxy.url, bearer_token="s3cret").query(RATE, at=prom_backfilled.at)[0].value == (
        pytest.approx(2.0)
    )
    provider(prom_proxy.url, bearer_token="s3cret").check_reachable()
    assert prom_proxy.seen == [None, "Bearer s3cret", "Bearer s3cret"]


def test_token_file_is_reread_on_every_call(prom_backfilled: PromData, prom_proxy: PromProxy, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    p = provider(prom_proxy.url, bearer_token_file=str(token))
    prom_proxy.accept = {"Bearer first"}
    p.query(RATE, at=prom_backfilled.at)
    token.write_text("rotated\n")
    prom_proxy.accept = {"Bearer rotated"}
    p.query(RATE, at=prom_backfilled.at)
    assert prom_proxy.seen == ["Bearer first", "Bearer rotated"]


def test_basic_auth_is_sent(prom_backfilled: PromData, prom_proxy: PromProxy) -> None:
    prom_proxy.accept = {prom_proxy.basic("gate", "pa:ss")}
    assert provider(prom_proxy.url, username="gate", password="pa:ss").query(RATE, at=prom_backfilled.at)
    with pytest.raises(MetricError):
        provider(prom_proxy.url, username="gate", password="wrong").query(RATE, at=prom_backfilled.at)


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (429, True), (404, False)])
def test_http_statuses_map_onto_retry_intent(prom_proxy: PromProxy, status: int, retryable: bool) -> None:
    prom_proxy.fail_with = status
    with pytest.raises(MetricError) as caught:
        provider(prom_proxy.url).query("up")
    assert caught.value.retryable is retryable
    assert len(prom_proxy.seen) == 1  # the client itself does not retry; Temporal does


def test_check_reachable_reports_a_prometheus_that_is_not_ready(prom_proxy: PromProxy) -> None:
    prom_proxy.fail_with = 503
    with pytest.raises(UnreachableError):
        provider(prom_proxy.url).check_reachable()


def test_conflicting_credentials_are_refused() -> None:
    with pytest.raises(MetricError):
        provider("http://127.0.0.1:9", bearer_token="a", bearer_token_file="/nonexistent")
    with pytest.raises(MetricError):
        provider("http://127.0.0.1:9", bearer_token="a", username="u")


def test_an_unreadable_token_file_is_not_retryable(tmp_path: Path) -> None:
    # A setting that names a missing file is bad input (exit 2), not a failing Prometheus.
    with pytest.raises(SpecError) as caught:
        provider("http://127.0.0.1:9", bearer_token_file=str(tmp_path / "missing")).query("up")
    assert caught.value.retryable is False


@pytest.mark.filterwarnings("ignore:Unverified HTTPS request")
def test_tls_with_a_ca_file_or_insecure(prom_backfilled: PromData, prom_tls_proxy: TlsProxy) -> None:
    url = prom_tls_proxy.proxy.url
    with pytest.raises(UnreachableError) as caught:
        provider(url).query(RATE, at=prom_backfilled.at)
    assert "TLS" in str(caught.value) and caught.value.retryable is False
    assert provider(url, ca_file=str(prom_tls_proxy.ca_file)).query(RATE, at=prom_backfilled.at)
    assert provider(url, insecure_skip_verify=True).query(RATE, at=prom_backfilled.at)
    provider(url, ca_file=str(prom_tls_proxy.ca_file)).check_reachable()
