"""The sandbox cluster's Kubernetes API server: the project's one Kubernetes API double.

A stdlib ``ThreadingHTTPServer`` that answers the Kubernetes REST API well enough for the official ``kubernetes``
client (typed APIs, CustomObjectsApi, ``kubernetes.dynamic``, ``watch``) to work against it unchanged, with a
built-in controller that turns Deployments into scheduled, running, ready Pods.

    ApiServer                      this module: lifecycle, bootstrap objects, kubeconfig, Python access, CLI
     ├── Store                     apiserver_store: objects, resourceVersions, conflicts, cascade, watch log
     │    ├── apiserver_patch      merge / strategic-merge / JSON patch
     │    ├── apiserver_selectors  label and field selectors
     │    └── apiserver_resources  built-in kinds and scopes, Status errors, path parsing
     ├── Router + Handler          apiserver_http: REST routing, discovery, eviction, audit log
     └── Controller                controller: Deployment controller + scheduler + kubelet over a PodRuntime

Usage::

    server = ApiServer().start()
    server.write_kubeconfig(path)            # then kubernetes.config.load_kube_config(config_file=path)
    ...
    server.stop()

or ``python -m orchestrator.sandbox.apiserver --port 6443 --kubeconfig /tmp/kubeconfig`` until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import yaml

from orchestrator.sandbox.apiserver_http import Audit, Router, SandboxHTTPServer
from orchestrator.sandbox.apiserver_resources import ApiError
from orchestrator.sandbox.apiserver_store import Obj, Store
from orchestrator.sandbox.controller import Controller, InstantRuntime, PodRuntime

log = logging.getLogger(__name__)

BOOTSTRAP_NAMESPACES = ("default", "kube-system", "kube-public")
BOOTSTRAP_NODES = ("sandbox-node-1", "sandbox-node-2")

__all__ = ["ApiError", "ApiServer", "InstantRuntime", "PodRuntime", "main"]


def _node(name: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            },
        },
        "spec": {},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status"}],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "nodeInfo": {
                "architecture": "amd64", "bootID": "", "containerRuntimeVersion": "sandbox://1",
                "kernelVersion": "", "kubeProxyVersion": "", "kubeletVersion": "v1.33.0-sandbox",
                "machineID": "", "operatingSystem": "linux", "osImage": "sandbox", "systemUUID": "",
            },
        },
    }


class ApiServer:
    """A Kubernetes API server on ``host:port`` (port 0 picks a free one) with an optional controller thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        runtime: PodRuntime | None = None,
        controller: bool = True,
        tick: float = 0.2,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.store = Store()
        self.audit_log = Audit()
        self.controller = Controller(self.store, runtime or InstantRuntime(), tick=tick)
        self._run_controller = controller
        self._httpd: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._bootstrap()

    def _bootstrap(self) -> None:
        for ns in BOOTSTRAP_NAMESPACES:
            self.store.create("", "v1", "namespaces", None, {"metadata": {"name": ns}})
        for name in BOOTSTRAP_NODES:
            self.store.create("", "v1", "nodes", None, _node(name))

    # ------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> ApiServer:
        if self._httpd is not None:
            return self
        router = Router(self.store, self.audit_log, self.reconcile_once, lambda: f"{self.host}:{self.port}")
        self._httpd = SandboxHTTPServer((self.host, self._requested_port), router)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="sandbox-apiserver", daemon=True,
        )
        self._thread.start()
        if self._run_controller:
            self.controller.start()
        log.info("sandbox apiserver listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, end open watches, stop the controller and every pod its runtime runs."""
        self.store.close()
        self.controller.stop(stop_pods=True)
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the sandbox apiserver is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def write_kubeconfig(
        self, path: str | Path, context: str = "sandbox", namespace: str = "default", token: str = "sandbox",
    ) -> Path:
        """A kubeconfig for this server; any token is accepted, and ``namespace:<ns>`` limits it to a namespace."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": token}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}],
            "current-context": context,
            "preferences": {},
        }
        target.write_text(yaml.safe_dump(config, sort_keys=False))
        return target

    # ----------------------------------------------------------------------------------------- test access

    def audit(self, since: int = 0) -> list[dict[str, Any]]:
        """Audit entries (verb, group, version, resource, subresource, namespace, name, code, seq...)."""
        return self.audit_log.entries(since)

    def clear_audit(self) -> None:
        self.audit_log.clear()

    def reconcile_once(self) -> None:
        """One synchronous controller pass (also safe while the controller thread runs)."""
        self.controller.reconcile_once()

    def controller_paused(self) -> AbstractContextManager[None]:
        """``with server.controller_paused():`` holds the background controller; ``reconcile_once`` still works."""
        return self.controller.paused()

    # Direct, thread-safe store access for other sandbox components (no HTTP, no audit entry).

    def get(self, group: str, version: str, plural: str, namespace: str | None, name: str) -> Obj:
        return self.store.get(group, version, plural, namespace, name)

    def list(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]:
        return self.store.list(group, version, plural, namespace, label_selector, field_selector)

    def create(self, group: str, version: str, plural: str, namespace: str | None, body: Obj) -> Obj:
        return self.store.create(group, version, plural, namespace, body)

    def patch(
        self, group: str, version: str, plural: str, namespace: str | None, name: str, body: Obj,
        *, subresource: str | None = None,
    ) -> Obj:
        """A merge patch (``subresource="status"`` to change only status)."""
        return self.store.patch(group, version, plural, namespace, name, body, subresource=subresource)

    def delete(self, group: str, version: str, plural: str, namespace: str | None, name: str) -> Obj:
        return self.store.delete(group, version, plural, namespace, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the sandbox cluster's Kubernetes API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--kubeconfig", type=Path, help="write a kubeconfig for the server here")
    parser.add_argument("--no-controller", action="store_true", help="serve the API only, no pods")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s")

    server = ApiServer(host=args.host, port=args.port, controller=not args.no_controller).start()
    if args.kubeconfig:
        server.write_kubeconfig(args.kubeconfig)
        log.info("kubeconfig written to %s", args.kubeconfig)
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"sandbox apiserver: {server.url}", flush=True)
    while not done.wait(0.5):
        pass
    server.stop()
    log.info("sandbox apiserver stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
