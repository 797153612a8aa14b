"""The Unleash provider against a real Unleash 7.5.1 (PostgreSQL 15) and against the HTTP double.

Every test runs twice (``[double]`` and ``[real]``, see the ``unleash`` fixture). What reached
Unleash is read back from the server: the strategy and environment state through the Admin
API, and the writes from Unleash's event log (the double keeps the same log), so a write the
provider should not have made shows up on both.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from temporalio.client import Client

from orchestrator.api.flags import FlagRampInput, Phase
from orchestrator.errors import FlagProviderError
from orchestrator.flags import ProviderClients, build_provider
from orchestrator.flags.base import FlagProvider, FlagTarget
from orchestrator.flags.kill import kill
from orchestrator.specs.flags import UnleashProviderSpec
from tests.flags.conftest import FlagProm
from tests.flags.helpers import load_ramp, ramp_worker, ramp_yaml, unleash_operator
from tests.flags.unleash_real import UnleashBackend, Write
from workflows.flag_ramp import FlagRampWorkflow

TOKEN_ENV = "ORCHESTRATOR_UNLEASH_TOKEN"


def key(prefix: str = "checkout") -> str:
    """Feature names are unique per test: the real server lives for the whole session."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def env_of(unleash: UnleashBackend) -> dict[str, str]:
    return {TOKEN_ENV: unleash.token}


def provider(unleash: UnleashBackend, flag: str, env: dict[str, str] | None = None) -> FlagProvider:
    spec = UnleashProviderSpec.model_validate({"type": "unleash", "name": "main"})
    return build_provider(spec, FlagTarget(flag), ProviderClients(
        env=env_of(unleash) if env is None else env, operator=unleash_operator(unleash.url, token_env=TOKEN_ENV)))


def test_reads_the_current_allocation(unleash: UnleashBackend) -> None:
    flag = key()
    sid = unleash.add_flexible_rollout(flag, rollout=40)
    now = provider(unleash, flag).current()
    assert (now.percent, now.enabled) == (40, True)
    assert now.detail == f"flexibleRollout {sid} rollout=40"

    off = key()
    unleash.add_flexible_rollout(off, rollout=0, enabled=False)
    assert provider(unleash, off).current().enabled is False
    assert unleash.writes(flag) == [] and unleash.writes(off) == []


def test_set_percent_patches_only_the_rollout_and_is_idempotent(unleash: UnleashBackend) -> None:
    flag = key()
    unleash.add_flexible_rollout(flag, rollout=0, stickiness="userId")
    p = provider(unleash, flag)
    assert p.current().percent == 0
    change = p.set_percent(25)
    assert change.changed and change.before.percent == 0 and change.after.percent == 25
    assert unleash.strategy(flag)["parameters"] == {"rollout": "25", "stickiness": "userId", "groupId": flag}
    assert p.current().percent == 25
    assert p.set_percent(25).changed is False
    assert unleash.writes(flag) == [Write("rollout", "25")]


def test_ramping_up_keeps_the_rest_of_the_strategy(unleash: UnleashBackend) -> None:
    flag = key()
    constraint = {"contextName": "appName", "operator": "IN", "values": ["shop"]}
    unleash.add_flexible_rollout(flag, rollout=5, stickiness="sessionId", group_id="checkout-v2",
                                 constraints=[constraint], title="checkout v2 ramp")
    before = unleash.strategy(flag)
    p = provider(unleash, flag)
    for percent in (10, 50, 100):
        assert p.set_percent(percent).changed
    after = unleash.strategy(flag)
    assert after["parameters"] == {"rollout": "100", "stickiness": "sessionId", "groupId": "checkout-v2"}
    assert {k: v for k, v in after.items() if k != "parameters"} == {
        k: v for k, v in before.items() if k != "parameters"}
    assert [c["contextName"] for c in after["constraints"]] == ["appName"]
    assert after["constraints"][0]["values"] == ["shop"] and after["title"] == "checkout v2 ramp"
    assert unleash.writes(flag) == [Write("rollout", "10"), Write("rollout", "50"), Write("rollout", "100")]


def test_a_stage_turns_a_switched_off_environment_on(unleash: UnleashBackend) -> None:
    flag = key()
    unleash.add_flexible_rollout(flag, rollout=0, enabled=False)
    change = provider(unleash, flag).set_percent(30)
    assert change.changed and change.after.enabled and not change.before.enabled
    assert unleash.enabled(flag) and unleash.strategy(flag)["parameters"]["rollout"] == "30"
    assert unleash.writes(flag) == [Write("rollout", "30"), Write("on")]


def test_turn_off_disables_the_environment(unleash: UnleashBackend) -> None:
    flag = key()
    unleash.add_flexible_rollout(flag, rollout=40)
    p = provider(unleash, flag)
    change = p.turn_off()
    assert change.changed and change.before.enabled and not change.after.enabled
    assert not unleash.enabled(flag)
    assert unleash.strategy(flag)["parameters"]["rollout"] == "40"  # off, not 0 %: turning on restores it
    assert p.turn_off().changed is False
    assert unleash.writes(flag) == [Write("off")]


def test_a_wrong_or_missing_token_is_a_clear_error(unleash: UnleashBackend) -> None:
    flag = key()
    unleash.add_flexible_rollout(flag)
    with pytest.raises(FlagProviderError, match=TOKEN_ENV):
        provider(unleash, flag, env={})
    for wrong in ("wrong", f"*:*.{uuid.uuid4().hex}"):
        bad = provider(unleash, flag, env={TOKEN_ENV: wrong})
        with pytest.raises(FlagProviderError) as caught:
            bad.set_percent(50)
        message = str(caught.value)
        assert "401 You must log in to use Unleash. (check the Admin API token)" in message, message
        assert caught.value.retryable is False
    assert unleash.writes(flag) == [] and unleash.strategy(flag)["parameters"]["rollout"] == "0"


def test_a_missing_flag_or_environment_is_not_retried(unleash: UnleashBackend) -> None:
    with pytest.raises(FlagProviderError, match="404") as caught:
        provider(unleash, key("missing")).current()
    assert caught.value.retryable is False
    flag = key()
    unleash.add_flexible_rollout(flag)
    spec = UnleashProviderSpec.model_validate({"type": "unleash", "name": "main", "environment": "staging"})
    p = build_provider(spec, FlagTarget(flag), ProviderClients(
        env=env_of(unleash), operator=unleash_operator(unleash.url, token_env=TOKEN_ENV)))
    with pytest.raises(FlagProviderError, match="no environment 'staging'"):
        p.current()


async def test_a_ramp_through_unleash_and_its_kill_switch(
    temporal_client: Client, task_queue: str, flag_prom: FlagProm, app_name: str, unleash: UnleashBackend,
) -> None:
    flag = key("unleash")
    unleash.add_flexible_rollout(flag, rollout=0, stickiness="userId")
    flag_prom.traffic(app_name, {"on": (40, 0.005), "off": (40, 0.005)})
    text = ramp_yaml(flag, app_name, "{type: unleash, name: main}",
                     stages="[{percent: 5, hold: 1s}, {percent: 50, hold: 1s}, {percent: 100}]")
    env = env_of(unleash)
    operator = unleash_operator(unleash.url, token_env=TOKEN_ENV)
    async with ramp_worker(temporal_client, task_queue, flag_prom.url, env=env, operator=operator):
        ramp = load_ramp(text)
        st = await (await temporal_client.start_workflow(
            FlagRampWorkflow.run, FlagRampInput(ramp=ramp), id=ramp.workflow_id(), task_queue=task_queue)).result()
        assert st.phase is Phase.COMPLETED, st.reason
        assert unleash.writes(flag) == [Write("rollout", "5"), Write("rollout", "50"), Write("rollout", "100")]
        assert unleash.strategy(flag)["parameters"] == {"rollout": "100", "stickiness": "userId", "groupId": flag}

        # With no ramp running, the kill switch needs the spec to find the provider.
        result = await kill(flag, client=temporal_client, spec=ramp, env=env, operator=operator)
        assert result.ramp == "none running" and not unleash.enabled(flag)
        assert unleash.writes(flag) == [Write("rollout", v) for v in ("5", "50", "100")] + [Write("off")]


def test_unleash_specs_must_use_whole_percentages(tmp_path: Path) -> None:
    from orchestrator.errors import SpecError

    with pytest.raises(SpecError, match="whole percentages"):
        load_ramp(ramp_yaml("k", "app", "{type: unleash, name: main}",
                            stages="[{percent: 0.5, hold: 1s}]", checks="[]"))
