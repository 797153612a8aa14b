"""A small seeded run of the decision-quality benchmark: its judges run, and agree with judge_update."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "decision_quality.py"


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("decision_quality", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["decision_quality"] = module
    spec.loader.exec_module(module)
    return module


def test_a_5x_regression_at_1000_rps_is_caught_fast_and_the_vectorised_judge_matches_judge_update() -> None:
    dq = _bench()
    cell = dq.Cell(1000, "errors", 5.0)
    data = dq.simulate(cell, 40, np.random.default_rng(1))
    judged = dq.project_judge(cell, data)
    assert np.isfinite(judged.rollback_at).all()
    assert np.median(judged.rollback_at) <= 60
    for run in range(5):
        outcome, at = dq.exact_judge(cell, data, run)
        assert (outcome, at) == ("failed", judged.rollback_at[run])
    # The anchors run too (their figures are references, not asserted here).
    assert dq.kayenta_judge(cell, data).rollback_at.size == 40
