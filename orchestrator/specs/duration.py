"""Durations as people write them in specs: ``500ms``, ``30s``, ``5m``, ``1h30m``, ``2d``.

Every duration is bounded by ``MAX_DURATION``: ``timedelta`` overflows near 2.7 million years and
workflow timers have their own limits, so a typo such as ``1000000000d`` is refused here, with the
spec's line, instead of failing later with an ``OverflowError``. An integer is compared with the bound
before it becomes a float, because a 400-digit integer does not fit in one.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

MAX_DURATION = timedelta(days=365)


def parse_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):  # built by code (or the data converter), not written in a spec
        return value
    if isinstance(value, bool):
        raise ValueError("a duration is a string such as 30s, 5m or 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        if isinstance(value, int) and value > MAX_DURATION.total_seconds():
            raise ValueError(f"{_shown(value)} is longer than the longest duration allowed ({MAX_DURATION.days}d)")
        return _bounded(float(value), value)
    if not isinstance(value, str):
        raise ValueError("a duration is a string such as 30s, 5m or 1h")
    text = value.strip()
    if text.startswith("P"):  # ISO 8601, which is how the Temporal data converter writes timedelta
        from pydantic import TypeAdapter, ValidationError

        try:
            parsed = TypeAdapter(timedelta).validate_python(text)
        except ValidationError:
            raise ValueError(f"{_shown(value)} is not a duration (use e.g. 500ms, 30s, 5m, 1h30m, 2d)") from None
        return _bounded(parsed.total_seconds(), value)
    pos = 0
    seconds = 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"{_shown(value)} is not a duration (use e.g. 500ms, 30s, 5m, 1h30m, 2d)")
    return _bounded(seconds, value)


def _shown(written: Any) -> str:
    text = repr(written)
    return text if len(text) <= 40 else text[:40] + "..."


def _bounded(seconds: float, written: Any) -> timedelta:
    if not math.isfinite(seconds):
        raise ValueError(f"{_shown(written)} is not a finite duration")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{_shown(written)} is longer than the longest duration allowed ({MAX_DURATION.days}d)")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    total = value.total_seconds()
    if total < 1 and total > 0:
        return f"{round(total * 1000)}ms"
    out = []
    rest = int(total)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out) or "0s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d))+$", "examples": ["30s", "5m"]}),
]
