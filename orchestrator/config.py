"""Runtime settings, from flags and ``ORCHESTRATOR_*`` environment variables.

One object carries them from the CLI to the worker and its activities; nothing else
reads the environment. Values are checked here, where their origin is still known, so a
bad one is reported as ``<environment>:0: ORCHESTRATOR_X: ...`` or ``<command line>:0:
--x: ...`` (exit 2) instead of surfacing later as a connection failure or a traceback.

Secrets (the Prometheus token and password, the Temporal API key, the Unleash token, the
passwords and secret parameters of configured URLs, the notification webhook) are handed to
``orchestrator.redact.remember`` as they are read, so no output path can print them, and an error
about one names the setting and what is wrong with it, never its value. A host name is checked
here too (labels of 1..63 characters, 253 in all), so a malformed one is exit 2 before any lookup.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationError

from orchestrator.errors import SpecError
from orchestrator.redact import redact, remember, remember_url

# The longest any single call to Prometheus may take; beyond it a gate would outlive its step.
MAX_TIMEOUT_SECONDS = 3600.0


def _origin(name: str, origins: Mapping[str, str]) -> str:
    """Where a value came from, as the ``file:line: field`` prefix of an error line."""
    option = origins.get(name)
    if option:
        return f"<command line>:0: {option}"
    return f"<environment>:0: ORCHESTRATOR_{name.upper()}"


def parse_seconds(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SpecError([f"{where}: {text!r} is not a number of seconds"]) from None
    if not math.isfinite(value) or value <= 0 or value > MAX_TIMEOUT_SECONDS:
        raise SpecError([f"{where}: must be more than 0 and at most {MAX_TIMEOUT_SECONDS:g} seconds, got {text!r}"])
    return value


_HOST_NAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")


def host_problem(hostname: str) -> str | None:
    """Why ``hostname`` is no IP address and no name that could be looked up, or None.

    Checked before any connection, so a malformed name is exit 2 and never reaches a resolver.
    """
    if hostname.startswith("[") or ":" in hostname:
        if hostname.startswith("[") != hostname.endswith("]"):
            return "has a host that is neither a name nor an IP address"
        try:
            ipaddress.IPv6Address(hostname.removeprefix("[").removesuffix("]").split("%", 1)[0])
        except ValueError:
            return "has a host that is neither a name nor an IP address"
        return None
    try:
        encoded = hostname.rstrip(".").encode("idna").decode("ascii")
    except UnicodeError:
        return "has a host name with an empty label or one longer than 63 characters"
    if len(encoded) > 253:
        return "has a host name longer than 253 characters"
    if not _HOST_NAME.fullmatch(encoded):
        return "has a host name with a character a host name cannot hold"
    return None


def check_host_port(text: str, where: str) -> str:
    """``host:port`` as gRPC dials it (``[v6]:port`` too), port 1..65535."""
    problem = None
    if any(c.isspace() for c in text) or "/" in text or "@" in text:
        problem = "is not host:port" + (" (credentials belong in the API key setting)" if "@" in text else "")
    else:
        try:
            parts = urlsplit("//" + text)
            if not parts.hostname or parts.port is None:
                problem = "is not host:port (both are needed, e.g. 127.0.0.1:7233)"
            elif parts.port == 0:
                problem = "has port 0; a port is 1..65535"
            else:
                problem = host_problem(parts.hostname)
        except ValueError:
            problem = "has a port outside 1..65535"
    if problem:
        raise SpecError([f"{where}: {redact(repr(text))} {problem}"])
    return text


def check_http_url(text: str, where: str) -> str:
    remember_url(text)
    shown = redact(repr(text))
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        # urlsplit says "port" for a stray bracket too.
        raise SpecError([f"{where}: {shown} has a malformed host or a port outside 1..65535"]) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0 or any(c.isspace() for c in text):
        raise SpecError([f"{where}: {shown} is not an http:// or https:// URL (e.g. http://127.0.0.1:9090)"])
    problem = host_problem(parts.hostname)
    if problem:
        raise SpecError([f"{where}: {shown} {problem}"])
    return text


def check_credential(value: str | None, where: str, *, header: bool = True, secret: bool = True) -> str | None:
    """A secret that travels in an HTTP header or gRPC metadata: refused, never echoed, if it cannot.

    Surrounding whitespace is dropped (a secret written with ``echo`` ends in a newline); anything
    else that a header cannot carry -- a newline or other control character inside, a character
    outside Latin-1 (HTTP) or printable ASCII (gRPC metadata, ``header=False``) -- is exit 2.
    A ``secret`` value is remembered for redaction first; a user name (``secret=False``) is not.
    """
    if value is None:
        return None
    if secret:
        remember(value)
    value = value.strip()
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise SpecError([f"{where}: contains a newline or another control character (value not shown)"])
    allowed = "latin-1" if header else "ascii"
    try:
        value.encode(allowed)
    except UnicodeEncodeError:
        raise SpecError([f"{where}: contains characters outside {allowed} (value not shown)"]) from None
    return value or None


def db_path_from_env(env: Mapping[str, str] | None = None) -> str:
    """The SQLite run store's path: ``ORCHESTRATOR_DB``, else ``orchestrator.db`` in ``ORCHESTRATOR_STATE_DIR``.

    On its own so that a command needing only the store (``score``) reads nothing else.
    """
    e = os.environ if env is None else env
    return e.get("ORCHESTRATOR_DB") or str(Path(e.get("ORCHESTRATOR_STATE_DIR") or ".") / "orchestrator.db")


class PrometheusSettings(BaseModel):
    url: str = "http://127.0.0.1:9090"
    bearer_token: str | None = Field(default=None, repr=False)
    bearer_token_file: str | None = None
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
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
    temporal_api_key: str | None = Field(default=None, repr=False)  # Temporal Cloud API key
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    kubeconfig: str | None = None
    kube_context: str | None = None
    kube_timeout: float = 15.0  # seconds one Kubernetes API request may take (``ORCHESTRATOR_KUBE_TIMEOUT``)
    state_dir: str = ".sandbox"
    db_path: str = "orchestrator.db"
    notify_webhook: str | None = Field(default=None, repr=False)

    @classmethod
    def from_env(
        cls, env: dict[str, str] | None = None, origins: Mapping[str, str] | None = None, **overrides: object
    ) -> Settings:
        """Settings from ``env`` (default ``os.environ``) and ``overrides``; ``origins`` names the command-line
        option each override came from (field name -> ``--option``), for error messages.

        Raises ``SpecError`` (one line) for a value that cannot work.
        """
        e = dict(os.environ if env is None else env)
        origins = origins or {}

        def get(name: str) -> str | None:
            return e.get(f"ORCHESTRATOR_{name}") or None

        prometheus_url = overrides.pop("prometheus_url", None) or get("PROMETHEUS_URL") or PrometheusSettings().url
        check_http_url(str(prometheus_url), _origin("prometheus_url", origins))
        timeout = get("PROMETHEUS_TIMEOUT")
        timeout_seconds = parse_seconds(timeout, _origin("prometheus_timeout", origins)) if timeout else 10.0
        # Every secret is remembered before any check can fail, so no error line can show one.
        remember(get("PROMETHEUS_TOKEN"), get("PROMETHEUS_PASSWORD"), get("TEMPORAL_API_KEY"),
                 get("UNLEASH_TOKEN"), get("NOTIFY_WEBHOOK"))
        for url in (get("PROMETHEUS_URL"), get("NOTIFY_WEBHOOK"), get("DATABASE_URL"), get("DB")):
            remember_url(url)
        webhook = get("NOTIFY_WEBHOOK")
        if webhook:
            check_http_url(webhook, _origin("notify_webhook", origins))
            # An incoming webhook's path is its credential.
            remember(urlsplit(webhook).path)
        prom = PrometheusSettings(
            url=str(prometheus_url),
            bearer_token=check_credential(get("PROMETHEUS_TOKEN"), _origin("prometheus_token", origins)),
            bearer_token_file=get("PROMETHEUS_TOKEN_FILE"),
            username=check_credential(
                get("PROMETHEUS_USERNAME"), _origin("prometheus_username", origins), secret=False
            ),
            password=check_credential(get("PROMETHEUS_PASSWORD"), _origin("prometheus_password", origins)),
            ca_file=get("PROMETHEUS_CA_FILE"),
            insecure_skip_verify=(get("PROMETHEUS_INSECURE") or "").lower() in ("1", "true", "yes"),
            timeout_seconds=timeout_seconds,
        )
        kube_timeout = get("KUBE_TIMEOUT")
        values: dict[str, object] = {
            "temporal_address": get("TEMPORAL_ADDRESS") or cls.model_fields["temporal_address"].default,
            "temporal_namespace": get("TEMPORAL_NAMESPACE") or "default",
            "task_queue": get("TASK_QUEUE") or "orchestrator",
            "temporal_tls": (get("TEMPORAL_TLS") or "").lower() in ("1", "true", "yes"),
            "temporal_tls_cert": get("TEMPORAL_TLS_CERT"),
            "temporal_tls_key": get("TEMPORAL_TLS_KEY"),
            "temporal_tls_ca": get("TEMPORAL_TLS_CA"),
            "temporal_tls_server_name": get("TEMPORAL_TLS_SERVER_NAME"),
            "temporal_api_key": check_credential(
                get("TEMPORAL_API_KEY"), _origin("temporal_api_key", origins), header=False
            ),
            "prometheus": prom,
            "kubeconfig": get("KUBECONFIG") or e.get("KUBECONFIG") or None,
            "kube_context": get("KUBE_CONTEXT"),
            "kube_timeout": parse_seconds(kube_timeout, _origin("kube_timeout", origins)) if kube_timeout else 15.0,
            "state_dir": get("STATE_DIR") or ".sandbox",
            "db_path": db_path_from_env(e),
            "notify_webhook": get("NOTIFY_WEBHOOK"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        remember_url(str(values["temporal_address"]))
        if bool(values["temporal_tls_cert"]) != bool(values["temporal_tls_key"]):
            # mTLS takes both; the SDK would refuse one alone with a bare ValueError.
            given, missing = ("cert", "key") if values["temporal_tls_cert"] else ("key", "cert")
            raise SpecError([f"{_origin('temporal_tls_' + missing, origins)}: needed with "
                             f"ORCHESTRATOR_TEMPORAL_TLS_{given.upper()} (a client certificate takes both)"])
        check_host_port(str(values["temporal_address"]), _origin("temporal_address", origins))
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            name = str(first["loc"][0]) if first["loc"] else "settings"
            raise SpecError([f"{_origin(name, origins)}: {first['msg']}"]) from None
