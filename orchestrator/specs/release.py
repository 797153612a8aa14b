"""The ``Release`` spec: one canary rolled across the operator's clusters in waves.

Rules this module holds:

* **Clusters are names, never addresses.** A wave lists cluster names; which task queue (and so which
  worker, with which in-cluster credentials) serves each is the operator settings' cluster map
  (``orchestrator/specs/operator.py``). Names are checked against that map where it is known: by the
  client when it has the settings, and by the Release workflow when it starts (an unknown name is
  refused before anything runs).
* **The worker never reads a path.** The canary is inline (``canary:``, a whole ``CanaryRollout``) or
  ``canaryFile:``, a path relative to the Release file with no ``..`` that the *client* reads and
  inlines before it starts the workflow; a Release whose canary is still a path is refused by the
  workflow.
* **Every cluster's canary is valid on its own.** Per-cluster ``overrides`` (replicas, the setWeight
  weights in order, threshold bounds by check name, environment variables) are applied with
  ``canary_for`` and the result is validated as a ``CanaryRollout`` at validate time, so a cluster
  cannot fail at its wave for a mistake the file already showed.
* A cluster appears in one wave only; waves run in order; a wave's bake checks run in each of its
  clusters after all of them promoted, for ``bake.duration``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from orchestrator.specs.base import MAX_CHECKS, MAX_NAMES, K8sName, Metadata, Strict, first_duplicate
from orchestrator.specs.canary import CanaryRollout
from orchestrator.specs.checks import Check, Threshold
from orchestrator.specs.duration import Duration

__all__ = ["Bake", "ClusterOverride", "Release", "ReleaseSpec", "Undo", "Wave", "canary_for"]

MAX_WAVES = 50
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class ClusterOverride(Strict):
    """What differs in one cluster: its size, its weights, its thresholds, its environment."""

    # The stable's replica count there (replicas routing): weights are checked against it per cluster.
    replicas: int | None = Field(default=None, ge=1)
    # The setWeight percentages, in the order of the canary's setWeight steps.
    weights: list[Annotated[int, Field(ge=0, le=100, strict=True)]] | None = Field(default=None, max_length=100)
    # Check name -> new bounds of its threshold condition.
    thresholds: dict[str, Threshold] = Field(default_factory=dict, max_length=MAX_CHECKS)
    env: dict[Annotated[str, Field(pattern=ENV_NAME, max_length=253)], str] = Field(
        default_factory=dict, max_length=100
    )


class Bake(Strict):
    """After a wave promoted: watch each of its clusters for ``duration`` before the next wave."""

    duration: Duration = timedelta(0)
    checks: list[Check] = Field(default_factory=list, max_length=MAX_CHECKS)

    @model_validator(mode="after")
    def _coherent(self) -> Bake:
        if self.duration.total_seconds() < 0:
            raise ValueError("duration cannot be negative")
        if self.checks and self.duration.total_seconds() <= 0:
            raise ValueError("bake checks need a duration to watch for")
        dupe = first_duplicate(c.name for c in self.checks)
        if dupe is not None:
            raise ValueError(f"check names must be unique; {dupe!r} appears more than once")
        counted = [c.name for c in self.checks if c.count is not None]
        if counted:
            raise ValueError(f"bake check {counted[0]!r} has a count: a bake check watches for the bake's "
                             "duration, so remove count")
        return self


class Approval(Strict):
    """A person approves (``release approve``) before the wave starts; nobody within ``timeout`` stops it."""

    timeout: Duration

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value.total_seconds() <= 0:
            raise ValueError("timeout must be greater than 0s")
        return value


class Wave(Strict):
    name: K8sName | None = None
    clusters: list[K8sName] = Field(min_length=1, max_length=MAX_NAMES)
    max_parallel: int | None = Field(default=None, alias="maxParallel", ge=1)
    bake: Bake = Field(default_factory=Bake)
    approval: Approval | None = None  # asked before this wave starts


class Undo(Strict):
    """``onFailure``: the release always stops; ``undo`` says which promoted clusters are restored."""

    undo: Literal["none", "wave", "release"] = "none"


class ReleaseSpec(Strict):
    canary: CanaryRollout | None = None
    canary_file: Annotated[str, Field(min_length=1, max_length=1024)] | None = Field(
        default=None, alias="canaryFile"
    )
    image: str | None = Field(default=None, pattern=r"^[^\s\"'\\{}]+$")  # overrides the canary's change.image
    waves: list[Wave] = Field(min_length=1, max_length=MAX_WAVES)
    overrides: dict[K8sName, ClusterOverride] = Field(default_factory=dict, max_length=MAX_NAMES)
    on_failure: Undo = Field(default_factory=Undo, alias="onFailure")
    # How long a cluster's queue may have no worker before the release treats it as a failure.
    no_worker_timeout: Duration = Field(default=timedelta(minutes=2), alias="noWorkerTimeout")

    @field_validator("canary_file")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if any(c in value for c in "\x00\n\r\\"):
            raise ValueError("must be a path on one line, with / as separator")
        path = PurePosixPath(value)
        if path.is_absolute() or value.startswith("~"):
            raise ValueError("must be relative to the Release file (no absolute path)")
        if ".." in path.parts:
            raise ValueError("must stay beside or below the Release file (no '..')")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> ReleaseSpec:
        if (self.canary is None) == (self.canary_file is None):
            raise ValueError("give exactly one of canary (inline) or canaryFile")
        if self.no_worker_timeout.total_seconds() <= 0:
            raise ValueError("noWorkerTimeout must be greater than 0s")
        names = [c for w in self.waves for c in w.clusters]
        dupe = first_duplicate(names)
        if dupe is not None:
            raise ValueError(f"cluster {dupe!r} appears in more than one wave (or twice in one)")
        stray = sorted(set(self.overrides) - set(names))
        if stray:
            raise ValueError(f"overrides name cluster {stray[0]!r}, which no wave releases")
        dupe = first_duplicate(w.name for w in self.waves if w.name is not None)
        if dupe is not None:
            raise ValueError(f"wave names must be unique; {dupe!r} appears more than once")
        if self.canary is not None:
            for cluster in self.overrides:
                canary_for(self, cluster)  # raises ValueError naming the cluster
        return self

    def clusters(self) -> list[str]:
        return [c for w in self.waves for c in w.clusters]

    def warnings(self) -> list[str]:
        """The canary's warnings as each cluster will see them (``validate`` prints them)."""
        if self.canary is None:
            return []
        out = [f"spec.canary: {w}" for w in self.canary.spec.warnings()]
        for cluster in self.overrides:
            out += [f"spec.overrides.{cluster}: {w}" for w in canary_for(self, cluster).spec.warnings()]
        return out


class Release(Strict):
    api_version: Literal["orchestrator.dev/v1"] = Field(default="orchestrator.dev/v1", alias="apiVersion")
    kind: Literal["Release"]
    metadata: Metadata
    spec: ReleaseSpec

    def warnings(self) -> list[str]:
        return self.spec.warnings()


def _override_steps(steps: list[Any], weights: list[int], cluster: str) -> list[Any]:
    percent = [i for i, s in enumerate(steps) if isinstance(s, dict) and "setWeight" in s
               and not isinstance(s["setWeight"], dict)]
    if len(percent) != len(weights):
        raise ValueError(f"overrides.{cluster}.weights: {len(weights)} weight(s) given for the canary's "
                         f"{len(percent)} percentage setWeight step(s)")
    out = list(steps)
    for index, weight in zip(percent, weights, strict=True):
        out[index] = {"setWeight": weight}
    return out


def _override_thresholds(doc: dict[str, Any], thresholds: dict[str, Threshold], cluster: str) -> None:
    found: set[str] = set()
    checks: list[dict[str, Any]] = list(doc.get("backgroundChecks", []))
    for step in doc["steps"]:
        if "analysis" in step:
            checks += step["analysis"]["checks"]
    for check in checks:
        bounds = thresholds.get(check["name"])
        if bounds is None:
            continue
        condition = check.get("condition")
        if not isinstance(condition, dict) or "compareTo" in condition:
            raise ValueError(f"overrides.{cluster}.thresholds.{check['name']}: the check has no threshold "
                             "condition to override")
        check["condition"] = bounds.model_dump(mode="json", exclude_none=True)
        found.add(check["name"])
    missing = sorted(set(thresholds) - found)
    if missing:
        raise ValueError(f"overrides.{cluster}.thresholds: the canary has no check named {missing[0]!r}")


def canary_for(release: ReleaseSpec, cluster: str) -> CanaryRollout:
    """The canary ``cluster`` runs: the release's canary with that cluster's overrides, validated.

    Raises ``ValueError`` naming the cluster when the overridden canary is not a valid spec.
    """
    if release.canary is None:
        raise ValueError("the canary is still a file reference: the client inlines canaryFile before starting")
    override = release.overrides.get(cluster)
    if override is None and release.image is None:
        return release.canary
    doc = release.canary.model_dump(mode="json", by_alias=True, exclude_none=True)
    spec = doc["spec"]
    if release.image is not None:
        spec.setdefault("change", {})["image"] = release.image
    if override is not None:
        if override.replicas is not None:
            if spec.get("traffic", {}).get("type", "replicas") == "replicas":
                spec["traffic"] = {**spec.get("traffic", {}), "type": "replicas", "replicas": override.replicas}
            else:
                raise ValueError(f"overrides.{cluster}.replicas: the canary routes with "
                                 f"{spec['traffic']['type']}, where replicas do not set the weight")
        if override.weights is not None:
            spec["steps"] = _override_steps(spec["steps"], override.weights, cluster)
        if override.thresholds:
            _override_thresholds(spec, override.thresholds, cluster)
        if override.env:
            change = spec.setdefault("change", {})
            change["env"] = {**change.get("env", {}), **override.env}
    try:
        return CanaryRollout.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ValueError(f"overrides.{cluster}: the canary becomes invalid there: {where}: {message}") from None

