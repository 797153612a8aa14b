"""The metric provider protocol and its Prometheus implementation.

``MetricProvider`` is the whole interface a gate needs: one instant query, at a given
time or now, answering a list of samples. ``PrometheusProvider`` implements it with
``prometheus_api_client.PrometheusConnect`` and owns two jobs the client leaves open:

* credentials: a bearer token (the token file is re-read on every call, because
  Kubernetes rotates projected service-account tokens in place), basic auth, a CA file
  or ``insecure_skip_verify``, and a timeout;
* error mapping onto the project's tree, where retry intent is part of the type::

      connection refused, DNS, timeout, 503 on /-/ready -> UnreachableError      (retryable)
      HTTP 429 / 5xx                                    -> MetricError(retryable=True)
      HTTP 400 / 422 (bad PromQL, bad matching)         -> MetricError(retryable=False), Prometheus' text
      HTTP 401 / 403 / 404, matrix or string results,
      a body that is not the Prometheus API             -> MetricError(retryable=False)

The client's own urllib3 retries are switched off: Temporal's activity retry policy is
the one place that decides how often to try again. A fresh client (and session) is
built per call, which keeps the provider safe to share between activity threads.
``prometheus_api_client`` and ``requests`` are imported inside the methods so that
importing ``orchestrator.gates`` stays free of I/O libraries (workflow code imports it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.config import PrometheusSettings, check_credential
from orchestrator.errors import MetricError, UnreachableError
from orchestrator.gates.model import Sample
from orchestrator.redact import redact
from orchestrator.specs.files import check_file, read_text, shown

if TYPE_CHECKING:
    import requests

SYSTEM = "Prometheus"
# A service-account token is about 1 KiB, a CA bundle a few hundred KiB.
TOKEN_FILE_BYTES = 64 * 1024
TLS_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Series:
    """One series of a range query: its labels and its (unix seconds, value) points."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


class MetricProvider(Protocol):
    """Anything that answers an instant PromQL query."""

    def query(self, promql: str, at: datetime | None = None) -> list[Sample]:
        """Evaluate ``promql`` at ``at`` (now when None); one sample per returned series."""
        ...


class PrometheusProvider:
    """``MetricProvider`` backed by the Prometheus HTTP API (or anything that speaks it)."""

    def __init__(self, settings: PrometheusSettings) -> None:
        if settings.bearer_token and settings.bearer_token_file:
            raise MetricError("give a Prometheus bearer token or a token file, not both", retryable=False)
        if (settings.bearer_token or settings.bearer_token_file) and settings.username:
            raise MetricError("give Prometheus bearer-token or basic-auth credentials, not both", retryable=False)
        self.settings = settings
        self.url = settings.url.rstrip("/")

    # -- MetricProvider -------------------------------------------------------------------

    def query(self, promql: str, at: datetime | None = None) -> list[Sample]:
        from prometheus_api_client import PrometheusConnect
        from prometheus_api_client.exceptions import PrometheusApiClientException

        session, responses = self._session()
        client = PrometheusConnect(
            url=self.url,
            headers=dict(session.headers),
            auth=self._auth(),
            session=session,
            retry=_no_retries(),
            timeout=self.settings.timeout_seconds,  # float is fine for requests
        )
        params: dict[str, str] = {}
        if at is not None:
            params["time"] = f"{_aware(at).timestamp():.3f}"
        try:
            result: Any = client.custom_query(promql, params=params)
        except PrometheusApiClientException as exc:
            raise self._http_error(responses[-1] if responses else None, str(exc)) from exc
        except Exception as exc:
            raise self._transport_error(exc) from exc
        finally:
            session.close()
        body = _json(responses[-1]) if responses else None
        result_type = body.get("data", {}).get("resultType") if isinstance(body, dict) else None
        return _samples(result_type, result)

    def query_range(self, promql: str, start: datetime, end: datetime, step_seconds: float) -> list[Series]:
        """Evaluate ``promql`` every ``step_seconds`` from ``start`` to ``end``: one ``Series`` per returned series.

        For readers of history in bulk (``orchestrator calibrate``): one request instead of one per instant.
        """
        from prometheus_api_client import PrometheusConnect
        from prometheus_api_client.exceptions import PrometheusApiClientException

        session, responses = self._session()
        client = PrometheusConnect(url=self.url, headers=dict(session.headers), auth=self._auth(), session=session,
                                   retry=_no_retries(), timeout=self.settings.timeout_seconds)  # fmt: skip
        try:
            result: Any = client.custom_query_range(promql, _aware(start), _aware(end), f"{step_seconds:g}s")
        except PrometheusApiClientException as exc:
            raise self._http_error(responses[-1] if responses else None, str(exc)) from exc
        except Exception as exc:
            raise self._transport_error(exc) from exc
        finally:
            session.close()
        return [Series(labels=dict(s.get("metric", {})), points=[(float(t), _float(v)) for t, v in s.get("values", [])])
                for s in result]  # fmt: skip

    # -- reachability, for the CLI ------------------------------------------------------------

    def check_reachable(self) -> None:
        """Return if Prometheus answers and is ready; raise ``UnreachableError`` or ``MetricError``."""
        session, _ = self._session()
        try:
            response = self._get(session, "/-/ready")
            if response.status_code == 404:
                # PromQL-compatible services (Thanos, Mimir, VictoriaMetrics) may lack /-/ready.
                response = self._get(session, "/api/v1/status/buildinfo")
        except Exception as exc:
            raise self._transport_error(exc) from exc
        finally:
            session.close()
        if response.status_code == 503:
            raise UnreachableError(SYSTEM, self.url, "not ready (HTTP 503)")
        if response.status_code >= 500:
            # A proxy or server failing in front of Prometheus: it cannot be used now (exit 3), and its
            # error page says nothing a user can act on.
            raise UnreachableError(SYSTEM, self.url, f"answered HTTP {response.status_code} {response.reason or ''}")
        if response.status_code in (401, 403):
            # A dependency refusing us is exit 3 like one that is down; new credentials, not a retry, fix it.
            error = UnreachableError(SYSTEM, self.url, f"refused the credentials (HTTP {response.status_code})")
            error.retryable = False
            raise error
        if response.status_code != 200:
            raise self._http_error(response, f"HTTP {response.status_code}")

    # -- internals ------------------------------------------------------------------------

    def _session(self) -> tuple[requests.Session, list[requests.Response]]:
        import requests

        session = requests.Session()
        s = self.settings
        # requests opens the CA file itself: check it through the bounded reader first (a device or a FIFO
        # there would hang the TLS handshake), and read the token once per call, before any request.
        if s.insecure_skip_verify:
            session.verify = False
        elif s.ca_file:
            session.verify = check_file(s.ca_file, limit=TLS_FILE_BYTES, field="ORCHESTRATOR_PROMETHEUS_CA_FILE")
        else:
            session.verify = True
        session.headers.update(self._headers())
        responses: list[requests.Response] = []

        def keep(response: requests.Response, *args: object, **kwargs: object) -> None:
            # PrometheusConnect raises with the status folded into a string; the hook keeps
            # the response itself so errors can be classified by status and Prometheus' JSON.
            responses.append(response)

        session.hooks["response"].append(keep)
        return session, responses

    def _get(self, session: requests.Session, path: str) -> requests.Response:
        return session.get(
            self.url + path,
            # Explicit, because requests lets REQUESTS_CA_BUNDLE override a session's verify.
            verify=session.verify,
            auth=self._auth(),
            timeout=self.settings.timeout_seconds,
        )

    def _headers(self) -> dict[str, str]:
        token = self.settings.bearer_token
        if self.settings.bearer_token_file:
            path, field = self.settings.bearer_token_file, "ORCHESTRATOR_PROMETHEUS_TOKEN_FILE"
            # Checked like the token setting: remembered for redaction, refused (never echoed) if a header
            # cannot carry it.
            token = check_credential(read_text(path, limit=TOKEN_FILE_BYTES, field=field), f"{shown(path)}:0: {field}")
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _auth(self) -> tuple[str, str] | None:
        if self.settings.username:
            return (self.settings.username, self.settings.password or "")
        return None

    def _transport_error(self, exc: Exception) -> Exception:
        import requests

        if isinstance(exc, MetricError):
            return exc
        if isinstance(exc, requests.exceptions.SSLError):
            # Unreachable for the user (exit 3), but a wrong CA does not heal by retrying.
            error = UnreachableError(SYSTEM, self.url, f"TLS verification failed: {_reason(exc)}")
            error.retryable = False
            return error
        if isinstance(exc, requests.exceptions.TooManyRedirects):
            return UnreachableError(SYSTEM, self.url, "redirect loop (more than 30 redirects)")
        if isinstance(exc, requests.exceptions.Timeout):
            return UnreachableError(SYSTEM, self.url, f"timed out after {self.settings.timeout_seconds:g}s")
        if isinstance(exc, requests.exceptions.ConnectionError):
            return UnreachableError(SYSTEM, self.url, _reason(exc))
        if isinstance(exc, ValueError):
            # requests' JSONDecodeError: something answered 200 that is not the Prometheus API.
            return MetricError(f"{self.url} did not answer like the Prometheus API: {exc}", retryable=False)
        return MetricError(f"query to Prometheus at {self.url} failed: {exc}", retryable=False)

    def _http_error(self, response: requests.Response | None, fallback: str) -> MetricError:
        if response is None:
            return MetricError(f"Prometheus at {self.url} failed: {fallback}", retryable=True)
        status = response.status_code
        body = _json(response)
        detail = ""
        if isinstance(body, dict) and body.get("error"):
            detail = f"{body.get('errorType', 'error')}: {body['error']}"
        else:
            detail = _plain_text(response)
        where = f"Prometheus at {self.url}"
        if status in (400, 422):
            return MetricError(f"{where} rejected the query (HTTP {status}) {detail}", retryable=False)
        if status in (401, 403):
            return MetricError(f"{where} refused the credentials (HTTP {status}) {detail}", retryable=False)
        if status == 429 or status >= 500:
            return MetricError(f"{where} failed (HTTP {status}) {detail}", retryable=True)
        return MetricError(f"{where} answered HTTP {status} {detail}", retryable=False)


def _samples(result_type: str | None, result: Any) -> list[Sample]:
    if result_type == "scalar" or (result_type is None and _is_point(result)):
        return [Sample(labels={}, value=_float(result[1]))]
    if result_type == "vector" or (result_type is None and isinstance(result, list)):
        samples = []
        for series in result:
            if "value" not in series:
                raise MetricError(
                    f"series {series.get('metric', {})} has no instant value "
                    "(a native histogram?); gates need float samples",
                    retryable=False,
                )
            samples.append(Sample(labels=dict(series.get("metric", {})), value=_float(series["value"][1])))
        return samples
    if result_type == "matrix":
        raise MetricError(
            "the query returned a range vector (matrix); gates need an instant vector or a scalar: "
            "wrap the [range] selector in a function such as rate() or avg_over_time()",
            retryable=False,
        )
    raise MetricError(
        f"the query returned a {result_type or 'non-numeric'} result; gates need numbers (a vector or a scalar)",
        retryable=False,
    )


def _is_point(result: Any) -> bool:
    return isinstance(result, list) and len(result) == 2 and isinstance(result[0], int | float)


def _float(text: Any) -> float:
    # Prometheus sends "NaN", "+Inf", "-Inf"; float() reads them all, and NaN is kept as
    # NaN because it means "no data" to the evaluator, not zero.
    value = float(text)
    return value if not math.isnan(value) else math.nan


def _aware(at: datetime) -> datetime:
    # A naive datetime is taken as UTC, never as the worker's local time.
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _plain_text(response: requests.Response) -> str:
    """A short, one-line excerpt of a non-API body; an HTML error page is replaced by the status reason."""
    text = response.text.strip()
    if text.startswith("<") or "html" in response.headers.get("Content-Type", "").lower():
        return response.reason or ""
    return " ".join(text.split())[:300] or response.reason or ""


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
_TLS = re.compile(r"certificate verify failed: ([^'\")(]+)")


def _reason(exc: Exception) -> str:
    text = str(exc)
    found = _TLS.search(text) or _ERRNO.search(text)
    if found:
        return found.group(1).strip()
    if "Failed to resolve" in text or "NameResolutionError" in text:
        return "name resolution failed"
    # Redacted before it is cut: a cut inside a URL's userinfo would hide the "@" that marks it.
    return redact(text)[:200]


def _no_retries() -> Any:
    from urllib3.util.retry import Retry

    return Retry(total=0, raise_on_status=False)


__all__ = ["MetricProvider", "PrometheusProvider"]
