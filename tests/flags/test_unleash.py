"""The Unleash provider against an HTTP server following Unleash's documented Admin API.

A real Unleash (npm ``unleash-server`` + PostgreSQL) was judged too costly for every CI
run; ``orchestrator.sandbox.unleash_api`` answers the same endpoints with the same JSON
shapes and records every write, so these tests see exactly what reached "Unleash".
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client

from orchestrator.errors import FlagProviderError
from orchestrator.flags import ProviderClients, build_provider
from orchestrator.flags.base import FlagTarget
from orchestrator.flags.kill import kill
from orchestrator.sandbox.unleash_api import UnleashAdminServer
from orchestrator.specs.flags import UnleashProviderSpec
from tests.flags.conftest import FlagProm
from tests.flags.helpers import load_ramp, ramp_worker, ramp_yaml
from workflows.flag_ramp import FlagRampWorkflow
from workflows.flag_ramp_models import FlagRampInput, Phase

TOKEN = "*:production.ramp-test-token"
ENV = {"ORCHESTRATOR_UNLEASH_TOKEN": TOKEN}


@pytest.fixture
def unleash() -> Iterator[UnleashAdminServer]:
    with UnleashAdminServer(TOKEN) as server:
        yield server


def provider(server: UnleashAdminServer, key: str, env: dict[str, str] = ENV) -> object:
    spec = UnleashProviderSpec.model_validate({"type": "unleash", "url": server.url})
    return build_provider(spec, FlagTarget(key), ProviderClients(env=env))


def test_set_percent_patches_only_the_rollout_and_is_idempotent(unleash: UnleashAdminServer) -> None:
    unleash.state.add_flexible_rollout("checkout", rollout=0, stickiness="userId")
    p = provider(unleash, "checkout")
    assert p.current().percent == 0  # type: ignore[attr-defined]
    change = p.set_percent(25)  # type: ignore[attr-defined]
    assert change.changed and change.before.percent == 0 and change.after.percent == 25
    strategy = unleash.state.strategy("checkout")
    assert strategy["parameters"] == {"rollout": "25", "stickiness": "userId", "groupId": "checkout"}
    assert p.set_percent(25).changed is False  # type: ignore[attr-defined]
    assert [(e.method, e.body) for e in unleash.state.audit] == [
        ("PATCH", [{"op": "replace", "path": "/parameters/rollout", "value": "25"}])]


def test_turn_off_disables_the_environment(unleash: UnleashAdminServer) -> None:
    unleash.state.add_flexible_rollout("checkout", rollout=40)
    p = provider(unleash, "checkout")
    assert p.turn_off().changed  # type: ignore[attr-defined]
    assert not unleash.state.enabled("checkout")
    assert unleash.state.audit[-1].path.endswith("/environments/production/off")
    assert p.turn_off().changed is False  # type: ignore[attr-defined]


def test_a_wrong_or_missing_token_is_a_clear_error(unleash: UnleashAdminServer) -> None:
    unleash.state.add_flexible_rollout("checkout")
    with pytest.raises(FlagProviderError, match="ORCHESTRATOR_UNLEASH_TOKEN"):
        provider(unleash, "checkout", env={})
    with pytest.raises(FlagProviderError, match="401"):
        provider(unleash, "checkout", env={"ORCHESTRATOR_UNLEASH_TOKEN": "wrong"}).current()  # type: ignore[attr-defined]


async def test_a_ramp_through_unleash_and_its_kill_switch(
    temporal_client: Client, task_queue: str, flag_prom: FlagProm, app_name: str, unleash: UnleashAdminServer,
) -> None:
    key = f"unleash-{uuid.uuid4().hex[:6]}"
    unleash.state.add_flexible_rollout(key, rollout=0)
    flag_prom.traffic(app_name, {"on": (40, 0.005), "off": (40, 0.005)})
    text = ramp_yaml(key, app_name, f"{{type: unleash, url: '{unleash.url}'}}",
                     stages="[{percent: 5, hold: 1s}, {percent: 50, hold: 1s}, {percent: 100}]")
    async with ramp_worker(temporal_client, task_queue, flag_prom.url, env=ENV):
        ramp = load_ramp(text)
        st = await (await temporal_client.start_workflow(
            FlagRampWorkflow.run, FlagRampInput(ramp=ramp), id=ramp.workflow_id(), task_queue=task_queue)).result()
        assert st.phase is Phase.COMPLETED, st.reason
        rollouts = [e.body[0]["value"] for e in unleash.state.audit if e.method == "PATCH"]
        assert rollouts == ["5", "50", "100"]

        # With no ramp running, the kill switch needs the spec to find the provider.
        result = await kill(key, client=temporal_client, spec=ramp, env=ENV)
        assert result.ramp == "none running" and not unleash.state.enabled(key)


def test_unleash_specs_must_use_whole_percentages(tmp_path: Path) -> None:
    from orchestrator.errors import SpecError

    with pytest.raises(SpecError, match="whole percentages"):
        load_ramp(ramp_yaml("k", "app", "{type: unleash, url: 'http://127.0.0.1:1'}",
                            stages="[{percent: 0.5, hold: 1s}]", checks="[]"))
