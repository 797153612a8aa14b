"""Recorded histories of the current workflow code replay against it (see record_histories.py).

A change to workflow code that a running rollout could not replay fails here: guard it with
``workflow.patched`` or follow the cut-over in docs/upgrades.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.canary import CanaryWorkflow
from workflows.chaos import ChaosExperimentWorkflow
from workflows.flag_ramp import FlagRampWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_there_are_recorded_histories() -> None:
    assert len(HISTORIES) >= 5


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=[CanaryWorkflow, FlagRampWorkflow, ChaosExperimentWorkflow],
                        data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
