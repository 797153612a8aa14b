"""Moved to ``orchestrator.api.canary``; kept importable while callers move."""

from orchestrator.api.canary import *  # noqa: F403
from orchestrator.api.canary import __all__  # noqa: F401
