"""The optional ``scoring`` section of a chaos experiment: queries read over the run window when it is saved.

Each is PromQL with the same ``{{namespace}}``/``{{app}}``/``{{target}}`` variables as the
steady-state checks, evaluated at even steps (``step``, at most ``MAX_POINTS`` points) from
injection to the end of the recovery window::

    scoring:
      impact:
        failedShare: >-
          sum(rate(requests_total{app="{{app}}",code=~"5.."}[1m])) / sum(rate(requests_total{app="{{app}}"}[1m]))
        slowShare: >-
          1 - sum(rate(latency_bucket{app="{{app}}",le="0.3"}[1m])) / sum(rate(latency_count{app="{{app}}"}[1m]))
      detection: ALERTS{alertstate="firing",app="{{app}}"}
      affected: kube_pod_status_ready{namespace="{{namespace}}",condition="false"} > 0
      affectedLabel: pod

``impact`` gives the customer-impact term (shares in 0..1, the mean over the window);
``detection`` fires at the first step where it returns a series above 0 (an alert, a
detection rule); ``affected`` returns one series per target while it is affected, named by
``affectedLabel``. Without this section those terms use what the run itself saw.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, field_validator, model_validator

from orchestrator.specs.base import Strict
from orchestrator.specs.duration import Duration

MAX_POINTS = 60
"""Instant queries per query and run: enough to place a detection within a step, bounded in cost."""


class ImpactQueries(Strict):
    failed_share: str | None = Field(default=None, alias="failedShare", min_length=1)
    slow_share: str | None = Field(default=None, alias="slowShare", min_length=1)

    @model_validator(mode="after")
    def _one(self) -> ImpactQueries:
        if self.failed_share is None and self.slow_share is None:
            raise ValueError("impact needs failedShare, slowShare or both")
        return self


class ScoringQueries(Strict):
    impact: ImpactQueries | None = None
    detection: str | None = Field(default=None, min_length=1)
    affected: str | None = Field(default=None, min_length=1)
    affected_label: str = Field(default="pod", alias="affectedLabel", min_length=1)
    step: Duration = Field(default=timedelta(seconds=15))

    @field_validator("step")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value.total_seconds() <= 0:
            raise ValueError("step must be greater than 0")
        return value


__all__ = ["MAX_POINTS", "ImpactQueries", "ScoringQueries"]
