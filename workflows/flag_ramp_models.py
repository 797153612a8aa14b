"""Moved to ``orchestrator.api.flags``; kept importable while callers move."""

from orchestrator.api.flags import *  # noqa: F403
from orchestrator.api.flags import __all__  # noqa: F401
