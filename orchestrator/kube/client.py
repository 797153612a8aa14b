"""Connecting to Kubernetes and translating the client's failures into the project's errors.

Everything else in ``orchestrator.kube`` talks to the API server through the official client and wraps
each call in :func:`kube_errors`, so no ``ApiException`` or urllib3 error escapes this package::

    ApiException 404                 -> NotFoundError          (not retryable)
    ApiException 409                 -> ConflictError          (retryable; see retry_on_conflict)
    ApiException 429 / 5xx           -> KubeError(status)      (retryable)
    ApiException other 4xx           -> KubeError(status)      (not retryable: the request is wrong)
    ApiException status 0 (TLS)      -> UnreachableError
    urllib3 connection/timeout/proto -> UnreachableError       (retryable, exit code 3)

Every request has a timeout (``TimedApiClient``, ``ORCHESTRATOR_KUBE_TIMEOUT``) so that a black-holed API
server fails an activity attempt quickly instead of outliving its heartbeat timeout; Temporal's retry policy
does the waiting.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from orchestrator.errors import ConflictError, KubeError, NotFoundError, UnreachableError

__all__ = [
    "REQUEST_TIMEOUT",
    "TimedApiClient",
    "check_reachable",
    "kube_errors",
    "load_api_client",
    "read_json",
    "request_timeout",
    "retry_on_conflict",
    "translate_api_exception",
]

T = TypeVar("T")

# (connect, read) seconds for one request, unless the client was given its own (``ORCHESTRATOR_KUBE_TIMEOUT``).
REQUEST_TIMEOUT: tuple[float, float] = (5.0, 15.0)


def request_timeout(read: float) -> tuple[float, float]:
    """(connect, read) for a read timeout of ``read`` seconds: connecting never takes longer than reading."""
    return (min(REQUEST_TIMEOUT[0], read), read)


class TimedApiClient(k8s.ApiClient):  # type: ignore[misc]  # the client is untyped
    """An ``ApiClient`` whose every request has a timeout: a black-holed API server fails an activity attempt
    (or a command) within it, instead of outliving its heartbeat timeout or hanging a terminal."""

    request_timeout: tuple[float, float] = REQUEST_TIMEOUT

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("_request_timeout") is None:
            kwargs["_request_timeout"] = self.request_timeout
        return super().call_api(*args, **kwargs)


class _Retry(urllib3.util.Retry):
    """One retry for a dropped keep-alive, none for a read timeout: a server that hangs once hangs again,
    and retrying it doubled the wait (2 x 15 s) before the caller heard that it is unreachable."""

    def increment(self, method: str | None = None, url: str | None = None, *args: Any, **kwargs: Any) -> Any:
        error = kwargs.get("error")
        if isinstance(error, urllib3.exceptions.ReadTimeoutError):
            raise urllib3.exceptions.MaxRetryError(kwargs.get("_pool"), url or "", error) from error  # type: ignore[arg-type]
        return super().increment(method, url, *args, **kwargs)


# urllib3's default of three retries would multiply REQUEST_TIMEOUT; one retry covers a dropped keep-alive.
_CONNECT_RETRIES = _Retry(total=1, redirect=0, raise_on_status=False)


def load_api_client(kubeconfig: str | None = None, context: str | None = None,
                    timeout: float | None = None) -> k8s.ApiClient:
    """An ``ApiClient`` for the in-cluster service account or for a kubeconfig.

    In a pod (``KUBERNETES_SERVICE_HOST`` set) and without an explicit kubeconfig or context, the service
    account is used; otherwise the kubeconfig from ``kubeconfig``, ``$KUBECONFIG`` or ``~/.kube/config``.
    A missing or unusable configuration is an :class:`UnreachableError`: the cluster cannot be reached with it.
    ``timeout`` is the read timeout of every request (seconds; default ``REQUEST_TIMEOUT``).
    """
    configuration = k8s.Configuration()
    if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except k8s_config.ConfigException as e:
            raise UnreachableError("Kubernetes", "in-cluster service account", str(e)) from e
    else:
        path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        # $KUBECONFIG may list several files, which the client merges; missing ones are skipped, none is an error.
        if not any(os.path.exists(os.path.expanduser(p)) for p in path.split(os.pathsep) if p):
            raise UnreachableError("Kubernetes", path, "kubeconfig file not found")
        try:
            k8s_config.load_kube_config(
                config_file=path,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
        except (k8s_config.ConfigException, yaml.YAMLError, OSError, ValueError, KeyError, TypeError) as e:
            where = f"{path} (context {context})" if context else path
            raise UnreachableError("Kubernetes", where, f"invalid kubeconfig: {e}") from e
    configuration.retries = _CONNECT_RETRIES
    api_client = TimedApiClient(configuration)
    if timeout is not None:
        api_client.request_timeout = request_timeout(timeout)
    return api_client


def _host(api_client: k8s.ApiClient | None) -> str:
    if api_client is None:
        return "the API server"
    return str(api_client.configuration.host)


def _server_message(e: ApiException) -> str:
    """The ``message`` of the Status object the API server returns, else the raw reason."""
    body = getattr(e, "body", None)
    if body:
        try:
            parsed = json.loads(body)
        except (TypeError, ValueError):
            parsed = None
        if isinstance(parsed, dict) and parsed.get("message"):
            return str(parsed["message"])
    return str(e.reason or "")


def translate_api_exception(
    e: ApiException, what: str, api_client: k8s.ApiClient | None = None
) -> KubeError | UnreachableError:
    """The project's error for an ``ApiException`` raised while doing ``what``."""
    status = int(e.status or 0)
    message = _server_message(e)
    if status == 0:
        return UnreachableError("Kubernetes", _host(api_client), f"{what}: {message}")
    text = f"{what}: {status} {message}".strip()
    if status == 404:
        return NotFoundError(text)
    if status == 409:
        return ConflictError(text)
    return KubeError(text, status=status)


@contextmanager
def kube_errors(what: str, api_client: k8s.ApiClient | None = None) -> Iterator[None]:
    """Run a block of client calls, raising the project's errors instead of the client's."""
    try:
        yield
    except ApiException as e:
        raise translate_api_exception(e, what, api_client) from e
    except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as e:
        # MaxRetryError wraps the interesting cause (connection refused, DNS, timeout).
        reason = getattr(e, "reason", None) or e
        raise UnreachableError("Kubernetes", _host(api_client), f"{what}: {_one_line(reason)}") from e
    except json.JSONDecodeError as e:
        raise UnreachableError("Kubernetes", _host(api_client), f"{what}: {NOT_THE_API}") from e


NOT_THE_API = "the answer is not JSON; is this address the Kubernetes API server?"


def _one_line(reason: object) -> str:
    return " ".join(str(reason).split())[:300]


def retry_on_conflict(fn: Callable[[], T], attempts: int = 5, base_delay: float = 0.05) -> T:
    """Call ``fn`` (a read-modify-write) again while it raises :class:`ConflictError`.

    ``fn`` must re-read the object on every call: the retry is only useful because the fresh read carries
    the new resourceVersion. The last conflict is re-raised after ``attempts`` calls.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(attempts):
        try:
            return fn()
        except ConflictError:
            if attempt == attempts - 1:
                raise
            # Jitter keeps two writers that collided from colliding again in lock-step.
            time.sleep(base_delay * (2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")  # pragma: no cover


def check_reachable(api_client: k8s.ApiClient, timeout: tuple[float, float] | None = None) -> str:
    """GET /version; returns the server's git version or raises :class:`UnreachableError` / :class:`KubeError`."""
    with kube_errors("GET /version", api_client):
        try:
            info = k8s.VersionApi(api_client).get_code(
                _request_timeout=timeout or getattr(api_client, "request_timeout", REQUEST_TIMEOUT))
        except ValueError as e:
            # The client reads a body that is not a version object (an HTML page, a list) as a ValueError.
            raise UnreachableError("Kubernetes", _host(api_client), f"GET /version: {NOT_THE_API}") from e
    return str(getattr(info, "git_version", "") or "unknown")


def read_json(response: Any) -> dict[str, Any]:
    """The JSON body of a raw (``_preload_content=False``) response."""
    data = json.loads(response.data or b"{}")
    if not isinstance(data, dict):
        raise KubeError(f"unexpected response body: {type(data).__name__}", status=None, retryable=False)
    return data
