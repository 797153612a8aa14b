"""The rails: every reason to refuse a change (canary, flag ramp or chaos experiment) before it starts.

One package serves the three kinds of change, so each rail is written once and reads the same
policy (``orchestrator.specs.policy.RailsPolicy``). Each rail is one small function answering a
``Verdict`` — ``ok``, ``refused`` or ``skipped`` (not declared / not applicable) with a reason that
carries the numbers it saw. ``Rails.check`` runs them all and returns a ``RailsReport``; the
``rails.check`` activity (``orchestrator.activities.rails``) is how workflows call it, and the
CLIs' ``--dry-run`` prints it. Layout (each module imports only those before it)::

    models      request, verdict, report (pure data: workflow code sends and receives them)
    cluster     read-only Kubernetes views (list/get only: a rail never writes)
    chaos       the chaos rails (namespaces, opt-in, blast radius, active work, error budget, alerts),
                re-exported from ``orchestrator.chaos.safety`` (below the chaos planner: no import cycle)
    protected   kube-system & co. and the orchestrator's own namespace: refused for every kind, first
    clock       change freezes, staffed hours
    signals     incidents (firing alerts), declared health queries
    rollouts    recent deployments (quiet period)
    capacity    canary and baseline pods against ResourceQuota and node allocatable
    active      mutual exclusion through Temporal's visibility
    run         ``Rails``: all of them, in order, into one report
"""

from orchestrator.rails.models import RailsReport, RailsRequest, RailStatus, RailTarget, Verdict, target_of

__all__ = ["RailStatus", "RailTarget", "RailsReport", "RailsRequest", "Verdict", "target_of"]
