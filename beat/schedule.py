"""When ticks are due: the due-time heap and the misfire catch-up computation.

Instants are integer epoch milliseconds throughout (exact, hashable, cheap to compare);
they come from the cron engine (``next_after``), never from adding a period to "now",
so the beat cannot drift.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Cron(Protocol):
    def next_after(self, dt: datetime, /) -> datetime: ...


def to_ms(dt: datetime) -> int:
    return round(dt.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def next_ms(cron: Cron, after_ms: int) -> int:
    """The first fire instant strictly after ``after_ms``."""
    return to_ms(cron.next_after(from_ms(after_ms)))


#: What a :class:`Window` answers past its end: later than any instant a beat will see.
NEVER = datetime(9999, 12, 31, tzinfo=UTC)
NEVER_MS = to_ms(NEVER)


@dataclass(frozen=True, slots=True)
class Window:
    """A schedule bounded by ``start_at`` and ``end_at`` (epoch ms, both inclusive).

    Its instants are the inner schedule's within the bounds; past the end it answers
    :data:`NEVER`, so the catch-up arithmetic needs no special case. Only jobs with a
    bound are wrapped: the others keep their bare schedule and pay nothing.
    """

    cron: Cron
    start_ms: int | None
    end_ms: int | None

    def next_after(self, dt: datetime, /) -> datetime:
        if self.start_ms is not None and to_ms(dt) < self.start_ms:
            dt = from_ms(self.start_ms - 1)
        nxt = self.cron.next_after(dt)
        if self.end_ms is not None and to_ms(nxt) > self.end_ms:
            return NEVER
        return nxt


def jitter_offset_ms(job_key: str, instant_ms: int, jitter_ms: int, gap_ms: int | None) -> int:
    """The start delay of tick ``(job_key, instant_ms)``: in ``[0, jitter_ms)``, and below
    ``gap_ms`` (the time to the job's next tick) so jittered ticks keep their order.

    Derived from the tick alone (a hash), so every beat computes the same offset.
    """
    span = jitter_ms if gap_ms is None else min(jitter_ms, gap_ms)
    if span <= 1:
        return 0
    digest = hashlib.blake2b(f"{job_key}@{instant_ms}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % span


class DueHeap:
    """Jobs keyed by their next due instant; jobs due at one instant share a bucket.

    Buckets make "every tick due at the same instant goes in one batch" natural and let
    the beat look at the next batch (to build its messages ahead) without popping it.
    """

    def __init__(self) -> None:
        self._instants: list[int] = []
        self._buckets: dict[int, list[str]] = {}

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets.values())

    def __bool__(self) -> bool:
        return bool(self._instants)

    def push(self, job_key: str, due_ms: int) -> None:
        bucket = self._buckets.get(due_ms)
        if bucket is None:
            self._buckets[due_ms] = bucket = []
            heapq.heappush(self._instants, due_ms)
        bucket.append(job_key)

    def next_due(self) -> int | None:
        return self._instants[0] if self._instants else None

    def peek(self) -> tuple[int, list[str]] | None:
        """The earliest instant and its jobs (not removed)."""
        if not self._instants:
            return None
        due = self._instants[0]
        return due, self._buckets[due]

    def pop_first(self) -> tuple[int, list[str]]:
        """Remove and return the earliest instant and its jobs."""
        due = heapq.heappop(self._instants)
        return due, self._buckets.pop(due)

    def discard(self, job_key: str) -> None:
        """Remove ``job_key`` wherever it waits (rare: a scan of the buckets). An instant
        left with no job goes too: :meth:`next_due` must not wake the beat for nothing."""
        for due, bucket in self._buckets.items():
            if job_key in bucket:
                bucket.remove(job_key)
                if not bucket:
                    del self._buckets[due]
                    self._instants.remove(due)
                    heapq.heapify(self._instants)
                return

    def pop_due(self, now_ms: int) -> list[tuple[int, str]]:
        """Every ``(instant, job)`` due at or before ``now_ms``, earliest first."""
        out: list[tuple[int, str]] = []
        while self._instants and self._instants[0] <= now_ms:
            due = heapq.heappop(self._instants)
            out.extend((due, key) for key in self._buckets.pop(due))
        return out

    def entries(self) -> Iterable[tuple[int, str]]:
        for due, bucket in self._buckets.items():
            for key in bucket:
                yield due, key


def newest_ticks(
    cron: Cron, lo_ms: int, hi_ms: int, n: int, *, count_cap: int = 10_000
) -> tuple[list[int], int, int]:
    """The newest ``n`` ticks in ``(lo_ms, hi_ms]`` (oldest first), and about the rest.

    Returns ``(newest, older_count, older_hi)``: ``older_count`` ticks lie in
    ``(lo_ms, older_hi]`` before the returned ones (counted up to ``count_cap``; a result
    equal to the cap means "at least"). The cron engine only walks forward, so the
    window is found by doubling it backwards from ``hi_ms``: cost stays proportional to
    ``n`` however long the beat was down.
    """
    if hi_ms <= lo_ms or n <= 0:
        return [], 0, lo_ms
    width = 1000
    while True:
        start = max(lo_ms, hi_ms - width)
        found: deque[int] = deque(maxlen=n)
        count = 0
        t = next_ms(cron, start)
        while t <= hi_ms:
            found.append(t)
            count += 1
            t = next_ms(cron, t)
        if count >= n or start == lo_ms:
            break
        width *= 2
    newest = list(found)
    if start == lo_ms and count <= n:
        return newest, 0, lo_ms
    # Ticks older than the newest n: those in (lo, start] plus any surplus in the window.
    older_hi = newest[0] - 1
    older = 0
    t = next_ms(cron, lo_ms)
    while t <= older_hi and older < count_cap:
        older += 1
        t = next_ms(cron, t)
    return newest, older, older_hi


@dataclass
class CatchUp:
    """What a beat does for one job whose ticks were missed while no beat sent them."""

    fire_ms: int | None = None  # latest missed tick within grace: sent once, as catch-up
    coalesced: int = 0  # other in-grace ticks folded into that one run
    skipped: list[int] = field(default_factory=list)  # beyond grace: recorded as skipped
    dropped: int = 0  # beyond grace and beyond the cap: one summary record
    dropped_first_ms: int | None = None
    dropped_last_ms: int | None = None

    @property
    def empty(self) -> bool:
        return self.fire_ms is None and not self.skipped and not self.dropped


def catch_up(
    cron: Cron,
    last_ms: int,
    now_ms: int,
    grace_s: float,
    *,
    skip_cap: int = 100,
    hi_ms: int | None = None,
) -> CatchUp:
    """Ticks in ``(last_ms, now_ms]``: fire the latest within grace, skip the older ones.

    A tick missed by at most ``grace_s`` (``now - tick <= grace``) is within grace.
    Of the older ones the newest ``skip_cap`` are returned one by one and the rest are
    summarised (count and range), so a beat down for a week does not flood the queue.
    ``hi_ms`` (default ``now_ms``) stops the window earlier: a jittered tick whose
    delayed instant is still ahead is not missed.
    """
    result = CatchUp()
    hi = now_ms if hi_ms is None else hi_ms
    horizon = now_ms - int(grace_s * 1000)  # ticks >= horizon are within grace
    in_lo = max(last_ms, horizon - 1)
    fresh, older_fresh, _ = newest_ticks(cron, in_lo, hi, 1)
    if fresh:
        result.fire_ms = fresh[-1]
        result.coalesced = older_fresh
    stale_hi = min(horizon - 1, hi)
    if stale_hi > last_ms:
        skipped, dropped, dropped_hi = newest_ticks(cron, last_ms, stale_hi, skip_cap)
        result.skipped = skipped
        if dropped:
            result.dropped = dropped
            result.dropped_first_ms = next_ms(cron, last_ms)
            # The newest dropped tick: walk back is impossible, so report the bound.
            result.dropped_last_ms = _last_tick_at_or_before(cron, last_ms, dropped_hi)
    return result


def _last_tick_at_or_before(cron: Cron, lo_ms: int, hi_ms: int) -> int:
    newest, _, _ = newest_ticks(cron, lo_ms, hi_ms, 1, count_cap=0)
    return newest[-1] if newest else hi_ms


def iso(ms: int) -> str:
    return from_ms(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seconds(ms: int) -> timedelta:
    return timedelta(milliseconds=ms)
