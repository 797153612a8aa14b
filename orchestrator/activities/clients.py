"""The clients every activities class needs, built on first use.

Built lazily so a worker starts (and its health endpoint answers) even while Kubernetes or
Prometheus is briefly unreachable; tests pass their own clients instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.config import Settings

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from orchestrator.gates.prometheus import MetricProvider


class ActivityClients:
    def __init__(
        self, settings: Settings, api_client: ApiClient | None = None, metrics: MetricProvider | None = None
    ) -> None:
        self._settings = settings
        self._api_client = api_client
        self._metrics = metrics

    @property
    def api(self) -> ApiClient:
        if self._api_client is None:
            from orchestrator.kube.client import load_api_client

            self._api_client = load_api_client(self._settings.kubeconfig, self._settings.kube_context,
                                               self._settings.kube_timeout)
        return self._api_client

    @property
    def metrics(self) -> MetricProvider:
        if self._metrics is None:
            from orchestrator.gates.prometheus import PrometheusProvider

            self._metrics = PrometheusProvider(self._settings.prometheus)
        return self._metrics
