"""Virtual pods: the sandbox cluster at the scale of a thousand rollouts, without a thousand processes.

The ordinary sandbox starts one process per pod and lets Prometheus scrape each of them. That is the
faithful picture for a demo, but at the scale benchmark's size (a thousand rollouts, three or four
pods each) the processes alone would take the machine. In this mode:

* ``VirtualPods`` is the controller's ``PodRuntime``: a pod is "started" by recording it (namespace,
  name, labels, the container's environment and the time); it reports ready ``ready_after`` seconds
  later, so pods still pass through Pending as on a cluster, and it never dies;
* ``SyntheticExporter`` is ONE HTTP endpoint serving the metrics of every virtual pod, computed from
  the clock: ``http_requests_total{namespace,pod,<pod labels>,code}`` grows by ``rps`` per second per
  pod, a share ``ERROR_RATIO`` (from the container's environment, default 0) of it with ``code="500"``,
  and ``http_request_duration_seconds`` observes ``LATENCY_SECONDS`` (default 0.05) per request;
* ``VirtualPrometheus`` runs the real ``prometheus`` binary scraping that one endpoint with
  ``honor_labels: true`` — how an aggregating exporter is scraped on a real cluster: the series keep
  the namespace, pod and pod labels the exporter gives them. As in the per-process mode, the labels come
  from the pod's own labels, so the user's stable pods carry no ``track``.

The values are computed, not simulated request by request, so a scrape costs one pass over the pods
and the series are exact: ``rate()`` over any window equals ``rps`` once two scrapes exist.

``python -m orchestrator.sandbox.virtual --port P --exporter-port E --kubeconfig F`` runs the API server
(with its controller) and the exporter in one process until SIGTERM, so a benchmark can sample its
CPU apart from the rest.
"""

from __future__ import annotations

import argparse
import copy
import json
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from orchestrator.sandbox.apiserver import ApiServer
from orchestrator.sandbox.prometheus import PrometheusServer, _atomic_write, sanitise_label

DEFAULT_RPS = 10.0
DEFAULT_LATENCY = 0.05
BUCKETS = (0.1, 0.25, 0.5, 1.0)
# Set by the scrape itself, or by Prometheus: an exported label of these names would be misleading.
_RESERVED = {"job", "instance", "le", "code", "__name__"}


@dataclass(frozen=True)
class VirtualPod:
    namespace: str
    name: str
    labels: tuple[tuple[str, str], ...]
    started: float
    error_ratio: float
    latency: float


def _env(pod: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for container in (pod.get("spec") or {}).get("containers") or []:
        for item in container.get("env") or []:
            if "value" in item:
                out[str(item.get("name"))] = str(item["value"])
    return out


def _number(text: str | None, default: float, low: float, high: float) -> float:
    try:
        value = float(text) if text is not None else default
    except ValueError:
        return default
    return value if low <= value <= high else default


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class VirtualPods:
    """A ``PodRuntime`` whose pods are records, and the source of the exporter's series."""

    def __init__(self, *, ready_after: float = 1.0, rps: float = DEFAULT_RPS,
                 clock: Any = time.time) -> None:
        self.ready_after = ready_after
        self.rps = rps
        self._clock = clock
        self._pods: dict[str, VirtualPod] = {}  # uid -> pod
        self._lock = threading.Lock()

    # ---- PodRuntime ---------------------------------------------------------------------------

    def start(self, pod: dict[str, Any]) -> Mapping[str, Any] | None:
        meta = pod.get("metadata") or {}
        env = _env(pod)
        record = VirtualPod(
            namespace=str(meta.get("namespace") or ""), name=str(meta.get("name") or ""),
            labels=tuple(sorted((str(k), str(v)) for k, v in (meta.get("labels") or {}).items())),
            started=self._clock(), error_ratio=_number(env.get("ERROR_RATIO"), 0.0, 0.0, 1.0),
            latency=_number(env.get("LATENCY_SECONDS"), DEFAULT_LATENCY, 0.0, 60.0))
        with self._lock:
            self._pods[str(meta.get("uid"))] = record
        return None

    def stop(self, pod: dict[str, Any]) -> None:
        with self._lock:
            self._pods.pop(str((pod.get("metadata") or {}).get("uid")), None)

    def ready(self, pod: dict[str, Any]) -> bool:
        with self._lock:
            record = self._pods.get(str((pod.get("metadata") or {}).get("uid")))
        return record is not None and self._clock() - record.started >= self.ready_after

    def alive(self, pod: dict[str, Any]) -> bool:
        return True

    # ---- the exporter's view ------------------------------------------------------------------

    def count(self) -> int:
        # Not ``__len__``: an empty runtime must stay truthy where a caller writes ``runtime or default``.
        with self._lock:
            return len(self._pods)

    def exposition(self) -> str:
        """Every pod's series in the Prometheus text format, as of now."""
        now = self._clock()
        with self._lock:
            pods = list(self._pods.values())
        # The text format wants each family's lines together, after its TYPE line.
        requests = ["# TYPE http_requests_total counter"]
        durations = ["# TYPE http_request_duration_seconds histogram"]
        for pod in pods:
            if now - pod.started < self.ready_after:
                continue  # not serving yet: no series, as a pod that is not ready gets no traffic
            total = self.rps * (now - pod.started)
            errors = total * pod.error_ratio
            base = ",".join([f'namespace="{_escape(pod.namespace)}"', f'pod="{_escape(pod.name)}"']
                            + [f'{sanitise_label(k)}="{_escape(v)}"' for k, v in pod.labels
                               if sanitise_label(k) not in _RESERVED | {"namespace", "pod"}])
            requests.append(f'http_requests_total{{{base},code="200"}} {total - errors:.3f}')
            requests.append(f'http_requests_total{{{base},code="500"}} {errors:.3f}')
            for le in BUCKETS:
                durations.append(f'http_request_duration_seconds_bucket{{{base},le="{le}"}} '
                                 f'{total if pod.latency <= le else 0.0:.3f}')
            durations.append(f'http_request_duration_seconds_bucket{{{base},le="+Inf"}} {total:.3f}')
            durations.append(f"http_request_duration_seconds_sum{{{base}}} {total * pod.latency:.3f}")
            durations.append(f"http_request_duration_seconds_count{{{base}}} {total:.3f}")
        lines = requests + durations
        return "\n".join(lines) + "\n"


class SyntheticExporter:
    """One ``/metrics`` endpoint on 127.0.0.1 serving ``VirtualPods.exposition()``."""

    def __init__(self, pods: VirtualPods, port: int = 0) -> None:
        self.pods = pods
        exposition = pods.exposition

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = exposition().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="virtual-exporter", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> SyntheticExporter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def render_config(scrape_interval: float, exporter_port: int) -> str:
    interval = f"{int(scrape_interval * 1000)}ms"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval,
                   "scrape_timeout": f"{int(min(scrape_interval, 4.0) * 1000)}ms"},
        "scrape_configs": [{
            "job_name": "virtual-pods",
            # An aggregating exporter speaks for many pods: its namespace/pod labels are kept as given.
            "honor_labels": True,
            "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
        }],
    }
    return json.dumps(config, indent=2) + "\n"


class VirtualPrometheus(PrometheusServer):
    """The real Prometheus, configured to scrape the one synthetic exporter."""

    def __init__(self, state_dir: Path, exporter_port: int, *, port: int = 9090,
                 scrape_interval: float = 2.0, binary: str | None = None) -> None:
        super().__init__(state_dir, port=port, scrape_interval=scrape_interval, binary=binary)
        self.exporter_port = exporter_port

    def write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.config_file, render_config(self.scrape_interval, self.exporter_port))


def add_nodes(server: ApiServer, total: int) -> None:
    """Grow the cluster to ``total`` nodes, each like the first: a node holds 110 pods, as on a cluster,
    so a thousand rollouts need about forty of them."""
    first = server.list("", "v1", "nodes")[0]
    for index in range(len(server.list("", "v1", "nodes")), total):
        name = f"sandbox-node-{index + 1}"
        node = copy.deepcopy(first)
        node["metadata"] = {"name": name, "labels": {**first["metadata"]["labels"], "kubernetes.io/hostname": name}}
        node["status"]["addresses"] = [{"type": "InternalIP", "address": "127.0.0.1"},
                                       {"type": "Hostname", "address": name}]
        server.store.create("", "v1", "nodes", None, node)


def serve(port: int, exporter_port: int, kubeconfig: Path, *, tick: float, ready_after: float,
          nodes: int) -> None:
    """The API server with virtual pods and the exporter, until SIGTERM or SIGINT."""
    pods = VirtualPods(ready_after=ready_after)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    exporter = SyntheticExporter(pods, exporter_port).start()
    with ApiServer(port=port, runtime=pods, tick=tick) as server:
        add_nodes(server, nodes)
        server.write_kubeconfig(kubeconfig)
        print(f"ready {server.url} exporter 127.0.0.1:{exporter.port}", flush=True)
        stop.wait()
    exporter.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--exporter-port", type=int, default=0)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--tick", type=float, default=1.0, help="controller pass interval (seconds)")
    parser.add_argument("--ready-after", type=float, default=1.0, help="seconds a new pod stays unready")
    parser.add_argument("--nodes", type=int, default=40, help="nodes of 110 pods each")
    args = parser.parse_args()
    serve(args.port, args.exporter_port, args.kubeconfig, tick=args.tick, ready_after=args.ready_after,
          nodes=args.nodes)


if __name__ == "__main__":
    main()
