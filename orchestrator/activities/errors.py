"""Mapping the project's errors onto Temporal's retry semantics.

An error whose type says it is not worth retrying (a 4xx from Kubernetes, invalid PromQL,
a refused safety check) becomes a non-retryable ``ApplicationError``; everything else is
left to the activity's retry policy with backoff.

A programming error (a pydantic ``ValidationError``, ``TypeError``, ``AttributeError`` ...) fails
the same way every time: it is non-retryable too, typed ``ProgrammingError``, so a workflow
reports it at once instead of retrying it for ever.

An activity failure is written into the workflow's history, which anyone who can read the
namespace can read: its message is redacted (``orchestrator.redact``) and it carries no cause
chain, because Temporal serialises every cause's text too, and a client exception below the
project's error quotes URLs and headers as they were sent. Any other exception is wrapped the same
way, keeping its type name (retry policies match on it) and staying retryable. Temporal's own
exceptions (cancellation above all) pass through untouched.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ValidationError
from temporalio.exceptions import ApplicationError, TemporalError

from orchestrator.errors import OrchestratorError
from orchestrator.redact import redact

F = TypeVar("F", bound=Callable[..., Any])

PROGRAMMING_ERRORS = (ValidationError, TypeError, AttributeError, KeyError, NameError, AssertionError)


def application_error(exc: Exception) -> ApplicationError:
    """The Temporal failure for ``exc``: its type, its retry intent and its redacted message, nothing else."""
    if isinstance(exc, OrchestratorError):
        return ApplicationError(str(exc), type=type(exc).__name__, non_retryable=not exc.retryable)
    if isinstance(exc, PROGRAMMING_ERRORS):
        return ApplicationError(
            redact(f"{type(exc).__name__}: {exc}"), type="ProgrammingError", non_retryable=True
        )
    return ApplicationError(redact(exc) or type(exc).__name__, type=type(exc).__name__)


def temporal_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TemporalError:
            raise
        except Exception as exc:
            raise application_error(exc) from None

    return wrapper  # type: ignore[return-value]
