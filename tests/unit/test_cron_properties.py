"""Property tests: CronSchedule against the brute-force reference in cron_reference."""

from __future__ import annotations

import calendar
import os
import weakref
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from jobs_core.cron import CronSchedule, InvalidSchedule
from tests.hypothesis_budget import MUTATION_PROFILE, examples
from tests.unit.cron_reference import (
    BOUNDS,
    DOM,
    DOW,
    MONTH,
    Item,
    Spec,
    can_fire,
    reference_next,
    render,
    spec_of,
    transitions,
    wall_matches,
)

ZONES = (
    "Europe/London",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "UTC",
    "Etc/GMT+5",
)
# Zones callers may give their instants in, besides UTC and the schedule's own.
INPUT_ZONES = (
    ZoneInfo("Europe/London"),
    ZoneInfo("America/New_York"),
    timezone(timedelta(hours=5, minutes=45)),
    timezone(-timedelta(hours=9, minutes=30)),
)
TRANSITIONS = {
    key: [t for year in (2025, 2026, 2027) for t in transitions(key, year)] for key in ZONES
}

# CRON_PROPERTY_SCALE=20 runs a long hunt; the default keeps the suite fast.
SCALE = float(os.environ.get("CRON_PROPERTY_SCALE", "1"))
SETTINGS = settings(
    deadline=None,
    max_examples=examples(int(150 * SCALE)),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# ------------------------------------------------------------------- expression grammar


@st.composite
def _plain_item(draw: st.DrawFn, index: int) -> Item:
    lo, hi = BOUNDS[index]
    if index == DOW:
        hi = 7
    names = index in (MONTH, DOW) and draw(st.booleans())
    lower = draw(st.booleans())
    # Hours 0-3 hold every DST transition of the zones under test; favour them.
    value = st.integers(0, 4) if index == 2 and draw(st.booleans()) else st.integers(lo, hi)
    kind = draw(st.sampled_from(["value", "value", "range", "from"]))
    if kind == "value":
        return Item("value", draw(value), names=names, lower=lower)
    a = draw(value)
    if kind == "range":
        b = draw(st.integers(a, hi))
        step = draw(st.none() | st.integers(1, max(1, hi - lo)))
        return Item("range", a, b, step=step, names=names, lower=lower)
    return Item("from", a, step=draw(st.integers(1, hi - lo)), names=names, lower=lower)


@st.composite
def _field(draw: st.DrawFn, index: int) -> list[Item]:
    hi = BOUNDS[index][1]
    roll = draw(st.integers(0, 9))
    if roll < 3:
        step = draw(st.none() | st.sampled_from([s for s in (2, 3, 5, 7, 10, 15, 20) if s < hi]))
        if index in (DOM, DOW) and step is None and draw(st.booleans()):
            return [Item("q")]
        return [Item("star", step=step)]
    items = draw(st.lists(_plain_item(index), min_size=1, max_size=3))
    if index == DOM and draw(st.integers(0, 4)) == 0:
        items.append(Item("L"))
    if index == DOW and draw(st.integers(0, 3)) == 0:
        day = draw(st.integers(0, 7))
        if draw(st.booleans()):
            items.append(Item("lastdow", day, names=draw(st.booleans())))
        else:
            items.append(Item("nth", day, draw(st.integers(1, 5)), names=draw(st.booleans())))
    return draw(st.permutations(items))


@st.composite
def expressions(draw: st.DrawFn) -> list[list[Item]]:
    fields = []
    for index in range(6):
        if index == 0 and draw(st.integers(0, 3)) > 0:
            # Per-second schedules make the reference slow; most draws fix the seconds.
            fields.append([Item("value", draw(st.sampled_from([0, 0, 30, 59])))])
        elif index == MONTH and draw(st.booleans()):
            fields.append([Item("star")])
        else:
            fields.append(draw(_field(index)))
    return fields


# ------------------------------------------------------------------------ start instants


@st.composite
def starts(draw: st.DrawFn, key: str) -> datetime:
    tz = ZoneInfo(key)
    kind = draw(st.sampled_from(["dst", "dst", "month_end", "any"]))
    if kind == "dst" and TRANSITIONS[key]:
        base = draw(st.sampled_from(TRANSITIONS[key]))
        # Sub-minute offsets hit the transition itself and its neighbours.
        delta = draw(
            st.integers(-3 * 3600, 3 * 3600).map(lambda s: s - s % 60)
            | st.integers(-36 * 3600, 36 * 3600)
        )
        moment = base + timedelta(seconds=delta)
    elif kind == "month_end" or kind == "dst":
        year = draw(st.sampled_from([2026, 2027, 2028, 2100]))
        month = draw(st.integers(1, 12))
        last = calendar.monthrange(year, month)[1]
        local = datetime(year, month, last, tzinfo=tz)
        moment = local.astimezone(UTC) + timedelta(seconds=draw(st.integers(-2 * 86400, 86400)))
    else:
        moment = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(
            seconds=draw(st.integers(0, 8 * 365 * 86400))
        )
    if draw(st.integers(0, 4)) == 0:
        moment += timedelta(microseconds=draw(st.integers(1, 999_999)))
    # Callers pass instants in any zone; the result must not depend on it.
    return moment.astimezone(draw(st.sampled_from([UTC, tz, *INPUT_ZONES])))


def _schedule(fields: list[list[Item]], key: str) -> tuple[CronSchedule, Spec]:
    spec = spec_of(fields)
    expr = render(fields)
    if not can_fire(spec):
        with pytest.raises(InvalidSchedule, match="can never fire"):
            CronSchedule(expr, key)
        assume(False)
    # The shared instance (what the job table holds), checked against the reference.
    return CronSchedule.of(expr, key), spec


# ----------------------------------------------------------------------------- properties


@pytest.mark.parametrize("key", ZONES)
@SETTINGS
@given(data=st.data())
def test_next_after_matches_reference(key: str, data: st.DataObject) -> None:
    fields = data.draw(expressions(), label="fields")
    schedule, spec = _schedule(fields, key)
    tz = schedule.tz
    current = data.draw(starts(key), label="start")
    for _ in range(3):
        expected = reference_next(spec, tz, current)
        assume(expected is not None)
        got = schedule.next_after(current)
        assert got.tzinfo is tz
        assert got.astimezone(UTC) == expected, (schedule, current.isoformat())
        current = got


@SETTINGS
@given(data=st.data())
def test_shared_schedules_are_one_per_expression_and_zone(data: st.DataObject) -> None:
    fields = data.draw(expressions(), label="fields")
    expr = render(fields)
    assume(can_fire(spec_of(fields)))
    zones = data.draw(st.lists(st.sampled_from(ZONES), min_size=2, max_size=3, unique=True))
    shared = [CronSchedule.of(expr, key) for key in zones]  # all alive at once
    start = data.draw(starts(zones[0]), label="start")
    for key, schedule in zip(zones, shared, strict=True):
        assert CronSchedule.of(expr, key) is schedule
        assert schedule.tz.key == key
        fresh = CronSchedule(expr, key)
        assert schedule == fresh and hash(schedule) == hash(fresh)
        got, want = schedule.next_after(start), fresh.next_after(start)
        assert (got.tzinfo, got.timestamp()) == (want.tzinfo, want.timestamp())


def test_shared_schedule_leaves_the_table_when_nobody_holds_it() -> None:
    expr = "7 7 7 7 7 *"
    first = CronSchedule.of(expr, "UTC")
    assert CronSchedule.of(expr, "UTC") is first
    gone = weakref.ref(first)
    del first
    # Held weakly: the schedules of a job table replaced by a reload are freed.
    assert gone() is None
    again = CronSchedule.of(expr, "UTC")
    assert again.next_after(datetime(2026, 1, 1, tzinfo=UTC)) == datetime(
        2026, 7, 7, 7, 7, 7, tzinfo=UTC
    )


def test_shared_schedule_refuses_bad_input_like_the_constructor() -> None:
    with pytest.raises(InvalidSchedule, match="day-of-month"):
        CronSchedule.of("0 0 0 30 2 *")
    with pytest.raises(TypeError, match="expr must be a string"):
        CronSchedule.of(["0 * * * * *"])  # type: ignore[arg-type]


def _fires_legitimately(spec: Spec, got: datetime, tz: ZoneInfo) -> bool:
    wall = got.replace(tzinfo=None)
    if wall_matches(spec, wall):
        return True
    # A fixed-time job may fire at the end of a spring-forward gap for a swallowed time.
    before = (got.astimezone(UTC) - timedelta(seconds=1)).astimezone(tz).replace(tzinfo=None)
    if spec.interval or wall - before <= timedelta(seconds=1):
        return False
    probe = before + timedelta(seconds=1)
    while probe < wall:
        if wall_matches(spec, probe):
            return True
        probe += timedelta(seconds=1)
    return False


@pytest.mark.parametrize("key", ["Europe/London", "Australia/Lord_Howe", "UTC"])
@settings(
    deadline=None,
    max_examples=examples(int(80 * SCALE)),
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_iteration_is_strict_monotonic_and_matches(key: str, data: st.DataObject) -> None:
    fields = data.draw(expressions(), label="fields")
    schedule, spec = _schedule(fields, key)
    start = data.draw(starts(key), label="start")
    fires = []
    for got in schedule.iter_after(start):
        fires.append(got)
        if len(fires) == 12:
            break
    stamps = [f.timestamp() for f in fires]
    assert stamps[0] > start.timestamp()
    assert stamps == sorted(set(stamps)), "fires must be strictly increasing, no duplicates"
    assert all(_fires_legitimately(spec, f, schedule.tz) for f in fires)
    assert [f.timestamp() for f in schedule.next_n(start, 12)] == stamps
    # Monotonic in the start: a later start never gives an earlier next fire.
    # Via UTC: aware arithmetic in a zone works on wall time and drops fold=1.
    later = start.astimezone(UTC) + timedelta(seconds=data.draw(st.integers(0, 3 * 86400)))
    assert schedule.next_after(later).timestamp() >= stamps[0]
    # Starting from any fire continues the same sequence.
    i = data.draw(st.integers(0, 10))
    assert schedule.next_after(fires[i]).timestamp() == stamps[i + 1]


@SETTINGS
@given(fields=expressions())
def test_never_firing_expressions_are_rejected(fields: list[list[Item]]) -> None:
    spec = spec_of(fields)
    expr = render(fields)
    if can_fire(spec):
        CronSchedule(expr)
    else:
        with pytest.raises(InvalidSchedule, match="can never fire"):
            CronSchedule(expr)


def test_property_tests_are_derandomized_exactly_when_ci_is_set() -> None:
    # tests/conftest.py loads the profile; settings built by test modules inherit it.
    # Mutation runs are derandomized too: a mutant's verdict must not depend on luck.
    fixed = bool(os.environ.get("CI")) or settings.get_current_profile_name() == MUTATION_PROFILE
    assert settings.default.derandomize is fixed
    assert SETTINGS.derandomize is fixed


def test_the_mutation_profile_draws_few_fixed_examples() -> None:
    mutation = settings.get_profile(MUTATION_PROFILE)
    assert mutation.derandomize
    assert mutation.max_examples < 150
    in_mutation = settings.get_current_profile_name() == MUTATION_PROFILE
    assert examples(150) == (mutation.max_examples if in_mutation else 150)
