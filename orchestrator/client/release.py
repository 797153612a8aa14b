"""Start, steer and read fleet releases; the client side of ``workflows/release.py``.

* ``load`` reads a Release file and, when its canary is ``canaryFile:``, reads that file here — relative
  to the Release file, never absolute, no ``..``, and not through a link that leads out of the Release
  file's directory — and inlines it, so the worker never reads a path. The inlined Release is validated
  again, so every cluster's overrides are checked against the real canary (``file:line``, exit 2).
* ``check_clusters`` refuses cluster names the operator settings do not list, when the client has the
  settings; the workflow refuses them again at start with its own worker's settings.
* ``pause`` and ``resume`` steer the release and then each running canary: a canary's controls are
  updates, which only a client (not a workflow) can send.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.api.release import (
    WORKFLOW_TYPE,
    ClusterPhase,
    ReleaseInput,
    ReleaseState,
    workflow_id,
)
from orchestrator.errors import RefusedError, SpecError
from orchestrator.specs.release import Release

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHandle

    from orchestrator.config import Settings
    from orchestrator.specs.operator import OperatorSettings

__all__ = ["check_clusters", "load", "matrix", "start", "steer"]


def load(path: str | Path) -> Release:
    """The Release in ``path`` with its canary inlined (``canaryFile`` read here, by the client)."""
    from pydantic import ValidationError

    from orchestrator.specs.files import shown
    from orchestrator.specs.loader import SPEC_FILE, format_errors, line_for, load_file, parse_yaml, read_spec_text

    model = load_file(path, expect="Release")
    assert isinstance(model, Release)
    if model.spec.canary_file is None:
        return model
    source = shown(path)
    data, lines = parse_yaml(read_spec_text(path), source)
    where = f"{source}:{line_for(('spec', 'canaryFile'), lines)}: spec.canaryFile"
    base = Path(path).resolve().parent
    target = (base / model.spec.canary_file).resolve()
    if not target.is_relative_to(base):
        raise SpecError([f"{where}: {model.spec.canary_file!r} leads out of the Release file's directory"])
    if not target.is_file():
        raise SpecError([f"{where}: {model.spec.canary_file!r} is not a file beside the Release file"])
    canary = load_file(target, expect="CanaryRollout")
    data["spec"] = {k: v for k, v in data["spec"].items() if k != "canaryFile"}
    data["spec"]["canary"] = canary.model_dump(mode="json", by_alias=True, exclude_none=True)
    try:
        return Release.model_validate(data, context=SPEC_FILE)
    except ValidationError as exc:
        raise SpecError(format_errors(exc, data, lines, source)) from None


def check_clusters(model: Release, operator: OperatorSettings, source: str) -> None:
    """Every cluster the Release names is in the operator's cluster map (when the client has one)."""
    known = operator.cluster_queues()
    problems = [f"{source}:0: spec.waves.{i}.clusters: {name!r} is not in the operator settings' cluster map "
                f"({operator.source}; known: {', '.join(sorted(known)) or 'none'})"
                for i, wave in enumerate(model.spec.waves) for name in wave.clusters if name not in known]
    if problems:
        raise SpecError(problems)


async def start(client: Client, task_queue: str, model: Release) -> WorkflowHandle[Any, ReleaseState]:
    from temporalio.exceptions import WorkflowAlreadyStartedError

    if model.spec.canary is None:
        raise SpecError(["<client>:0: spec.canaryFile: read the Release with orchestrator.client.release.load"])
    wid = workflow_id(model.metadata.name)
    try:
        return await client.start_workflow(WORKFLOW_TYPE, ReleaseInput(release=model), id=wid, task_queue=task_queue,
                                           result_type=ReleaseState)
    except WorkflowAlreadyStartedError:
        raise RefusedError(f"release {model.metadata.name} is already running (workflow {wid}); "
                           f"watch it with: orchestrator release status {model.metadata.name}") from None


async def steer(s: Settings, name: str, update: str, reason: str = "") -> list[str]:
    """Send ``update`` to the release; pause and resume go on to each running canary too."""
    from orchestrator.client.pollers import control
    from orchestrator.client.temporal import connect_temporal

    wid = name if name.startswith("release-") else workflow_id(name)
    lines = [await control(s, "release", wid, update, reason)]
    if update in ("pause", "resume"):
        client = await connect_temporal(s)
        state = await client.get_workflow_handle(wid).query("status", result_type=ReleaseState)
        for c in state.clusters:
            if c.phase is ClusterPhase.RUNNING and c.workflow_id:
                try:
                    lines.append(await control(s, "rollout", c.workflow_id, update, reason))
                except RefusedError as exc:  # a canary that just ended, or already paused
                    lines.append(f"{c.workflow_id}: {exc}")
    return lines


def matrix(state: ReleaseState) -> list[dict[str, Any]]:
    """wave x cluster x phase x verdict, in wave order."""
    return [{"wave": c.wave + 1, "cluster": c.name, "phase": c.phase.value, "verdict": c.verdict,
             "check": c.check, "workflow_id": c.workflow_id} for c in state.clusters]
