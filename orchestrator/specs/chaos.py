"""The ``ChaosExperiment`` and ``GameDay`` specs, in chaostoolkit's vocabulary.

An experiment is::

    target          where: namespace + label selector, and how many of the matches (mode)
    fault           what: one of the fault types below, keyed by ``type`` (one module each under
                    ``orchestrator.chaos.faults``; the union here and that registry list the same names)
    duration        how long the fault stays in
    steadyState     the hypothesis: metric checks (the same ``Check`` as canary gates), evaluated
                    before (must hold to start), during (a breach beyond the check's failureLimit
                    aborts) and after the revert (must hold again within ``recoverWithin``)
    blastRadius     limits checked before anything is touched
    safety          preconditions read from Prometheus: error budget floor, firing alerts

A ``GameDay`` lists experiment files to run in order, stopping at the first whose steady state
does not recover.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from orchestrator.specs.base import MAX_CHECKS, MAX_NAMES, MAX_STEPS, K8sName, Metadata, Strict, first_duplicate
from orchestrator.specs.checks import Check, NoDataPolicy
from orchestrator.specs.duration import Duration
from orchestrator.specs.scoring import ScoringQueries

# Label keys and values as Kubernetes accepts them (prefix/name and a value of at most 63 characters).
# Always ``fullmatch``: with ``match``, ``$`` also matches before a final newline, so "web\n" would pass.
_LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
# Prometheus label names, for the ALERTS selector.
_PROM_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _labels(value: dict[str, str], what: str) -> dict[str, str]:
    for key, val in value.items():
        if not _LABEL_KEY.fullmatch(key) or len(key) > 253:
            raise ValueError(f"{what}: {key!r} is not a valid label key")
        if not _LABEL_VALUE.fullmatch(val) or len(val) > 63:
            raise ValueError(f"{what}: {val!r} is not a valid label value")
    return value


class Mode(Strict):
    """How many of the matching objects to hit: ``one``, ``fixed`` (``value`` of them), ``percent``, ``all``."""

    type: Literal["one", "fixed", "percent", "all"] = "one"
    value: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _short(cls, data: Any) -> Any:
        # ``mode: one`` / ``mode: all`` read better than a mapping when there is no value.
        return {"type": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _value(self) -> Mode:
        if self.type in ("fixed", "percent") and self.value is None:
            raise ValueError(f"mode {self.type} needs a value")
        if self.type in ("one", "all") and self.value is not None:
            raise ValueError(f"mode {self.type} takes no value")
        if self.type == "percent" and self.value is not None and self.value > 100:
            raise ValueError("a percentage is at most 100")
        return self


class ChaosTarget(Strict):
    namespace: K8sName
    selector: dict[str, str] = Field(min_length=1)
    mode: Mode = Field(default_factory=Mode)
    # The same seed picks the same pods from the same candidates; the run id is used when omitted.
    seed: int | None = None

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: dict[str, str]) -> dict[str, str]:
        return _labels(value, "selector")

    @property
    def app(self) -> str:
        """The ``app`` template variable: the selector's ``app`` label, or the first value."""
        return self.selector.get("app") or self.selector.get("app.kubernetes.io/name") or next(
            iter(self.selector.values())
        )


# ---- faults: one model per type; the ``type`` field selects it --------------------------------


class PodKill(Strict):
    """Delete the selected pods; with ``interval``, pick and delete again every interval until the end.

    ``ordinal`` targets a StatefulSet the way its own ordering suggests: ``highest`` (the pod a
    scale-down would remove first, so the least disruptive), ``lowest`` (often the leader or the
    primary) or a given ordinal such as ``2`` for ``<name>-2``. It needs ``mode: one``.
    """

    type: Literal["pod-kill"]
    interval: Duration | None = None
    grace_period_seconds: int = Field(default=0, alias="gracePeriodSeconds", ge=0)
    ordinal: Literal["highest", "lowest"] | Annotated[int, Field(ge=0)] | None = None

    @field_validator("interval")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value.total_seconds() <= 0:
            raise ValueError("interval must be greater than 0")
        return value


class ScaleDown(Strict):
    """Scale the selected Deployments to ``replicas``; revert restores the recorded count."""

    type: Literal["scale-down"]
    replicas: int = Field(default=1, ge=0)


class HttpDelay(Strict):
    percent: float = Field(gt=0, le=100)
    fixed_delay: Duration = Field(alias="fixedDelay")


class HttpAbort(Strict):
    percent: float = Field(gt=0, le=100)
    http_status: int = Field(alias="httpStatus", ge=200, le=599)


class HttpFault(Strict):
    """Istio fault injection on the http routes of a VirtualService; revert restores the recorded spec."""

    type: Literal["http-fault"]
    virtual_service: K8sName = Field(alias="virtualService")
    route: str | None = None  # the named http route; every route when omitted
    delay: HttpDelay | None = None
    abort: HttpAbort | None = None

    @model_validator(mode="after")
    def _something(self) -> HttpFault:
        if self.delay is None and self.abort is None:
            raise ValueError("give delay, abort or both")
        return self


class NodeDrain(Strict):
    """Cordon the nodes running the selected pods, then evict their pods (PodDisruptionBudgets apply)."""

    type: Literal["node-drain"]
    # Evictions a PDB refuses are retried until this passes; the node stays cordoned regardless.
    eviction_timeout: Duration = Field(default=timedelta(seconds=30), alias="evictionTimeout")


class NetworkDelay(Strict):
    latency: str = Field(pattern=r"^\d+(\.\d+)?(ns|us|ms|s)$")
    jitter: str = Field(default="0ms", pattern=r"^\d+(\.\d+)?(ns|us|ms|s)$")
    correlation: str = Field(default="0", pattern=r"^\d+(\.\d+)?$")


class NetworkLoss(Strict):
    loss: str = Field(pattern=r"^\d+(\.\d+)?$")
    correlation: str = Field(default="0", pattern=r"^\d+(\.\d+)?$")


class PartitionPeer(Strict):
    """The other side of a network partition: pods resolved and limited like the target's own."""

    namespace: K8sName | None = None  # the target's namespace when omitted
    selector: dict[str, str] = Field(min_length=1)
    mode: Mode = Field(default_factory=lambda: Mode(type="all"))

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: dict[str, str]) -> dict[str, str]:
        return _labels(value, "selector")


class NetworkChaos(Strict):
    """A Chaos Mesh NetworkChaos on the selected pods (needs the Chaos Mesh CRDs).

    ``action: partition`` cuts the chosen pods off from the pods of ``partition`` (``direction``
    ``to``, ``from`` or ``both``); both sides count in the blast radius.
    """

    type: Literal["network-chaos"]
    action: Literal["delay", "loss", "partition"]
    delay: NetworkDelay | None = None
    loss: NetworkLoss | None = None
    partition: PartitionPeer | None = None
    direction: Literal["to", "from", "both"] = "to"

    @model_validator(mode="after")
    def _params(self) -> NetworkChaos:
        if self.action == "delay" and (self.delay is None or self.loss is not None or self.partition is not None):
            raise ValueError("action delay needs delay (and no loss or partition)")
        if self.action == "loss" and (self.loss is None or self.delay is not None or self.partition is not None):
            raise ValueError("action loss needs loss (and no delay or partition)")
        if self.action == "partition" and (
            self.partition is None or self.delay is not None or self.loss is not None
        ):
            raise ValueError("action partition needs partition (the other side) and no delay or loss")
        return self


class IoChaos(Strict):
    """A Chaos Mesh IOChaos on a volume of the selected pods: ``latency`` (every matching call waits
    ``delay``) or ``fault`` (matching calls fail with ``errno``, 5 = EIO), for ``percent`` of the calls."""

    type: Literal["io-chaos"]
    action: Literal["latency", "fault"]
    volume_path: str = Field(alias="volumePath", pattern=r"^/")
    path: str | None = Field(default=None, pattern=r"^/")  # a glob under volumePath; the whole volume when omitted
    delay: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?(ns|us|ms|s)$")
    errno: int | None = Field(default=None, ge=1, le=133)
    percent: int = Field(default=100, ge=1, le=100)
    methods: list[Literal[
        "LOOKUP", "FORGET", "GETATTR", "SETATTR", "READLINK", "MKNOD", "MKDIR", "UNLINK", "RMDIR", "SYMLINK",
        "RENAME", "LINK", "OPEN", "READ", "WRITE", "STATFS", "RELEASE", "FSYNC", "SETXATTR", "GETXATTR",
        "LISTXATTR", "REMOVEXATTR", "FLUSH", "INIT", "OPENDIR", "READDIR", "RELEASEDIR", "FSYNCDIR", "ACCESS",
        "CREATE", "GETLK", "SETLK", "BMAP",
    ]] | None = None
    container: str | None = None  # the container whose volume is hit; Chaos Mesh picks the first when omitted

    @model_validator(mode="after")
    def _params(self) -> IoChaos:
        if self.action == "latency" and (self.delay is None or self.errno is not None):
            raise ValueError("action latency needs delay (and no errno)")
        if self.action == "fault" and (self.errno is None or self.delay is not None):
            raise ValueError("action fault needs errno (and no delay)")
        return self


class CpuStress(Strict):
    workers: int = Field(ge=1, le=64)
    load: int = Field(default=100, ge=1, le=100)


class MemoryStress(Strict):
    workers: int = Field(ge=1, le=64)
    size: str = Field(pattern=r"^\d+(B|KB|MB|GB|%)$")


class StressChaos(Strict):
    """A Chaos Mesh StressChaos (CPU and/or memory) on the selected pods (needs the Chaos Mesh CRDs)."""

    type: Literal["stress-chaos"]
    cpu: CpuStress | None = None
    memory: MemoryStress | None = None

    @model_validator(mode="after")
    def _something(self) -> StressChaos:
        if self.cpu is None and self.memory is None:
            raise ValueError("give cpu, memory or both")
        return self


Fault = Annotated[
    PodKill | ScaleDown | HttpFault | NodeDrain | NetworkChaos | StressChaos | IoChaos, Field(discriminator="type")
]
FAULT_TYPES = ("pod-kill", "scale-down", "http-fault", "node-drain", "network-chaos", "stress-chaos", "io-chaos")


# ---- hypothesis, limits, preconditions ---------------------------------------------------------


class SteadyState(Strict):
    """The steady-state hypothesis: every check must hold before, tolerate the fault during, recover after."""

    checks: list[Check] = Field(min_length=1, max_length=MAX_CHECKS)
    # After the revert, how long the checks may take to hold again before the run counts as not recovered.
    recover_within: Duration = Field(default=timedelta(minutes=2), alias="recoverWithin")
    # How soon after injection the checks are expected to notice the fault when it does hurt: the
    # objective of the score's detection term. Omitted, the experiment claims nothing about detection
    # and that term does not apply (rather than being judged against a made-up objective).
    detect_within: Duration | None = Field(default=None, alias="detectWithin")

    @field_validator("recover_within", "detect_within")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        # A zero objective cannot be met by any measurement, and the score divides by it.
        if value is not None and value.total_seconds() <= 0:
            raise ValueError("must be greater than 0")
        return value

    @model_validator(mode="after")
    def _unique(self) -> SteadyState:
        names = [c.name for c in self.checks]
        dupe = first_duplicate(names)
        if dupe is not None:
            raise ValueError(f"check names must be unique; {dupe!r} appears more than once")
        return self


class Disturb(Strict):
    """What a node drain may disturb beyond the target: the nodes it may drain and the namespaces whose
    pods it may evict there without each namespace being allowed and opted in."""

    nodes: list[K8sName] = Field(min_length=1, max_length=MAX_NAMES)
    namespaces: list[K8sName] = Field(min_length=1, max_length=MAX_NAMES)


class BlastRadius(Strict):
    # Refuse when the fault would hit more than this share of the ready pods of any one workload the
    # selector matches (and of all of them together).
    max_pods_percent: int = Field(default=50, alias="maxPodsPercent", ge=1, le=100)
    # The experiment's own limit on pods of one workload unavailable at the same time: a count or "N%"
    # of its replicas (rounded down, like a rollout's maxUnavailable). Stricter workload limits win.
    max_unavailable: int | str | None = Field(default=None, alias="maxUnavailable")
    # How long after the planned end a left-behind fault counts as expired (the janitor reverts it).
    expiry_margin: Duration = Field(default=timedelta(minutes=5), alias="expiryMargin")
    # A node drain evicts every pod on the node: declare here which nodes and namespaces it may disturb.
    disturb: Disturb | None = None

    @field_validator("max_unavailable")
    @classmethod
    def _int_or_percent(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 0:
            raise ValueError("must be 0 or more")
        if isinstance(value, str) and not re.fullmatch(r"(100|[1-9]?[0-9])%", value):
            raise ValueError("a count or a percentage such as 25%")
        return value


class ErrorBudget(Strict):
    """A query answering the remaining error budget as a fraction (0..1); refuse below ``floor``.

    With ``sloTarget`` the experiment also claims a cost: the budget is read again after the
    recovery window and the fraction burned by the run enters its score. Without it the budget is
    only a precondition, and the score's budget term does not apply.
    """

    query: str = Field(min_length=1)
    floor: float = Field(ge=0, le=1)
    no_data: NoDataPolicy = Field(default=NoDataPolicy.FAIL, alias="noData")
    # The SLO the budget belongs to (0.999 = 99.9 %); strictly between 0 and 1 because 1 leaves no budget.
    slo_target: float | None = Field(default=None, alias="sloTarget", gt=0, lt=1)


class Alerts(Strict):
    """Refuse while any ``ALERTS{alertstate="firing"}`` series matching these labels exists."""

    match_labels: dict[str, str] = Field(alias="matchLabels", min_length=1)

    @field_validator("match_labels")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _PROM_LABEL.fullmatch(key):
                raise ValueError(f"{key!r} is not a Prometheus label name")
        return value


class Safety(Strict):
    error_budget: ErrorBudget | None = Field(default=None, alias="errorBudget")
    alerts: Alerts | None = None


class ChaosSpec(Strict):
    target: ChaosTarget
    fault: Fault
    duration: Duration
    steady_state: SteadyState = Field(alias="steadyState")
    blast_radius: BlastRadius = Field(default_factory=BlastRadius, alias="blastRadius")
    safety: Safety = Field(default_factory=Safety)
    scoring: ScoringQueries | None = None  # evidence for the score read at save time (specs/scoring.py)

    @field_validator("duration")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value.total_seconds() <= 0:
            raise ValueError("duration must be greater than 0")
        return value

    @model_validator(mode="after")
    def _ordinal(self) -> ChaosSpec:
        if isinstance(self.fault, PodKill) and self.fault.ordinal is not None and self.target.mode.type != "one":
            raise ValueError("fault.ordinal picks one pod of a StatefulSet: it needs target.mode one")
        return self


class ChaosExperiment(Strict):
    api_version: Literal["orchestrator.dev/v1"] = Field(default="orchestrator.dev/v1", alias="apiVersion")
    kind: Literal["ChaosExperiment"]
    metadata: Metadata
    spec: ChaosSpec


class GameDaySpec(Strict):
    # Experiment files, relative to the GameDay file; run in this order.
    experiments: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        min_length=1, max_length=MAX_STEPS
    )
    # Pause between two experiments so the system settles.
    pause_between: Duration = Field(default=timedelta(0), alias="pauseBetween")
    # How long the next experiment waits for the previous one's workloads to be back at their ready count;
    # past it, the rest of the GameDay is skipped with the reason (never refused by a rail half-recovered).
    recovery_wait: Duration = Field(default=timedelta(minutes=2), alias="recoveryWait")

    @field_validator("experiments")
    @classmethod
    def _beside_the_gameday(cls, paths: list[str]) -> list[str]:
        # The file comes from whoever opened the pull request: it may name experiments beside it, never
        # another file of the machine that runs it (whose content an error message could echo).
        for path in paths:
            parts = path.replace("\\", "/").split("/")
            if path.startswith("/") or ".." in parts or any(c in path for c in "\x00\n\r"):
                raise ValueError(f"{path!r}: experiment files are paths inside the GameDay's folder "
                                 "(relative, no '..')")
        return paths


class GameDay(Strict):
    api_version: Literal["orchestrator.dev/v1"] = Field(default="orchestrator.dev/v1", alias="apiVersion")
    kind: Literal["GameDay"]
    metadata: Metadata
    spec: GameDaySpec


__all__ = [
    "FAULT_TYPES",
    "Alerts",
    "BlastRadius",
    "ChaosExperiment",
    "ChaosSpec",
    "ChaosTarget",
    "Disturb",
    "ErrorBudget",
    "Fault",
    "GameDay",
    "HttpFault",
    "IoChaos",
    "K8sName",
    "Mode",
    "NetworkChaos",
    "NodeDrain",
    "PartitionPeer",
    "PodKill",
    "Safety",
    "ScaleDown",
    "SteadyState",
    "StressChaos",
]
