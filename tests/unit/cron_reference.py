"""Brute-force reference for jobs_core.cron, independent of its parser and search.

Expressions are built here as structured items, rendered to text for CronSchedule, and
evaluated literally by this module: every candidate local wall time is enumerated, mapped
through zoneinfo (fold 0 and 1, existence checked by round trip) and the cronie DST rules
are applied as written in the design document. Slow on purpose; only tests use it.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
BOUNDS = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
DOM, MONTH, DOW, HOUR = 3, 4, 5, 2


@dataclass(frozen=True)
class Item:
    """One comma-separated item of a field.

    kind: "star" (``*`` or ``*/step``), "q" (``?``), "value" (``a``), "range" (``a-b`` or
    ``a-b/step``), "from" (``a/step``), "L" (last day of month), "lastdow" (``dL``),
    "nth" (``d#n``). ``names`` renders numbers of month/day-of-week as names.
    """

    kind: str
    a: int = 0
    b: int = 0
    step: int | None = None
    names: bool = False
    lower: bool = False


def _num(index: int, value: int, item: Item) -> str:
    if item.names and index == MONTH:
        text = MONTHS[value - 1]
    elif item.names and index == DOW and value < 7:
        text = DAYS[value]
    else:
        return str(value)
    return text.lower() if item.lower else text


def render_item(index: int, item: Item) -> str:
    step = f"/{item.step}" if item.step is not None else ""
    if item.kind == "star":
        return "*" + step
    if item.kind == "q":
        return "?"
    if item.kind == "value":
        return _num(index, item.a, item)
    if item.kind == "range":
        return f"{_num(index, item.a, item)}-{_num(index, item.b, item)}{step}"
    if item.kind == "from":
        return f"{_num(index, item.a, item)}{step}"
    if item.kind == "L":
        return "L"
    if item.kind == "lastdow":
        return f"{_num(index, item.a, item)}L"
    if item.kind == "nth":
        return f"{_num(index, item.a, item)}#{item.b}"
    raise AssertionError(item.kind)


def render(fields: list[list[Item]]) -> str:
    return " ".join(",".join(render_item(i, it) for it in items) for i, items in enumerate(fields))


@dataclass(frozen=True)
class Spec:
    """The literal meaning of an expression."""

    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    months: frozenset[int]
    dom: frozenset[int]
    dom_last: bool
    dom_star: bool
    dow: frozenset[int]
    dow_last: frozenset[int]
    dow_nth: frozenset[tuple[int, int]]
    dow_star: bool
    interval: bool
    sorted_seconds: tuple[int, ...] = field(default=(), compare=False)


def _values(index: int, items: list[Item]) -> set[int]:
    lo, hi = BOUNDS[index]
    out: set[int] = set()
    for it in items:
        step = it.step or 1
        if it.kind in ("star", "q"):
            out.update(range(lo, hi + 1, step))
        elif it.kind == "value":
            out.add(it.a)
        elif it.kind == "range":
            out.update(range(it.a, it.b + 1, step))
        elif it.kind == "from":
            out.update(range(it.a, hi + 1, step))
    if index == DOW:
        out = {v % 7 for v in out}
    return out


def spec_of(fields: list[list[Item]]) -> Spec:
    secs = frozenset(_values(0, fields[0]))
    dom_items, dow_items = fields[DOM], fields[DOW]
    return Spec(
        seconds=secs,
        minutes=frozenset(_values(1, fields[1])),
        hours=frozenset(_values(2, fields[2])),
        months=frozenset(_values(4, fields[MONTH])),
        dom=frozenset(_values(3, dom_items)),
        dom_last=any(it.kind == "L" for it in dom_items),
        dom_star=dom_items[0].kind in ("star", "q"),
        dow=frozenset(_values(5, dow_items)),
        dow_last=frozenset(it.a % 7 for it in dow_items if it.kind == "lastdow"),
        dow_nth=frozenset((it.a % 7, it.b) for it in dow_items if it.kind == "nth"),
        dow_star=dow_items[0].kind in ("star", "q"),
        interval=fields[HOUR][0].kind == "star",
        sorted_seconds=tuple(sorted(secs)),
    )


def day_matches(spec: Spec, d: date) -> bool:
    if d.month not in spec.months:
        return False
    last = calendar.monthrange(d.year, d.month)[1]
    weekday = (d.weekday() + 1) % 7
    dom_ok = d.day in spec.dom or (spec.dom_last and d.day == last)
    dow_ok = (
        weekday in spec.dow
        or (weekday in spec.dow_last and d.day + 7 > last)
        or (weekday, (d.day - 1) // 7 + 1) in spec.dow_nth
    )
    if spec.dom_star or spec.dow_star:
        return dom_ok and dow_ok
    return dom_ok or dow_ok


def wall_matches(spec: Spec, w: datetime) -> bool:
    return (
        w.second in spec.seconds
        and w.minute in spec.minutes
        and w.hour in spec.hours
        and day_matches(spec, w.date())
    )


def can_fire(spec: Spec) -> bool:
    # 1904-1932 holds every (month length, weekday of the 1st) pair, leap Februaries too.
    d = date(1904, 1, 1)
    one = timedelta(days=1)
    while d.year < 1933:
        if day_matches(spec, d):
            return True
        d += one
    return False


def _wall(t: datetime, tz: ZoneInfo) -> datetime:
    # Via UTC: astimezone() into a datetime's own zone returns it unchanged, gap or not.
    return t.astimezone(UTC).astimezone(tz).replace(tzinfo=None)


def exists(w: datetime, fold: int, tz: ZoneInfo) -> bool:
    return _wall(w.replace(tzinfo=tz, fold=fold), tz) == w


@cache
def offset_bounds(key: str) -> tuple[timedelta, timedelta]:
    tz = ZoneInfo(key)
    seen = set()
    t = datetime(2019, 1, 1, tzinfo=UTC)
    while t.year < 2045:
        off = t.astimezone(tz).utcoffset()
        assert off is not None
        seen.add(off)
        t += timedelta(hours=12)
    return min(seen), max(seen)


_gap_cache: dict[tuple[str, date], datetime] = {}


def first_instant_after_gap(w: datetime, tz: ZoneInfo) -> datetime:
    """The first instant whose wall time is later than the nonexistent wall time ``w``."""
    key = (str(tz.key), w.date())
    cached = _gap_cache.get(key)
    if (
        cached is not None
        and _wall(cached, tz) > w
        and _wall(cached - timedelta(seconds=1), tz) < w
    ):
        return cached
    t = (w - timedelta(hours=16)).replace(tzinfo=UTC, second=0)
    while _wall(t, tz) <= w:
        t += timedelta(minutes=1)
    while _wall(t - timedelta(seconds=1), tz) > w:
        t -= timedelta(seconds=1)
    _gap_cache[key] = t
    return t


def fire_instants(spec: Spec, w: datetime, tz: ZoneInfo) -> set[datetime]:
    """The UTC instants at which the matching wall time ``w`` fires."""
    present = [f for f in (0, 1) if exists(w, f, tz)]
    utc = {f: w.replace(tzinfo=tz, fold=f).astimezone(UTC) for f in present}
    if spec.interval:
        return set(utc.values())
    if 0 in utc:
        return {utc[0]}
    assert not present
    return {first_instant_after_gap(w, tz)}


def _walls_from(spec: Spec, start: datetime, max_days: int) -> Iterator[datetime]:
    """Matching wall times > start, ascending (a generator)."""
    hours = sorted(spec.hours)
    minutes = sorted(spec.minutes)
    day = start.date()
    for _ in range(max_days):
        if day_matches(spec, day):
            for h in hours:
                if datetime(day.year, day.month, day.day, h, 59, 59) <= start:
                    continue
                for m in minutes:
                    if datetime(day.year, day.month, day.day, h, m, 59) <= start:
                        continue
                    for s in spec.sorted_seconds:
                        w = datetime(day.year, day.month, day.day, h, m, s)
                        if w > start:
                            yield w
        day += timedelta(days=1)


def reference_next(
    spec: Spec, tz: ZoneInfo, after: datetime, max_days: int = 3200
) -> datetime | None:
    """First fire instant (UTC) strictly after the aware ``after``, or None if none soon."""
    u = after.astimezone(UTC)
    lo_off, hi_off = offset_bounds(str(tz.key))
    start = u.replace(tzinfo=None) + lo_off - timedelta(seconds=1)
    best: datetime | None = None
    for w in _walls_from(spec, start, max_days):
        if best is not None and w - hi_off > best.replace(tzinfo=None):
            break
        for inst in fire_instants(spec, w, tz):
            if inst > u and (best is None or inst < best):
                best = inst
    return best


def transitions(key: str, year: int) -> list[datetime]:
    """UTC instants in ``year`` where the zone's offset changes."""
    tz = ZoneInfo(key)
    out = []
    t = datetime(year, 1, 1, tzinfo=UTC)
    step = timedelta(hours=1)
    prev = t.astimezone(tz).utcoffset()
    while t.year == year:
        nxt = t + step
        off = nxt.astimezone(tz).utcoffset()
        if off != prev:
            lo, hi = t, nxt
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                mid = mid.replace(microsecond=0)
                if mid.astimezone(tz).utcoffset() == prev:
                    lo = mid
                else:
                    hi = mid
            out.append(hi)
            prev = off
        t = nxt
    return out
