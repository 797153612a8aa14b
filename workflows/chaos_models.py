"""Moved to ``orchestrator.api.chaos``; kept importable while callers move."""

from orchestrator.api.chaos import *  # noqa: F403
