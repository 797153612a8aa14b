"""A team's scoring config: other weights for the five factors (and other constants), read from YAML.

::

    # scoring.yaml
    weights:            # each >= 0, together 1
      detection: 0.1
      autoRecovery: 0.4
      containment: 0.2
      customerImpact: 0.2
      recoveryTime: 0.1
    halfLife: 28d       # any other ScoringConfig field, by its camelCase name

Errors are ``file:line: field: message`` (exit 2), from the same YAML line tracking as the
specs, so a weight that breaks the sum is reported at the ``weights`` line. The file is read by the
bounded reader (a regular file, UTF-8, at most ``MAX_FILE_BYTES``) and parsed by the hardened YAML
loader, like a spec; every number must be finite and within the bounds ``ScoringConfig`` states.
"""

from __future__ import annotations

import os

from pydantic import ValidationError

from orchestrator.errors import SpecError
from orchestrator.scoring.formula import DEFAULT_CONFIG, ScoringConfig
from orchestrator.specs.files import read_text, shown
from orchestrator.specs.loader import MAX_FILE_BYTES, format_errors, parse_yaml

CONFIG_ENV = "ORCHESTRATOR_SCORING_CONFIG"


def load_config(path: str | os.PathLike[str] | None = None) -> ScoringConfig:
    """The config at ``path``, else at ORCHESTRATOR_SCORING_CONFIG, else the defaults."""
    where = os.fspath(path) if path is not None else os.environ.get(CONFIG_ENV, "").strip()
    if not where:
        return DEFAULT_CONFIG
    return parse_config(read_text(where, limit=MAX_FILE_BYTES, hint="a scoring config is a few lines of YAML"),
                        shown(where))


def parse_config(text: str, source: str) -> ScoringConfig:
    data, lines = parse_yaml(text, source)
    if not isinstance(data, dict):
        raise SpecError([f"{source}:1: (document): a scoring config is a mapping (weights: ...)"])
    try:
        return ScoringConfig.model_validate(data, by_alias=True)
    except ValidationError as exc:
        raise SpecError(format_errors(exc, data, lines, source)) from None


__all__ = ["CONFIG_ENV", "load_config", "parse_config"]
