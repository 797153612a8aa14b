"""The application's view of a ramp: the flag evaluated by OpenFeature's flagd provider in file mode.

No flagd daemon: ``FlagdProvider(resolver_type=FILE)`` reads the same JSON the ramp edits
and evaluates ``fractional`` with the pinned evaluator (openfeature-flagd-core 2.x), so
these tests check the bucketing property users actually experience.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.provider import ProviderStatus

from orchestrator.flags.base import FlagTarget
from orchestrator.flags.flagd import FileStore
from orchestrator.flags.flagd import FlagdProvider as RampProvider

FLAG = "new-checkout"
KEYS = [f"user-{i:05d}" for i in range(4000)]
# 4000 keys: the binomial standard deviation of a share p is sqrt(p(1-p)/4000) <= 0.8 %; 3 % is ~4 sigma.
TOLERANCE = 0.03


def flag_file(path: Path) -> None:
    path.write_text(json.dumps({
        "$schema": "https://flagd.dev/schema/v0/flags.json",
        "flags": {
            FLAG: {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": "off",
                "targeting": {},
                "metadata": {"owner": "checkout-team"},
            },
            "other-flag": {"state": "ENABLED", "variants": {"a": "A", "b": "B"}, "defaultVariant": "b"},
        },
    }, indent=2))
    # The provider reloads when the mtime grows; a first edit within the filesystem's timestamp granularity
    # of this write would look unchanged, so the starting file is dated in the past.
    past = time.time() - 60
    os.utime(path, (past, past))


class App:
    """An application evaluating the flag, told when the provider reloaded the file."""

    def __init__(self, path: Path) -> None:
        self.changed = threading.Condition()
        self.generation = 0
        api.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, self._on_change)
        api.set_provider(
            FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=str(path)),
            domain=f"ramp-{id(self)}",
        )
        self.client: OpenFeatureClient = api.get_client(f"ramp-{id(self)}")
        # The provider loads the file in the background; a ramp edit made before that first load would be
        # the file it starts from, and no reload event would follow. Start once it is ready.
        deadline = time.monotonic() + 15
        while self.client.get_provider_status() != ProviderStatus.READY:
            assert time.monotonic() < deadline, f"flagd provider not ready: {self.client.get_provider_status()}"
            time.sleep(0.05)

    def _on_change(self, details: EventDetails) -> None:
        with self.changed:
            self.generation += 1
            self.changed.notify_all()

    def wait_share(self, since: int, percent: float, timeout: float = 20.0) -> set[str]:
        """The keys with the variant once the provider reloaded the file after ``since`` (polled, not slept).

        A reload event alone is not proof (the provider's first load also emits one), so
        this also waits for the served share to come near ``percent``, up to ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self.changed:
                reloaded = self.changed.wait_for(lambda: self.generation > since, timeout=0.5)
            keys = self.on_keys()
            near = abs(len(keys) / len(KEYS) - percent / 100) <= TOLERANCE
            if (reloaded and near) or time.monotonic() > deadline:
                return keys

    def on_keys(self) -> set[str]:
        return {k for k in KEYS if self.client.get_boolean_value(FLAG, False, EvaluationContext(targeting_key=k))}

    def close(self) -> None:
        api.remove_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, self._on_change)
        api.shutdown()


@pytest.fixture
def app_and_ramp(tmp_path: Path) -> Iterator[tuple[App, RampProvider, Path]]:
    path = tmp_path / "flags.flagd.json"
    flag_file(path)
    app = App(path)
    try:
        yield app, RampProvider(FileStore(path), FlagTarget(FLAG, "on", None)), path
    finally:
        app.close()


def test_each_stage_serves_its_share_and_ramping_up_keeps_users(app_and_ramp: tuple[App, RampProvider, Path]) -> None:
    app, ramp, _ = app_and_ramp
    assert app.on_keys() == set(), "before the ramp nobody has the variant"
    seen: dict[float, set[str]] = {}
    for percent in (1, 10, 25, 50, 100):
        generation = app.generation
        change = ramp.set_percent(percent)
        assert change.changed
        seen[percent] = app.wait_share(generation, percent)
        share = len(seen[percent]) / len(KEYS)
        assert abs(share - percent / 100) <= TOLERANCE, f"{percent}% stage served {share:.3%}"
    assert seen[100] == set(KEYS)
    lost = seen[10] - seen[50]
    assert not lost, f"{len(lost)} users had the variant at 10 % and lost it at 50 %: {sorted(lost)[:5]}"
    for low, high in ((1, 10), (10, 25), (25, 50), (50, 100)):
        assert seen[low] <= seen[high]


def test_turning_off_serves_control_to_everyone(app_and_ramp: tuple[App, RampProvider, Path]) -> None:
    app, ramp, _ = app_and_ramp
    generation = app.generation
    ramp.set_percent(30)
    assert app.wait_share(generation, 30)
    generation = app.generation
    ramp.turn_off()
    assert app.wait_share(generation, 0) == set()


def test_a_ramp_edits_only_the_split(app_and_ramp: tuple[App, RampProvider, Path]) -> None:
    _, ramp, path = app_and_ramp
    before = json.loads(path.read_text())
    ramp.set_percent(25)
    after = json.loads(path.read_text())
    assert after["flags"]["other-flag"] == before["flags"]["other-flag"]
    assert after["$schema"] == before["$schema"]
    flag_before, flag_after = before["flags"][FLAG], after["flags"][FLAG]
    assert {k: v for k, v in flag_after.items() if k != "targeting"} == {
        k: v for k, v in flag_before.items() if k != "targeting"
    }
    assert flag_after["targeting"] == {"fractional": [["on", 2500], ["off", 7500]]}
    assert ramp.set_percent(25).changed is False, "setting the same percentage again writes nothing"


def test_a_nested_rule_keeps_its_condition_and_bucketing_expression() -> None:
    from orchestrator.errors import FlagProviderError
    from orchestrator.flags.flagd import with_percent

    targeting = {"if": [{"ends_with": [{"var": "email"}, "@example.com"]},
                        {"fractional": [{"var": "email"}, ["off", 50], ["on", 50]]}, "off"]}
    doc = {"flags": {FLAG: {"variants": {"on": True, "off": False}, "defaultVariant": "off", "targeting": targeting}}}
    out = with_percent(doc, FlagTarget(FLAG, "on", None), 12.5)
    rule = out["flags"][FLAG]["targeting"]["if"]
    assert rule[0] == targeting["if"][0] and rule[2] == "off"
    assert rule[1] == {"fractional": [{"var": "email"}, ["on", 1250], ["off", 8750]]}
    assert doc["flags"][FLAG]["targeting"] == targeting, "the input document is not modified"

    three_way = {"flags": {FLAG: {"variants": {"on": 1, "off": 0, "beta": 2}, "defaultVariant": "off",
                                  "targeting": {"fractional": [["on", 1], ["off", 1], ["beta", 1]]}}}}
    with pytest.raises(FlagProviderError, match="also splits into beta"):
        with_percent(three_way, FlagTarget(FLAG, "on", None), 10)
