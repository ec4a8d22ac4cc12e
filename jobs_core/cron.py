"""Six-field cron schedules (seconds first) under cronie's time-zone and DST rules.

Main rule: an hour field starting with ``*`` (``*/2`` too) is interval-like: every instant
whose wall time matches fires, so a spring-forward gap skips its times and a fall-back
repeat fires twice. Any other hour field is fixed-time: a repeat fires at its first
occurrence only, and a time swallowed by a gap fires once, right after the gap. Written
from scratch because croniter double-fires fixed-time jobs on fall-back days.
"""

from __future__ import annotations

import calendar
import re
import weakref
from bisect import bisect_left
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import InvalidSchedule

__all__ = ["CronSchedule", "InvalidSchedule"]

_FIELD_NAMES = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")
_BOUNDS = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_SECOND, _MINUTE, _HOUR, _DOM, _MONTH, _DOW = range(6)

_MONTH_NAMES = {
    name: i + 1
    for i, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
    )
}
_DOW_NAMES = {name: i for i, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}
_MONTH_ABBR = {v: k for k, v in _MONTH_NAMES.items()}

_MACROS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}

# Zones whose offset never changes; they skip every zoneinfo call in the search.
_FIXED_KEYS = frozenset(
    {
        "UTC",
        "UCT",
        "GMT",
        "GMT0",
        "GMT+0",
        "GMT-0",
        "Greenwich",
        "Universal",
        "Zulu",
        "Etc/UTC",
        "Etc/UCT",
        "Etc/GMT",
        "Etc/GMT0",
        "Etc/GMT+0",
        "Etc/GMT-0",
        "Etc/Greenwich",
        "Etc/Universal",
        "Etc/Zulu",
    }
)
_FIXED_RE = re.compile(r"Etc/GMT[+-]\d{1,2}")

_ITEM_RE = re.compile(r"^(?P<base>[^/]+)(?:/(?P<step>[^/]*))?$")
_ONE_SECOND = timedelta(seconds=1)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_date_fromordinal = date.fromordinal
_MAX_YEAR = 9999
# A firing expression fires at least once in any 400-year Gregorian cycle; this bound only
# guards against a bug turning the search into an endless loop.
_MAX_YEARS_AHEAD = 401


def _wall_seconds(dt: datetime) -> int:
    """Whole seconds from 1970-01-01 to ``dt``'s wall time, ignoring any zone."""
    return (dt.toordinal() - _EPOCH_ORDINAL) * 86400 + dt.hour * 3600 + dt.minute * 60 + dt.second


def _fail(expr: str, message: str) -> InvalidSchedule:
    return InvalidSchedule(f'{message} in "{expr}"')


class _Field:
    """One parsed field: its values plus the flags day matching needs."""

    __slots__ = ("last_day", "last_weekdays", "nth_weekdays", "star", "values")

    def __init__(self) -> None:
        self.values: set[int] = set()
        self.star = False
        self.last_day = False
        self.last_weekdays: set[int] = set()
        self.nth_weekdays: set[tuple[int, int]] = set()


def _parse_number(expr: str, index: int, token: str) -> int:
    name = _FIELD_NAMES[index]
    upper = token.upper()
    if index == _MONTH and upper in _MONTH_NAMES:
        return _MONTH_NAMES[upper]
    if index == _DOW and upper in _DOW_NAMES:
        return _DOW_NAMES[upper]
    if not token.isdigit() or not token.isascii():
        raise _fail(expr, f'{name}: cannot parse "{token}"')
    value = int(token)
    lo, hi = _BOUNDS[index]
    if not lo <= value <= hi:
        raise _fail(expr, f"{name}: {value} is out of range {lo}-{hi}")
    return value


def _parse_field(expr: str, index: int, text: str) -> _Field:
    name = _FIELD_NAMES[index]
    lo, hi = _BOUNDS[index]
    field = _Field()
    field.star = text.startswith(("*", "?"))
    day_field = index in (_DOM, _DOW)
    for item in text.split(","):
        if not item:
            raise _fail(expr, f'{name}: empty item in list "{text}"')
        if item == "?":
            if not day_field:
                raise _fail(expr, f'{name}: "?" is only allowed in day-of-month and day-of-week')
            field.values.update(range(lo, hi + 1))
            continue
        upper = item.upper()
        if index == _DOM and upper == "L":
            field.last_day = True
            continue
        if index == _DOW and "#" in item:
            day_text, _, nth_text = item.partition("#")
            weekday = _parse_number(expr, index, day_text) % 7
            if not nth_text.isdigit() or not nth_text.isascii():
                raise _fail(expr, f'{name}: cannot parse "{item}" (expected weekday#1-5)')
            nth = int(nth_text)
            if not 1 <= nth <= 5:
                raise _fail(expr, f'{name}: "#{nth}" in "{item}" is out of range 1-5')
            field.nth_weekdays.add((weekday, nth))
            continue
        if index == _DOW and upper.endswith("L") and len(upper) > 1:
            field.last_weekdays.add(_parse_number(expr, index, item[:-1]) % 7)
            continue
        match = _ITEM_RE.match(item)
        if match is None:
            raise _fail(expr, f'{name}: cannot parse "{item}"')
        base, step_text = match.group("base"), match.group("step")
        if base == "*":
            start, end = lo, hi
        elif "-" in base:
            first, _, last = base.partition("-")
            start = _parse_number(expr, index, first)
            end = _parse_number(expr, index, last)
            if index == _DOW and end == 0 and start > 0:
                # "FRI-SUN" and "5-0" mean Friday through Sunday: 0 and 7 are both Sunday.
                end = 7
            if start > end:
                raise _fail(expr, f'{name}: range "{base}" is reversed ({start} > {end})')
        else:
            start = _parse_number(expr, index, base)
            # "a/n" means a, a+n, ... up to the field's maximum; plain "a" is just a.
            end = hi if step_text is not None else start
        step = 1
        if step_text is not None:
            if not step_text.isdigit() or not step_text.isascii():
                raise _fail(expr, f'{name}: cannot parse step "{step_text}" in "{item}"')
            step = int(step_text)
            if step == 0:
                raise _fail(expr, f'{name}: step 0 in "{item}" (a step must be at least 1)')
            if step > hi - lo:
                raise _fail(
                    expr,
                    f'{name}: step {step} in "{item}" is larger than the range {lo}-{hi} allows',
                )
        field.values.update(range(start, end + 1, step))
    if index == _DOW and 7 in field.values:
        field.values.discard(7)
        field.values.add(0)
    return field


def _zone(tz: str | ZoneInfo) -> ZoneInfo:
    if isinstance(tz, ZoneInfo):
        return tz
    if not isinstance(tz, str):
        raise TypeError(f"tz must be a zone name or a ZoneInfo, not {type(tz).__name__}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidSchedule(f'unknown time zone "{tz}"') from None


class CronSchedule:
    """A compiled six-field cron expression bound to a time zone.

    Fields are ``second minute hour day-of-month month day-of-week``. Results are aware
    datetimes in :attr:`tz`. Around a fall-back, an interval-like schedule can return a
    second-occurrence wall time (``fold=1``); Python compares two datetimes of the same
    zone by wall time alone, so compare results with ``.timestamp()`` or in UTC.
    """

    __slots__ = (
        "__weakref__",
        "_days_cache",
        "_dom_days",
        "_dom_last",
        "_dom_star",
        "_dow_last",
        "_dow_nth",
        "_dow_star",
        "_dow_values",
        "_fixed_seconds",
        "_hash",
        "_hours",
        "_interval",
        "_key",
        "_minutes",
        "_months",
        "_seconds",
        "_shape_cache",
        "expr",
        "tz",
    )

    def __init__(self, expr: str, tz: str | ZoneInfo = "UTC") -> None:
        if not isinstance(expr, str):
            raise TypeError(f"expr must be a string, not {type(expr).__name__}")
        self.expr = expr
        self.tz = _zone(tz)
        text = " ".join(expr.split())
        if not text:
            raise InvalidSchedule("empty cron expression")
        if text.startswith("@"):
            expanded = _MACROS.get(text.lower())
            if expanded is None:
                known = " ".join(sorted(_MACROS))
                raise InvalidSchedule(f'unknown macro "{text}" (known: {known})')
            text = expanded
        parts = text.split(" ")
        if len(parts) != 6:
            hint = ""
            if len(parts) == 5:
                hint = (
                    '; seconds come first, so a 5-field crontab line needs a leading "0 "'
                    f' (e.g. "0 {text}")'
                )
            raise InvalidSchedule(
                f"expected 6 fields (second minute hour day-of-month month day-of-week), "
                f'got {len(parts)} in "{expr}"{hint}'
            )
        fields = [_parse_field(expr, i, part) for i, part in enumerate(parts)]
        # Compiled once into sorted tuples: the beat asks for every fire of every job.
        self._seconds = tuple(sorted(fields[_SECOND].values))
        self._minutes = tuple(sorted(fields[_MINUTE].values))
        self._hours = tuple(sorted(fields[_HOUR].values))
        self._months = tuple(sorted(fields[_MONTH].values))
        dom, dow = fields[_DOM], fields[_DOW]
        self._dom_star = dom.star
        self._dow_star = dow.star
        self._dom_days = frozenset(dom.values)
        self._dom_last = dom.last_day
        self._dow_values = frozenset(dow.values)
        self._dow_last = frozenset(dow.last_weekdays)
        self._dow_nth = frozenset(dow.nth_weekdays)
        self._interval = parts[_HOUR].startswith("*")
        self._days_cache: dict[tuple[int, int], tuple[int, ...]] = {}
        self._shape_cache: dict[tuple[int, int], tuple[int, ...]] = {}
        fixed = self._detect_fixed_offset()
        self._fixed_seconds = None if fixed is None else fixed.days * 86400 + fixed.seconds
        self._key = (
            self._seconds,
            self._minutes,
            self._hours,
            self._months,
            self._dom_star,
            self._dow_star,
            self._dom_days,
            self._dom_last,
            self._dow_values,
            self._dow_last,
            self._dow_nth,
            self._interval,
            self.tz.key,
        )
        self._hash = hash(self._key)
        self._check_can_fire(expr, parts)

    @classmethod
    def of(cls, expr: str, tz: str | ZoneInfo = "UTC") -> CronSchedule:
        """The one shared schedule for ``(expr, tz)``: parsed once while any holder keeps it.

        Thousands of jobs on one expression then hold one object (its parsed fields and
        day caches) instead of one each. Schedules are never changed after
        construction, so sharing is safe; results are those of ``CronSchedule(expr, tz)``.
        """
        if not isinstance(expr, str) or not isinstance(tz, str | ZoneInfo):
            return cls(expr, tz)  # raises its clear TypeError
        key = (expr, tz)
        found = _SHARED.get(key)
        if found is None:
            found = _SHARED[key] = cls(expr, tz)
        return found

    # ----------------------------------------------------------------- construction

    def _detect_fixed_offset(self) -> timedelta | None:
        key = self.tz.key
        if key is None or not (key in _FIXED_KEYS or _FIXED_RE.fullmatch(key)):
            return None
        return self.tz.utcoffset(datetime(2000, 1, 1))

    def _check_can_fire(self, expr: str, parts: list[str]) -> None:
        # Which days match depends only on the month, its length and the weekday of its
        # 1st, and every such combination occurs in the Gregorian calendar.
        for month in self._months:
            lengths = (28, 29) if month == 2 else (calendar.monthrange(2001, month)[1],)
            for length in lengths:
                for first_weekday in range(7):
                    if self._match_days(length, first_weekday):
                        return
        names = ",".join(_MONTH_ABBR[m] for m in self._months)
        raise InvalidSchedule(
            f"day-of-month {parts[_DOM]!r} and day-of-week {parts[_DOW]!r} never match a day "
            f'of month(s) {names}; "{expr}" can never fire'
        )

    # ------------------------------------------------------------------ day matching

    def _match_days(self, length: int, first_weekday: int) -> tuple[int, ...]:
        """Matching days of a month of ``length`` days whose 1st is ``first_weekday``.

        Weekdays are cron's: 0 is Sunday.
        """
        all_days = range(1, length + 1)
        by_dom = {d for d in self._dom_days if d <= length}
        if self._dom_last:
            by_dom.add(length)
        by_dow = {d for d in all_days if (first_weekday + d - 1) % 7 in self._dow_values}
        for weekday in self._dow_last:
            first = 1 + (weekday - first_weekday) % 7
            by_dow.add(first + 7 * ((length - first) // 7))
        for weekday, nth in self._dow_nth:
            day = 1 + (weekday - first_weekday) % 7 + 7 * (nth - 1)
            if day <= length:
                by_dow.add(day)
        # Vixie cron: a field starting with "*" (even "*/2") counts as unrestricted and
        # both must match; only when both are restricted may either match.
        if self._dom_star or self._dow_star:
            return tuple(sorted(by_dom & by_dow))
        return tuple(sorted(by_dom | by_dow))

    def _days(self, year: int, month: int) -> tuple[int, ...]:
        key = (year, month)
        days = self._days_cache.get(key)
        if days is None:
            first_weekday, length = calendar.monthrange(year, month)
            shape = (length, (first_weekday + 1) % 7)
            # Only 28 month shapes exist, so this second cache never needs pruning.
            days = self._shape_cache.get(shape)
            if days is None:
                days = self._shape_cache[shape] = self._match_days(*shape)
            if len(self._days_cache) >= 512:
                self._days_cache.clear()
            self._days_cache[key] = days
        return days

    # ------------------------------------------------------------- wall-time search

    def _next_time(self, hour: int, minute: int, second: int) -> tuple[int, int, int] | None:
        """First matching time of day at or after the given one, or None."""
        hours, minutes, seconds = self._hours, self._minutes, self._seconds
        hi = bisect_left(hours, hour)
        if hi == len(hours):
            return None
        if hours[hi] != hour:
            return hours[hi], minutes[0], seconds[0]
        mi = bisect_left(minutes, minute)
        if mi < len(minutes):
            if minutes[mi] != minute:
                return hour, minutes[mi], seconds[0]
            si = bisect_left(seconds, second)
            if si < len(seconds):
                return hour, minute, seconds[si]
            if mi + 1 < len(minutes):
                return hour, minutes[mi + 1], seconds[0]
        if hi + 1 < len(hours):
            return hours[hi + 1], minutes[0], seconds[0]
        return None

    def _search(
        self, year: int, month: int, day: int, hour: int, minute: int, second: int
    ) -> tuple[int, int, int, int, int, int]:
        """First matching wall time at or after the given (valid) one, as fields."""
        months = self._months
        limit = min(_MAX_YEAR, year + _MAX_YEARS_AHEAD)
        while True:
            if month not in months:
                mi = bisect_left(months, month)
                if mi == len(months):
                    year += 1
                    month = months[0]
                else:
                    month = months[mi]
                day, hour, minute, second = 1, 0, 0, 0
                if year > limit:
                    break
            days = self._days(year, month)
            di = bisect_left(days, day)
            if di == len(days):
                month += 1
                if month > 12:
                    year += 1
                    month = 1
                    if year > limit:
                        break
                day, hour, minute, second = 1, 0, 0, 0
                continue
            if days[di] != day:
                day, hour, minute, second = days[di], 0, 0, 0
            found = self._next_time(hour, minute, second)
            if found is None:
                day, hour, minute, second = day + 1, 0, 0, 0
                continue
            return year, month, day, found[0], found[1], found[2]
        raise ValueError(f'"{self.expr}" has no fire time before year {limit + 1}')

    def _fields_after(self, wall: int) -> tuple[int, int, int, int, int, int]:
        """First matching wall time strictly after ``wall`` (whole seconds since 1970)."""
        days, rest = divmod(wall + 1, 86400)
        date = _date_fromordinal(days + _EPOCH_ORDINAL)
        hour, rest = divmod(rest, 3600)
        minute, second = divmod(rest, 60)
        return self._search(date.year, date.month, date.day, hour, minute, second)

    def _next_wall(self, after: datetime) -> datetime:
        """First matching naive wall time strictly after ``after`` (naive)."""
        return datetime(*self._fields_after(_wall_seconds(after)))

    def _transition(self, low: datetime, high: datetime, before: timedelta) -> datetime:
        """The instant (naive UTC) in (low, high] where the offset stops being ``before``."""
        tz = self.tz
        lo_ts = int(low.replace(tzinfo=UTC).timestamp())
        hi_ts = int(high.replace(tzinfo=UTC).timestamp())
        while hi_ts - lo_ts > 1:
            mid = (lo_ts + hi_ts) // 2
            if datetime.fromtimestamp(mid, tz).utcoffset() == before:
                lo_ts = mid
            else:
                hi_ts = mid
        return datetime.fromtimestamp(hi_ts, UTC).replace(tzinfo=None)

    def _next_instant(self, utc: datetime) -> datetime:
        """First fire instant strictly after ``utc`` (naive UTC), as an aware local time."""
        tz = self.tz
        interval = self._interval
        local = utc.replace(tzinfo=UTC).astimezone(tz)
        cursor = local.replace(tzinfo=None)
        in_second_occurrence = False
        if interval:
            here = local.utcoffset()
            other = cursor.replace(tzinfo=tz, fold=1 - local.fold).utcoffset()
            assert here is not None and other is not None
            if other < here:
                # First occurrence of a repeated wall time: the second occurrences of the
                # repeat's earlier wall times still lie ahead, so start at the repeat.
                moment = self._transition(utc, utc + (here - other), here)
                cursor = moment + other - _ONE_SECOND
            elif other > here:
                in_second_occurrence = True
        # Wall times map to instants in order, except second occurrences (interval-like
        # only) of a fall-back repeat; the loop ends at the first wall time whose first
        # occurrence lies ahead of ``utc``, remembering any earlier second occurrence.
        best: datetime | None = None
        while True:
            candidate = self._next_wall(cursor)
            aware = candidate.replace(tzinfo=tz)
            off0 = aware.utcoffset()
            off1 = candidate.replace(tzinfo=tz, fold=1).utcoffset()
            assert off0 is not None and off1 is not None
            first = candidate - off0
            if off0 == off1:
                if first > utc:
                    if best is not None and best < first:
                        return best.replace(tzinfo=UTC).astimezone(tz)
                    return aware
                # Unreachable with sane tz data; stepping one wall time is always safe.
                cursor = candidate
            elif off0 > off1:  # fall-back repeat
                if first > utc:
                    if best is not None and best < first:
                        return best.replace(tzinfo=UTC).astimezone(tz)
                    return aware
                second = candidate - off1
                if interval and second > utc:
                    if in_second_occurrence:
                        return candidate.replace(tzinfo=tz, fold=1)
                    if best is None or second < best:
                        best = second
                    # Later wall times of the repeat may still occur first before it.
                    cursor = max(candidate, utc + off0)
                elif interval:
                    # Second occurrences up to utc are past; past the repeat the offset is
                    # off1 too, so the same bound holds there.
                    cursor = max(candidate, utc + off1)
                else:
                    # We are past the transition: the repeat's first occurrences are all
                    # gone and its second occurrences never fire; resume after it.
                    moment = self._transition(first, second, off0)
                    cursor = max(candidate, moment + off0 - _ONE_SECOND)
            else:  # spring-forward gap: off0 is the offset before it, off1 after
                moment = self._transition(candidate - off1, first, off0)
                if not interval and moment > utc:
                    if best is not None and best < moment:
                        return best.replace(tzinfo=UTC).astimezone(tz)
                    return moment.replace(tzinfo=UTC).astimezone(tz)
                cursor = max(candidate, moment + off1 - _ONE_SECOND)

    # ------------------------------------------------------------------- public API

    def next_after(self, dt: datetime) -> datetime:
        """First fire instant strictly after ``dt``, as an aware datetime in :attr:`tz`."""
        offset = dt.utcoffset()
        if offset is None:
            raise ValueError(
                f"next_after() needs an aware datetime, got naive {dt.isoformat()}; "
                "attach a zone, e.g. dt.replace(tzinfo=ZoneInfo('UTC'))"
            )
        tz = self.tz
        # Fire instants are whole seconds, so "after dt" is "after dt's whole second" and
        # everything below runs on integer seconds, avoiding costly datetime.replace().
        fixed = self._fixed_seconds
        if fixed is not None:
            wall = _wall_seconds(dt) - offset.days * 86400 - offset.seconds + fixed
            return datetime(*self._fields_after(wall), 0, tz)
        local = dt if dt.tzinfo is tz else dt.astimezone(tz)
        here = tz.utcoffset(local)
        assert here is not None
        other = tz.utcoffset(
            datetime(
                local.year,
                local.month,
                local.day,
                local.hour,
                local.minute,
                local.second,
                0,
                tz,
                fold=1 - local.fold,
            )
        )
        if here == other:
            # Not inside a fall-back repeat: the first matching wall time after ours is
            # the answer whenever it is plain and shares our offset (no transition can
            # then put an earlier instant in between).
            fields = self._fields_after(_wall_seconds(local))
            candidate = datetime(*fields, 0, tz)
            if tz.utcoffset(candidate) == here == tz.utcoffset(datetime(*fields, 0, tz, fold=1)):
                return candidate
        return self._next_instant(local.replace(tzinfo=None, fold=0) - here)

    @property
    def interval_like(self) -> bool:
        """The hour field starts with ``*``: DST gaps skip, repeats fire twice (see above)."""
        return self._interval

    def iter_after(self, dt: datetime) -> Iterator[datetime]:
        """Fire instants strictly after ``dt``, endlessly, in order."""
        current = dt
        while True:
            current = self.next_after(current)
            yield current

    def next_n(self, dt: datetime, n: int) -> list[datetime]:
        """The next ``n`` fire instants strictly after ``dt``."""
        result: list[datetime] = []
        current = dt
        for _ in range(n):
            current = self.next_after(current)
            result.append(current)
        return result

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CronSchedule):
            return NotImplemented
        return self is other or self._key == other._key

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"CronSchedule({self.expr!r}, tz={self.tz.key!r})"


#: ``CronSchedule.of``'s table: (expression, zone as given) -> the live shared schedule.
#: Weak values: a schedule no job holds any more (after a reload) leaves the table.
_SHARED: weakref.WeakValueDictionary[tuple[str, str | ZoneInfo], CronSchedule] = (
    weakref.WeakValueDictionary()
)
