"""The ``OperatorSettings`` file: every endpoint, file and namespace the worker may be made to use.

Specs arrive from CI, so anyone who can open a pull request can write one: a spec is untrusted input.
The rule this file exists for: **every endpoint the worker authenticates to, every file it writes and
every namespace it touches outside a rollout's own target is named here, by the operator; a spec only
picks among these names.** A flag ramp says ``provider: {type: unleash, name: main}``; where ``main``
lives, and which environment variable holds its token, is written here and nowhere else. A spec can
therefore never send the worker's credentials to an address of its choosing, nor make the worker
rewrite a file or a ConfigMap the operator did not list.

The file is found through ``ORCHESTRATOR_SETTINGS_FILE`` (the chart renders it from its values and
mounts it); without one, no flag provider is named and every flag ramp is refused with a message that
says so. It is read through the same hardened YAML loader as every spec (bounded size, depth and
aliases; duplicate keys refused), so a bad file is reported as ``file:line: field: message``, exit 2,
when the worker starts. Shape::

    apiVersion: orchestrator.dev/v1
    kind: OperatorSettings
    metadata: {name: production}
    spec:
      flagProviders:
        - name: main                      # what specs write: provider: {type: unleash, name: main}
          type: unleash
          url: https://unleash.internal:4242
          tokenEnv: ORCHESTRATOR_UNLEASH_TOKEN   # the worker's variable holding the Admin API token
          projects: [default]             # optional: the projects specs may name (default: any)
          environments: [production]      # optional: the environments specs may name (default: any)
        - name: shop-flags
          type: flagd
          configMap: {namespace: shop, name: flagd-flags, key: flags.flagd.json}
        - name: local
          type: flagd
          file: /var/lib/flags/flags.flagd.json

      clusters:                           # fleet releases: the clusters a Release may name
        - name: eu-west-1                 # what specs write: waves: [{clusters: [eu-west-1]}]
          taskQueue: orchestrator-eu-west-1   # polled by the worker in that cluster (default orchestrator-<name>)

A cluster is reached only through its task queue: the worker installed in it (chart value
``cluster.name``) polls ``orchestrator-<name>`` with its own in-cluster Kubernetes and Prometheus access,
so a Release that names a cluster chooses which of the operator's workers does the work, never an address.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from orchestrator.specs.base import MAX_NAMES, SYSTEM_NAMESPACES, K8sName, Metadata, Strict, first_duplicate
from orchestrator.specs.loader import load_document, read_spec_text

__all__ = [
    "ENV_VAR",
    "ClusterEntry",
    "FlagProviderEndpoint",
    "FlagdEndpoint",
    "OperatorSettings",
    "OperatorSpec",
    "ProviderName",
    "UnleashEndpoint",
    "cluster_queue",
    "load_operator_settings",
    "operator_settings_from_env",
]

ENV_VAR = "ORCHESTRATOR_SETTINGS_FILE"

# What a spec writes to pick a provider: a short DNS-label-like name, nothing that could be a URL or a path.
ProviderName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
# Unleash project and environment names as Unleash allows them (URL-safe ids).
UnleashName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]


class ConfigMapLocation(Strict):
    namespace: K8sName
    name: K8sName
    key: str = Field(default="flags.flagd.json", pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)

    @field_validator("namespace")
    @classmethod
    def _not_a_system_namespace(cls, value: str) -> str:
        if value in SYSTEM_NAMESPACES:
            raise ValueError(f"{value} is a system namespace; no change of any kind is made there")
        return value


class FlagdEndpoint(Strict):
    """flagd / OpenFeature flag definitions in one ConfigMap or one file on the worker."""

    type: Literal["flagd"]
    name: ProviderName
    config_map: ConfigMapLocation | None = Field(default=None, alias="configMap")
    # An absolute path on the worker; the ramp replaces this file (write, then rename) and nothing else.
    file: Annotated[str, Field(max_length=4096)] | None = None

    @field_validator("file")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        # Relative to what? The worker's directory is not the operator's to guess.
        if value is not None and (not value.startswith("/") or any(c in value for c in "\x00\n\r")):
            raise ValueError("must be an absolute path on the worker, on one line")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> FlagdEndpoint:
        if (self.config_map is None) == (self.file is None):
            raise ValueError("give exactly one of configMap or file")
        return self


class UnleashEndpoint(Strict):
    """An Unleash server's Admin API, and the worker's environment variable that holds its token."""

    type: Literal["unleash"]
    name: ProviderName
    url: Annotated[str, Field(pattern=r"^https?://[^\s@]+$", max_length=2048)]
    token_env: Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$", max_length=128)] = Field(
        default="ORCHESTRATOR_UNLEASH_TOKEN", alias="tokenEnv"
    )
    # None: any project / environment of this server may be named by a spec.
    projects: list[UnleashName] | None = Field(default=None, max_length=MAX_NAMES)
    environments: list[UnleashName] | None = Field(default=None, max_length=MAX_NAMES)


FlagProviderEndpoint = Annotated[FlagdEndpoint | UnleashEndpoint, Field(discriminator="type")]


# A Temporal task queue name as this project writes them: no spaces or control characters to hide in logs.
TaskQueueName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=200)]


def cluster_queue(name: str) -> str:
    """The task queue of the worker installed in cluster ``name`` (the chart's ``cluster.name``)."""
    return f"orchestrator-{name}"


class ClusterEntry(Strict):
    """One cluster a Release may name, and the task queue its own worker polls."""

    name: K8sName
    task_queue: TaskQueueName | None = Field(default=None, alias="taskQueue")

    @property
    def queue(self) -> str:
        return self.task_queue or cluster_queue(self.name)


class OperatorSpec(Strict):
    flag_providers: list[FlagProviderEndpoint] = Field(
        default_factory=list, alias="flagProviders", max_length=MAX_NAMES
    )
    clusters: list[ClusterEntry] = Field(default_factory=list, max_length=MAX_NAMES)

    @model_validator(mode="after")
    def _unique(self) -> OperatorSpec:
        dupe = first_duplicate(p.name for p in self.flag_providers)
        if dupe is not None:
            raise ValueError(f"flag provider names must be unique; {dupe!r} appears more than once")
        dupe = first_duplicate(c.name for c in self.clusters)
        if dupe is not None:
            raise ValueError(f"cluster names must be unique; {dupe!r} appears more than once")
        # Two names on one queue would let a spec reach one cluster under another's name.
        dupe = first_duplicate(c.queue for c in self.clusters)
        if dupe is not None:
            raise ValueError(f"each cluster has its own task queue; {dupe!r} is given to more than one")
        return self


class OperatorSettings(Strict):
    api_version: Literal["orchestrator.dev/v1"] = Field(default="orchestrator.dev/v1", alias="apiVersion")
    kind: Literal["OperatorSettings"] = "OperatorSettings"
    metadata: Metadata = Field(default_factory=lambda: Metadata(name="default"))
    spec: OperatorSpec = Field(default_factory=OperatorSpec)
    source: str = Field(default="(none)", exclude=True)  # where it was read from, for messages

    def flag_provider(self, name: str) -> FlagdEndpoint | UnleashEndpoint | None:
        return next((p for p in self.spec.flag_providers if p.name == name), None)

    def flag_provider_names(self, kind: str | None = None) -> list[str]:
        return sorted(p.name for p in self.spec.flag_providers if kind is None or p.type == kind)

    def cluster_queues(self) -> dict[str, str]:
        """Cluster name -> the task queue its worker polls, for every cluster the operator named."""
        return {c.name: c.queue for c in self.spec.clusters}


def load_text(text: str, source: str) -> OperatorSettings:
    return load_document(text, source, OperatorSettings, "OperatorSettings", "operator settings are")


def load_operator_settings(path: str | Path) -> OperatorSettings:
    return load_text(read_spec_text(path), str(path))


def operator_settings_from_env(path: str | None = None, env: Mapping[str, str] | None = None) -> OperatorSettings:
    """``path``, else ``$ORCHESTRATOR_SETTINGS_FILE``, else empty settings (nothing named, so nothing reachable)."""
    e = os.environ if env is None else env
    chosen = path or e.get(ENV_VAR) or None
    if chosen:
        return load_operator_settings(chosen)
    return OperatorSettings()
