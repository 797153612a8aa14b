"""Unleash, through its Admin API: the ramp drives the ``rollout`` of a ``flexibleRollout`` strategy.

Endpoints used (Unleash 4.x-7.x Admin API, ``Authorization: <token>`` header)::

    GET   /api/admin/projects/{project}/features/{flag}
    PATCH /api/admin/projects/{project}/features/{flag}/environments/{env}/strategies/{id}
          [{"op": "replace", "path": "/parameters/rollout", "value": "25"}]
    POST  /api/admin/projects/{project}/features/{flag}/environments/{env}/on|off

``flexibleRollout`` hashes ``stickiness`` + ``groupId`` to a bucket 1-100 and admits the
buckets up to ``rollout``, so raising the percentage keeps everyone already in. The
strategy's other parameters (stickiness, groupId, constraints, segments, variants) are
never touched. The server's address and the environment variable holding its token are the
operator's (``orchestrator.specs.operator``), never the spec's.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from orchestrator.errors import FlagProviderError, UnreachableError
from orchestrator.flags.base import Allocation, Change, FlagTarget, ProviderClients
from orchestrator.redact import remember

Json = dict[str, Any]


def _error_message(raw: bytes) -> str:
    """Unleash answers errors with ``{"name", "message", "details"}``; fall back to the raw body."""
    text = raw.decode(errors="replace")
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()[:300]
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:300]
    return text.strip()[:300]


class UnleashProvider:
    type = "unleash"

    def __init__(
        self,
        url: str,
        token: str,
        target: FlagTarget,
        *,
        project: str = "default",
        environment: str = "production",
        strategy_id: str | None = None,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.target = target
        self.project = project
        self.environment = environment
        self.strategy_id = strategy_id
        self.timeout = timeout_seconds

    # --- HTTP --------------------------------------------------------------------------------------

    def _feature_path(self) -> str:
        q = urllib.parse.quote
        return f"/api/admin/projects/{q(self.project, safe='')}/features/{q(self.target.key, safe='')}"

    def _env_path(self) -> str:
        return f"{self._feature_path()}/environments/{urllib.parse.quote(self.environment, safe='')}"

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", self.token)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = _error_message(exc.read())
            retryable = exc.code >= 500 or exc.code == 429
            hint = " (check the Admin API token)" if exc.code in (401, 403) else ""
            raise FlagProviderError(
                f"Unleash {method} {path}: {exc.code} {detail}".rstrip() + hint, retryable=retryable
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UnreachableError("Unleash", self.url, str(reason)) from None
        return json.loads(raw) if raw.strip() else None

    # --- model -------------------------------------------------------------------------------------

    def _state(self) -> tuple[Json, Json]:
        feature = self._call("GET", self._feature_path())
        envs = [e for e in feature.get("environments") or [] if e.get("name") == self.environment]
        if not envs:
            raise FlagProviderError(f"Unleash flag {self.target.key!r} has no environment {self.environment!r}")
        env = envs[0]
        strategies = [s for s in env.get("strategies") or [] if s.get("name") == "flexibleRollout"]
        if self.strategy_id is not None:
            strategies = [s for s in strategies if s.get("id") == self.strategy_id]
        if len(strategies) != 1:
            which = f"id {self.strategy_id}" if self.strategy_id else "flexibleRollout"
            raise FlagProviderError(
                f"Unleash flag {self.target.key!r} in {self.environment}: expected one {which} strategy, "
                f"found {len(strategies)}" + ("" if self.strategy_id else " (set strategyId in the spec)")
            )
        return env, strategies[0]

    @staticmethod
    def _allocation(env: Json, strategy: Json) -> Allocation:
        raw = (strategy.get("parameters") or {}).get("rollout", 0)
        try:
            percent = float(raw)
        except (TypeError, ValueError):
            raise FlagProviderError(f"Unleash strategy {strategy.get('id')}: rollout {raw!r} is not a number") from None
        return Allocation(
            percent=percent,
            enabled=bool(env.get("enabled")),
            detail=f"flexibleRollout {strategy.get('id')} rollout={raw}",
        )

    def current(self) -> Allocation:
        return self._allocation(*self._state())

    def set_percent(self, percent: float) -> Change:
        if percent != int(percent) or not 0 <= percent <= 100:
            raise FlagProviderError(f"Unleash rollouts are whole percentages 0-100, not {percent}")
        env, strategy = self._state()
        before = self._allocation(env, strategy)
        changed = False
        if before.percent != percent:
            self._call(
                "PATCH",
                f"{self._env_path()}/strategies/{urllib.parse.quote(str(strategy['id']), safe='')}",
                [{"op": "replace", "path": "/parameters/rollout", "value": str(int(percent))}],
            )
            changed = True
        if percent > 0 and not before.enabled:
            # A ramp stage is meaningless with the environment switched off. The kill switch turns
            # it off again after stopping the ramp, so a stage change racing a kill cannot win.
            self._call("POST", f"{self._env_path()}/on")
            changed = True
        after = Allocation(percent=percent, enabled=before.enabled or percent > 0, detail=before.detail)
        return Change(before=before, after=after, changed=changed)

    def turn_off(self) -> Change:
        env, strategy = self._state()
        before = self._allocation(env, strategy)
        if not before.enabled:
            return Change(before=before, after=before, changed=False)
        self._call("POST", f"{self._env_path()}/off")
        return Change(before=before, after=before.model_copy(update={"enabled": False}), changed=True)


def build(spec: Any, endpoint: Any, target: FlagTarget, clients: ProviderClients) -> UnleashProvider:
    """``spec`` picks the flag's project, environment and strategy; ``endpoint`` (the operator's) says
    where the server is and which of the worker's variables holds its token."""
    token = clients.env.get(endpoint.token_env)
    # Whatever variable the operator chose, its value is a secret from here on: no message may carry it.
    remember(token)
    if not token:
        raise FlagProviderError(
            f"the Admin API token of Unleash provider {endpoint.name!r} is missing: set {endpoint.token_env}"
        )
    return UnleashProvider(
        endpoint.url,
        token,
        target,
        project=spec.project,
        environment=spec.environment,
        strategy_id=spec.strategy_id,
        timeout_seconds=clients.timeout_seconds,
    )
