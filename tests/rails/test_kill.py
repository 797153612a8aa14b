"""The kill switch confirms propagation: the flag read back from the provider and, for flagd, evaluated with the
OpenFeature SDK and flagd's file provider; the time from the call to the confirmed off state is reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.flags.base import FlagTarget
from orchestrator.flags.flagd import FileStore
from orchestrator.flags.flagd import FlagdProvider as RampProvider
from orchestrator.flags.kill import confirm_off, kill
from orchestrator.specs.flags import FlagRamp
from orchestrator.specs.operator import OperatorSettings
from tests.fixtures_kube import KubeTestEnv

pytestmark = pytest.mark.timeout(90)

FLAG = "new-checkout"


def definition(on_weight: int, targeting: Any = None) -> dict[str, Any]:
    split = {"fractional": [["on", on_weight], ["off", 10_000 - on_weight]]}
    return {"flags": {FLAG: {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off",
                             "targeting": targeting if targeting is not None else split}}}


def operator(*providers: dict[str, Any]) -> OperatorSettings:
    return OperatorSettings.model_validate({"kind": "OperatorSettings", "spec": {"flagProviders": list(providers)}})


def ramp_spec(provider: dict[str, Any]) -> FlagRamp:
    return FlagRamp.model_validate({"kind": "FlagRamp", "metadata": {"name": "r"},
                                    "spec": {"provider": provider, "flag": FLAG, "stages": [{"percent": 100}]}})


async def test_a_flagd_file_flag_is_confirmed_off_by_evaluation(tmp_path: Path) -> None:
    path = tmp_path / "flags.flagd.json"
    path.write_text(json.dumps(definition(4000)))
    result = await kill(FLAG, client=None, spec=ramp_spec({"type": "flagd", "name": "f"}),
                        operator=operator({"name": "f", "type": "flagd", "file": str(path)}))
    assert result.change.before.percent == 40 and result.change.after.percent == 0
    assert result.confirmed_off_seconds is not None and 0 < result.confirmed_off_seconds < 10
    assert result.verification == ["read back from flagd: 0% get on (fractional on=0 off=10000)",
                                   "evaluated with OpenFeature + flagd file provider: 0 of 1000 contexts get on"]


async def test_a_flagd_configmap_flag_is_read_back_and_evaluated(kube: KubeTestEnv) -> None:
    kube.core.create_namespaced_config_map(kube.namespace, {
        "metadata": {"name": "flags"}, "data": {"flags.flagd.json": json.dumps(definition(2500))}})
    spec = ramp_spec({"type": "flagd", "name": "cm"})
    where = operator({"name": "cm", "type": "flagd", "configMap": {"namespace": kube.namespace, "name": "flags"}})
    result = await kill(FLAG, client=None, spec=spec, kube_api_client=lambda: kube.api_client, operator=where)
    assert result.confirmed_off_seconds is not None
    assert "0 of 1000 contexts get on" in result.verification[-1]
    stored = json.loads(kube.core.read_namespaced_config_map("flags", kube.namespace).data["flags.flagd.json"])
    assert stored["flags"][FLAG]["targeting"]["fractional"][0] == ["on", 0]


def test_a_split_at_zero_that_still_serves_the_variant_is_not_confirmed(tmp_path: Path) -> None:
    # A rule in front of the split still hands "on" to some users: the bytes say 0 %, evaluation says otherwise.
    rule = {"if": [{"starts_with": [{"var": "targetingKey"}, "kill-check-00"]}, "on",
                   {"fractional": [["on", 0], ["off", 10_000]]}]}
    path = tmp_path / "flags.flagd.json"
    path.write_text(json.dumps(definition(0, rule)))
    provider = RampProvider(FileStore(path), FlagTarget(FLAG, "on", None))
    seconds, lines = confirm_off(provider, FlagTarget(FLAG, "on", None), time.monotonic(), timeout=0.5)
    assert seconds is None
    assert "100 of 1000 contexts get on" in lines[1] and lines[-1] == "not confirmed off within 0.5s"


def test_the_cli_reports_the_time_to_the_confirmed_off_state(tmp_path: Path, temporal_address: str) -> None:
    path = tmp_path / "flags.flagd.json"
    path.write_text(json.dumps(definition(10_000)))
    spec = tmp_path / "ramp.yaml"
    spec.write_text(f"apiVersion: orchestrator.dev/v1\nkind: FlagRamp\nmetadata: {{name: r}}\nspec:\n"
                    f"  provider: {{type: flagd, name: local}}\n  flag: {FLAG}\n  stages: [{{percent: 100}}]\n")
    settings = tmp_path / "operator.yaml"
    settings.write_text("kind: OperatorSettings\nspec:\n  flagProviders:\n"
                        f"    - {{name: local, type: flagd, file: '{path}'}}\n")
    out = subprocess.run([sys.executable, "-m", "orchestrator", "flag", "kill", FLAG, "--file", str(spec)],
                         capture_output=True, text=True, timeout=60, check=False,
                         env={**os.environ, "ORCHESTRATOR_TEMPORAL_ADDRESS": temporal_address,
                              "ORCHESTRATOR_SETTINGS_FILE": str(settings)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "flagd flag new-checkout is off" in out.stdout
    assert "confirmed off " in out.stdout and "s after the call" in out.stdout
    assert "0 of 1000 contexts get on" in out.stdout


async def test_an_unleash_flag_is_confirmed_off_by_reading_it_back() -> None:
    import secrets

    from orchestrator.sandbox.unleash_api import UnleashAdminServer

    with UnleashAdminServer(f"*:*.{secrets.token_hex(16)}") as server:
        server.state.add_flexible_rollout(FLAG, rollout=60, stickiness="userId")
        spec = ramp_spec({"type": "unleash", "name": "main"})
        result = await kill(FLAG, client=None, spec=spec, env={"ORCHESTRATOR_UNLEASH_TOKEN": server.state.token},
                            operator=operator({"name": "main", "type": "unleash", "url": server.url}))
        assert not server.state.enabled(FLAG)
    assert result.confirmed_off_seconds is not None
    assert result.verification[0].startswith("read back from unleash: 60% get on") and "flag disabled" in \
        result.verification[0]
