"""Gates: metric checks evaluated against Prometheus, and the verdicts over their measurements.

Layers inside the package, each importing only those above it in this list::

    model      pydantic data that travels through Temporal (Sample, Measurement, CheckStatus)
    template   {{name}} rendering with values that cannot inject PromQL
    verdict    decide(): measurements -> verdict; pure, called from workflow code
    prometheus MetricProvider protocol + PrometheusProvider (client imported lazily)
    evaluate   evaluate(): one check, one provider, one measurement

Importing this package pulls in no HTTP client, so workflow code may import it.
"""

from orchestrator.gates.evaluate import Side, evaluate, evaluate_sides
from orchestrator.gates.model import CheckPhase, CheckStatus, CheckVerdict, Measurement, Phase, Sample
from orchestrator.gates.prometheus import MetricProvider, PrometheusProvider
from orchestrator.gates.template import render
from orchestrator.gates.verdict import decide

__all__ = [
    "CheckPhase",
    "CheckStatus",
    "CheckVerdict",
    "Measurement",
    "MetricProvider",
    "Phase",
    "PrometheusProvider",
    "Sample",
    "Side",
    "decide",
    "evaluate",
    "evaluate_sides",
    "render",
]
