"""Mapping the project's errors onto Temporal's retry semantics.

An error whose type says it is not worth retrying (a 4xx from Kubernetes, invalid PromQL,
a refused safety check) becomes a non-retryable ``ApplicationError``; everything else is
left to the activity's retry policy with backoff.

A programming error (a pydantic ``ValidationError``, ``TypeError``, ``AttributeError`` ...) fails
the same way every time: it is non-retryable too, typed ``ProgrammingError``, so a workflow
reports it at once instead of retrying it for ever.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

from orchestrator.errors import OrchestratorError

F = TypeVar("F", bound=Callable[..., Any])

PROGRAMMING_ERRORS = (ValidationError, TypeError, AttributeError, KeyError, NameError, AssertionError)


def temporal_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OrchestratorError as exc:
            raise ApplicationError(
                str(exc), type=type(exc).__name__, non_retryable=not exc.retryable
            ) from exc
        except PROGRAMMING_ERRORS as exc:
            raise ApplicationError(
                f"{type(exc).__name__}: {exc}", type="ProgrammingError", non_retryable=True
            ) from exc

    return wrapper  # type: ignore[return-value]
