"""The project's exception tree.

Every error a user can see derives from ``OrchestratorError``; the CLI maps each
branch onto one exit code, and activities map ``retryable`` onto Temporal's
non-retryable application errors::

    OrchestratorError
     ├── SpecError              bad input: file:line: field: message   (exit 2)
     ├── UnreachableError       Temporal/Prometheus/Kubernetes down     (exit 3)
     ├── RefusedError           a safety rule said no                   (exit 1)
     └── IntegrationError       a call to a system failed
          ├── KubeError
          │    ├── NotFoundError
          │    └── ConflictError   (409; retried)
          ├── MetricError
          └── FlagProviderError

Client exceptions are wrapped where they occur, so code above the integration
layer never sees ``kubernetes.client.ApiException`` or ``requests`` errors.

No message carries a credential: the text of every error is passed through
``orchestrator.redact.redact`` when it is rendered (``str``), so a URL with userinfo, a token
parameter or a header value quoted from a client exception is masked wherever the error goes --
the CLI, logs, activity failures in Temporal history.
"""

from __future__ import annotations

from orchestrator.redact import redact


class OrchestratorError(Exception):
    """Base of every error raised by the project."""

    retryable: bool = False
    exit_code: int = 1

    def __str__(self) -> str:
        # At render time, so that secrets remembered after the error was raised are masked too.
        return redact(super().__str__())


class SpecError(OrchestratorError):
    """A spec file or a command-line value is invalid."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = [redact(problem) for problem in problems]
        super().__init__("\n".join(self.problems))


class UnreachableError(OrchestratorError):
    """A backing system (Temporal, Prometheus, Kubernetes, a flag provider) cannot be reached."""

    retryable = True
    exit_code = 3

    def __init__(self, system: str, address: str, reason: str) -> None:
        self.system = system
        self.address = redact(address)
        super().__init__(f"cannot reach {system} at {self.address}: {redact(reason)}")


class RefusedError(OrchestratorError):
    """A safety rule refused the requested action (a rollout already running, a protected target...)."""


class IntegrationError(OrchestratorError):
    """A call to an external system failed; ``retryable`` tells whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class KubeError(IntegrationError):
    def __init__(self, message: str, *, status: int | None = None, retryable: bool | None = None) -> None:
        if retryable is None:
            # 4xx means the request itself is wrong and will stay wrong; 409 and 429 are the exceptions.
            retryable = status is None or status >= 500 or status in (409, 429)
        super().__init__(message, retryable=retryable)
        self.status = status


class NotFoundError(KubeError):
    def __init__(self, message: str) -> None:
        super().__init__(message, status=404, retryable=False)


class ConflictError(KubeError):
    def __init__(self, message: str) -> None:
        super().__init__(message, status=409, retryable=True)


class MetricError(IntegrationError):
    """A metric query failed (bad PromQL is not retryable, a timeout is)."""


class FlagProviderError(IntegrationError):
    pass
