"""Daylight-saving changes of a zone, and what a cron schedule does at them.

Pure functions over :class:`~jobs_core.cron.CronSchedule` (no clock: ``now`` is passed
in): ``jobs status`` previews the next change, the dashboard marks next runs that come
after one. The behaviour described is the cron engine's own (cronie's rules, see
:mod:`jobs_core.cron`); this module only observes and names it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from .cron import CronSchedule

#: How far ahead a change is looked for.
HORIZON = timedelta(days=366)
#: At most this many wall times and instants are listed (an every-second schedule has
#: 3,600 in a repeated hour); ``count`` says how many there are.
LISTED = 10
_SCAN_STEP = timedelta(hours=6)
_SECOND = timedelta(seconds=1)


class Effect(StrEnum):
    """What a schedule does at a DST change."""

    TWICE = "fires twice"  # interval-like hours in a repeated hour: both occurrences
    ONCE = "fires once"  # fixed hours in a repeated hour: the first occurrence only
    MOVED = "moved"  # fixed hours in a gap: once, at the first instant after it
    SKIPPED = "skipped"  # interval-like hours in a gap: those wall times do not exist
    UNAFFECTED = "unaffected"  # no wall time of the schedule in the gap or the repeat


@dataclass(frozen=True)
class Transition:
    """A change of a zone's UTC offset at instant ``at``."""

    at: datetime  # UTC
    before: timedelta
    after: timedelta

    @property
    def kind(self) -> str:
        return "spring-forward" if self.after > self.before else "fall-back"

    @property
    def shift(self) -> timedelta:
        return abs(self.after - self.before)

    def wall_window(self) -> tuple[datetime, datetime]:
        """The local wall times (naive) that do not exist (gap) or occur twice (repeat)."""
        start = (self.at + min(self.before, self.after)).replace(tzinfo=None)
        return start, start + self.shift


def offset_text(value: timedelta | None) -> str:
    """``UTC+01:00``."""
    minutes = int((value or timedelta()).total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def next_transition(
    tz: ZoneInfo, after: datetime, within: timedelta = HORIZON
) -> Transition | None:
    """The first offset change of ``tz`` strictly after ``after``, within ``within``."""
    lo = after.astimezone(UTC)
    end = lo + within
    before = lo.astimezone(tz).utcoffset()
    while lo < end:
        hi = min(lo + _SCAN_STEP, end)
        if hi.astimezone(tz).utcoffset() != before:
            # The change is in (lo, hi]: bisect to the second (zones change on whole seconds).
            while hi - lo > _SECOND:
                mid = lo + (hi - lo) / 2
                mid = mid.replace(microsecond=0)
                if mid <= lo:
                    mid = lo + _SECOND
                if mid.astimezone(tz).utcoffset() == before:
                    lo = mid
                else:
                    hi = mid
            after_offset = hi.astimezone(tz).utcoffset()
            assert before is not None and after_offset is not None
            return Transition(hi, before, after_offset)
        lo = hi
    return None


@dataclass(frozen=True)
class Preview:
    """What a schedule does at the next DST change of its zone."""

    zone: str
    transition: Transition
    effect: Effect
    #: The schedule's local wall times inside the gap or the repeat ("HH:MM:SS").
    wall_times: list[str] = field(default_factory=list)
    #: When it fires there (UTC): both occurrences, the first, the moved instant, or none.
    instants: list[datetime] = field(default_factory=list)
    count: int = 0  # wall times of the schedule inside the window (up to LISTED are listed)

    def to_json(self) -> dict[str, Any]:
        tz = ZoneInfo(self.zone)
        return {
            "zone": self.zone,
            "at": self.transition.at.isoformat(),
            "kind": self.transition.kind,
            "offset_before": offset_text(self.transition.before),
            "offset_after": offset_text(self.transition.after),
            "effect": self.effect.value,
            "wall_times": list(self.wall_times),
            "wall_time_count": self.count,
            "instants": [t.astimezone(tz).isoformat() for t in self.instants],
        }

    def describe(self) -> str:
        """One line for ``jobs status``."""
        tz = ZoneInfo(self.zone)
        t = self.transition
        local = (t.at + t.before).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S")
        head = (
            f"{t.kind} at {local} local ({offset_text(t.before)} -> {offset_text(t.after)}): "
            f"{self.effect.value}"
        )
        if self.effect is Effect.UNAFFECTED:
            return head
        more = f" (+{self.count - len(self.wall_times)} more)" if self.count > LISTED else ""
        walls = ", ".join(self.wall_times) + more
        fired = ", ".join(i.astimezone(tz).strftime("%H:%M:%S %Z") for i in self.instants)
        if self.effect is Effect.SKIPPED:
            return f"{head}: {walls} do not exist that day"
        return f"{head}: {walls} -> {fired or '-'}"


def preview(cron: CronSchedule, now: datetime, within: timedelta = HORIZON) -> Preview | None:
    """The effect of ``cron`` at the next DST change of its zone after ``now``, or None
    when its zone does not change offset within ``within``."""
    tz = cron.tz
    change = next_transition(tz, now, within)
    if change is None:
        return None
    zone = tz.key or str(tz)
    lo, hi = change.wall_window()
    walls = _wall_matches(cron, lo, hi)
    if not walls:
        return Preview(zone, change, Effect.UNAFFECTED)
    listed = [w.strftime("%H:%M:%S") for w in walls[:LISTED]]
    if change.kind == "spring-forward":
        if cron.interval_like:
            return Preview(zone, change, Effect.SKIPPED, listed, [], len(walls))
        moved = cron.next_after(change.at - _SECOND).astimezone(UTC)
        return Preview(zone, change, Effect.MOVED, listed, [moved], len(walls))
    # A fall-back: real instants in [at - shift, at) are the first occurrence of the
    # repeated wall times, those in [at, at + shift) the second.
    first = _fires(cron, change.at - change.shift, change.at)
    second = _fires(cron, change.at, change.at + change.shift)
    if second:
        return Preview(zone, change, Effect.TWICE, listed, (first + second)[:LISTED], len(walls))
    return Preview(zone, change, Effect.ONCE, listed, first[:LISTED], len(walls))


def _wall_matches(cron: CronSchedule, lo: datetime, hi: datetime) -> list[datetime]:
    """Wall times in ``[lo, hi)`` (naive) that the schedule's fields match, read on a
    clock without DST (the same expression in UTC)."""
    plain = CronSchedule.of(cron.expr, "UTC")
    found: list[datetime] = []
    t = plain.next_after(lo.replace(tzinfo=UTC) - _SECOND)
    end = hi.replace(tzinfo=UTC)
    while t < end:
        found.append(t.replace(tzinfo=None))
        t = plain.next_after(t)
    return found


def _fires(cron: CronSchedule, lo: datetime, hi: datetime) -> list[datetime]:
    """Fire instants of ``cron`` in ``[lo, hi)`` (UTC)."""
    out: list[datetime] = []
    t = cron.next_after(lo - _SECOND).astimezone(UTC)
    while t < hi and len(out) <= 2 * LISTED:
        out.append(t)
        t = cron.next_after(t).astimezone(UTC)
    return out


def marks(instants: Sequence[datetime], tz: ZoneInfo, now: datetime) -> list[str | None]:
    """For a list of upcoming fire instants: which come right after a DST change (the
    offset differs from the previous one's) or in the second pass of a repeated hour."""
    previous = now.astimezone(tz).utcoffset()
    out: list[str | None] = []
    for at in instants:
        local = at.astimezone(tz)
        offset = local.utcoffset()
        mark = None
        if offset != previous:
            mark = f"DST: {offset_text(previous)} -> {offset_text(offset)}"
        elif local.fold:
            mark = "DST: repeated hour, second time"
        out.append(mark)
        previous = offset
    return out
