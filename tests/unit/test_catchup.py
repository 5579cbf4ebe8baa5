"""Catch-up decisions after downtime, with time passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from eventcron.firing.catchup import MAX_MISSED, decide, missed
from eventcron.timing import EveryTiming

NOW = datetime(2026, 11, 26, 15, 30, tzinfo=UTC)
HOURLY = [datetime(2026, 11, 26, h, 0, tzinfo=UTC) for h in (11, 12, 13, 14, 15)]
TOO_OLD = "missed by more than catch_up (3h)"


@pytest.mark.parametrize(("mode", "fired", "skipped"), [
    ("latest", [15], {11: TOO_OLD, 12: TOO_OLD,
                      13: "a later occurrence was fired instead (catch_up_mode latest)",
                      14: "a later occurrence was fired instead (catch_up_mode latest)"}),
    ("all", [13, 14, 15], {11: TOO_OLD, 12: TOO_OLD}),
    ("none", [], {11: TOO_OLD, 12: TOO_OLD, 13: "catch_up_mode is none",
                  14: "catch_up_mode is none", 15: "catch_up_mode is none"}),
])
def test_modes(mode: str, fired: list[int], skipped: dict[int, str]) -> None:
    decision = decide(HOURLY, NOW, 3 * 3600, mode)  # type: ignore[arg-type]
    assert [t.hour for t in decision.fire] == fired
    assert {t.hour: reason for t, reason in decision.skip} == skipped
    assert decision.missed == 5


def test_window_edge_is_inclusive() -> None:
    decision = decide(HOURLY, NOW, 2.5 * 3600, "all")
    assert [t.hour for t in decision.fire] == [13, 14, 15]


def test_nothing_missed() -> None:
    decision = decide([], NOW, 3600, "all")
    assert (decision.fire, decision.skip) == ((), ())


def test_missed_lists_occurrences_after_the_watermark_up_to_now() -> None:
    timing = EveryTiming(timedelta(hours=1), datetime(1970, 1, 1, tzinfo=UTC))
    found, capped = missed(timing, datetime(2026, 11, 26, 10, 0, tzinfo=UTC), NOW)
    assert found == HOURLY
    assert not capped


def test_missed_is_bounded_after_very_long_downtime() -> None:
    timing = EveryTiming(timedelta(seconds=1), datetime(1970, 1, 1, tzinfo=UTC))
    found, capped = missed(timing, NOW - timedelta(days=3), NOW)
    assert capped
    assert len(found) == MAX_MISSED
    assert found[-1] == NOW
