"""Unit tests of jobs_core.cron: syntax, errors, calendar rules and DST behaviour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from jobs_core import errors
from jobs_core.cron import CronSchedule, InvalidSchedule
from tests.unit.cron_reference import Item, reference_next, render, spec_of, transitions


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def fires(expr: str, start: datetime, n: int = 3, tz: str = "UTC") -> list[datetime]:
    """The next ``n`` fires as UTC datetimes (UTC compares folds correctly)."""
    return [f.astimezone(UTC) for f in CronSchedule(expr, tz).next_n(start, n)]


def test_invalid_schedule_is_the_projects_error() -> None:
    assert InvalidSchedule is errors.InvalidSchedule
    assert issubclass(InvalidSchedule, ValueError)
    assert issubclass(InvalidSchedule, errors.ConfigError)


# ---------------------------------------------------------------------------- seeds


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("0 0 * * * *", [utc(2026, 5, 4, 11), utc(2026, 5, 4, 12), utc(2026, 5, 4, 13)]),
        (
            "0 */30 * * * *",
            [utc(2026, 5, 4, 10, 30), utc(2026, 5, 4, 11), utc(2026, 5, 4, 11, 30)],
        ),
        (
            "0 */5 * * * *",
            [utc(2026, 5, 4, 10, 20), utc(2026, 5, 4, 10, 25), utc(2026, 5, 4, 10, 30)],
        ),
        ("0 0 3 * * *", [utc(2026, 5, 5, 3), utc(2026, 5, 6, 3), utc(2026, 5, 7, 3)]),
        ("0 0 4 * * *", [utc(2026, 5, 5, 4), utc(2026, 5, 6, 4), utc(2026, 5, 7, 4)]),
        # 2026-05-04 is a Monday: weekly fires on Sundays at midnight.
        ("0 0 0 * * 0", [utc(2026, 5, 10), utc(2026, 5, 17), utc(2026, 5, 24)]),
        (
            "*/10 * * * * *",
            [
                utc(2026, 5, 4, 10, 17, 40),
                utc(2026, 5, 4, 10, 17, 50),
                utc(2026, 5, 4, 10, 18),
            ],
        ),
        ("0 0 0 1 * *", [utc(2026, 6, 1), utc(2026, 7, 1), utc(2026, 8, 1)]),
        ("@daily", [utc(2026, 5, 5), utc(2026, 5, 6), utc(2026, 5, 7)]),
    ],
)
def test_seed_schedules(expr: str, expected: list[datetime]) -> None:
    assert fires(expr, utc(2026, 5, 4, 10, 17, 33)) == expected


def test_strictly_after_a_fire_time() -> None:
    assert fires("0 0 * * * *", utc(2026, 5, 4, 11), 1) == [utc(2026, 5, 4, 12)]
    assert fires("0 0 * * * *", utc(2026, 5, 4, 10, 59, 59, 999999), 1) == [utc(2026, 5, 4, 11)]


@pytest.mark.parametrize(
    ("macro", "expanded"),
    [
        ("@yearly", "0 0 0 1 1 *"),
        ("@annually", "0 0 0 1 1 *"),
        ("@monthly", "0 0 0 1 * *"),
        ("@weekly", "0 0 0 * * 0"),
        ("@daily", "0 0 0 * * *"),
        ("@midnight", "0 0 0 * * *"),
        ("@hourly", "0 0 * * * *"),
        ("@HOURLY", "0 0 * * * *"),
    ],
)
def test_macros(macro: str, expanded: str) -> None:
    assert CronSchedule(macro) == CronSchedule(expanded)
    start = utc(2026, 2, 3, 4, 5, 6)
    assert CronSchedule(macro).next_n(start, 3) == CronSchedule(expanded).next_n(start, 3)


# --------------------------------------------------------------------------- syntax


@pytest.mark.parametrize(
    ("expr", "same_as"),
    [
        ("0 0 0 * jan-mar mon-fri", "0 0 0 * 1-3 1-5"),
        ("0 0 0 * Jan,Jul SUN", "0 0 0 * 1,7 0"),
        ("0 0 0 * * 7", "0 0 0 * * 0"),
        ("0 0 0 * * 5-7", "0 0 0 * * 0,5,6"),
        ("0 0 0 * * FRI-SUN", "0 0 0 * * 0,5,6"),
        ("0 0 0 ? * *", "0 0 0 * * *"),
        ("0 0 0 * * ?", "0 0 0 * * *"),
        ("0 10/20 * * * *", "0 10,30,50 * * * *"),
        ("0 10-40/15 * * * *", "0 10,25,40 * * * *"),
        ("0 */15 * * * *", "0 0,15,30,45 * * * *"),
        ("0   0  12 * *  *", "0 0 12 * * *"),
        ("0 0 0 * * fril", "0 0 0 * * 5L"),
    ],
)
def test_equivalent_syntax(expr: str, same_as: str) -> None:
    assert CronSchedule(expr) == CronSchedule(same_as)
    start = utc(2026, 1, 1)
    assert CronSchedule(expr).next_n(start, 20) == CronSchedule(same_as).next_n(start, 20)


def test_last_day_of_month() -> None:
    assert fires("0 0 12 L * *", utc(2026, 1, 15), 4) == [
        utc(2026, 1, 31, 12),
        utc(2026, 2, 28, 12),
        utc(2026, 3, 31, 12),
        utc(2026, 4, 30, 12),
    ]
    assert fires("0 0 0 L 2 *", utc(2027, 3, 1), 2) == [utc(2028, 2, 29), utc(2029, 2, 28)]


def test_last_weekday_of_month() -> None:
    # Last Friday of each month in 2026.
    assert fires("0 0 9 * * 5L", utc(2026, 1, 1), 3) == [
        utc(2026, 1, 30, 9),
        utc(2026, 2, 27, 9),
        utc(2026, 3, 27, 9),
    ]


def test_nth_weekday_of_month() -> None:
    # Second Monday, and the rare fifth Sunday.
    assert fires("0 0 0 * * 1#2", utc(2026, 1, 1), 3) == [
        utc(2026, 1, 12),
        utc(2026, 2, 9),
        utc(2026, 3, 9),
    ]
    assert fires("0 0 0 * * SUN#5", utc(2026, 1, 1), 3) == [
        utc(2026, 3, 29),
        utc(2026, 5, 31),
        utc(2026, 8, 30),
    ]


def test_vixie_or_when_both_day_fields_restricted() -> None:
    # The 13th OR any Friday.
    assert fires("0 0 0 13 * 5", utc(2026, 1, 1), 5) == [
        utc(2026, 1, 2),
        utc(2026, 1, 9),
        utc(2026, 1, 13),
        utc(2026, 1, 16),
        utc(2026, 1, 23),
    ]


def test_star_step_in_a_day_field_is_not_a_restriction() -> None:
    # "*/2" starts with "*", so day-of-week must ALSO match (odd days that are Mondays).
    assert fires("0 0 0 */2 * 1", utc(2026, 1, 1), 3) == [
        utc(2026, 1, 5),
        utc(2026, 1, 19),
        utc(2026, 2, 9),
    ]


def test_leap_day() -> None:
    assert fires("0 0 0 29 2 *", utc(2026, 1, 1), 3) == [
        utc(2028, 2, 29),
        utc(2032, 2, 29),
        utc(2036, 2, 29),
    ]
    # 2100 is not a leap year.
    assert fires("0 0 0 29 2 *", utc(2097, 1, 1), 1) == [utc(2104, 2, 29)]


def test_month_ends() -> None:
    assert fires("0 0 0 31 * *", utc(2026, 1, 31), 4) == [
        utc(2026, 3, 31),
        utc(2026, 5, 31),
        utc(2026, 7, 31),
        utc(2026, 8, 31),
    ]
    assert fires("59 59 23 31 12 *", utc(2026, 12, 31, 23, 59, 59), 1) == [
        utc(2027, 12, 31, 23, 59, 59)
    ]
    assert fires("0 0 0 30 * *", utc(2026, 1, 30), 2) == [utc(2026, 3, 30), utc(2026, 4, 30)]


def test_croniter_reads_one_value_range_as_star_we_do_not() -> None:
    assert fires("30 59-59 5,12 * * *", utc(2026, 1, 1), 3) == [
        utc(2026, 1, 1, 5, 59, 30),
        utc(2026, 1, 1, 12, 59, 30),
        utc(2026, 1, 2, 5, 59, 30),
    ]
    assert fires("0 0 2-2 * * *", utc(2026, 1, 1), 2) == [utc(2026, 1, 1, 2), utc(2026, 1, 2, 2)]


def test_croniter_double_fire_on_london_fall_back_we_do_not() -> None:
    # 2026-10-25: 01:00-01:59 happens twice in Europe/London.
    assert fires("0 30 1 * * *", utc(2026, 10, 24, 12), 3, "Europe/London") == [
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 26, 1, 30),
        utc(2026, 10, 27, 1, 30),
    ]


# ---------------------------------------------------------------------------- zones


def test_result_is_aware_in_schedule_zone_whatever_the_input_zone() -> None:
    schedule = CronSchedule("0 0 9 * * *", "Asia/Kathmandu")
    start = datetime(2026, 5, 4, 9, 0, tzinfo=ZoneInfo("America/New_York"))
    got = schedule.next_after(start)
    assert got.tzinfo is schedule.tz
    assert got.replace(tzinfo=None) == datetime(2026, 5, 5, 9, 0)
    assert got.astimezone(UTC) == utc(2026, 5, 5, 3, 15)


def test_kathmandu_quarter_hour_offset() -> None:
    assert fires("0 0 0 * * *", utc(2026, 5, 4), 2, "Asia/Kathmandu") == [
        utc(2026, 5, 4, 18, 15),
        utc(2026, 5, 5, 18, 15),
    ]


def test_accepts_zoneinfo_and_exposes_attributes() -> None:
    zone = ZoneInfo("Europe/London")
    schedule = CronSchedule(" 0 0 3 * * * ", zone)
    assert schedule.tz is zone
    assert schedule.expr == " 0 0 3 * * * "
    assert CronSchedule("0 0 3 * * *").tz == ZoneInfo("UTC")
    assert repr(schedule) == "CronSchedule(' 0 0 3 * * * ', tz='Europe/London')"
    assert schedule == CronSchedule("0 0 3 * * *", "Europe/London")
    assert schedule != CronSchedule("0 0 3 * * *", "UTC")
    assert hash(schedule) == hash(CronSchedule("0 0 3 * * *", "Europe/London"))
    assert schedule != "0 0 3 * * *"


def test_iter_after_and_next_n_agree() -> None:
    schedule = CronSchedule("0 */30 * * * *", "Europe/London")
    start = utc(2026, 10, 24, 22)
    it = schedule.iter_after(start)
    assert [next(it) for _ in range(10)] == schedule.next_n(start, 10)
    assert schedule.next_n(start, 0) == []


def test_fixed_offset_zone_fast_path() -> None:
    assert fires("0 0 9 * * *", utc(2026, 5, 4), 2, "Etc/GMT-3") == [
        utc(2026, 5, 4, 6),
        utc(2026, 5, 5, 6),
    ]


LONDON, NEW_YORK = ZoneInfo("Europe/London"), ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("expr", "zone", "start", "expected"),
    [
        # 09:30 BST is 08:30Z: the next hour of a UTC schedule is 09:00Z, not 10:00Z.
        ("0 0 * * * *", "UTC", datetime(2026, 6, 1, 9, 30, tzinfo=LONDON), utc(2026, 6, 1, 9)),
        # In winter London is on UTC: 09:30 GMT is 09:30Z.
        ("0 0 * * * *", "UTC", datetime(2026, 1, 15, 9, 30, tzinfo=LONDON), utc(2026, 1, 15, 10)),
        # 23:30 EDT on May 4th is 03:30Z on May 5th.
        ("0 0 0 * * *", "UTC", datetime(2026, 5, 4, 23, 30, tzinfo=NEW_YORK), utc(2026, 5, 6)),
        # 07:30 EDT is 11:30Z, 14:30 at UTC+3: 09:00 UTC+3 comes the next day.
        (
            "0 0 9 * * *",
            "Etc/GMT-3",
            datetime(2026, 5, 4, 7, 30, tzinfo=NEW_YORK),
            utc(2026, 5, 5, 6),
        ),
        # 05:59:59.5 at UTC+05:45 is 00:14:59.5Z: strictly after it is 00:15Z.
        (
            "0 */15 * * * *",
            "Etc/GMT+5",
            datetime(2026, 2, 1, 5, 59, 59, 500_000, tzinfo=timezone(timedelta(hours=5.75))),
            utc(2026, 2, 1, 0, 15),
        ),
        # A fire instant given in another zone is not "after" itself.
        ("0 0 * * * *", "UTC", datetime(2026, 6, 1, 10, 0, tzinfo=LONDON), utc(2026, 6, 1, 10)),
    ],
)
def test_fixed_offset_fast_path_reads_the_instant_not_the_wall_time(
    expr: str, zone: str, start: datetime, expected: datetime
) -> None:
    schedule = CronSchedule(expr, zone)
    got = schedule.next_after(start)
    assert got.tzinfo is schedule.tz
    assert got == expected
    # Whatever zone the same instant is given in, the answer is the same.
    assert schedule.next_after(start.astimezone(UTC)) == got
    assert schedule.next_after(start.astimezone(schedule.tz)) == got


# ------------------------------------------------------------------------------ DST


# Transitions in 2026: Europe/London 03-29 01:00Z (GMT->BST) and 10-25 01:00Z (BST->GMT);
# America/New_York 03-08 07:00Z (EST->EDT) and 11-01 06:00Z (EDT->EST);
# Australia/Lord_Howe 04-04 15:00Z (+11 -> +10:30) and 10-03 15:30Z (+10:30 -> +11).


def test_london_spring_forward() -> None:
    # 01:30 does not exist on 2026-03-29: the fixed job fires at the gap's end, 02:00 BST.
    assert fires("0 30 1 * * *", utc(2026, 3, 28, 12), 2, "Europe/London") == [
        utc(2026, 3, 29, 1, 0),
        utc(2026, 3, 30, 0, 30),
    ]
    # The interval-like job simply has no 01:30 that day.
    assert fires("0 30 * * * *", utc(2026, 3, 29, 0), 3, "Europe/London") == [
        utc(2026, 3, 29, 0, 30),
        utc(2026, 3, 29, 1, 30),
        utc(2026, 3, 29, 2, 30),
    ]


def test_london_fall_back() -> None:
    # The interval-like job fires at both 01:30 BST and 01:30 GMT, one real hour apart.
    got = CronSchedule("0 30 * * * *", "Europe/London").next_n(utc(2026, 10, 24, 23), 4)
    assert [g.astimezone(UTC) for g in got] == [
        utc(2026, 10, 24, 23, 30),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 25, 1, 30),
        utc(2026, 10, 25, 2, 30),
    ]
    assert [g.fold for g in got] == [0, 0, 1, 0]
    assert [g.utcoffset() for g in got] == [timedelta(hours=h) for h in (1, 1, 0, 0)]


def test_new_york_spring_forward() -> None:
    # 02:30 on 2026-03-08 is swallowed: fires at 03:00 EDT; several gap times fire once.
    assert fires("0 30 2 * * *", utc(2026, 3, 7, 12), 2, "America/New_York") == [
        utc(2026, 3, 8, 7),
        utc(2026, 3, 9, 6, 30),
    ]
    assert fires("0 0,15,30,45 2 * * *", utc(2026, 3, 7, 12), 3, "America/New_York") == [
        utc(2026, 3, 8, 7),
        utc(2026, 3, 9, 6),
        utc(2026, 3, 9, 6, 15),
    ]
    got = CronSchedule("0 30 2 * * *", "America/New_York").next_after(utc(2026, 3, 7, 12))
    assert got.replace(tzinfo=None) == datetime(2026, 3, 8, 3, 0)
    assert fires("0 */20 * * * *", utc(2026, 3, 8, 6, 30), 4, "America/New_York") == [
        utc(2026, 3, 8, 6, 40),
        utc(2026, 3, 8, 7, 0),
        utc(2026, 3, 8, 7, 20),
        utc(2026, 3, 8, 7, 40),
    ]


def test_new_york_fall_back() -> None:
    assert fires("0 30 1 * * *", utc(2026, 10, 31, 12), 2, "America/New_York") == [
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 2, 6, 30),
    ]
    assert fires("0 0 1-3 * * *", utc(2026, 11, 1, 4), 3, "America/New_York") == [
        utc(2026, 11, 1, 5),
        utc(2026, 11, 1, 7),
        utc(2026, 11, 1, 8),
    ]
    assert fires("0 */30 * * * *", utc(2026, 11, 1, 4, 50), 6, "America/New_York") == [
        utc(2026, 11, 1, 5),
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 1, 6),
        utc(2026, 11, 1, 6, 30),
        utc(2026, 11, 1, 7),
        utc(2026, 11, 1, 7, 30),
    ]


@pytest.mark.parametrize(
    ("start", "interval", "fixed"),
    [
        # Inside the first 01:xx: the rest of it, then the whole repeat.
        (
            utc(2026, 11, 1, 5, 40),
            [utc(2026, 11, 1, 5, 45), utc(2026, 11, 1, 6)],
            utc(2026, 11, 1, 5, 45),
        ),
        # Inside the repeated 01:xx (fold 1).
        (
            utc(2026, 11, 1, 6, 20),
            [utc(2026, 11, 1, 6, 30), utc(2026, 11, 1, 6, 45)],
            utc(2026, 11, 1, 7),
        ),
        # Exactly at the transition.
        (
            utc(2026, 11, 1, 6),
            [utc(2026, 11, 1, 6, 15), utc(2026, 11, 1, 6, 30)],
            utc(2026, 11, 1, 7),
        ),
    ],
)
def test_new_york_fall_back_starting_inside_the_repeat(
    start: datetime, interval: list[datetime], fixed: datetime
) -> None:
    assert fires("0 */15 * * * *", start, 2, "America/New_York") == interval
    # The fixed-time job never fires in the second 01:xx; next is 02:00 EST.
    assert fires("0 */15 1-2 * * *", start, 1, "America/New_York") == [fixed]


# Interval-like hour fields other than "*": "*/2" and "*/3" start with "*", so cronie
# treats them like "*" across DST. Their fixed-time twins ("0-22/2", "0-21/3") list the
# same hours and follow the fixed-time rules. Europe/Berlin skips 02:xx in spring and
# repeats it in autumn (01:00Z both times); America/Havana does the same with 00:xx
# (2026-03-08 05:00Z and 2026-11-01 05:00Z).
@pytest.mark.parametrize(
    ("zone", "start", "interval_expr", "interval", "fixed_expr", "fixed"),
    [
        (  # Berlin spring: 02:30 does not exist; the fixed twin fires at 03:00 CEST.
            "Europe/Berlin",
            utc(2026, 3, 28, 22),
            "0 30 */2 * * *",
            [utc(2026, 3, 28, 23, 30), utc(2026, 3, 29, 2, 30), utc(2026, 3, 29, 4, 30)],
            "0 30 0-22/2 * * *",
            [utc(2026, 3, 28, 23, 30), utc(2026, 3, 29, 1), utc(2026, 3, 29, 2, 30)],
        ),
        (  # Berlin autumn: 02:30 CEST and 02:30 CET; the fixed twin only the first.
            "Europe/Berlin",
            utc(2026, 10, 24, 21),
            "0 30 */2 * * *",
            [
                utc(2026, 10, 24, 22, 30),
                utc(2026, 10, 25, 0, 30),
                utc(2026, 10, 25, 1, 30),
                utc(2026, 10, 25, 3, 30),
            ],
            "0 30 0-22/2 * * *",
            [utc(2026, 10, 24, 22, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 3, 30)],
        ),
        (  # Havana spring: midnight does not exist; the fixed twin fires at 01:00 CDT.
            "America/Havana",
            utc(2026, 3, 8, 1),
            "0 0 */3 * * *",
            [utc(2026, 3, 8, 2), utc(2026, 3, 8, 7), utc(2026, 3, 8, 10)],
            "0 0 0-21/3 * * *",
            [utc(2026, 3, 8, 2), utc(2026, 3, 8, 5), utc(2026, 3, 8, 7)],
        ),
        (  # Havana autumn: midnight CDT and midnight CST; the fixed twin only the first.
            "America/Havana",
            utc(2026, 11, 1),
            "0 0 */3 * * *",
            [utc(2026, 11, 1, 1), utc(2026, 11, 1, 4), utc(2026, 11, 1, 5), utc(2026, 11, 1, 8)],
            "0 0 0-21/3 * * *",
            [utc(2026, 11, 1, 1), utc(2026, 11, 1, 4), utc(2026, 11, 1, 8)],
        ),
        (  # Havana autumn, starting inside the first midnight hour.
            "America/Havana",
            utc(2026, 11, 1, 4, 30),
            "0 0 */3 * * *",
            [utc(2026, 11, 1, 5), utc(2026, 11, 1, 8)],
            "0 0 0-21/3 * * *",
            [utc(2026, 11, 1, 8), utc(2026, 11, 1, 11)],
        ),
        (  # New York spring: 02:30 does not exist for "*/2"; its twin fires at 03:00 EDT.
            "America/New_York",
            utc(2026, 3, 8, 5),
            "0 30 */2 * * *",
            [utc(2026, 3, 8, 5, 30), utc(2026, 3, 8, 8, 30)],
            "0 30 0-22/2 * * *",
            [utc(2026, 3, 8, 5, 30), utc(2026, 3, 8, 7), utc(2026, 3, 8, 8, 30)],
        ),
    ],
)
def test_star_step_hours_are_interval_like_across_both_dst_changes(
    zone: str,
    start: datetime,
    interval_expr: str,
    interval: list[datetime],
    fixed_expr: str,
    fixed: list[datetime],
) -> None:
    assert fires(interval_expr, start, len(interval), zone) == interval
    assert fires(fixed_expr, start, len(fixed), zone) == fixed


def _star_step_hours(second: int, minutes: list[Item], step: int) -> list[list[Item]]:
    star = [Item("star")]
    return [[Item("value", second)], minutes, [Item("star", step=step)], star, star, star]


@pytest.mark.parametrize(
    "zone",
    ["Europe/Berlin", "America/Havana", "America/New_York", "Europe/London", "Australia/Lord_Howe"],
)
@pytest.mark.parametrize(
    "fields",
    [
        _star_step_hours(0, [Item("value", 30)], 2),  # 0 30 */2 * * *
        _star_step_hours(0, [Item("value", 0)], 3),  # 0 0 */3 * * *
        _star_step_hours(0, [Item("star", step=20)], 2),  # 0 */20 */2 * * *
        _star_step_hours(30, [Item("value", 15)], 3),  # 30 15 */3 * * *
    ],
    ids=render,
)
def test_star_step_hours_match_the_reference_around_every_2026_transition(
    zone: str, fields: list[list[Item]]
) -> None:
    spec = spec_of(fields)
    schedule = CronSchedule(render(fields), zone)
    for moment in transitions(zone, 2026):
        for minutes in range(-6 * 60, 6 * 60 + 1, 37):
            start = moment + timedelta(minutes=minutes)
            expected = reference_next(spec, schedule.tz, start)
            # Via UTC: Python never finds a datetime in a fall-back repeat equal to one in
            # another zone.
            got = schedule.next_after(start).astimezone(UTC)
            assert got == expected, (schedule, start.isoformat())


def test_lord_howe_half_hour_shift() -> None:
    # Spring: 02:00 +10:30 jumps to 02:30 +11 on 2026-10-04 (15:30Z on the 3rd).
    assert fires("0 15 2 * * *", utc(2026, 10, 3), 2, "Australia/Lord_Howe") == [
        utc(2026, 10, 3, 15, 30),
        utc(2026, 10, 4, 15, 15),
    ]
    assert fires("0 */15 * * * *", utc(2026, 10, 3, 15, 0), 3, "Australia/Lord_Howe") == [
        utc(2026, 10, 3, 15, 15),
        utc(2026, 10, 3, 15, 30),
        utc(2026, 10, 3, 15, 45),
    ]
    # Fall: 02:00 +11 goes back to 01:30 +10:30 on 2026-04-05 (15:00Z on the 4th).
    assert fires("0 45 1 * * *", utc(2026, 4, 4), 2, "Australia/Lord_Howe") == [
        utc(2026, 4, 4, 14, 45),
        utc(2026, 4, 5, 15, 15),
    ]
    assert fires("0 45 * * * *", utc(2026, 4, 4, 14), 3, "Australia/Lord_Howe") == [
        utc(2026, 4, 4, 14, 45),
        utc(2026, 4, 4, 15, 15),
        utc(2026, 4, 4, 16, 15),
    ]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("expr", "parts"),
    [
        ("0 0 25 * * *", ['hour: 25 is out of range 0-23 in "0 0 25 * * *"']),
        ("60 * * * * *", ["second: 60 is out of range 0-59"]),
        ("0 60 * * * *", ["minute: 60 is out of range 0-59"]),
        ("0 0 0 0 * *", ["day-of-month: 0 is out of range 1-31"]),
        ("0 0 0 32 * *", ["day-of-month: 32 is out of range 1-31"]),
        ("0 0 0 * 13 *", ["month: 13 is out of range 1-12"]),
        ("0 0 0 * * 8", ["day-of-week: 8 is out of range 0-7"]),
        ("0 */0 * * * *", ["minute: step 0", '"0 */0 * * * *"']),
        ("0 5-2 * * * *", ["minute:", "5-2", "reversed"]),
        ("0 0 0 * FEB-JAN *", ["month:", "FEB-JAN", "reversed"]),
        ("0 x * * * *", ['minute: cannot parse "x"']),
        ("0 0 0 * * FOO", ['day-of-week: cannot parse "FOO"']),
        ("0 0 0 * MON *", ['month: cannot parse "MON"']),
        ("0 1,,2 * * * *", ["minute: empty item"]),
        ("0 */90 * * * *", ["minute: step 90", "0-59"]),
        ("0 0 0 * * 1#6", ["day-of-week:", "#6", "1-5"]),
        ("0 0 0 * * 1#x", ["day-of-week:", "1#x"]),
        ("0 0 ? * * *", ["hour:", "only allowed in day-of-month and day-of-week"]),
        ("0 0 0 L/2 * *", ["day-of-month: cannot parse"]),
        ("* * * * *", ["got 5", "seconds come first", '"0 * * * * *"']),
        ("* * * * * * *", ["expected 6 fields", "got 7"]),
        ("", ["empty cron expression"]),
        ("@fortnightly", ["unknown macro", "@hourly"]),
        ("0 0 0 30 2 *", ["can never fire", '"0 0 0 30 2 *"', "FEB"]),
        ("0 0 0 31 4,6 *", ["can never fire", "APR,JUN"]),
        ("0 0 0 */15 2 MON#5", ["can never fire"]),
    ],
)
def test_error_messages(expr: str, parts: list[str]) -> None:
    with pytest.raises(InvalidSchedule) as info:
        CronSchedule(expr)
    for part in parts:
        assert part in str(info.value)


@pytest.mark.parametrize(
    "expr",
    ["0 0 0 29 2 *", "0 0 0 30 2 5", "0 0 0 31 4,6 MON", "0 0 0 * 2 FRI#5", "0 0 0 L 2 *"],
)
def test_rare_but_possible_expressions_are_valid(expr: str) -> None:
    schedule = CronSchedule(expr)
    assert schedule.next_after(utc(2026, 1, 1)) > utc(2026, 1, 1)


def test_unknown_zone_is_named() -> None:
    with pytest.raises(InvalidSchedule, match='unknown time zone "Mars/Olympus"'):
        CronSchedule("0 0 * * * *", "Mars/Olympus")


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="aware datetime"):
        CronSchedule("0 0 * * * *").next_after(datetime(2026, 1, 1))


def test_start_given_as_local_time_in_the_repeat_or_the_gap() -> None:
    ny = ZoneInfo("America/New_York")
    second_occurrence = datetime(2026, 11, 1, 1, 20, fold=1, tzinfo=ny)
    assert fires("0 */15 * * * *", second_occurrence, 1, "America/New_York") == [
        utc(2026, 11, 1, 6, 30)
    ]
    assert fires("0 */15 1-2 * * *", second_occurrence, 1, "America/New_York") == [
        utc(2026, 11, 1, 7)
    ]
    # A wall time inside the gap still names one instant (02:30 EST = 07:30Z).
    in_gap = datetime(2026, 3, 8, 2, 30, tzinfo=ny)
    for expr in ("0 */15 * * * *", "0 0 3-4 * * *", "@daily"):
        schedule = CronSchedule(expr, ny)
        assert schedule.next_after(in_gap) == schedule.next_after(in_gap.astimezone(UTC))


def test_microseconds_do_not_break_strictness() -> None:
    schedule = CronSchedule("* * * * * *", "Europe/London")
    start = datetime(2026, 10, 25, 1, 30, 5, 999_999, fold=1, tzinfo=schedule.tz)
    got = schedule.next_after(start)
    assert got.astimezone(UTC) == utc(2026, 10, 25, 1, 30, 6)
