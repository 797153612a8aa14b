"""Connecting and error mapping, through the official client against the sandbox API server."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from orchestrator.errors import ConflictError, KubeError, NotFoundError, UnreachableError
from orchestrator.kube.client import (
    REQUEST_TIMEOUT,
    check_reachable,
    kube_errors,
    load_api_client,
    retry_on_conflict,
    translate_api_exception,
)
from orchestrator.kube.workloads import Workloads
from tests.fixtures_kube import deployment_manifest

pytestmark = pytest.mark.timeout(30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _client_for(host: str) -> k8s.ApiClient:
    cfg = k8s.Configuration()
    cfg.host = host
    cfg.retries = 0
    return k8s.ApiClient(cfg)


def test_load_api_client_from_kubeconfig_reaches_the_server(kube: Any) -> None:
    api = load_api_client(str(kube.kubeconfig))
    assert check_reachable(api)
    names = [n.metadata.name for n in k8s.CoreV1Api(api).list_namespace(_request_timeout=REQUEST_TIMEOUT).items]
    assert kube.namespace in names


def test_load_api_client_uses_the_kubeconfig_variable(kube: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    assert check_reachable(load_api_client())


def test_missing_kubeconfig_is_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(UnreachableError) as err:
        load_api_client(str(tmp_path / "nope.yaml"))
    assert err.value.system == "Kubernetes"
    assert err.value.exit_code == 3


def test_invalid_kubeconfig_is_unreachable(tmp_path: Path) -> None:
    bad = tmp_path / "config"
    bad.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\ncurrent-context: none\n")
    with pytest.raises(UnreachableError, match="invalid kubeconfig"):
        load_api_client(str(bad))


def test_unknown_context_is_unreachable(kube: Any) -> None:
    with pytest.raises(UnreachableError):
        load_api_client(str(kube.kubeconfig), context="no-such-context")


def test_in_cluster_without_service_account_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    # In a pod the variable is set; here the token files are absent, which must be a clear error.
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "1")
    with pytest.raises(UnreachableError, match="in-cluster"):
        load_api_client()


def test_closed_port_is_unreachable() -> None:
    api = _client_for(f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(UnreachableError) as err:
        check_reachable(api)
    assert err.value.retryable
    assert "127.0.0.1" in err.value.address
    with pytest.raises(UnreachableError):
        Workloads(api).snapshot("default", "app")


def test_silent_server_times_out_as_unreachable() -> None:
    # Accepts connections but never answers: the request timeout must turn this into UnreachableError.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        api = _client_for(f"http://127.0.0.1:{listener.getsockname()[1]}")
        with pytest.raises(UnreachableError), kube_errors("GET /version", api):
            k8s.VersionApi(api).get_code(_request_timeout=(1.0, 0.5))
    finally:
        stop.set()
        thread.join()
        for s in accepted:
            s.close()
        listener.close()


def test_missing_object_is_not_found(kube: Any) -> None:
    with pytest.raises(NotFoundError) as err:
        Workloads(kube.api_client).snapshot(kube.namespace, "does-not-exist")
    assert err.value.status == 404
    assert not err.value.retryable
    assert "does-not-exist" in str(err.value)


def test_invalid_request_is_a_non_retryable_kube_error(kube: Any) -> None:
    body = deployment_manifest("broken", replicas=1)
    body["spec"]["selector"] = {"matchLabels": {"app": "something-else"}}
    with pytest.raises(KubeError) as err, kube_errors("create", kube.api_client):
        k8s.AppsV1Api(kube.api_client).create_namespaced_deployment(kube.namespace, body)
    assert err.value.status == 422
    assert not err.value.retryable


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (404, NotFoundError, False),
        (409, ConflictError, True),
        (403, KubeError, False),
        (422, KubeError, False),
        (429, KubeError, True),
        (500, KubeError, True),
        (503, KubeError, True),
    ],
)
def test_status_codes_map_onto_the_error_tree(status: int, kind: type[KubeError], retryable: bool) -> None:
    e = ApiException(status=status, reason="r")
    e.body = '{"kind":"Status","message":"the message"}'
    mapped = translate_api_exception(e, "doing a thing")
    assert type(mapped) is kind
    assert isinstance(mapped, KubeError)
    assert mapped.status == status
    assert mapped.retryable is retryable
    assert "the message" in str(mapped)


def test_conflict_from_a_concurrent_writer_is_retried(kube: Any) -> None:
    apps = k8s.AppsV1Api(kube.api_client)
    apps.create_namespaced_deployment(kube.namespace, deployment_manifest("web", replicas=1))
    other = k8s.AppsV1Api(load_api_client(str(kube.kubeconfig)))
    calls: list[str] = []

    def annotate() -> str:
        with kube_errors("annotate", kube.api_client):
            dep = apps.read_namespaced_deployment("web", kube.namespace)
            if not calls:
                # A second client changes the object between our read and our write.
                other.patch_namespaced_deployment("web", kube.namespace, {"metadata": {"labels": {"other": "writer"}}})
            calls.append(dep.metadata.resource_version)
            dep.metadata.annotations = {**(dep.metadata.annotations or {}), "ours": "yes"}
            return str(apps.replace_namespaced_deployment("web", kube.namespace, dep).metadata.resource_version)

    retry_on_conflict(annotate)
    # The sandbox's controller may write the object too (its status), as a real one does: one more 409 then.
    assert len(calls) >= 2, "the first write must have hit a 409 and been retried"
    final = apps.read_namespaced_deployment("web", kube.namespace)
    assert final.metadata.annotations["ours"] == "yes"
    assert final.metadata.labels["other"] == "writer", "the concurrent change must not be overwritten"


def test_conflict_that_never_clears_is_raised(kube: Any) -> None:
    apps = k8s.AppsV1Api(kube.api_client)
    apps.create_namespaced_deployment(kube.namespace, deployment_manifest("web", replicas=1))
    attempts: list[int] = []

    def always_stale() -> None:
        attempts.append(1)
        with kube_errors("stale write", kube.api_client):
            dep = apps.read_namespaced_deployment("web", kube.namespace)
            apps.patch_namespaced_deployment("web", kube.namespace, {"metadata": {"labels": {"n": str(len(attempts))}}})
            apps.replace_namespaced_deployment("web", kube.namespace, dep)

    with pytest.raises(ConflictError) as err:
        retry_on_conflict(always_stale, attempts=3, base_delay=0.001)
    assert len(attempts) == 3
    assert err.value.retryable
