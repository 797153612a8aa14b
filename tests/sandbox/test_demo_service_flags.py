"""The demo app's flags: evaluated through OpenFeature and flagd's file provider, counted by variant.

Given the sandbox's flag file, the service exports every variant's request and error series at 0
before any request (as a well-behaved exporter does), serves the variant the ramp wrote, and fails
the share of a bad variant's requests its template says.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from orchestrator.flags.base import FlagTarget
from orchestrator.flags.flagd import FileStore, FlagdProvider
from orchestrator.sandbox.demo_service import Config, DemoService
from orchestrator.sandbox.manager import write_flags_file

pytestmark = pytest.mark.timeout(60)


def series(text: str, flag: str) -> dict[tuple[str, str], float]:
    """(variant, code) -> value of http_requests_by_flag_total for ``flag``."""
    out = {}
    for m in re.finditer(r'http_requests_by_flag_total\{[^}]*flag="([^"]+)",variant="([^"]+)",code="(\d+)"\} (\S+)',
                         text):
        if m.group(1) == flag:
            out[(m.group(2), m.group(3))] = float(m.group(4))
    return out


def start(path: Path) -> DemoService:
    config = Config.from_env({"FLAGD_FILE": str(path), "FLAGS": "new-checkout,new-payment",
                              "FLAG_ERROR_RATE": "new-payment:on=0.25", "APP": "shop", "NAMESPACE": "demo"})
    service = DemoService(config)
    deadline = time.monotonic() + 15
    while not service.ready():
        assert time.monotonic() < deadline, "the flag provider never loaded the file"
        time.sleep(0.05)
    return service


def wait_until(predicate: object, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_every_variant_is_exported_at_zero_before_any_request(tmp_path: Path) -> None:
    service = start(write_flags_file(tmp_path))
    text = service.metrics.render()
    for flag in ("new-checkout", "new-payment"):
        assert series(text, flag) == {(v, c): 0.0 for v in ("off", "on") for c in ("200", "500")}
    assert 'code="500"} 0' in text.split("http_requests_by_flag_total")[0], "plain error series at 0 as well"


def test_requests_get_the_ramped_variant_and_a_bad_variant_fails_its_share(tmp_path: Path) -> None:
    path = write_flags_file(tmp_path)
    service = start(path)
    for user in range(40):
        assert service.handle_work(f"user-{user}") == 200  # nobody has a variant yet: all "off", all fine
    FlagdProvider(FileStore(path), FlagTarget("new-payment", "on", "off")).set_percent(100)
    assert json.loads(path.read_text())["flags"]["new-payment"]["targeting"]["fractional"][0] == ["on", 10_000]
    wait_until(lambda: service.flags is not None and service.flags.evaluate("user-1")["new-payment"] == "on")

    codes = [service.handle_work(f"user-{user}") for user in range(100)]
    counted = series(service.metrics.render(), "new-payment")
    assert codes.count(500) == 25, "one in four requests on the bad variant fails, evenly spread"
    assert counted[("on", "500")] == 25 and counted[("on", "200")] == 75
    assert counted[("off", "200")] == 40 and counted[("off", "500")] == 0
    # The other flag saw the same 140 requests, all on its control variant.
    assert series(service.metrics.render(), "new-checkout")[("off", "200")] + \
        series(service.metrics.render(), "new-checkout")[("off", "500")] == 140
