"""HTTP routing of the sandbox API server: Kubernetes REST paths onto the store, plus discovery and the audit log.

``Router.handle`` takes one parsed request and returns a ``Reply`` (a JSON body, or an iterator of watch events
streamed as chunked JSON lines). ``Handler`` is the ``http.server`` glue: it reads the request, calls the router,
records the audit entry and writes the reply. Non-Kubernetes paths under ``/_sandbox/`` serve the audit log
(``GET``/``DELETE /_sandbox/audit``) and a synchronous controller pass (``POST /_sandbox/reconcile``).

Watches (``?watch=true``) are supported: the current objects as ADDED (or the events after ``resourceVersion``),
then MODIFIED/DELETED events as they happen, until ``timeoutSeconds`` (default 60 s) or server shutdown.
"""

from __future__ import annotations

import collections
import json
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from orchestrator.sandbox import apiserver_patch as patching
from orchestrator.sandbox.apiserver_disruption import evict
from orchestrator.sandbox.apiserver_resources import (
    ALL_VERBS,
    RETURNS_DELETED_OBJECT,
    ApiError,
    ResourceInfo,
    Target,
    parse_path,
)
from orchestrator.sandbox.apiserver_store import Store

log = logging.getLogger(__name__)

KUBE_VERSION = {
    "major": "1", "minor": "33", "gitVersion": "v1.33.0-sandbox", "gitCommit": "sandbox",
    "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24",
    "compiler": "gc", "platform": "linux/amd64",
}


@dataclass
class Reply:
    code: int
    body: Any = None
    # A watch: (type, object) pairs written as newline-delimited JSON while the connection stays open.
    stream: Iterator[tuple[str, Any]] | None = None


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: bytes
    audit: dict[str, Any] = field(default_factory=dict)
    token: str = ""  # the bearer token; "namespace:a,b" is a namespaced Role's rights in a and b (see _authorize)


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


class Audit:
    """Every Kubernetes request the server answered, in order, with a sequence number for "since" queries.

    Bounded: a long-running sandbox (the traffic generator lists objects several times a second) keeps only
    the newest ``limit`` entries; sequence numbers keep counting, so "since" queries stay correct.
    """

    def __init__(self, limit: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._entries: collections.deque[dict[str, Any]] = collections.deque(maxlen=limit)
        self._seq = 0

    def add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            entry["seq"] = self._seq
            self._entries.append(entry)

    def entries(self, since: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._entries if e["seq"] > since]

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._seq

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class Router:
    """Maps requests onto the store. Stateless apart from the store and the audit log it is given."""

    def __init__(self, store: Store, audit: Audit, reconcile: Callable[[], None], address: Callable[[], str]):
        self.store = store
        self.audit = audit
        self.reconcile = reconcile
        self.address = address

    # ------------------------------------------------------------------------------------------------ entry

    def handle(self, req: Request) -> Reply:
        if req.path.startswith("/_sandbox/"):
            return self._sandbox(req)
        target = parse_path(req.path)
        if target is None:
            req.audit.update(verb="get" if req.method == "GET" else req.method.lower(), resource=None)
            if req.method != "GET":
                raise ApiError(405, f"{req.method} is not allowed on {req.path}")
            return Reply(200, self._discovery(req.path))
        return self._resource(req, target)

    def _sandbox(self, req: Request) -> Reply:
        if req.path == "/_sandbox/audit" and req.method == "GET":
            return Reply(200, self.audit.entries(int(req.query.get("since", "0") or 0)))
        if req.path == "/_sandbox/audit" and req.method == "DELETE":
            self.audit.clear()
            return Reply(200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}})
        if req.path == "/_sandbox/reconcile" and req.method == "POST":
            self.reconcile()
            return Reply(200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}})
        raise ApiError(404, f"no sandbox endpoint {req.method} {req.path}")

    # ------------------------------------------------------------------------------------------- discovery

    def _discovery(self, path: str) -> Any:
        parts = [p for p in path.split("/") if p]
        if parts == ["version"]:
            return KUBE_VERSION
        if parts in (["healthz"], ["readyz"], ["livez"]):
            return "ok"
        infos = self.store.known_resources()
        if parts == ["api"]:
            return {
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.address()}],
            }
        if parts == ["apis"]:
            groups = sorted({i.group for i in infos if i.group})
            return {
                "kind": "APIGroupList", "apiVersion": "v1",
                "groups": [self._group(g, infos) for g in groups],
            }
        if len(parts) == 2 and parts[0] == "apis" and any(i.group == parts[1] for i in infos):
            return self._group(parts[1], infos)
        if parts == ["api", "v1"]:
            return self._resource_list("", "v1", infos)
        if len(parts) == 3 and parts[0] == "apis":
            listing = self._resource_list(parts[1], parts[2], infos)
            if listing["resources"]:
                return listing
        raise ApiError(404, "the server could not find the requested resource")

    @staticmethod
    def _group(group: str, infos: list[ResourceInfo]) -> dict[str, Any]:
        versions = sorted({i.version for i in infos if i.group == group}, reverse=True)
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {
            "kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": entries,
            "preferredVersion": entries[0],
        }

    @staticmethod
    def _resource_list(group: str, version: str, infos: list[ResourceInfo]) -> dict[str, Any]:
        resources: list[dict[str, Any]] = []
        for info in sorted((i for i in infos if i.group == group and i.version == version), key=lambda i: i.plural):
            resources.append({
                "name": info.plural, "singularName": info.singular, "namespaced": info.namespaced,
                "kind": info.kind, "verbs": ALL_VERBS, "shortNames": list(info.short_names),
            })
            for sub in info.subresources:
                entry: dict[str, Any] = {
                    "name": f"{info.plural}/{sub}", "singularName": "", "namespaced": info.namespaced,
                    "kind": info.kind, "verbs": ["get", "patch", "update"],
                }
                if sub == "scale":
                    entry.update(group="autoscaling", version="v1", kind="Scale")
                elif sub == "eviction":
                    entry.update(group="policy", version="v1", kind="Eviction", verbs=["create"])
                resources.append(entry)
        return {
            "kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": resources,
        }

    # ------------------------------------------------------------------------------------------- resources

    def _resource(self, req: Request, t: Target) -> Reply:
        info = self.store.resolve(t.group, t.version, t.plural)
        verb = self._verb(req, t)
        req.audit.update(
            verb=verb, group=t.group, version=t.version, resource=t.plural, subresource=t.subresource,
            namespace=t.namespace, name=t.name,
        )
        self._authorize(req, t, verb)
        if t.namespace is not None and not info.namespaced:
            raise ApiError(404, "the server could not find the requested resource")
        if t.name is not None and info.namespaced and t.namespace is None:
            raise ApiError(404, "the server could not find the requested resource")
        allowed_sub = set(info.subresources) | ({"status"} if not info.builtin else set())
        if t.subresource is not None and t.subresource not in allowed_sub:
            raise ApiError(404, f"the server could not find the requested resource ({t.plural}/{t.subresource})")
        dry_run = bool(req.query.get("dryRun"))
        args = (t.group, t.version, t.plural, t.namespace)

        if verb == "list":
            items = self.store.list(*args, req.query.get("labelSelector"), req.query.get("fieldSelector"))
            return Reply(200, {
                "kind": f"{info.kind}List", "apiVersion": info.api_version,
                "metadata": {"resourceVersion": str(self.store.resource_version)}, "items": items,
            })
        if verb == "watch":
            match = self.store.matcher(req.query.get("labelSelector"), req.query.get("fieldSelector"))
            timeout = float(req.query.get("timeoutSeconds") or 60)
            return Reply(200, stream=self.store.watch(*args, req.query.get("resourceVersion"), match, timeout))
        if verb == "deletecollection":
            options = self._json(req, optional=True) or {}
            gone = self.store.delete_collection(
                *args, req.query.get("labelSelector"), req.query.get("fieldSelector"),
                propagation=req.query.get("propagationPolicy") or options.get("propagationPolicy"),
                dry_run=dry_run or bool(options.get("dryRun")),
            )
            return Reply(200, {
                "kind": f"{info.kind}List", "apiVersion": info.api_version,
                "metadata": {"resourceVersion": str(self.store.resource_version)}, "items": gone,
            })
        if verb == "create":
            body = self._json(req)
            if t.subresource == "eviction":
                # Like the real server: the Eviction's deleteOptions.preconditions make it conditional (409).
                options = (body or {}).get("deleteOptions") or {}
                return Reply(201, evict(self.store, str(t.namespace), str(t.name), dry_run=dry_run,
                                        preconditions=options.get("preconditions")))
            if t.name is not None:
                raise ApiError(405, f"POST is not allowed on a named {t.plural} resource")
            return Reply(201, self.store.create(*args, body, dry_run=dry_run))

        name = str(t.name)
        if verb == "get":
            if t.subresource == "scale":
                return Reply(200, self.store.get_scale(*args, name))
            return Reply(200, self.store.get(*args, name))
        if verb == "update":
            body = self._json(req)
            return Reply(200, self.store.replace(*args, name, body, subresource=t.subresource, dry_run=dry_run))
        if verb == "patch":
            body = self._json(req)
            return Reply(200, self.store.patch(
                *args, name, body, req.content_type or patching.MERGE, subresource=t.subresource, dry_run=dry_run,
            ))
        if verb == "delete":
            options = self._json(req, optional=True) or {}
            deleted = self.store.delete(
                *args, name,
                propagation=req.query.get("propagationPolicy") or options.get("propagationPolicy"),
                preconditions=options.get("preconditions"),
                dry_run=dry_run or bool(options.get("dryRun")),
            )
            if info.group_resource in RETURNS_DELETED_OBJECT or not info.builtin:
                return Reply(200, deleted)
            return Reply(200, {
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "group": t.group, "kind": t.plural, "uid": deleted["metadata"]["uid"]},
            })
        raise ApiError(405, f"{req.method} is not allowed on {req.path}")

    @staticmethod
    def _authorize(req: Request, t: Target, verb: str) -> None:
        """Any token may do anything, except ``namespace:<ns>[,<ns>...]``: the rights of a Role in those
        namespaces (what a namespace-scoped install holds), so anything cluster-wide is 403 as on a cluster."""
        if not req.token.startswith("namespace:"):
            return
        allowed = {n for n in req.token.removeprefix("namespace:").split(",") if n}
        # GET of a namespace object is authorized as a request in that namespace.
        own = t.plural == "namespaces" and t.group == "" and t.name in allowed and verb == "get"
        if t.namespace in allowed or own:
            return
        where = f'in the namespace "{t.namespace}"' if t.namespace else "at the cluster scope"
        raise ApiError(403, f'{t.plural} is forbidden: User "system:serviceaccount:{",".join(sorted(allowed))}:'
                            f'orchestrator" cannot {verb} resource "{t.plural}" in API group "{t.group}" {where}',
                       reason="Forbidden")

    @staticmethod
    def _verb(req: Request, t: Target) -> str:
        if req.method == "GET":
            if t.name is not None:
                return "get"
            return "watch" if _truthy(req.query.get("watch")) else "list"
        if req.method == "POST":
            return "create"
        if req.method == "PUT":
            return "update"
        if req.method == "PATCH":
            return "patch"
        if req.method == "DELETE":
            return "delete" if t.name is not None else "deletecollection"
        return req.method.lower()

    @staticmethod
    def _json(req: Request, optional: bool = False) -> Any:
        if not req.body.strip():
            if optional:
                return None
            raise ApiError(400, "the request has no body")
        try:
            if "yaml" in req.content_type:
                return yaml.safe_load(req.body)
            return json.loads(req.body)
        except (ValueError, yaml.YAMLError) as exc:
            raise ApiError(400, f"the request body is not valid JSON: {exc}") from None


class Handler(BaseHTTPRequestHandler):
    """``http.server`` glue; the router lives on the server object."""

    protocol_version = "HTTP/1.1"
    server: SandboxHTTPServer

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        req = Request(
            method=self.command,
            path=url.path,
            query={k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()},
            content_type=(self.headers.get("Content-Type") or "").split(";")[0].strip(),
            body=self.rfile.read(length) if length else b"",
            token=(self.headers.get("Authorization") or "").removeprefix("Bearer ").strip(),
        )
        req.audit.update(
            time=time.time(), method=self.command, path=url.path,
            userAgent=self.headers.get("User-Agent", ""),
        )
        if req.method == "PATCH":
            req.audit["patchType"] = req.content_type
        try:
            reply = self.server.router.handle(req)
        except ApiError as err:
            reply = Reply(err.code, err.status())
        except Exception:
            log.exception("sandbox apiserver: %s %s failed", self.command, self.path)
            reply = Reply(500, ApiError(500, traceback.format_exc(limit=3)).status())
        if not req.path.startswith("/_sandbox/"):
            req.audit["code"] = reply.code
            self.server.router.audit.add(req.audit)
        if reply.stream is not None:
            self._stream(reply)
        else:
            self._send_json(reply.code, reply.body)

    def _send_json(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, reply: Reply) -> None:
        assert reply.stream is not None
        self.send_response(reply.code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for kind, obj in reply.stream:
                line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
        except ApiError as err:
            line = json.dumps({"type": "ERROR", "object": err.status()}).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        try:
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Many short requests from several clients: a deeper backlog avoids refused connections under bursts.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], router: Router) -> None:
        super().__init__(address, Handler)
        self.router = router

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-request (a worker killed, a timeout) is not the server's error: a real
        # API server carries on without a traceback. Anything else is still printed.
        if isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        super().handle_error(request, client_address)
