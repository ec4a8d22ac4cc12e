"""The beat's due-time heap and misfire catch-up arithmetic (no Redis)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from beat.schedule import DueHeap, catch_up, newest_ticks, next_ms, to_ms
from jobs_core.cron import CronSchedule
from tests.hypothesis_budget import examples

EVERY_SECOND = CronSchedule("* * * * * *")
EVERY_7S = CronSchedule("*/7 * * * * *")
T0 = to_ms(datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC))


def ticks_between(cron: CronSchedule, lo: int, hi: int) -> list[int]:
    out, t = [], next_ms(cron, lo)
    while t <= hi:
        out.append(t)
        t = next_ms(cron, t)
    return out


def test_heap_groups_jobs_due_at_one_instant() -> None:
    heap = DueHeap()
    heap.push("a", 2000)
    heap.push("b", 1000)
    heap.push("c", 2000)
    assert heap.peek() == (1000, ["b"])
    assert heap.pop_due(999) == []
    assert heap.pop_due(1000) == [(1000, "b")]
    assert heap.next_due() == 2000
    assert heap.pop_due(5000) == [(2000, "a"), (2000, "c")]
    assert heap.next_due() is None and len(heap) == 0


def test_next_instants_come_from_the_cron_engine_not_from_now() -> None:
    # A beat that wakes late must not shift the rhythm: next after 12:00:00 is 12:00:01
    # whatever the time is now.
    assert next_ms(EVERY_SECOND, T0) == T0 + 1000
    assert next_ms(EVERY_SECOND, T0 + 999) == T0 + 1000
    assert next_ms(EVERY_7S, T0) == T0 + 7000


def test_newest_ticks_returns_the_newest_and_counts_the_rest() -> None:
    newest, older, older_hi = newest_ticks(EVERY_SECOND, T0, T0 + 10_000, 3)
    assert newest == [T0 + 8000, T0 + 9000, T0 + 10_000]
    assert older == 7  # T0+1s .. T0+7s
    assert older_hi == T0 + 7999
    assert newest_ticks(EVERY_SECOND, T0, T0 + 2000, 5) == ([T0 + 1000, T0 + 2000], 0, T0)
    assert newest_ticks(EVERY_SECOND, T0, T0, 5) == ([], 0, T0)


def test_catch_up_fires_latest_in_grace_and_skips_older() -> None:
    # Last sent 12:00:00, now 12:00:10.5, grace 3 s: 12:00:08..10 are within grace.
    cu = catch_up(EVERY_SECOND, T0, T0 + 10_500, 3)
    assert cu.fire_ms == T0 + 10_000
    assert cu.coalesced == 2
    assert cu.skipped == [T0 + s * 1000 for s in range(1, 8)]
    assert cu.dropped == 0


def test_catch_up_caps_skips_and_summarises_the_rest() -> None:
    cu = catch_up(EVERY_SECOND, T0, T0 + 60_000, 5, skip_cap=10)
    assert cu.fire_ms == T0 + 60_000
    assert cu.skipped == [T0 + s * 1000 for s in range(45, 55)]
    assert cu.dropped == 44  # 12:00:01 .. 12:00:44
    assert cu.dropped_first_ms == T0 + 1000
    assert cu.dropped_last_ms == T0 + 44_000


def test_catch_up_nothing_missed() -> None:
    assert catch_up(EVERY_SECOND, T0, T0 + 999, 5).empty
    cu = catch_up(EVERY_7S, T0, T0 + 6000, 5)
    assert cu.empty


def test_catch_up_after_a_week_down_is_cheap() -> None:
    started = time.perf_counter()
    cu = catch_up(EVERY_SECOND, T0, T0 + 7 * 86_400_000, 300, skip_cap=100)
    assert time.perf_counter() - started < 2.0
    assert cu.fire_ms == T0 + 7 * 86_400_000
    assert len(cu.skipped) == 100
    assert cu.dropped == 10_000  # counted up to the cap: reported as "at least"


@settings(max_examples=examples(60), deadline=None)
@given(
    cron=st.sampled_from([EVERY_SECOND, EVERY_7S, CronSchedule("0,30 * * * * *")]),
    gap=st.integers(0, 400_000),
    offset=st.integers(0, 999),
    grace=st.integers(0, 120),
    cap=st.integers(1, 50),
)
def test_catch_up_accounts_for_every_missed_tick(
    cron: CronSchedule, gap: int, offset: int, grace: int, cap: int
) -> None:
    last = T0 + offset
    now = last + gap
    expected = ticks_between(cron, last, now)
    cu = catch_up(cron, last, now, grace, skip_cap=cap)
    horizon = now - grace * 1000
    fired = [cu.fire_ms] if cu.fire_ms is not None else []
    assert cu.coalesced + len(fired) + len(cu.skipped) + cu.dropped == len(expected)
    in_grace = [t for t in expected if t >= horizon]
    assert fired == in_grace[-1:]
    stale = [t for t in expected if t < horizon]
    assert cu.skipped == stale[-cap:] if stale else cu.skipped == []
    if cu.dropped:
        assert cu.dropped_first_ms == stale[0]
        assert cu.dropped_last_ms == stale[-cap - 1]
