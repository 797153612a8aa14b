"""Backing systems that answer badly: tiny real HTTP servers on 127.0.0.1 play a broken Prometheus or API server.

Each must end in ``UnreachableError`` (exit 3) with a one-line message, within the configured timeout, with no
HTML page or Python exception text in it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from orchestrator.config import PrometheusSettings
from orchestrator.errors import UnreachableError
from orchestrator.gates.prometheus import PrometheusProvider
from orchestrator.kube.client import check_reachable, kube_errors, load_api_client

HTML = b"<html><head><title>500 Internal Server Error</title></head><body><h1>Oops</h1>\n<p>nginx</p></body></html>"

Answer = Callable[[BaseHTTPRequestHandler], None]


def _serve(answer: Answer) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer(self)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _status(code: int, body: bytes, content_type: str = "text/html") -> Answer:
    def answer(h: BaseHTTPRequestHandler) -> None:
        h.send_response(code)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return answer


def _redirect_loop(h: BaseHTTPRequestHandler) -> None:
    h.send_response(302)
    h.send_header("Location", h.path)
    h.send_header("Content-Length", "0")
    h.end_headers()


def _hang(h: BaseHTTPRequestHandler) -> None:
    time.sleep(30)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from _serve(request.param)


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    assert "<html" not in text.lower() and "Traceback" not in text, text
    return text


@pytest.mark.parametrize("server", [_status(500, HTML), _status(502, HTML), _redirect_loop], indirect=True,
                         ids=["500-html", "502-html", "redirect-loop"])
def test_prometheus_answering_badly_is_unreachable(server: str) -> None:
    provider = PrometheusProvider(PrometheusSettings(url=server, timeout_seconds=2))
    with pytest.raises(UnreachableError) as caught:
        provider.check_reachable()
    assert caught.value.exit_code == 3
    assert server in _one_line(caught.value)


@pytest.mark.parametrize("server", [_status(500, HTML), _redirect_loop], indirect=True, ids=["500-html", "redirect"])
def test_prometheus_query_errors_carry_no_html(server: str) -> None:
    provider = PrometheusProvider(PrometheusSettings(url=server, timeout_seconds=2))
    with pytest.raises(Exception) as caught:
        provider.query("up")
    _one_line(caught.value)


def _kubeconfig(tmp_path: Path, url: str) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: k, cluster: {{server: '{url}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    return str(path)


@pytest.mark.parametrize("server", [_status(200, b"<html>hello</html>"), _status(200, b"[1, 2]", "application/json")],
                         indirect=True, ids=["html", "json-list"])
def test_kubernetes_answering_non_json_is_unreachable(server: str, tmp_path: Path) -> None:
    api = load_api_client(_kubeconfig(tmp_path, server))
    with pytest.raises(UnreachableError) as caught:
        check_reachable(api)
    assert caught.value.exit_code == 3
    _one_line(caught.value)


@pytest.mark.parametrize("server", [_status(200, b"not json at all")], indirect=True)
def test_kubernetes_raw_read_of_non_json_is_unreachable(server: str, tmp_path: Path) -> None:
    from kubernetes import client as k8s

    from orchestrator.kube.client import read_json

    api = load_api_client(_kubeconfig(tmp_path, server))
    with pytest.raises(UnreachableError), kube_errors("GET deployment", api):
        response = k8s.AppsV1Api(api).read_namespaced_deployment(
            "web", "shop", _preload_content=False, _request_timeout=(2, 2)
        )
        read_json(response)


@pytest.mark.parametrize("server", [_hang], indirect=True)
def test_hanging_kubernetes_gives_up_within_one_timeout(server: str, tmp_path: Path) -> None:
    api = load_api_client(_kubeconfig(tmp_path, server))
    started = time.monotonic()
    with pytest.raises(UnreachableError) as caught:
        check_reachable(api, timeout=(2.0, 2.0))
    elapsed = time.monotonic() - started
    # One read timeout, not one per retry (which made the default 2 x 15 s + backoff).
    assert 1.5 < elapsed < 3.5, elapsed
    assert "timed out" in _one_line(caught.value).lower()


@pytest.mark.parametrize("server", [_hang], indirect=True)
def test_every_kubernetes_call_is_bounded_by_the_configured_timeout(server: str, tmp_path: Path) -> None:
    from kubernetes import client as k8s

    api = load_api_client(_kubeconfig(tmp_path, server), timeout=2.0)
    started = time.monotonic()
    with pytest.raises(UnreachableError), kube_errors("GET deployment", api):
        k8s.AppsV1Api(api).read_namespaced_deployment("web", "shop")  # no timeout of its own
    assert time.monotonic() - started < 3.5


@pytest.mark.parametrize("server", [_hang], indirect=True)
def test_a_command_against_a_hanging_api_ends_within_orchestrator_kube_timeout(server: str, tmp_path: Path) -> None:
    from tests.frontdoor.helpers import assert_one_line, invoke

    env = {"ORCHESTRATOR_KUBECONFIG": _kubeconfig(tmp_path, server), "ORCHESTRATOR_KUBE_TIMEOUT": "2",
           "ORCHESTRATOR_CHAOS_NAMESPACES": "shop"}
    outcome = invoke(["chaos", "janitor"], env=env)
    assert_one_line(outcome, 3, r"timed out")
    # Wall time: the hang ends at the 2 s timeout (a generous margin for a busy machine; unbounded it never ends).
    assert outcome.wall < 30, outcome.wall
