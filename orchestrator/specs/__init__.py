"""Pydantic models of every spec file: the project's shared vocabulary. No I/O beyond reading the file."""

from orchestrator.specs.canary import CanaryRollout
from orchestrator.specs.checks import Check, NoDataPolicy
from orchestrator.specs.loader import load_file, load_text

__all__ = ["CanaryRollout", "Check", "NoDataPolicy", "load_file", "load_text"]
