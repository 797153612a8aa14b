"""Outcome notifications to a Slack-compatible incoming webhook.

Shape: an ``Outcome`` (pydantic, so it crosses Temporal activity boundaries as-is) describes how
a canary, flag ramp or chaos experiment ended; ``slack_payload`` turns it into
``{"text": ..., "blocks": [...]}`` (``text`` is the fallback shown in notifications, ``blocks``
the formatted message); ``Notifier.notify`` posts it.

Notification is best effort by design: it runs after (or alongside) a rollback and must never
delay or fail it. ``notify`` posts from a daemon thread and waits at most ``timeout`` seconds
in total, so neither a dead endpoint nor one that trickles its answer can hold the caller
longer; every failure is logged (without the secret URL) and reported as ``False``, never raised.

The webhook URL is a credential (an incoming webhook's path is its key): it is remembered by
``orchestrator.redact`` and only its host is ever logged. A message carries error texts from the
run (a rollback's failing step, a gate's error), so every text of the payload is redacted before it
leaves: the webhook's readers are not the namespace's.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from orchestrator.redact import host_of, redact, remember, remember_url

if TYPE_CHECKING:
    from orchestrator.api.requests import RollbackStuckRequest

log = logging.getLogger(__name__)

_GOOD = {"promoted", "completed", "succeeded", "passed"}
_ROLLED_BACK = {"rolled_back", "aborted", "killed", "rollback_recovered"}
_KIND_LABEL = {"canary": "Canary rollout", "flag_ramp": "Flag ramp", "chaos": "Chaos experiment"}


class Outcome(BaseModel):
    """How one rollout, ramp or experiment ended."""

    kind: Literal["canary", "flag_ramp", "chaos"]
    name: str
    outcome: str  # promoted | rolled_back | aborted | completed | failed | ...
    target: str | None = None  # e.g. "shop/checkout"
    reason: str | None = None
    workflow_id: str | None = None
    details: dict[str, str] = Field(default_factory=dict)


def _mrkdwn(text: str) -> str:
    # Slack's three control characters; everything else is literal in mrkdwn.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _icon(outcome: str) -> str:
    if outcome in _GOOD:
        return ":white_check_mark:"
    if outcome in _ROLLED_BACK:
        return ":rewind:"
    return ":x:"


def slack_payload(event: Outcome) -> dict[str, Any]:
    """The Slack-compatible message for ``event``, with every credential masked."""
    event = event.model_copy(update={
        "reason": redact(event.reason) if event.reason is not None else None,
        "details": {k: redact(v) for k, v in event.details.items()},
        "target": redact(event.target) if event.target is not None else None,
    })
    label = _KIND_LABEL[event.kind]
    summary = f"{label} {event.name}: {event.outcome.replace('_', ' ')}"
    if event.reason:
        summary += f" ({event.reason})"
    fields = [
        {"type": "mrkdwn", "text": f"*Kind*\n{_mrkdwn(event.kind)}"},
        {"type": "mrkdwn", "text": f"*Outcome*\n{_mrkdwn(event.outcome)}"},
    ]
    if event.target:
        fields.append({"type": "mrkdwn", "text": f"*Target*\n{_mrkdwn(event.target)}"})
    if event.workflow_id:
        fields.append({"type": "mrkdwn", "text": f"*Workflow*\n`{_mrkdwn(event.workflow_id)}`"})
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            # Slack caps header text at 150 characters.
            "text": {"type": "plain_text", "text": f"{label} {event.name}: {event.outcome}"[:150]},
        },
        {"type": "section", "fields": fields},
    ]
    if event.reason:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Reason*: {_mrkdwn(event.reason)}"}})
    if event.details:
        lines = [f"{_mrkdwn(k)}: {_mrkdwn(v)}" for k, v in sorted(event.details.items())]
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": "\n".join(lines)[:3000]}]})
    return {"text": f"{_icon(event.outcome)} {_mrkdwn(summary)}", "blocks": blocks}


class Notifier:
    """Posts outcomes to ``webhook_url``; with no URL, ``notify`` is a no-op."""

    def __init__(self, webhook_url: str | None, timeout: float = 5.0) -> None:
        if webhook_url and urlsplit(webhook_url).scheme not in ("http", "https"):
            # urllib would also open file:// and ftp:// URLs; a webhook is only ever HTTP(S).
            raise ValueError("the notification webhook must be an http:// or https:// URL")
        self.webhook_url = webhook_url or None
        self.timeout = timeout
        if self.webhook_url:
            remember(self.webhook_url, urlsplit(self.webhook_url).path)
            remember_url(self.webhook_url)

    @property
    def _where(self) -> str:
        # The URL path of an incoming webhook is its secret, and the userinfo of any URL: log the host only.
        return host_of(self.webhook_url or "")

    def notify(self, event: Outcome) -> bool:
        """Post ``event``; True when the webhook answered 2xx within the timeout. Never raises."""
        if not self.webhook_url:
            return False
        try:
            body = json.dumps(slack_payload(event)).encode()
        except Exception:
            log.exception("could not build the notification for %s %s", event.kind, event.name)
            return False
        result: list[bool] = []
        worker = threading.Thread(target=self._post, args=(body, result), name="notify", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if worker.is_alive():
            log.warning("notification webhook at %s did not answer within %ss; giving up",
                        self._where, self.timeout)
            return False
        return bool(result and result[0])

    def _post(self, body: bytes, result: list[bool]) -> None:
        assert self.webhook_url is not None
        req = urllib.request.Request(
            self.webhook_url, data=body, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "orchestrator-notify"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                resp.read()
                result.append(200 <= resp.status < 300)
        except urllib.error.HTTPError as exc:
            log.warning("notification webhook at %s answered HTTP %s", self._where, exc.code)
            result.append(False)
        except Exception as exc:
            log.warning("notification webhook at %s failed: %s", self._where, type(exc).__name__)
            result.append(False)


def send_outcome(webhook_url: str | None, event: Outcome, timeout: float = 5.0) -> bool:
    """Activity-friendly one-shot: post ``event`` if a webhook is configured; never raises.

    A notification activity should call this and return its result, with no retries worth
    waiting for: a lost notification is logged, a blocked rollback would be worse.
    """
    try:
        return Notifier(webhook_url, timeout).notify(event)
    except Exception:
        log.exception("notification skipped")
        return False


def report_rollback_stuck(webhook_url: str | None, req: RollbackStuckRequest, timeout: float = 5.0) -> bool:
    """What ``notify.rollback_stuck`` does: set the gauge, log, and notify on news only.

    The workflow calls it at every re-attempt of a failing compensation step; the gauge needs each
    call (its series expire unless renewed) but people need only the first ("stuck at step X") and
    the last ("recovered"), so the webhook is posted only when this worker's view changes.
    Returns whether a notification was posted; never raises.
    """
    from orchestrator import telemetry

    news = telemetry.set_rollback_stuck(req.kind, req.workflow_id, req.step, req.stuck)
    if req.stuck:
        log.error("rollback stuck at step %s of %s %s: %s", req.step, req.kind, req.workflow_id, redact(req.error),
                  extra={"workflow_id": req.workflow_id, "step": req.step})
    else:
        log.info("rollback of %s %s completed after step %s recovered", req.kind, req.workflow_id, req.step,
                 extra={"workflow_id": req.workflow_id, "step": req.step})
    if not news:
        return False
    event = Outcome(
        kind=req.kind,
        name=req.name,
        outcome="rollback_stuck" if req.stuck else "rollback_recovered",
        reason=(f"step {req.step} keeps failing: {req.error}" if req.stuck else f"step {req.step} succeeded"),
        workflow_id=req.workflow_id,
        details={"step": req.step} | ({"error": redact(req.error)[:500]} if req.error else {}),
    )
    return send_outcome(webhook_url, event, timeout)
