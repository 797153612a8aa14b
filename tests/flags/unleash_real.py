"""The two Unleash servers the provider tests run against, behind one interface.

* ``DoubleUnleash``: ``orchestrator.sandbox.unleash_api``, the in-process HTTP double.
* ``RealUnleash``: a real ``unleash-server`` 7.5.1 (npm, installed into ``.unleash/`` by
  ``scripts/install-unleash.sh``) on a private PostgreSQL 15 cluster (``tests.fixtures_pg``:
  ``initdb`` in a temporary directory, a free port of 127.0.0.1). Both listen on 127.0.0.1 only;
  one server serves the whole session and each test uses its own feature names.

``writes(name)`` is what reached the server after the feature was set up: for the double its
request log, for the real server Unleash's own event log (``feature-strategy-update`` with the
new ``rollout``, ``feature-environment-enabled`` / ``-disabled``). Unleash records an event
only when something changed, so a request that changes nothing (``/on`` of an enabled
environment) is not a write on either server.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import quote

from orchestrator.sandbox.unleash_api import UnleashAdminServer
from tests.fixtures_pg import PostgresCluster
from tests.fixtures_temporal import free_port

Json = dict[str, Any]

ROOT = Path(__file__).resolve().parents[2]
UNLEASH_PACKAGE = ROOT / ".unleash" / "node_modules" / "unleash-server"
UNLEASH_VERSION = "7.5.1"
ENTRY = Path(__file__).with_name("unleash_server.mjs")
INSTALL_HINT = "run scripts/install-unleash.sh (make test does)"
STARTUP_TIMEOUT = 180.0


@dataclass(frozen=True)
class Write:
    kind: Literal["rollout", "on", "off"]
    value: str | None = None  # the new rollout, for kind "rollout"


class UnleashBackend(Protocol):
    kind: str
    url: str
    token: str

    def add_flexible_rollout(
        self,
        name: str,
        *,
        rollout: int = 0,
        enabled: bool = True,
        stickiness: str = "default",
        group_id: str | None = None,
        constraints: Sequence[Json] = (),
        title: str = "",
    ) -> str:
        """Create a feature with one flexibleRollout strategy in ``production``; returns the strategy id."""
        ...

    def strategy(self, name: str) -> Json: ...

    def enabled(self, name: str) -> bool: ...

    def writes(self, name: str) -> list[Write]: ...


# --- the double ------------------------------------------------------------------------------------


class DoubleUnleash:
    kind = "double"

    def __init__(self, server: UnleashAdminServer) -> None:
        self.server = server
        self.url = server.url
        self.token = server.state.token

    def add_flexible_rollout(
        self,
        name: str,
        *,
        rollout: int = 0,
        enabled: bool = True,
        stickiness: str = "default",
        group_id: str | None = None,
        constraints: Sequence[Json] = (),
        title: str = "",
    ) -> str:
        return self.server.state.add_flexible_rollout(
            name, rollout=rollout, enabled=enabled, stickiness=stickiness, group_id=group_id,
            constraints=constraints, title=title,
        )

    def strategy(self, name: str) -> Json:
        return self.server.state.strategy(name)

    def enabled(self, name: str) -> bool:
        return self.server.state.enabled(name)

    def writes(self, name: str) -> list[Write]:
        return [
            Write(e.kind, e.value) for e in self.server.state.changes
            if e.feature == name and e.environment == "production"
        ]


# --- the real server -------------------------------------------------------------------------------


@dataclass
class StartupTimes:
    postgres_seconds: float = 0.0  # initdb + start + createdb
    unleash_seconds: float = 0.0  # node start, migrations, until /health answers


@dataclass
class RealUnleash:
    """``start()`` a private PostgreSQL cluster and an Unleash on it; ``stop()`` removes everything."""

    kind: str = "real"
    token: str = field(default_factory=lambda: f"*:*.{secrets.token_hex(16)}")
    url: str = ""
    times: StartupTimes = field(default_factory=StartupTimes)
    _dir: Path | None = None
    _pg: PostgresCluster | None = None
    _node: subprocess.Popen[bytes] | None = None
    _baseline: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def missing() -> str | None:
        """Why a real Unleash cannot run here, or None."""
        postgres = PostgresCluster.missing()
        if postgres is not None:
            return f"{postgres}; {INSTALL_HINT}"
        package = UNLEASH_PACKAGE / "package.json"
        if not package.exists():
            return f"unleash-server is not installed ({package} is missing): {INSTALL_HINT}"
        version = json.loads(package.read_text()).get("version")
        if version != UNLEASH_VERSION:
            return f"unleash-server {version} is installed, the tests need {UNLEASH_VERSION}: {INSTALL_HINT}"
        if shutil.which("node") is None:
            return "node is not on PATH (unleash-server needs Node 20+)"
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            return "running as root needs runuser to start PostgreSQL as the postgres user"
        return None

    @property
    def log_dir(self) -> Path:
        assert self._dir is not None
        return self._dir

    def start(self) -> RealUnleash:
        t0 = time.monotonic()
        self._dir = Path(tempfile.mkdtemp(prefix="orchestrator-unleash-"))
        self._pg = PostgresCluster().start()
        self._pg.create_database(name="unleash")
        pg_port = self._pg.port
        t1 = time.monotonic()
        self.times.postgres_seconds = t1 - t0

        http_port = free_port()
        self.url = f"http://127.0.0.1:{http_port}"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DATABASE_", "HTTP_", "INIT_", "UNLEASH_", "AUTH_", "BASE_URI"))}
        env["TZ"] = "UTC"
        node = shutil.which("node")
        assert node is not None
        with (self._dir / "unleash.log").open("wb") as log:
            self._node = subprocess.Popen(
                [node, str(ENTRY), str(UNLEASH_PACKAGE), str(pg_port), "unleash", str(http_port), self.token],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=self._dir,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    if json.load(resp).get("health") == "GOOD":
                        break
            except (OSError, ValueError):
                pass
            if self._node.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"unleash-server did not start:\n{self.log_tail()}")
            time.sleep(0.2)
        self.times.unleash_seconds = time.monotonic() - t1
        return self

    def log_tail(self) -> str:
        if self._dir is None:
            return ""
        parts = []
        path = self._dir / "unleash.log"
        if path.exists():
            parts.append(f"--- unleash.log\n{path.read_text(errors='replace')[-3000:]}")
        if self._pg is not None:
            parts.append(f"--- postgres.log\n{self._pg.log_tail()}")
        return "\n".join(parts)

    def stop(self) -> None:
        if self._node is not None:
            self._node.terminate()
            try:
                self._node.wait(15)
            except subprocess.TimeoutExpired:
                self._node.kill()
                self._node.wait(5)
            self._node = None
        if self._pg is not None:
            self._pg.stop()
            self._pg = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    # --- Admin API, for setting up and observing -----------------------------------------------------

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", self.token)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')}") from None
        return json.loads(raw) if raw.strip() else None

    @staticmethod
    def _feature(name: str) -> str:
        return f"/api/admin/projects/default/features/{quote(name, safe='')}"

    def add_flexible_rollout(
        self,
        name: str,
        *,
        rollout: int = 0,
        enabled: bool = True,
        stickiness: str = "default",
        group_id: str | None = None,
        constraints: Sequence[Json] = (),
        title: str = "",
    ) -> str:
        self.admin("POST", "/api/admin/projects/default/features", {"name": name, "type": "release"})
        strategy = self.admin("POST", f"{self._feature(name)}/environments/production/strategies", {
            "name": "flexibleRollout",
            "title": title,
            "constraints": list(constraints),
            "parameters": {"rollout": str(rollout), "stickiness": stickiness, "groupId": group_id or name},
        })
        if enabled:  # new features start disabled in every environment
            self.admin("POST", f"{self._feature(name)}/environments/production/on")
        self._baseline[name] = max((e["id"] for e in self._events(name)), default=0)
        return str(strategy["id"])

    def _production(self, name: str) -> Json:
        feature = self.admin("GET", self._feature(name))
        env: Json = next(e for e in feature["environments"] if e["name"] == "production")
        return env

    def strategy(self, name: str) -> Json:
        strategies: list[Json] = self._production(name)["strategies"]
        return strategies[0]

    def enabled(self, name: str) -> bool:
        return bool(self._production(name)["enabled"])

    def _events(self, name: str) -> list[Json]:
        events: list[Json] = self.admin("GET", f"/api/admin/events/{quote(name, safe='')}")["events"]
        return sorted(events, key=lambda e: int(e["id"]))

    def writes(self, name: str) -> list[Write]:
        out: list[Write] = []
        for event in self._events(name):
            if event["id"] <= self._baseline.get(name, 0) or event.get("environment") != "production":
                continue
            if event["type"] == "feature-strategy-update":
                out.append(Write("rollout", str(event["data"]["parameters"]["rollout"])))
            elif event["type"] == "feature-environment-enabled":
                out.append(Write("on"))
            elif event["type"] == "feature-environment-disabled":
                out.append(Write("off"))
        return out
