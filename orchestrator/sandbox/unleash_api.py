"""A small HTTP server that follows the part of Unleash's documented Admin API the flag ramps use.

It stands in for a real Unleash where starting one (Node 20+, ``unleash-server`` and
PostgreSQL) is not worth it. It keeps features in memory, checks the
``Authorization`` header like Unleash does for admin tokens (the raw token, no scheme),
answers with Unleash's JSON shapes (the provider tests run against this double and a real
Unleash 7.5.1, so differences show), and records every write request in ``audit`` and every
change it made in ``changes``, the way Unleash's event log does: ``/on`` of an enabled
environment, or an update to the values a strategy already has, changes nothing and is not
logged. Tests assert from these what reached the provider and how often::

    GET   /health
    GET   /api/admin/projects/{project}/features/{name}
    GET   /api/admin/projects/{project}/features/{name}/environments/{env}/strategies[/{id}]
    PUT   /api/admin/projects/{project}/features/{name}/environments/{env}/strategies/{id}
    PATCH /api/admin/projects/{project}/features/{name}/environments/{env}/strategies/{id}  (JSON Patch)
    POST  /api/admin/projects/{project}/features/{name}/environments/{env}/on|off
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import unquote

Json = dict[str, Any]

_FEATURE = re.compile(r"^/api/admin/projects/([^/]+)/features/([^/]+)(/environments/([^/]+)(/.*)?)?$")


@dataclass
class AuditEntry:
    method: str
    path: str
    body: Any


@dataclass(frozen=True)
class ChangeEntry:
    """One entry of the event log: a strategy update (``kind="rollout"``, the new value) or on/off."""

    feature: str
    environment: str
    kind: Literal["rollout", "on", "off"]
    value: str | None = None


@dataclass
class UnleashState:
    token: str
    features: dict[tuple[str, str], Json] = field(default_factory=dict)
    audit: list[AuditEntry] = field(default_factory=list)
    changes: list[ChangeEntry] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_flexible_rollout(
        self,
        name: str,
        *,
        project: str = "default",
        environment: str = "production",
        rollout: int = 0,
        enabled: bool = True,
        stickiness: str = "default",
        group_id: str | None = None,
        constraints: Sequence[Json] = (),
        title: str = "",
    ) -> str:
        """Create a feature with one flexibleRollout strategy in ``environment``; returns the strategy id."""
        strategy_id = str(uuid.uuid4())
        strategy = {
            "id": strategy_id,
            "name": "flexibleRollout",
            "title": title,
            "disabled": False,
            "sortOrder": 0,
            "constraints": copy.deepcopy(list(constraints)),
            "segments": [],
            "variants": [],
            "parameters": {"rollout": str(rollout), "stickiness": stickiness, "groupId": group_id or name},
        }
        with self.lock:
            self.features[(project, name)] = {
                "name": name,
                "project": project,
                "type": "release",
                "description": "",
                "stale": False,
                "archived": False,
                "impressionData": False,
                "environments": [
                    {"name": environment, "type": "production", "enabled": enabled, "strategies": [strategy]}
                ],
            }
        return strategy_id

    def strategy(self, name: str, *, project: str = "default", environment: str = "production") -> Json:
        with self.lock:
            env = self._env(project, name, environment)
            assert env is not None
            return copy.deepcopy(env["strategies"][0])

    def enabled(self, name: str, *, project: str = "default", environment: str = "production") -> bool:
        with self.lock:
            env = self._env(project, name, environment)
            assert env is not None
            return bool(env["enabled"])

    def _env(self, project: str, name: str, environment: str) -> Json | None:
        feature = self.features.get((project, name))
        if feature is None:
            return None
        for env in feature["environments"]:
            if env["name"] == environment:
                return env  # type: ignore[no-any-return]
        return None


def _apply_patch(doc: Json, ops: list[Json]) -> Json:
    out = copy.deepcopy(doc)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in str(op["path"]).split("/")[1:]]
        parent: Any = out
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if op["op"] in ("replace", "add"):
            if op["op"] == "replace" and last not in parent:
                raise KeyError(op["path"])
            parent[last] = op["value"]
        elif op["op"] == "remove":
            del parent[last]
        else:
            raise ValueError(f"unsupported op {op['op']}")
    return out


class _Handler(BaseHTTPRequestHandler):
    state: UnleashState

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any = None) -> None:
        raw = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _error(self, status: int, name: str, message: str) -> None:
        self._send(status, {"id": str(uuid.uuid4()), "name": name, "message": message,
                            "details": [{"message": message}]})

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else None

    def _route(self, method: str) -> None:
        if self.path == "/health":
            self._send(200, {"health": "GOOD"})
            return
        if self.headers.get("Authorization") != self.state.token:
            self._error(401, "UnauthorizedError", "You must log in to use Unleash.")
            return
        match = _FEATURE.match(self.path.split("?")[0])
        if not match:
            self._error(404, "NotFoundError", "Not found")
            return
        project, name = unquote(match.group(1)), unquote(match.group(2))
        env_name = unquote(match.group(4)) if match.group(4) else None
        rest = match.group(5) or ""
        body: Any = self._body() if method in ("PUT", "PATCH", "POST") else None
        st = self.state
        with st.lock:
            feature = st.features.get((project, name))
            if feature is None:
                self._error(404, "NotFoundError", f'There\'s no feature named "{name}" in project "{project}".')
                return
            if env_name is None:
                if method == "GET":
                    self._send(200, feature)
                else:
                    self._error(405, "MethodNotAllowed", "Method not allowed")
                return
            env = st._env(project, name, env_name)
            if env is None:
                self._error(404, "NotFoundError", f"Feature {name} does not have environment {env_name}")
                return
            if method == "POST" and rest in ("/on", "/off"):
                st.audit.append(AuditEntry(method, self.path, body))
                if env["enabled"] != (rest == "/on"):
                    env["enabled"] = rest == "/on"
                    st.changes.append(ChangeEntry(name, env_name, "on" if env["enabled"] else "off"))
                self._send(200)
                return
            if rest == "/strategies" and method == "GET":
                self._send(200, env["strategies"])
                return
            sid = rest[len("/strategies/") :] if rest.startswith("/strategies/") else None
            strategies = [s for s in env["strategies"] if s["id"] == sid]
            if sid is None or not strategies:
                self._error(404, "NotFoundError", f"Could not find strategy with id: {sid}")
                return
            strategy = strategies[0]
            if method == "GET":
                self._send(200, strategy)
                return
            try:
                if method == "PUT":
                    new = {**strategy, **body, "id": strategy["id"]}
                elif method == "PATCH":
                    new = _apply_patch(strategy, body)
                else:
                    self._error(405, "MethodNotAllowed", "Method not allowed")
                    return
                # Like Unleash 7.5.1, a strategy update does not range-check ``rollout`` (a PATCH
                # to "250" is stored as is): keeping it within 0-100 is the client's job.
            except (KeyError, ValueError, TypeError, IndexError) as exc:
                self._error(400, "BadDataError", f"Request validation failed: {exc}")
                return
            st.audit.append(AuditEntry(method, self.path, body))
            if new != strategy:  # Unleash logs no event for an update that changes nothing
                st.changes.append(
                    ChangeEntry(name, env_name, "rollout", str(new.get("parameters", {}).get("rollout"))))
            strategy.clear()
            strategy.update(new)
            self._send(200, strategy)

    def do_GET(self) -> None:
        self._route("GET")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def do_POST(self) -> None:
        self._route("POST")


class UnleashAdminServer:
    """``with UnleashAdminServer(token) as server: server.url, server.state``."""

    def __init__(self, token: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = UnleashState(token=token)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> UnleashAdminServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> UnleashAdminServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
