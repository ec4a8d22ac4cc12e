"""jobs_core.dst: the next DST change of a zone and what a schedule does there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jobs_core.cron import CronSchedule
from jobs_core.dst import Effect, marks, next_transition, preview

LONDON = "Europe/London"
WINTER = datetime(2026, 1, 10, tzinfo=UTC)  # next change: 29 March 01:00 UTC (spring)
SUMMER = datetime(2026, 6, 10, tzinfo=UTC)  # next change: 25 October 01:00 UTC (fall)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_next_transition_is_found_to_the_second() -> None:
    spring = next_transition(ZoneInfo(LONDON), WINTER)
    assert spring is not None
    assert (spring.at, spring.kind) == (at(2026, 3, 29, 1), "spring-forward")
    assert (spring.before, spring.after) == (timedelta(0), timedelta(hours=1))
    fall = next_transition(ZoneInfo(LONDON), SUMMER)
    assert fall is not None and (fall.at, fall.kind) == (at(2026, 10, 25, 1), "fall-back")
    # Strictly after: at the change itself, the next one is half a year on.
    later = next_transition(ZoneInfo(LONDON), at(2026, 3, 29, 1))
    assert later is not None and later.at == at(2026, 10, 25, 1)
    # Lord Howe shifts by 30 minutes, at 15:30 UTC.
    howe = next_transition(ZoneInfo("Australia/Lord_Howe"), SUMMER)
    assert howe is not None and howe.at == at(2026, 10, 3, 15, 30)
    assert howe.shift == timedelta(minutes=30)


def test_zones_without_dst_have_no_change() -> None:
    assert next_transition(ZoneInfo("UTC"), WINTER) is None
    assert next_transition(ZoneInfo("Asia/Tokyo"), WINTER) is None
    assert preview(CronSchedule("0 30 1 * * *", "UTC"), WINTER) is None


def test_fixed_hour_in_the_gap_is_moved_to_the_first_instant_after_it() -> None:
    p = preview(CronSchedule("0 30 1 * * *", LONDON), WINTER)
    assert p is not None and p.effect is Effect.MOVED
    assert p.wall_times == ["01:30:00"]
    assert p.instants == [at(2026, 3, 29, 1)]  # 02:00 BST
    data = p.to_json()
    assert data["instants"] == ["2026-03-29T02:00:00+01:00"]
    assert (data["kind"], data["offset_before"], data["offset_after"]) == (
        "spring-forward",
        "UTC+00:00",
        "UTC+01:00",
    )
    assert "moved: 01:30:00 -> 02:00:00 BST" in p.describe()


def test_interval_like_hours_in_the_gap_are_skipped() -> None:
    p = preview(CronSchedule("0 */30 * * * *", LONDON), WINTER)
    assert p is not None and p.effect is Effect.SKIPPED
    assert p.wall_times == ["01:00:00", "01:30:00"] and p.instants == []
    assert "do not exist" in p.describe()


def test_interval_like_hours_in_the_repeat_fire_twice() -> None:
    p = preview(CronSchedule("0 30 * * * *", LONDON), SUMMER)
    assert p is not None and p.effect is Effect.TWICE
    assert p.wall_times == ["01:30:00"]
    assert p.instants == [at(2026, 10, 25, 0, 30), at(2026, 10, 25, 1, 30)]
    assert p.to_json()["instants"] == ["2026-10-25T01:30:00+01:00", "2026-10-25T01:30:00+00:00"]


def test_fixed_hour_in_the_repeat_fires_once_the_first_time() -> None:
    p = preview(CronSchedule("0 30 1 * * *", LONDON), SUMMER)
    assert p is not None and p.effect is Effect.ONCE
    assert p.instants == [at(2026, 10, 25, 0, 30)]  # 01:30 BST


@pytest.mark.parametrize("now", [WINTER, SUMMER])
@pytest.mark.parametrize("expr", ["0 0 12 * * *", "0 30 1 * * MON", "0 0 3 * * *"])
def test_schedules_away_from_the_change_are_unaffected(now: datetime, expr: str) -> None:
    p = preview(CronSchedule(expr, LONDON), now)
    assert p is not None and p.effect is Effect.UNAFFECTED  # 29 Mar / 25 Oct are Sundays
    assert p.wall_times == [] and p.instants == []


def test_a_busy_schedule_lists_a_few_wall_times_and_counts_them_all() -> None:
    p = preview(CronSchedule("*/20 * 1 * * *", LONDON), WINTER)
    assert p is not None and p.effect is Effect.MOVED
    assert p.count == 180 and len(p.wall_times) == 10 and "(+170 more)" in p.describe()


def test_marks_flag_runs_after_an_offset_change_and_second_passes() -> None:
    tz = ZoneInfo(LONDON)
    cron = CronSchedule("0 30 * * * *", LONDON)
    now = at(2026, 10, 24, 23, 0)
    upcoming = cron.next_n(now, 4)  # 00:30 BST, 01:30 BST, 01:30 GMT, 02:30 GMT
    assert marks(upcoming, tz, now) == [
        None,
        None,
        "DST: UTC+01:00 -> UTC+00:00",
        None,
    ]
    fold = [upcoming[2].astimezone(tz)]  # a second-pass wall time with no change before it
    assert marks(fold, tz, upcoming[2]) == ["DST: repeated hour, second time"]
