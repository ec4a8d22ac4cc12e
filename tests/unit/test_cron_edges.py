"""jobs_core.cron at its edges, exhaustively where the property tests only sample: every
weekday of every month, every DST change of a year started exactly on its boundaries, the
end of the calendar, and results that must not depend on the machine's own time zone."""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jobs_core.cron import CronSchedule, InvalidSchedule
from tests.unit.cron_reference import Item, reference_next, render, spec_of, transitions


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def _weekday(d: date) -> int:
    return (d.weekday() + 1) % 7  # cron's: 0 is Sunday


# ------------------------------------------------------------------------ calendar


def test_a_monthly_job_fires_in_every_month_in_order() -> None:
    # Crosses November -> December and December -> January with the day exhausted.
    fired = CronSchedule("0 0 0 1 * *").next_n(utc(2026, 1, 15), 13)
    assert fired == [utc(2026 + (m - 1) // 12, (m - 1) % 12 + 1, 1) for m in range(2, 15)]


@pytest.mark.parametrize("weekday", range(7))
def test_last_weekday_of_every_month(weekday: int) -> None:
    schedule = CronSchedule(f"0 0 0 * * {weekday}L")
    fired = schedule.next_n(utc(2025, 12, 31), 24)
    expected = []
    for year in (2026, 2027):
        for month in range(1, 13):
            last = calendar.monthrange(year, month)[1]
            day = max(
                d for d in range(last - 6, last + 1) if _weekday(date(year, month, d)) == weekday
            )
            expected.append(utc(year, month, day))
    assert fired == expected


@pytest.mark.parametrize("weekday", range(7))
def test_nth_weekday_of_every_month(weekday: int) -> None:
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(730)]
    for nth in range(1, 6):
        schedule = CronSchedule(f"0 0 0 * * {weekday}#{nth}")
        expected = [
            utc(d.year, d.month, d.day)
            for d in days
            if _weekday(d) == weekday and (d.day - 1) // 7 + 1 == nth
        ]
        assert schedule.next_n(utc(2025, 12, 31), len(expected)) == expected, nth


@pytest.mark.parametrize(
    "fields",
    [
        # Both day fields restricted: either matches (Vixie cron), right up to month ends.
        [[Item("value", 31)], [Item("value", 1)]],  # 31 MON
        [[Item("value", 1), Item("value", 15)], [Item("range", 5, 6)]],  # 1,15 FRI-SAT
        [[Item("L")], [Item("lastdow", 2)]],  # L 2L
        [[Item("value", 30)], [Item("nth", 0, 5)]],  # 30 SUN#5
        # Day-of-month starred: both must match.
        [[Item("star", step=2)], [Item("lastdow", 4)]],  # */2 4L
    ],
    ids=lambda f: " ".join(str(it) for items in f for it in items),
)
def test_day_fields_over_four_years_match_the_reference(fields: list[list[Item]]) -> None:
    dom, dow = fields
    full = [[Item("value", 0)], [Item("value", 0)], [Item("value", 0)], dom, [Item("star")], dow]
    spec = spec_of(full)
    schedule = CronSchedule(render(full))
    at = utc(2025, 1, 1)
    while at < utc(2029, 1, 1):
        nxt = schedule.next_after(at)
        assert nxt == reference_next(spec, ZoneInfo("UTC"), at), (schedule, at)
        at = nxt


def test_sunday_ranges_in_day_of_week() -> None:
    # 0 and 7 are both Sunday: MON-SUN is every day, SUN-SUN and 0-0 only Sundays.
    monday = utc(2026, 1, 5)
    assert CronSchedule("0 0 0 * * MON-SUN").next_n(monday, 7) == [
        monday + timedelta(days=i) for i in range(1, 8)
    ]
    for expr in ("0 0 0 * * SUN-SUN", "0 0 0 * * 0-0"):
        assert CronSchedule(expr).next_n(monday, 2) == [utc(2026, 1, 11), utc(2026, 1, 18)]
    with pytest.raises(InvalidSchedule, match='day-of-week: cannot parse "L"'):
        CronSchedule("0 0 0 * * L")


def test_the_end_of_the_calendar() -> None:
    assert CronSchedule("0 0 0 1 1 *").next_after(utc(9998, 6, 1)) == utc(9999, 1, 1)
    assert CronSchedule("0 0 0 1 * *").next_after(utc(9998, 12, 15)) == utc(9999, 1, 1)
    with pytest.raises(ValueError, match=r'"0 0 0 1 1 \*" has no fire time before year 10000'):
        CronSchedule("0 0 0 1 1 *").next_after(utc(9999, 6, 1))


# ------------------------------------------------------------------------------ DST

_ZONES = ("Europe/London", "America/New_York", "Australia/Lord_Howe", "America/Havana")
_EXPRS = (
    "0 */20 * * * *",  # interval-like: every wall time that exists, twice when repeated
    "0 15 */2 * * *",
    "0 30 1 * * *",  # fixed-time: inside London's and New York's changes
    "0 0,30 0-3 * * *",
    "0 15 2 * * *",
    # Odd offsets into each gap: the gap's end must be found to the second, not about.
    "7 7 0-2 * * *",
)


def _starts(moment: datetime) -> Iterator[datetime]:
    """Instants exactly on and around a DST change: the boundaries a search can get wrong."""
    for seconds in (-7200, -3600, -1800, -1, 0, 1, 1800, 3600):
        yield moment + timedelta(seconds=seconds)


@pytest.mark.parametrize("zone", _ZONES)
def test_every_2026_dst_change_walked_fire_by_fire_matches_the_reference(zone: str) -> None:
    tz = ZoneInfo(zone)
    for expr in _EXPRS:
        schedule = CronSchedule(expr, zone)
        spec = spec_of(_items(expr))
        for moment in transitions(zone, 2026):
            starts = list(_starts(moment))
            # From exact fire instants too: "strictly after" must hold on every one.
            at = moment - timedelta(hours=3)
            for _ in range(8):
                at = schedule.next_after(at).astimezone(UTC)
                starts.append(at)
            for start in starts:
                got = schedule.next_after(start).astimezone(UTC)
                assert got == reference_next(spec, tz, start), (expr, zone, start.isoformat())


def _items(expr: str) -> list[list[Item]]:
    """The reference's reading of the few plain expressions used here."""
    fields: list[list[Item]] = []
    for text in expr.split():
        items = []
        for part in text.split(","):
            if part == "*":
                items.append(Item("star"))
            elif part.startswith("*/"):
                items.append(Item("star", step=int(part[2:])))
            elif "-" in part:
                a, b = part.split("-")
                items.append(Item("range", int(a), int(b)))
            else:
                items.append(Item("value", int(part)))
        fields.append(items)
    return fields


@pytest.mark.parametrize("machine_zone", ["America/Sao_Paulo", "Pacific/Chatham", "Asia/Tokyo"])
def test_results_do_not_depend_on_the_machines_time_zone(
    machine_zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def dst_answers() -> list[datetime]:
        out = []
        for zone in ("Europe/London", "America/New_York"):
            for expr in ("0 30 1 * * *", "0 0,30 1-2 * * *", "0 */20 * * * *"):
                schedule = CronSchedule(expr, zone)
                for moment in transitions(zone, 2026):
                    out += schedule.next_n(moment - timedelta(hours=2), 6)
        return out

    expected = dst_answers()
    monkeypatch.setenv("TZ", machine_zone)
    time.tzset()
    try:
        assert dst_answers() == expected
    finally:
        monkeypatch.undo()
        time.tzset()


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "expr",
    [
        "0 1,,2 * * * *",
        "0 0 ? * * *",
        "0 0 0 * * 1#x",
        "0 0 0 * * 1#6",
        "0 0 0 * * x#1",
        "0 0 0 * * xL",
        "0 x-5 * * * *",
        "0 5-x * * * *",
        "0 5-2 * * * *",
        "0 */x * * * *",
        "0 */0 * * * *",
        "0 0 */30 * * *",
        "0 0 0 */31 * *",  # steps wider than fields that start at 1
        "0 0 0 * */12 *",
        "0 0 x * * *",
    ],
)
def test_a_field_error_quotes_the_whole_expression(expr: str) -> None:
    with pytest.raises(InvalidSchedule) as info:
        CronSchedule(expr)
    assert str(info.value).endswith(f' in "{expr}"')


def test_a_wrong_field_count_says_exactly_what_it_got() -> None:
    with pytest.raises(InvalidSchedule) as info:
        CronSchedule("* * * * * * *")
    assert str(info.value) == (
        "expected 6 fields (second minute hour day-of-month month day-of-week), "
        'got 7 in "* * * * * * *"'
    )


def test_an_unknown_macro_lists_the_known_ones() -> None:
    with pytest.raises(InvalidSchedule) as info:
        CronSchedule("@fortnightly")
    assert str(info.value).endswith(
        "(known: @annually @daily @hourly @midnight @monthly @weekly @yearly)"
    )
