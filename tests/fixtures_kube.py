"""The sandbox Kubernetes API server for tests, reached through the official client.

* ``kube_server`` (session): one ``ApiServer`` with its controller thread and the instant pod runtime.
* ``kube`` (function): a ``KubeTestEnv`` with a fresh namespace ``t-<random>``, an ``ApiClient`` built by
  ``kubernetes.config.load_kube_config`` from a kubeconfig the server wrote (the real config-loading path), and
  ``audit()`` returning only this test's requests. The namespace is deleted afterwards, taking its objects with it.
* ``deployment_manifest(...)`` builds a minimal valid Deployment.

Tests that need pods to converge can call ``kube.settle()`` (synchronous controller passes) instead of sleeping.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from orchestrator.sandbox.apiserver import ApiServer


def deployment_manifest(
    name: str,
    replicas: int = 3,
    image: str = "demo:1",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Deployment whose selector is ``app: <name>`` plus ``labels`` (also put on the pod template)."""
    pod_labels = {"app": name, **(labels or {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": dict(pod_labels)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(pod_labels)},
            "template": {
                "metadata": {"labels": dict(pod_labels)},
                "spec": {"containers": [{"name": "app", "image": image, "ports": [{"containerPort": 8080}]}]},
            },
        },
    }


@dataclass
class KubeTestEnv:
    server: ApiServer
    api_client: client.ApiClient
    kubeconfig: Path
    namespace: str
    _audit_start: int = field(default=0)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api_client)

    @property
    def policy(self) -> client.PolicyV1Api:
        return client.PolicyV1Api(self.api_client)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api_client)

    def audit(self, all_namespaces: bool = False) -> list[dict[str, Any]]:
        """Requests made since this test began, in this test's namespace (or every one)."""
        entries = self.server.audit(since=self._audit_start)
        if all_namespaces:
            return entries
        return [e for e in entries if e.get("namespace") == self.namespace]

    def settle(self, passes: int = 3) -> None:
        """Run controller passes synchronously (a rollout with the instant runtime needs one or two)."""
        for _ in range(passes):
            self.server.reconcile_once()

    def pods(self, label_selector: str | None = None) -> list[dict[str, Any]]:
        """This namespace's pods as stored (plain dicts), straight from the server object."""
        return self.server.list("", "v1", "pods", self.namespace, label_selector)


@pytest.fixture(scope="session")
def kube_server() -> Iterator[ApiServer]:
    server = ApiServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kube(kube_server: ApiServer, tmp_path: Path) -> Iterator[KubeTestEnv]:
    kubeconfig = kube_server.write_kubeconfig(tmp_path / "kubeconfig")
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    api_client = client.ApiClient(configuration)
    namespace = f"t-{secrets.token_hex(4)}"
    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": namespace}})
    env = KubeTestEnv(kube_server, api_client, kubeconfig, namespace, kube_server.audit_log.last_seq)
    try:
        yield env
    finally:
        try:
            client.CoreV1Api(api_client).delete_namespace(namespace)
        finally:
            api_client.close()
