"""The sandbox's Prometheus: the real ``prometheus`` binary scraping every ready sandbox pod.

Two halves, because they live in different processes:

* ``PrometheusServer`` writes the configuration and runs the binary (started by
  ``manager.up`` as its own process, so it keeps its data when the cluster daemon restarts);
* ``TargetsFile`` keeps the ``file_sd_configs`` file in step with the pods (used by the
  cluster daemon, which knows the pods; it registers every pod whose process runs, ready or
  not, see ``traffic.running_endpoints``); Prometheus notices the rewrite by itself, within
  its discovery manager's 5 s batching.

Files under the state directory::

    <state_dir>/prometheus/prometheus.yml     the configuration
    <state_dir>/prometheus/targets.json       file_sd targets: 127.0.0.1:<port> with pod metadata
    <state_dir>/prometheus/data/              TSDB storage
    <state_dir>/logs/prometheus.log

Series are labelled as Prometheus labels them on a real cluster, never more kindly: the targets file
carries what Kubernetes service discovery would (``__meta_kubernetes_namespace``,
``__meta_kubernetes_pod_name``, one ``__meta_kubernetes_pod_label_<name>`` per pod label, names
sanitised the same way), and the scrape job relabels them with the usual ``labelmap``. So ``track``
comes from the pod's labels: canary and baseline pods have it, the user's stable pods do not. There is
no ``honor_labels``: a label the process exports itself that clashes with a target label is kept as
``exported_<name>``, as on a cluster.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import OrchestratorError

INSTALL_HINT = "prometheus is not installed: apt-get install -y prometheus"
MIN_SCRAPE_INTERVAL = 2.0
MAX_SCRAPE_INTERVAL = 5.0


class SandboxError(OrchestratorError):
    """The local sandbox cannot do what was asked (the message says why, in one line)."""


class PrometheusMissingError(SandboxError):
    def __init__(self) -> None:
        super().__init__(INSTALL_HINT)


def find_prometheus(binary: str | None = None) -> str:
    """The path of the ``prometheus`` binary, or ``PrometheusMissingError``."""
    if binary:
        if os.path.isfile(binary) and os.access(binary, os.X_OK):
            return binary
        found = shutil.which(binary)
        if found:
            return found
        raise PrometheusMissingError()
    found = shutil.which("prometheus")
    if found:
        return found
    for candidate in ("/usr/bin/prometheus", "/usr/local/bin/prometheus"):
        if os.access(candidate, os.X_OK):
            return candidate
    raise PrometheusMissingError()


@dataclass(frozen=True)
class Target:
    """One scrape target: a pod's process, and the pod's labels (sorted pairs, so targets compare equal)."""

    namespace: str
    pod: str
    port: int
    labels: tuple[tuple[str, str], ...] = ()


_META = "__meta_kubernetes_"
_POD_LABEL = f"{_META}pod_label_"
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")

# The relabelling every Kubernetes pod-scraping job uses: pod labels become series labels.
RELABEL_CONFIGS: list[dict[str, object]] = [
    {"action": "labelmap", "regex": f"{_POD_LABEL}(.+)"},
    {"source_labels": [f"{_META}namespace"], "target_label": "namespace"},
    {"source_labels": [f"{_META}pod_name"], "target_label": "pod"},
]


def sanitise_label(name: str) -> str:
    """A Kubernetes label name as service discovery writes it: every invalid character becomes ``_``."""
    return _INVALID_LABEL_CHARS.sub("_", name)


def targets_for(endpoints: Iterable[Target], pods: Sequence[Mapping[str, object]]) -> list[Target]:
    """``endpoints`` (namespace, pod, port) with the labels of their pods, as discovery would attach them."""
    labels_of: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        if isinstance(meta, Mapping):
            labels = meta.get("labels") or {}
            key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
            labels_of[key] = tuple(sorted((str(k), str(v)) for k, v in dict(labels).items()))
    return [Target(t.namespace, t.pod, t.port, labels_of.get((t.namespace, t.pod), t.labels)) for t in endpoints]


def render_config(scrape_interval: float, targets_file: Path) -> str:
    """The Prometheus configuration (YAML is a superset of JSON, so JSON is written)."""
    interval = f"{int(scrape_interval * 1000)}ms"
    config = {
        "global": {
            "scrape_interval": interval,
            "evaluation_interval": interval,
            "scrape_timeout": f"{int(min(scrape_interval, 2.0) * 1000)}ms",
        },
        "scrape_configs": [
            {
                "job_name": "sandbox-pods",
                "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "5s"}],
                "relabel_configs": RELABEL_CONFIGS,
            }
        ],
    }
    return json.dumps(config, indent=2) + "\n"


def render_targets(targets: Iterable[Target]) -> str:
    groups = [
        {
            "targets": [f"127.0.0.1:{t.port}"],
            "labels": {
                f"{_META}namespace": t.namespace,
                f"{_META}pod_name": t.pod,
                **{f"{_POD_LABEL}{sanitise_label(k)}": v for k, v in t.labels},
                # The original names, which sanitising loses, so ``read`` gives back what was written.
                "__sandbox_pod_labels": json.dumps(dict(t.labels), sort_keys=True),
            },
        }
        for t in sorted(targets, key=lambda t: (t.namespace, t.pod, t.port))
    ]
    return json.dumps(groups, indent=2) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    # Prometheus watches the file; a rename means it never reads a half-written one.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class TargetsFile:
    """The ``file_sd`` targets file; ``update`` rewrites it only when the target set changed."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._last: frozenset[Target] | None = None

    def update(self, targets: Iterable[Target]) -> bool:
        current = frozenset(targets)
        if current == self._last and self.path.exists():
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.path, render_targets(current))
        self._last = current
        return True

    def read(self) -> list[Target]:
        try:
            groups = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return []
        out: list[Target] = []
        for group in groups:
            labels = group.get("labels") or {}
            try:
                pod_labels = tuple(sorted(json.loads(labels.get("__sandbox_pod_labels") or "{}").items()))
            except ValueError:
                pod_labels = ()
            for address in group.get("targets") or []:
                out.append(Target(
                    labels.get(f"{_META}namespace", ""), labels.get(f"{_META}pod_name", ""),
                    int(address.rsplit(":")[-1]), pod_labels,
                ))
        return out


class PrometheusServer:
    """Configuration and process of the sandbox's Prometheus."""

    def __init__(
        self,
        state_dir: Path,
        *,
        port: int = 9090,
        scrape_interval: float = 2.0,
        binary: str | None = None,
    ) -> None:
        if not MIN_SCRAPE_INTERVAL <= scrape_interval <= MAX_SCRAPE_INTERVAL:
            raise SandboxError(
                f"scrape interval must be between {MIN_SCRAPE_INTERVAL:g} and {MAX_SCRAPE_INTERVAL:g} "
                f"seconds, got {scrape_interval:g}"
            )
        self.state_dir = Path(state_dir)
        self.port = port
        self.scrape_interval = scrape_interval
        self.binary = binary
        self.home = self.state_dir / "prometheus"
        self.config_file = self.home / "prometheus.yml"
        self.targets_file = self.home / "targets.json"
        self.data_dir = self.home / "data"
        self.log_file = self.state_dir / "logs" / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            find_prometheus(self.binary),
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1d",
            # Lets a caller ask for a reload (POST /-/reload) without a signal.
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]

    def write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.config_file, render_config(self.scrape_interval, self.targets_file))
        if not self.targets_file.exists():
            TargetsFile(self.targets_file).update([])

    def start(self) -> subprocess.Popen[bytes]:
        """Write the configuration and start the binary in its own session (it outlives the caller)."""
        command = self.command()  # raises PrometheusMissingError before anything is written
        self.write_config()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                start_new_session=True,
            )

    def is_ready(self, timeout: float = 1.0) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=timeout) as resp:
                return int(resp.status) == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait_ready(self, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise SandboxError(f"prometheus exited with status {process.returncode}; see {self.log_file}")
            if self.is_ready():
                return
            time.sleep(0.1)
        raise SandboxError(f"prometheus at {self.url} was not ready after {timeout:g}s; see {self.log_file}")
