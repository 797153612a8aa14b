"""Change freezes and staffed hours: declared windows with timezones, judged at a given moment."""

from __future__ import annotations

from datetime import UTC, datetime

from orchestrator.rails.clock import freeze, staffed_hours
from orchestrator.rails.models import RailStatus
from tests.rails.conftest import policy

HOLIDAYS = policy(freezes=[{"name": "holidays", "start": "2026-12-24T00:00:00+01:00",
                            "end": "2026-12-27T00:00:00+01:00"}]).spec
OFFICE = policy(staffedHours={"timezone": "Europe/Berlin", "days": ["mon", "tue", "wed", "thu", "fri"],
                              "start": "09:00", "end": "17:00"}).spec


def test_inside_a_freeze_refuses_with_the_window_and_time_left() -> None:
    verdict = freeze(HOLIDAYS, "canary", "shop", datetime(2026, 12, 25, 11, 0, tzinfo=UTC))
    assert verdict.status is RailStatus.REFUSED
    assert "holidays" in verdict.reason and "2026-12-27T00:00:00+01:00" in verdict.reason
    assert "36.0 h left" in verdict.reason  # 12:00 local on the 25th to midnight local on the 27th


def test_the_freeze_boundary_is_read_in_its_own_timezone() -> None:
    # 23:30 UTC on the 23rd is 00:30 on the 24th in +01:00: frozen.
    assert freeze(HOLIDAYS, "flag", None, datetime(2026, 12, 23, 23, 30, tzinfo=UTC)).refused
    # 22:59 UTC on the 23rd is 23:59 local: not yet.
    verdict = freeze(HOLIDAYS, "flag", None, datetime(2026, 12, 23, 22, 59, tzinfo=UTC))
    assert verdict.status is RailStatus.OK and "next: 'holidays'" in verdict.reason


def test_freezes_are_off_unless_declared() -> None:
    assert freeze(policy().spec, "chaos", "shop", datetime.now(UTC)).status is RailStatus.SKIPPED


def test_a_freeze_limited_to_namespaces_and_kinds() -> None:
    p = policy(freezes=[{"name": "pay", "start": "2026-01-01T00:00:00Z", "end": "2027-01-01T00:00:00Z",
                         "namespaces": ["payments"], "kinds": ["chaos"]}]).spec
    at = datetime(2026, 6, 1, tzinfo=UTC)
    assert freeze(p, "chaos", "payments", at).refused
    assert freeze(p, "chaos", "shop", at).status is RailStatus.SKIPPED
    assert freeze(p, "canary", "payments", at).status is RailStatus.SKIPPED


def test_outside_staffed_hours_refuses_and_names_the_local_time() -> None:
    saturday = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    verdict = staffed_hours(OFFICE, "chaos", saturday)
    assert verdict.status is RailStatus.REFUSED
    assert "sat 13:00 Europe/Berlin" in verdict.reason
    evening = datetime(2026, 12, 2, 16, 30, tzinfo=UTC)  # 17:30 in Berlin (winter, +01:00)
    assert staffed_hours(OFFICE, "chaos", evening).refused


def test_inside_staffed_hours_passes_and_follows_daylight_saving_time() -> None:
    assert staffed_hours(OFFICE, "chaos", datetime(2026, 12, 2, 15, 30, tzinfo=UTC)).status is RailStatus.OK
    # 07:30 UTC is 09:30 in Berlin in summer (+02:00) but 08:30 in winter (+01:00).
    assert staffed_hours(OFFICE, "chaos", datetime(2026, 7, 1, 7, 30, tzinfo=UTC)).status is RailStatus.OK
    assert staffed_hours(OFFICE, "chaos", datetime(2026, 12, 2, 7, 30, tzinfo=UTC)).refused


def test_staffed_hours_off_unless_declared_and_only_for_their_kinds() -> None:
    assert staffed_hours(policy().spec, "chaos", datetime.now(UTC)).status is RailStatus.SKIPPED
    saturday = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    assert staffed_hours(OFFICE, "canary", saturday).status is RailStatus.SKIPPED
