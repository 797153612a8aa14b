"""Runtime settings, from flags and ``ORCHESTRATOR_*`` environment variables.

One object carries them from the CLI to the worker and its activities; nothing else
reads the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field


class PrometheusSettings(BaseModel):
    url: str = "http://127.0.0.1:9090"
    bearer_token: str | None = None
    bearer_token_file: str | None = None
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False
    timeout_seconds: float = 10.0


class Settings(BaseModel):
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = "orchestrator"
    temporal_tls: bool = False
    temporal_tls_cert: str | None = None  # client certificate file (mTLS)
    temporal_tls_key: str | None = None
    temporal_tls_ca: str | None = None
    temporal_tls_server_name: str | None = None
    temporal_api_key: str | None = None  # Temporal Cloud API key
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    kubeconfig: str | None = None
    kube_context: str | None = None
    state_dir: str = ".sandbox"
    db_path: str = "orchestrator.db"
    notify_webhook: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> Settings:
        e = dict(os.environ if env is None else env)

        def get(name: str) -> str | None:
            return e.get(f"ORCHESTRATOR_{name}") or None

        prom = PrometheusSettings(
            url=get("PROMETHEUS_URL") or PrometheusSettings().url,
            bearer_token=get("PROMETHEUS_TOKEN"),
            bearer_token_file=get("PROMETHEUS_TOKEN_FILE"),
            username=get("PROMETHEUS_USERNAME"),
            password=get("PROMETHEUS_PASSWORD"),
            ca_file=get("PROMETHEUS_CA_FILE"),
            insecure_skip_verify=(get("PROMETHEUS_INSECURE") or "").lower() in ("1", "true", "yes"),
            timeout_seconds=float(get("PROMETHEUS_TIMEOUT") or 10.0),
        )
        values: dict[str, object] = {
            "temporal_address": get("TEMPORAL_ADDRESS") or cls.model_fields["temporal_address"].default,
            "temporal_namespace": get("TEMPORAL_NAMESPACE") or "default",
            "task_queue": get("TASK_QUEUE") or "orchestrator",
            "temporal_tls": (get("TEMPORAL_TLS") or "").lower() in ("1", "true", "yes"),
            "temporal_tls_cert": get("TEMPORAL_TLS_CERT"),
            "temporal_tls_key": get("TEMPORAL_TLS_KEY"),
            "temporal_tls_ca": get("TEMPORAL_TLS_CA"),
            "temporal_tls_server_name": get("TEMPORAL_TLS_SERVER_NAME"),
            "temporal_api_key": get("TEMPORAL_API_KEY"),
            "prometheus": prom,
            "kubeconfig": get("KUBECONFIG") or e.get("KUBECONFIG") or None,
            "kube_context": get("KUBE_CONTEXT"),
            "state_dir": get("STATE_DIR") or ".sandbox",
            "db_path": get("DB") or str(Path(get("STATE_DIR") or ".") / "orchestrator.db"),
            "notify_webhook": get("NOTIFY_WEBHOOK"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)
