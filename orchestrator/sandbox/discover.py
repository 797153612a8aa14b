"""Which cluster does a command talk to? The sandbox, when nothing else is configured.

A newcomer runs ``make demo KEEP=1`` and then ``orchestrator canary run ...``: with no
kubeconfig anywhere, the command would fail on ``~/.kube/config``. The rule, in order:

1. ``--kubeconfig`` / ``ORCHESTRATOR_KUBECONFIG`` / ``KUBECONFIG``: that file;
2. in a pod (``KUBERNETES_SERVICE_HOST``): the in-cluster service account;
3. ``~/.kube/config`` when it exists;
4. a sandbox running in the state directory (``.sandbox`` or ``ORCHESTRATOR_STATE_DIR``): its
   kubeconfig, and its Temporal and Prometheus where those were not set explicitly.

A configured cluster always wins, so a sandbox left running can never capture commands meant
for a real cluster. Because falling back to the sandbox is implicit, the commands that touch a
cluster then name it in their first line (on stderr, so ``-o json`` output stays parseable);
``cluster_line`` can describe the other cases too.

Reading files only; no client library is imported here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.config import PrometheusSettings, Settings

__all__ = ["cluster_line", "resolve"]

# Top-level commands that talk to a cluster, and so say which one first.
ANNOUNCING = frozenset({"canary", "flag", "chaos", "worker"})


def _home_kubeconfig(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or str(Path.home())) / ".kube" / "config"


def resolve(s: Settings, env: Mapping[str, str] | None = None) -> tuple[Settings, bool]:
    """``s`` pointed at a running sandbox when no other cluster is configured; and whether it was."""
    e = os.environ if env is None else env
    if s.kubeconfig or e.get("KUBERNETES_SERVICE_HOST") or _home_kubeconfig(e).exists():
        return s, False
    from orchestrator.sandbox.manager import read_info

    try:
        info = read_info(Path(s.state_dir))
    except Exception:  # an unreadable state file is not a cluster; the usual error follows
        return s, False
    if info is None:
        return s, False
    update: dict[str, Any] = {"kubeconfig": info.kubeconfig}
    defaults = Settings()
    if s.temporal_address == defaults.temporal_address and not e.get("ORCHESTRATOR_TEMPORAL_ADDRESS"):
        update["temporal_address"] = info.temporal_address
    if s.prometheus.url == PrometheusSettings().url and not e.get("ORCHESTRATOR_PROMETHEUS_URL"):
        update["prometheus"] = s.prometheus.model_copy(update={"url": info.prometheus_url})
    if env is None and not e.get("ORCHESTRATOR_POLICY"):
        # The rails read their chaos namespaces from the environment (as the sandbox's worker does):
        # give this process the sandbox's, as `eval "$(orchestrator sandbox env)"` would.
        os.environ.setdefault("ORCHESTRATOR_CHAOS_NAMESPACES", info.environment()["ORCHESTRATOR_CHAOS_NAMESPACES"])
    if env is None and not e.get("ORCHESTRATOR_SETTINGS_FILE"):
        # Likewise the operator settings naming the sandbox's flag provider (the kill switch writes from here).
        os.environ.setdefault("ORCHESTRATOR_SETTINGS_FILE", info.environment()["ORCHESTRATOR_SETTINGS_FILE"])
    return s.model_copy(update=update), True


def _kubeconfig_server(path: str, context: str | None) -> tuple[str, str]:
    """(context, server) of a kubeconfig, as far as the file says; '?' where it does not."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return context or "?", "?"
    name = context or doc.get("current-context") or "?"
    ctx = next((c.get("context") or {} for c in doc.get("contexts") or [] if c.get("name") == name), {})
    cluster = next((c.get("cluster") or {} for c in doc.get("clusters") or [] if c.get("name") == ctx.get("cluster")),
                   {})
    return str(name), str(cluster.get("server") or "?")


def cluster_line(s: Settings, sandbox: bool, env: Mapping[str, str] | None = None) -> str:
    """One line naming the cluster ``s`` talks to."""
    e = os.environ if env is None else env
    if sandbox:
        _, server = _kubeconfig_server(str(s.kubeconfig), None)
        return (f"cluster: the local sandbox at {server} (kubeconfig {s.kubeconfig}; no other cluster is "
                f"configured), Temporal {s.temporal_address}, Prometheus {s.prometheus.url}")
    if s.kubeconfig:
        context, server = _kubeconfig_server(s.kubeconfig, s.kube_context)
        return f"cluster: {server} (context {context} of {s.kubeconfig})"
    if e.get("KUBERNETES_SERVICE_HOST"):
        return f"cluster: in-cluster ({e.get('KUBERNETES_SERVICE_HOST')}, service account)"
    home = _home_kubeconfig(e)
    if home.exists():
        context, server = _kubeconfig_server(str(home), s.kube_context)
        return f"cluster: {server} (context {context} of {home})"
    return (f"cluster: none configured (no kubeconfig, not in a pod, no ~/.kube/config, no sandbox running in "
            f"{s.state_dir}; `orchestrator sandbox up` starts one)")
