"""Logging setup for the CLI and the worker: human text or one JSON object per line.

Shape: ``configure_logging(fmt, level)`` installs one stderr handler on the root logger with
either a text or a ``JsonFormatter``. Both formats add the Temporal context of the code that
logged: inside an activity (``temporalio.activity.in_activity()``) the workflow id, run id,
activity type/id and attempt; inside a workflow (``temporalio.workflow.in_workflow()``) the
workflow id, run id and type. The context is read when the record is formatted, which happens
synchronously in the logging thread, i.e. still inside the activity or workflow task.

Both formatters pass every text they emit -- the message, extras, the exception and stack text
-- through ``orchestrator.redact.redact``: a library that logs the URL it failed to reach (urllib3,
requests, psycopg) cannot print a credential on the worker's or the CLI's stderr.

The module is called ``logs`` so that ``import logging`` inside the package keeps meaning the
standard library.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
from typing import Any, Literal, TextIO

from temporalio import activity, workflow

from orchestrator.redact import redact

LogFormat = Literal["text", "json"]

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged as a field.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}
# Temporal's own loggers attach these dicts; their content is what temporal_context() returns already.
_TEMPORAL_EXTRAS = frozenset({"temporal_activity", "temporal_workflow", "activity_info", "workflow_info"})


def temporal_context() -> dict[str, Any]:
    """The workflow/activity identifiers of the current code, or ``{}`` outside Temporal."""
    try:
        if activity.in_activity():
            a = activity.info()
            return {
                "workflow_id": a.workflow_id,
                "run_id": a.workflow_run_id,
                "workflow_type": a.workflow_type,
                "activity": a.activity_type,
                "activity_id": a.activity_id,
                "attempt": a.attempt,
            }
        if workflow.in_workflow():
            w = workflow.info()
            return {"workflow_id": w.workflow_id, "run_id": w.run_id, "workflow_type": w.workflow_type}
    except Exception:
        # Logging must never fail because context was unavailable (e.g. during worker shutdown).
        return {}
    return {}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, Temporal context, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _dt.datetime.fromtimestamp(record.created, tz=_dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        doc.update(temporal_context())
        for key, value in vars(record).items():
            if key in _STANDARD_ATTRS or key in _TEMPORAL_EXTRAS or key.startswith("_") or key in doc:
                continue
            doc[key] = _redacted(value)
        if record.exc_info:
            doc["exc_info"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            doc["stack_info"] = redact(self.formatStack(record.stack_info))
        return json.dumps(doc, default=str, ensure_ascii=False)


def _redacted(value: Any) -> Any:
    """An extra's value with credentials masked, keeping its JSON shape (a dict stays a dict)."""
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, str):
        return redact(value)
    try:
        # Masks never contain quotes or brackets, so the redacted text is still the same JSON.
        return json.loads(redact(json.dumps(value, default=str, ensure_ascii=False)))
    except ValueError:
        return redact(value)


class TextFormatter(logging.Formatter):
    """Classic one-line text, with ``[workflow_id/activity]`` when logged inside Temporal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = redact(super().format(record))
        ctx = temporal_context()
        if ctx:
            where = ctx["workflow_id"] + (f"/{ctx['activity']}" if "activity" in ctx else "")
            line = f"{line} [{where}]"
        return line


def configure_logging(
    fmt: LogFormat | str = "text", level: int | str = "INFO", stream: TextIO | None = None
) -> logging.Handler:
    """Route every log record to ``stream`` (stderr) in ``fmt``; returns the installed handler.

    Calling it again replaces the handler it installed before, so the CLI can reconfigure.
    """
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', not {fmt!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.set_name("orchestrator")
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == "orchestrator":
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # Temporal's loggers append their context to the message text; the formatters carry it as fields.
    activity.logger.activity_info_on_message = False
    workflow.logger.workflow_info_on_message = False
    return handler
