"""Pods as local processes: the sandbox's container runtime.

``ProcessRuntime`` implements the API server's ``PodRuntime`` protocol. Each pod becomes
one process of the bundled demo service (``python -m orchestrator.sandbox.demo_service``):

* the runtime binds a listening socket on 127.0.0.1 with a free port and hands it to the
  child (``LISTEN_FD``), so the recorded port can never be taken in between;
* the child's environment is the pod's first container ``env`` (name/value pairs) plus
  NAMESPACE, APP (label ``app``), TRACK (label ``track``; empty for a pod without it, as the
  user's stable pods are on a real cluster, so no ``track`` is exported for them), VERSION
  (label ``version``, else the image tag), POD and PORT;
* ``start`` returns what the controller merges into the pod: the annotations
  ``sandbox.orchestrator.dev/port`` and ``.../pid``, and ``status.podIP`` 127.0.0.1;
* ``ready`` asks the process's ``/healthz``; ``alive`` tells whether it has exited.

Files under the state directory::

    <state_dir>/pods/<namespace>_<pod>.pid   one PID per running pod (``kill_recorded`` uses them)
    <state_dir>/logs/pods/<namespace>_<pod>.log

The PID files let ``manager.down`` stop pods left behind if the process that owned the
runtime was killed without a chance to clean up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PORT_ANNOTATION = "sandbox.orchestrator.dev/port"
PID_ANNOTATION = "sandbox.orchestrator.dev/pid"
# Found in every pod process's command line; checked before killing a recorded PID so a
# PID the system has since reused for something else is never signalled.
POD_COMMAND_MARKER = "orchestrator.sandbox.demo_service"
# Environment names the runtime owns; a pod template cannot override them.
RESERVED_ENV = ("PORT", "LISTEN_FD", "NAMESPACE", "APP", "TRACK", "VERSION", "POD", "WATCH_PARENT")


@dataclass
class _Proc:
    key: str
    namespace: str
    name: str
    port: int
    popen: subprocess.Popen[bytes]
    pid_file: Path


def pod_key(pod: dict[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name') or ''}"


def image_tag(image: str) -> str:
    """``registry:5000/demo:v2`` -> ``v2``; no tag -> ``latest``; a digest is kept short."""
    name = image.rsplit("/", 1)[-1]
    if "@" in name:
        return name.split("@", 1)[1][:19]
    _, sep, tag = name.partition(":")
    return tag if sep and tag else "latest"


def pod_environment(pod: dict[str, Any], port: int) -> dict[str, str]:
    """The demo service's environment for ``pod`` (the part that comes from the pod itself)."""
    meta = pod.get("metadata") or {}
    labels: dict[str, str] = meta.get("labels") or {}
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    container: dict[str, Any] = containers[0] or {}
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        # valueFrom (secrets, field refs) has no meaning for a local process; only literals apply.
        if isinstance(item, dict) and item.get("name") and "value" in item:
            env[str(item["name"])] = str(item["value"])
    for name in RESERVED_ENV:
        env.pop(name, None)
    namespace = meta.get("namespace") or "default"
    env.update(
        PORT=str(port),
        NAMESPACE=namespace,
        APP=labels.get("app") or meta.get("name") or "demo",
        TRACK=labels.get("track") or "",
        VERSION=labels.get("version") or image_tag(str(container.get("image") or "")),
        POD=meta.get("name") or "",
    )
    return env


def pid_alive(pid: int, marker: str | None = None) -> bool:
    """Whether ``pid`` is a live (not zombie) process, and, if ``marker`` is given, one of ours."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        # It exists but belongs to someone else: certainly not one of ours.
        return marker is None
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True  # no procfs: trust kill(0)
    try:
        stat = (proc / "stat").read_text()
        # The state letter follows the parenthesised command name, which may itself contain ')'.
        if stat[stat.rindex(")") + 2] in "ZX":
            return False
        if marker is not None:
            return marker in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError, IndexError):
        return False
    return True


def reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def terminate_pid(pid: int, marker: str | None, timeout: float = 5.0) -> bool:
    """SIGTERM, wait up to ``timeout``, then SIGKILL. True when the process was ours and is gone."""
    if not pid_alive(pid, marker):
        reap(pid)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap(pid)
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and pid_alive(pid):
        reap(pid)
        time.sleep(0.05)
    return True


def kill_recorded(state_dir: Path) -> list[str]:
    """Stop every pod process recorded under ``state_dir/pods`` (leftovers); returns what it stopped."""
    stopped: list[str] = []
    pods_dir = Path(state_dir) / "pods"
    if not pods_dir.is_dir():
        return stopped
    for pid_file in sorted(pods_dir.glob("*.pid")):
        try:
            pid = int(pid_file.read_text().strip() or "0")
        except (OSError, ValueError):
            pid = 0
        if pid and terminate_pid(pid, POD_COMMAND_MARKER, timeout=3.0):
            stopped.append(f"pod {pid_file.stem.replace('_', '/', 1)} (pid {pid})")
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()
    with contextlib.suppress(OSError):
        pods_dir.rmdir()
    return stopped


class ProcessRuntime:
    """Runs each pod as a local demo-service process (the ``PodRuntime`` protocol)."""

    def __init__(
        self,
        state_dir: Path,
        *,
        python: str = sys.executable,
        health_timeout: float = 0.5,
        stop_timeout: float = 3.0,
        command: list[str] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.python = python
        self.health_timeout = health_timeout
        self.stop_timeout = stop_timeout
        self.command = command or [python, "-m", POD_COMMAND_MARKER]
        self._procs: dict[str, _Proc] = {}
        self._lock = threading.Lock()
        self._pids_dir = self.state_dir / "pods"
        self._logs_dir = self.state_dir / "logs" / "pods"

    # -- PodRuntime protocol -------------------------------------------------------------

    def start(self, pod: dict[str, Any]) -> dict[str, Any] | None:
        key = pod_key(pod)
        with self._lock:
            existing = self._procs.get(key)
        if existing is not None and existing.popen.poll() is None:
            # Starting twice is a controller retry: report the same process again.
            return self._fields(existing)
        if existing is not None:
            self._forget(existing)
        namespace, _, name = key.partition("/")
        self._pids_dir.mkdir(parents=True, exist_ok=True)
        self._logs_dir.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            port = int(sock.getsockname()[1])
            env = dict(os.environ)
            env.update(pod_environment(pod, port))
            env["LISTEN_FD"] = str(sock.fileno())
            env["WATCH_PARENT"] = "1"
            # The package must be importable in the child even when run from elsewhere.
            root = str(Path(__file__).resolve().parents[2])
            env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
            slug = f"{namespace}_{name}"
            with open(self._logs_dir / f"{slug}.log", "ab") as log:
                popen = subprocess.Popen(
                    self.command,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(sock.fileno(),),
                    close_fds=True,
                )
        finally:
            sock.close()
        pid_file = self._pids_dir / f"{slug}.pid"
        pid_file.write_text(f"{popen.pid}\n")
        proc = _Proc(key=key, namespace=namespace, name=name, port=port, popen=popen, pid_file=pid_file)
        with self._lock:
            self._procs[key] = proc
        return self._fields(proc)

    def stop(self, pod: dict[str, Any]) -> None:
        with self._lock:
            proc = self._procs.pop(pod_key(pod), None)
        if proc is not None:
            self._terminate(proc)

    def ready(self, pod: dict[str, Any]) -> bool:
        proc = self._get(pod)
        if proc is None or proc.popen.poll() is not None:
            return False
        try:
            url = f"http://127.0.0.1:{proc.port}/healthz"
            with urllib.request.urlopen(url, timeout=self.health_timeout) as resp:
                return int(resp.status) == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def alive(self, pod: dict[str, Any]) -> bool:
        proc = self._get(pod)
        # A pod this runtime never started (or lost track of) has no process: report it dead so
        # the controller recreates it instead of keeping a pod nothing serves.
        return proc is not None and proc.popen.poll() is None

    # -- extras --------------------------------------------------------------------------

    def port_of(self, pod: dict[str, Any]) -> int | None:
        proc = self._get(pod)
        return proc.port if proc else None

    def pid_of(self, pod: dict[str, Any]) -> int | None:
        proc = self._get(pod)
        return proc.popen.pid if proc else None

    def pids(self) -> dict[str, int]:
        """``namespace/name`` -> PID of every process the runtime currently tracks."""
        with self._lock:
            return {key: p.popen.pid for key, p in self._procs.items()}

    def stop_all(self) -> None:
        with self._lock:
            procs = list(self._procs.values())
            self._procs.clear()
        # Signal them all first so they shut down in parallel, then wait for each.
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.popen.terminate()
        for proc in procs:
            self._terminate(proc)

    # -- internals -----------------------------------------------------------------------

    def _get(self, pod: dict[str, Any]) -> _Proc | None:
        with self._lock:
            return self._procs.get(pod_key(pod))

    def _fields(self, proc: _Proc) -> dict[str, Any]:
        # The controller merges ``annotations``/``labels`` into the pod's metadata and ``status`` into its status.
        return {
            "annotations": {PORT_ANNOTATION: str(proc.port), PID_ANNOTATION: str(proc.popen.pid)},
            "status": {"podIP": "127.0.0.1", "hostIP": "127.0.0.1"},
        }

    def _terminate(self, proc: _Proc) -> None:
        popen = proc.popen
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.terminate()
            try:
                popen.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                popen.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    popen.wait(timeout=2.0)
        self._forget(proc)

    def _forget(self, proc: _Proc) -> None:
        proc.popen.poll()
        with contextlib.suppress(FileNotFoundError):
            # Only remove the file if it still names this process (a new pod may reuse the name).
            if proc.pid_file.read_text().strip() == str(proc.popen.pid):
                proc.pid_file.unlink()
