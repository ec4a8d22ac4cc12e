"""The beat's scheduling core (beat.core.Scheduler): pure decisions, no Redis, no clock."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beat.core import MIN_PERIOD_MS, SKIP_CAP, Entry, Kind, Scheduler, Send
from beat.schedule import Cron, Window, jitter_offset_ms, next_ms, to_ms
from jobs_core.cron import CronSchedule
from jobs_core.status import Trigger
from tests.hypothesis_budget import examples

T0 = to_ms(datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC))
LONDON = "Europe/London"


def job(
    key: str,
    expr: str = "* * * * * *",
    grace: float = 300.0,
    tz: str = "UTC",
    *,
    jitter_ms: int = 0,
    start: int | None = None,
    end: int | None = None,
) -> Entry:
    cron: Cron = CronSchedule(expr, tz)
    if start is not None or end is not None:
        cron = Window(cron, start, end)
    return Entry(key, cron, grace, jitter_ms)


def wake(core: Scheduler, now: int, *, fast: bool = True) -> list[Send]:
    """What the service does at one wake-up: the on-time fast path while it applies
    (when ``fast``), then :meth:`Scheduler.take`; every send is then accepted."""
    sends: list[Send] = []
    while fast and (head := core.on_time(now)) is not None:
        due, keys = core.pop_head()
        assert due == head[0]
        sends += [Send(k, due, Trigger.SCHEDULE, Kind.FIRE) for k in keys]
        core.handled_instant(due, keys)
        assert core.advance(due, keys) == []
    plan = core.take(now)
    assert plan.failures == []
    sends += plan.sends
    core.handled((s.job_key, s.due_ms) for s in plan.sends)
    return sends


def run_on_time(core: Scheduler, until: int) -> list[Send]:
    """A beat that wakes exactly at every instant up to ``until``."""
    sends: list[Send] = []
    while (due := core.next_due()) is not None and due <= until:
        sends += wake(core, due)
        assert core.next_due() != due, "a due instant was not taken"
    return sends


def ticks_between(cron: Cron, lo: int, hi: int) -> list[int]:
    out, t = [], next_ms(cron, lo)
    while t <= hi:
        out.append(t)
        t = next_ms(cron, t)
    return out


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return to_ms(datetime(year, month, day, hour, minute, tzinfo=UTC))


def fires(sends: list[Send], key: str | None = None) -> list[int]:
    return [s.due_ms for s in sends if s.kind is Kind.FIRE and key in (None, s.job_key)]


# ----------------------------------------------------------------- on time


def test_a_beat_on_time_fires_every_tick_once_on_schedule() -> None:
    core = Scheduler()
    plan = core.start([job("e/a"), job("e/b", "*/5 * * * * *")], T0, {})
    assert plan.sends == [] and plan.failures == []  # never handled: nothing to catch up
    assert core.head() == (T0 + 1000, ["e/a"])
    sends = run_on_time(core, T0 + 10_000)
    assert fires(sends, "e/a") == [T0 + s * 1000 for s in range(1, 11)]
    assert fires(sends, "e/b") == [T0 + 5000, T0 + 10_000]
    assert all(s.trigger is Trigger.SCHEDULE for s in sends)
    assert len(core) == 2 and core.next_due() == T0 + 11_000


def test_jobs_due_at_one_instant_share_one_bucket_in_order() -> None:
    core = Scheduler()
    core.start([job("e/a"), job("e/b", "*/2 * * * * *"), job("e/c")], T0, {})
    assert core.head() == (T0 + 1000, ["e/a", "e/c"])
    wake(core, T0 + 1000)
    assert core.head() == (T0 + 2000, ["e/b", "e/a", "e/c"])


def test_the_fast_path_applies_only_less_than_a_period_after_the_instant() -> None:
    core = Scheduler()
    core.start([job("e/a")], T0, {})
    assert core.on_time(T0 + 999) is None  # not due yet
    assert core.on_time(T0 + 1000) == (T0 + 1000, ["e/a"])
    assert core.on_time(T0 + 1000 + MIN_PERIOD_MS - 1) is not None
    # A whole period late, a second tick may be due: the general path decides.
    assert core.on_time(T0 + 1000 + MIN_PERIOD_MS) is None


def test_a_late_wake_with_one_tick_due_fires_it_on_schedule() -> None:
    # Only one tick of the job is due: it is sent as is (the grace applies to ticks
    # missed while no beat ran, and to stalls that let a second tick come due).
    core = Scheduler()
    core.start([job("e/a", "0 * * * * *", grace=5)], T0, {})
    sends = wake(core, T0 + 60_000 + 20_000)
    assert sends == [Send("e/a", T0 + 60_000, Trigger.SCHEDULE, Kind.FIRE)]


# ----------------------------------------------------------------- catch-up at start


def test_start_catches_up_from_the_newer_of_redis_and_own_memory() -> None:
    core = Scheduler()
    core.start([job("e/a", grace=3)], T0, {})
    run_on_time(core, T0 + 5000)  # handled up to T0+5s (this process remembers)
    core.clear()
    assert core.next_due() is None and core.on_time(T0 + 10_000) is None
    # Redis lost its record (restart without persistence): own memory counts.
    plan = core.start([job("e/a", grace=3)], T0 + 10_500, {})
    assert [(s.kind, s.due_ms) for s in plan.sends] == [
        (Kind.SKIP, T0 + 6000),
        (Kind.SKIP, T0 + 7000),
        (Kind.FIRE, T0 + 10_000),
    ]
    assert plan.sends[-1].count == 2  # T0+8s and T0+9s folded into the one run
    assert all(s.trigger is Trigger.CATCH_UP for s in plan.sends)
    assert all("misfire_grace 3s" in (s.skip_reason or "") for s in plan.sends[:2])
    assert plan.sends[-1].skip_reason is None
    assert core.next_due() == T0 + 11_000
    # Redis newer than own memory: Redis wins.
    core.clear()
    plan = core.start([job("e/a", grace=3)], T0 + 12_000, {"e/a": T0 + 11_000})
    assert [(s.kind, s.due_ms) for s in plan.sends] == [(Kind.FIRE, T0 + 12_000)]


def test_jobs_sharing_a_schedule_catch_up_from_their_own_last_tick() -> None:
    table = [job("e/a", grace=2), job("e/b", grace=2), job("e/c", grace=2)]
    last = {"e/a": T0, "e/b": T0 + 7000, "e/c": T0 + 10_000}
    plan = Scheduler().start(table, T0 + 10_000, last)
    got = [(s.job_key, s.kind, s.due_ms) for s in plan.sends]
    assert got == [
        *[("e/a", Kind.SKIP, T0 + i * 1000) for i in range(1, 8)],
        ("e/a", Kind.FIRE, T0 + 10_000),
        ("e/b", Kind.FIRE, T0 + 10_000),
    ]
    assert [s.count for s in plan.sends if s.kind is Kind.FIRE] == [2, 2]


def test_a_tick_exactly_misfire_grace_old_still_fires() -> None:
    # The rule: a tick missed by at most misfire_grace (now - tick <= grace) fires.
    every_10s = "*/10 * * * * *"
    at_edge = Scheduler().start([job("e/a", every_10s, grace=5)], T0 + 15_000, {"e/a": T0})
    assert [(s.kind, s.due_ms) for s in at_edge.sends] == [(Kind.FIRE, T0 + 10_000)]
    past = Scheduler().start([job("e/a", every_10s, grace=5)], T0 + 15_001, {"e/a": T0})
    assert [(s.kind, s.due_ms) for s in past.sends] == [(Kind.SKIP, T0 + 10_000)]
    # Same edge on the stall path: woken at T0+25s, the T0+20s tick is 5 s old.
    core = Scheduler()
    core.start([job("e/a", every_10s, grace=5)], T0, {})
    sends = wake(core, T0 + 25_000)
    assert [(s.kind, s.due_ms) for s in sends] == [
        (Kind.SKIP, T0 + 10_000),
        (Kind.FIRE, T0 + 20_000),
    ]
    core = Scheduler()
    core.start([job("e/a", every_10s, grace=5)], T0, {})
    sends = wake(core, T0 + 25_001)
    assert [(s.kind, s.due_ms) for s in sends] == [
        (Kind.SKIP, T0 + 10_000),
        (Kind.SKIP, T0 + 20_000),
    ]
    assert core.next_due() == T0 + 30_000


def test_zero_grace_fires_only_a_tick_due_at_this_very_millisecond() -> None:
    plan = Scheduler().start([job("e/a", grace=0)], T0 + 3000, {"e/a": T0})
    assert [(s.kind, s.due_ms) for s in plan.sends] == [
        (Kind.SKIP, T0 + 1000),
        (Kind.SKIP, T0 + 2000),
        (Kind.FIRE, T0 + 3000),
    ]


def test_a_long_outage_records_the_newest_skips_and_one_summary_in_tick_order() -> None:
    now = T0 + 1000 * 1000
    plan = Scheduler().start([job("e/a", grace=5)], now, {"e/a": T0})
    kinds = Counter(s.kind for s in plan.sends)
    assert kinds == {Kind.SUMMARY: 1, Kind.SKIP: SKIP_CAP, Kind.FIRE: 1}
    # The claim script drops a tick older than one already claimed: ascending order.
    instants = [s.due_ms for s in plan.sends]
    assert instants == sorted(instants) and len(set(instants)) == len(instants)
    summary, fire = plan.sends[0], plan.sends[-1]
    assert summary.kind is Kind.SUMMARY and summary.first_ms == T0 + 1000
    skipped = [s.due_ms for s in plan.sends if s.kind is Kind.SKIP]
    assert summary.due_ms == skipped[0] - 1000
    assert summary.count + len(skipped) + 1 + fire.count == 1000  # every missed tick
    assert "older ticks" in (summary.skip_reason or "")
    assert fire.due_ms == now and fire.count == 5  # now-5s .. now-1s folded


# ----------------------------------------------------------------- stalls


def test_a_stalled_beat_coalesces_instead_of_bursting() -> None:
    core = Scheduler()
    core.start([job("e/a", grace=2), job("e/b", grace=300)], T0, {})
    assert fires(wake(core, T0 + 1000)) == [T0 + 1000, T0 + 1000]
    sends = wake(core, T0 + 6500)  # five ticks of each came due while we slept
    a = [(s.kind, s.trigger, s.due_ms) for s in sends if s.job_key == "e/a"]
    assert a == [
        (Kind.SKIP, Trigger.CATCH_UP, T0 + 2000),
        (Kind.SKIP, Trigger.CATCH_UP, T0 + 3000),
        (Kind.SKIP, Trigger.CATCH_UP, T0 + 4000),
        (Kind.FIRE, Trigger.CATCH_UP, T0 + 6000),
    ]
    b = [s for s in sends if s.job_key == "e/b"]
    assert [(s.kind, s.due_ms, s.count) for s in b] == [(Kind.FIRE, T0 + 6000, 4)]
    # Then the normal rhythm, on time.
    assert core.next_due() == T0 + 7000
    assert wake(core, T0 + 7000) == [
        Send("e/a", T0 + 7000, Trigger.SCHEDULE, Kind.FIRE),
        Send("e/b", T0 + 7000, Trigger.SCHEDULE, Kind.FIRE),
    ]


def test_a_stall_only_catches_up_the_jobs_with_more_than_one_tick_due() -> None:
    core = Scheduler()
    core.start([job("e/sec"), job("e/min", "0 * * * * *")], T0, {})
    sends = wake(core, T0 + 60_000 + 1500)
    assert [(s.job_key, s.trigger, s.due_ms) for s in sends if s.kind is Kind.FIRE] == [
        ("e/sec", Trigger.CATCH_UP, T0 + 61_000),
        ("e/min", Trigger.SCHEDULE, T0 + 60_000),
    ]


# ----------------------------------------------------------------- DST (Europe/London)

SPRING = (2026, 3, 29)  # 01:00 GMT -> 02:00 BST at 01:00 UTC
FALL = (2026, 10, 25)  # 02:00 BST -> 01:00 GMT at 01:00 UTC


@pytest.mark.parametrize("fast", [True, False])
def test_spring_forward_fixed_hour_fires_once_after_the_gap(fast: bool) -> None:
    core = Scheduler()
    core.start([job("e/a", "0 30 1 * * *", tz=LONDON)], utc(2026, 3, 27, 12), {})
    sends: list[Send] = []
    while (due := core.next_due()) is not None and due < utc(2026, 3, 31):
        sends += wake(core, due, fast=fast)
        assert core.next_due() != due, "a due instant was not taken"
    assert fires(sends) == [
        utc(2026, 3, 28, 1, 30),  # 01:30 GMT
        utc(2026, 3, 29, 1, 0),  # 01:30 does not exist: 02:00 BST, right after the gap
        utc(2026, 3, 30, 0, 30),  # 01:30 BST
    ]


@pytest.mark.parametrize("fast", [True, False])
def test_spring_forward_interval_keeps_real_time_rhythm(fast: bool) -> None:
    core = Scheduler()
    core.start([job("e/a", "0 */30 * * * *", tz=LONDON)], utc(*SPRING, 0, 0), {})
    sends: list[Send] = []
    while (due := core.next_due()) is not None and due <= utc(*SPRING, 3, 0):
        sends += wake(core, due, fast=fast)
        assert core.next_due() != due, "a due instant was not taken"
    # Local 00:30 GMT, then 02:00 BST (= 01:00 UTC): the skipped wall hour is no tick.
    assert fires(sends) == [utc(*SPRING, 0, 30) + i * 1_800_000 for i in range(6)]


@pytest.mark.parametrize("fast", [True, False])
def test_fall_back_fixed_hour_fires_the_first_occurrence_only(fast: bool) -> None:
    core = Scheduler()
    core.start([job("e/a", "0 30 1 * * *", tz=LONDON)], utc(2026, 10, 24, 12), {})
    sends: list[Send] = []
    while (due := core.next_due()) is not None and due < utc(2026, 10, 27):
        sends += wake(core, due, fast=fast)
        assert core.next_due() != due, "a due instant was not taken"
    assert fires(sends) == [
        utc(*FALL, 0, 30),  # 01:30 BST; 01:30 GMT an hour later does not fire
        utc(2026, 10, 26, 1, 30),
    ]


@pytest.mark.parametrize("fast", [True, False])
def test_fall_back_interval_fires_both_occurrences(fast: bool) -> None:
    core = Scheduler()
    core.start([job("e/a", "0 */30 * * * *", tz=LONDON)], utc(*FALL, 0, 0), {})
    sends: list[Send] = []
    while (due := core.next_due()) is not None and due <= utc(*FALL, 2, 0):
        sends += wake(core, due, fast=fast)
        assert core.next_due() != due, "a due instant was not taken"
    # 01:00 and 01:30 local happen twice: four ticks, every 30 min of real time.
    assert fires(sends) == [utc(*FALL, 0, 30) + i * 1_800_000 for i in range(4)]


def test_catch_up_across_the_fall_back_counts_repeated_wall_times() -> None:
    # Down from 00:00 to 01:45 UTC (01:00 BST .. 01:45 GMT), grace one hour.
    interval = job("e/i", "0 */30 * * * *", grace=3600, tz=LONDON)
    fixed = job("e/f", "0 30 1 * * *", grace=3600, tz=LONDON)
    plan = Scheduler().start(
        [interval, fixed], utc(*FALL, 1, 45), {"e/i": utc(*FALL, 0, 0), "e/f": utc(*FALL, 0, 0)}
    )
    got = [(s.job_key, s.kind, s.due_ms, s.count) for s in plan.sends]
    assert got == [
        # 00:30 UTC (01:30 BST) is older than the grace; 01:00 (01:00 GMT) is folded.
        ("e/i", Kind.SKIP, utc(*FALL, 0, 30), 0),
        ("e/i", Kind.FIRE, utc(*FALL, 1, 30), 1),
        ("e/f", Kind.SKIP, utc(*FALL, 0, 30), 0),
    ]


# ----------------------------------------------------------------- reload


def test_reload_keeps_unchanged_jobs_and_restarts_added_and_changed_ones() -> None:
    core = Scheduler()
    core.start([job("e/keep", "*/10 * * * * *"), job("e/change"), job("e/drop")], T0, {})
    wake(core, T0 + 1000)
    changed, failures = core.reload(
        [
            job("e/keep", "*/10 * * * * *", grace=1),  # grace only: not a change
            job("e/change", "*/7 * * * * *"),
            job("e/new", "*/3 * * * * *"),
        ],
        T0 + 1500,
    )
    assert (changed, failures) == (2, [])
    sends = run_on_time(core, T0 + 21_000)
    assert fires(sends, "e/keep") == [T0 + 10_000, T0 + 20_000]
    assert fires(sends, "e/change") == [T0 + 7000, T0 + 14_000, T0 + 21_000]
    assert fires(sends, "e/new") == [T0 + s * 1000 for s in range(3, 22, 3)]
    assert fires(sends, "e/drop") == []
    assert len(core) == 3


def test_disable_and_enable_through_reload_do_not_catch_up_the_paused_time() -> None:
    core = Scheduler()
    core.start([job("e/a", grace=300), job("e/b")], T0, {})
    run_on_time(core, T0 + 2000)
    assert core.reload([job("e/b")], T0 + 2500) == (0, [])  # e/a disabled
    assert fires(run_on_time(core, T0 + 6000), "e/a") == []
    assert core.reload([job("e/a", grace=300), job("e/b")], T0 + 6500) == (1, [])
    sends = run_on_time(core, T0 + 9000)
    assert fires(sends, "e/a") == [T0 + 7000, T0 + 8000, T0 + 9000]
    assert all(s.trigger is Trigger.SCHEDULE for s in sends)


def test_reload_to_the_same_table_changes_nothing() -> None:
    core = Scheduler()
    core.start([job("e/a", "*/5 * * * * *"), job("e/b", "*/3 * * * * *")], T0, {})
    head = core.head()
    same = [job("e/a", "*/5 * * * * *"), job("e/b", "*/3 * * * * *")]
    assert core.reload(same, T0 + 100) == (0, [])
    assert core.head() == head == (T0 + 3000, ["e/b"])
    assert fires(run_on_time(core, T0 + 6000)) == [T0 + 3000, T0 + 5000, T0 + 6000]


# ----------------------------------------------------------------- failures


class _Exploding:
    def next_after(self, dt: datetime, /) -> datetime:
        raise RuntimeError("boom")


def test_a_broken_schedule_drops_that_job_only() -> None:
    core = Scheduler()
    bad = Entry("e/bad", _Exploding(), 300)
    plan = core.start([job("e/a"), bad], T0, {"e/bad": T0 - 5000})
    assert [(f.job_key, f.during) for f in plan.failures] == [("e/bad", "catch-up")]
    assert "boom" in plan.failures[0].error
    assert fires(run_on_time(core, T0 + 3000)) == [T0 + 1000, T0 + 2000, T0 + 3000]
    changed, failures = core.reload([job("e/a"), bad], T0 + 3500)
    assert changed == 1 and [(f.job_key, f.during) for f in failures] == [("e/bad", "schedule")]


# ----------------------------------------------------------------- thousands of jobs


def test_ten_thousand_jobs_plan_an_instant_quickly_and_each_fires_once() -> None:
    exprs = ["* * * * * *", "*/2 * * * * *", "*/5 * * * * *", "0 * * * * *"]
    table = [job(f"e/j{i}", exprs[i % 4]) for i in range(10_000)]
    core = Scheduler()
    core.start(table, T0, {})
    started = time.perf_counter()
    head = core.on_time(T0 + 2000 - 1)  # T0+1s is due; a whole period has not passed
    assert head is not None and len(head[1]) == 2500
    due, keys = core.pop_head()
    assert core.advance(due, keys) == []
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, f"planning one instant of 10,000 jobs took {elapsed:.3f}s"
    sends = run_on_time(core, T0 + 60_000)
    per_job = Counter(s.job_key for s in sends)
    expected = {0: 59, 1: 30, 2: 12, 3: 1}  # T0+2s .. T0+60s
    assert all(per_job[f"e/j{i}"] == expected[i % 4] for i in range(10_000))
    # A stall over the whole table is coalesced and costs about one job's arithmetic.
    started = time.perf_counter()
    stall = wake(core, T0 + 70_500)
    assert time.perf_counter() - started < 2.0
    assert Counter(s.kind for s in stall) == {Kind.FIRE: 7500}  # the per-minute jobs wait
    assert len(core) == 10_000


# ----------------------------------------------------------------- properties

CRONS = ["* * * * * *", "*/3 * * * * *", "0,30 * * * * *", "*/7 * * * * *"]


@settings(max_examples=examples(150), deadline=None)
@given(
    specs=st.lists(
        st.tuples(st.sampled_from(CRONS), st.integers(0, 20), st.sampled_from([0, 0, 700, 9000])),
        min_size=1,
        max_size=4,
    ),
    steps=st.lists(
        st.tuples(
            st.one_of(st.integers(0, 25_000), st.integers(100_000, 200_000)),
            st.sampled_from(["wake", "wake", "slow", "restart"]),
        ),
        min_size=1,
        max_size=25,
    ),
    offset=st.integers(0, 999),
)
def test_every_tick_is_sent_once_or_skipped_once_across_any_wake_ups(
    specs: list[tuple[str, int, int]], steps: list[tuple[int, str]], offset: int
) -> None:
    table = [
        job(f"e/j{i}", expr, grace, jitter_ms=jitter)
        for i, (expr, grace, jitter) in enumerate(specs)
    ]
    core = Scheduler()
    start = T0 + offset
    core.start(table, start, {})
    now = start
    seen: dict[str, Counter[int]] = defaultdict(Counter)
    # A job with no tick handled yet starts afresh at a new leader (no catch-up from
    # nothing), so its window starts at the last such start.
    since = {e.key: start for e in table}
    folded: Counter[str] = Counter()
    redis_last: dict[str, int] = {}
    for gap, action in steps:
        now += gap
        if action == "restart":  # leadership lost, then won back
            core.clear()
            since.update({e.key: now for e in table if e.key not in redis_last})
            sends = core.start(table, now, redis_last).sends
            core.handled((s.job_key, s.due_ms) for s in sends)
        else:
            sends = wake(core, now, fast=action == "wake")
        grace_of = {e.key: e.grace_s for e in table}
        for s in sends:
            assert s.due_ms <= now
            seen[s.job_key][s.due_ms] += 1
            redis_last[s.job_key] = max(redis_last.get(s.job_key, 0), s.due_ms)
            if s.kind is Kind.FIRE:
                folded[s.job_key] += s.count
                if s.trigger is Trigger.CATCH_UP:
                    assert now - s.due_ms <= grace_of[s.job_key] * 1000
            elif s.kind is Kind.SKIP:
                assert now - s.due_ms > grace_of[s.job_key] * 1000
            else:
                folded[s.job_key] += s.count - 1  # a summary stands for s.count ticks
        for key in {s.job_key for s in sends}:
            mine = [s.due_ms for s in sends if s.job_key == key]
            assert mine == sorted(mine)  # the claim order: oldest first
        assert (core.next_due() or now + 1) > now
    waiting = core.jittered()
    for entry in table:
        expected = ticks_between(entry.cron, since[entry.key], now)
        if waiting.get(entry.key) in expected:
            expected.remove(waiting[entry.key])  # jittered: its delayed instant is ahead
        counts = seen[entry.key]
        assert all(n == 1 for n in counts.values()), "a tick planned twice"
        assert set(counts) <= set(expected)
        assert len(counts) + folded[entry.key] == len(expected)


@settings(max_examples=examples(60), deadline=None)
@given(
    lateness=st.lists(st.integers(0, MIN_PERIOD_MS - 1), min_size=1, max_size=30),
    exprs=st.lists(st.sampled_from(CRONS), min_size=1, max_size=4),
)
def test_a_beat_never_a_period_late_fires_every_tick_on_schedule(
    lateness: list[int], exprs: list[str]
) -> None:
    table = [job(f"e/j{i}", expr, 0) for i, expr in enumerate(exprs)]
    core = Scheduler()
    core.start(table, T0, {})
    sends: list[Send] = []
    for late in lateness:
        due = core.next_due()
        assert due is not None
        sends += wake(core, due + late)
    last = max(s.due_ms for s in sends)
    assert all(s.trigger is Trigger.SCHEDULE and s.kind is Kind.FIRE for s in sends)
    for entry in table:
        got = [s.due_ms for s in sends if s.job_key == entry.key]
        assert got == ticks_between(entry.cron, T0, last)


# ----------------------------------------------------------------- per-job time zones


@pytest.mark.parametrize("fast", [True, False])
def test_jobs_in_different_zones_each_follow_their_own_dst_rules(fast: bool) -> None:
    # One table: 01:30 London (spring gap on 29 March), 01:30 New York (its gap was on
    # 8 March), 01:30 UTC (no DST): each fires at its own instants.
    core = Scheduler()
    table = [
        job("e/london", "0 30 1 * * *", tz=LONDON),
        job("e/ny", "0 30 1 * * *", tz="America/New_York"),
        job("e/utc", "0 30 1 * * *"),
    ]
    core.start(table, utc(2026, 3, 28, 2), {})
    sends: list[Send] = []
    while (due := core.next_due()) is not None and due < utc(2026, 3, 30, 12):
        sends += wake(core, due, fast=fast)
    assert fires(sends, "e/london") == [utc(*SPRING, 1, 0), utc(2026, 3, 30, 0, 30)]
    assert fires(sends, "e/ny") == [utc(2026, 3, d, 5, 30) for d in (28, 29, 30)]  # EDT
    assert fires(sends, "e/utc") == [utc(*SPRING, 1, 30), utc(2026, 3, 30, 1, 30)]


# ----------------------------------------------------------------- jitter


def test_jitter_offsets_are_deterministic_within_bounds_and_spread() -> None:
    offsets = [jitter_offset_ms("e/a", T0 + i * 60_000, 30_000, 60_000) for i in range(500)]
    assert offsets == [jitter_offset_ms("e/a", T0 + i * 60_000, 30_000, 60_000) for i in range(500)]
    assert all(0 <= o < 30_000 for o in offsets)
    assert len(set(offsets)) > 450  # spread, not one fixed delay
    assert min(offsets) < 3000 and max(offsets) > 27_000
    # Another job at the same instants gets other offsets.
    assert offsets != [jitter_offset_ms("e/b", T0 + i * 60_000, 30_000, 60_000) for i in range(500)]
    # Capped below the gap to the next tick, so ticks keep their order.
    assert all(0 <= jitter_offset_ms("e/a", T0 + i, 30_000, 1000) < 1000 for i in range(500))
    assert jitter_offset_ms("e/a", T0, 0, 1000) == 0


@pytest.mark.parametrize("fast", [True, False])
def test_a_jittered_tick_goes_out_at_its_instant_plus_its_offset(fast: bool) -> None:
    core = Scheduler()
    table = [job("e/j", "0 * * * * *", jitter_ms=30_000), job("e/plain", "0 * * * * *")]
    core.start(table, T0, {})
    sends: list[Send] = []
    while (due := core.next_due()) is not None and due < T0 + 10 * 60_000:
        assert wake(core, due - 1, fast=fast) == []  # nothing early
        sends += wake(core, due, fast=fast)
    jittered = [s for s in sends if s.job_key == "e/j"]
    assert [s.due_ms for s in jittered] == [T0 + i * 60_000 for i in range(1, 10)]
    for s in jittered:
        assert s.trigger is Trigger.SCHEDULE and s.kind is Kind.FIRE
        assert s.jitter_ms == jitter_offset_ms("e/j", s.due_ms, 30_000, 60_000)
    assert len({s.jitter_ms for s in jittered}) > 1
    assert fires(sends, "e/plain") == [T0 + i * 60_000 for i in range(1, 10)]
    assert all(s.jitter_ms == 0 for s in sends if s.job_key == "e/plain")


def test_two_beats_plan_the_same_jittered_ticks_at_the_same_instants() -> None:
    table = [job(f"e/j{i}", "*/5 * * * * *", jitter_ms=4000) for i in range(20)]
    plans = []
    for _ in range(2):
        core = Scheduler()
        core.start(table, T0, {})
        sent = []
        while (due := core.next_due()) is not None and due < T0 + 60_000:
            sent += [(s.job_key, s.due_ms, s.jitter_ms, due) for s in wake(core, due)]
        plans.append(sent)
    assert plans[0] == plans[1]
    assert all(0 <= off < 4000 and at == nominal + off for _, nominal, off, at in plans[0])


def test_jitter_wider_than_the_period_keeps_the_ticks_in_order() -> None:
    core = Scheduler()
    core.start([job("e/j", jitter_ms=30_000)], T0, {})
    sends: list[Send] = []
    while (due := core.next_due()) is not None and due < T0 + 20_000:
        sends += wake(core, due)
    assert fires(sends) == [T0 + i * 1000 for i in range(1, 20)]  # every tick, in order
    assert all(0 <= s.jitter_ms < 1000 for s in sends)


def test_a_new_leader_waits_for_a_jittered_tick_whose_delay_is_still_ahead() -> None:
    nominal = T0 + 60_000
    offset = jitter_offset_ms("e/j", nominal, 50_000, 60_000)
    assert offset > 1  # this instant's offset leaves room for a leader change inside it
    table = [job("e/j", "0 * * * * *", jitter_ms=50_000)]
    core = Scheduler()
    plan = core.start(table, nominal + offset - 1, {"e/j": T0})
    assert plan.sends == []  # not missed: its delayed instant has not come
    assert core.next_due() == nominal + offset
    [sent] = wake(core, nominal + offset)
    assert (sent.due_ms, sent.trigger, sent.jitter_ms) == (nominal, Trigger.SCHEDULE, offset)


def test_a_jittered_tick_missed_by_a_new_leader_is_caught_up_once() -> None:
    table = [job("e/j", "0 * * * * *", grace=600, jitter_ms=50_000)]
    core = Scheduler()
    now = T0 + 4 * 60_000 + 59_999  # ticks at +1..+4 min are all past their delay
    [sent] = core.start(table, now, {"e/j": T0}).sends
    assert (sent.due_ms, sent.trigger, sent.count) == (T0 + 4 * 60_000, Trigger.CATCH_UP, 3)


def test_reload_keeps_a_jittered_job_waiting_and_restarts_a_changed_one() -> None:
    core = Scheduler()
    core.start([job("e/j", "0 * * * * *", jitter_ms=30_000)], T0, {})
    before = core.next_due()
    changed, failures = core.reload([job("e/j", "0 * * * * *", jitter_ms=30_000)], T0 + 10)
    assert (changed, failures, core.next_due()) == (0, [], before)
    changed, _ = core.reload([job("e/j", "0 * * * * *", jitter_ms=10_000)], T0 + 10)
    assert changed == 1
    assert core.next_due() == T0 + 60_000 + jitter_offset_ms("e/j", T0 + 60_000, 10_000, 60_000)
    changed, _ = core.reload([job("e/j", "0 * * * * *")], T0 + 10)
    assert changed == 1 and core.jittered() == {} and core.head() == (T0 + 60_000, ["e/j"])


# ----------------------------------------------------------------- bounds, max_runs


@pytest.mark.parametrize("fast", [True, False])
def test_start_at_and_end_at_bound_the_ticks_inclusively(fast: bool) -> None:
    core = Scheduler()
    core.start([job("e/w", start=T0 + 5000, end=T0 + 8000), job("e/all")], T0, {})
    sends: list[Send] = []
    while (due := core.next_due()) is not None and due <= T0 + 12_000:
        sends += wake(core, due, fast=fast)
    assert fires(sends, "e/w") == [T0 + 5000, T0 + 6000, T0 + 7000, T0 + 8000]
    assert fires(sends, "e/all") == [T0 + i * 1000 for i in range(1, 13)]
    assert core.jittered() == {} and len(core) == 1  # e/w is done: off the heap


def test_a_fractional_start_at_starts_at_the_first_whole_tick_after_it() -> None:
    core = Scheduler()
    core.start([job("e/w", start=T0 + 4500, end=T0 + 6999)], T0, {})
    assert run_on_time(core, T0 + 10_000) and core.next_due() is None
    core2 = Scheduler()
    core2.start([job("e/w", start=T0 + 4500, end=T0 + 6999)], T0, {})
    assert fires(run_on_time(core2, T0 + 10_000)) == [T0 + 5000, T0 + 6000]


def test_catch_up_ignores_ticks_outside_the_window() -> None:
    # Down from T0 to T0 + 60 s; the window is [T0 + 10 s, T0 + 20 s]; grace long.
    table = [job("e/w", grace=3600, start=T0 + 10_000, end=T0 + 20_000)]
    plan = Scheduler().start(table, T0 + 60_000, {"e/w": T0})
    [sent] = plan.sends
    assert (sent.due_ms, sent.trigger, sent.count) == (T0 + 20_000, Trigger.CATCH_UP, 10)


def test_a_window_that_ended_schedules_nothing_and_is_no_failure() -> None:
    core = Scheduler()
    plan = core.start([job("e/w", end=T0 - 1)], T0, {})
    assert plan.sends == [] and plan.failures == [] and core.next_due() is None


def test_jittered_jobs_respect_the_window_on_their_scheduled_instant() -> None:
    core = Scheduler()
    core.start([job("e/w", "*/2 * * * * *", jitter_ms=1500, start=T0, end=T0 + 6000)], T0, {})
    sends: list[Send] = []
    while (due := core.next_due()) is not None:
        sends += wake(core, due)
    assert fires(sends) == [T0 + 2000, T0 + 4000, T0 + 6000]  # T0 itself: not after start


def test_a_dropped_job_fires_no_more() -> None:
    core = Scheduler()
    core.start([job("e/a"), job("e/b"), job("e/j", jitter_ms=500)], T0, {})
    run_on_time(core, T0 + 2000)
    core.drop("e/a")
    core.drop("e/j")
    sends = run_on_time(core, T0 + 6000)
    assert {s.job_key for s in sends} == {"e/b"}
    assert fires(sends, "e/b") == [T0 + i * 1000 for i in range(3, 7)]


def test_dropping_a_jittered_job_removes_its_pending_delayed_tick() -> None:
    core = Scheduler()
    core.start(
        [job("e/hourly", "0 0 * * * *"), job("e/j", "0 * * * * *", jitter_ms=30_000)], T0, {}
    )
    pending = T0 + 60_000 + jitter_offset_ms("e/j", T0 + 60_000, 30_000, 60_000)
    assert len(core) == 2 and core.jittered() == {"e/j": T0 + 60_000}
    assert core.next_due() == pending
    core.drop("e/j")
    # Nothing waits for the dropped tick: the beat next wakes for the hourly job.
    assert len(core) == 1 and core.jittered() == {}
    assert core.next_due() == T0 + 3_600_000
    assert wake(core, pending) == []
    # A reload handing it in again restarts it after now, like a job added.
    table = [job("e/hourly", "0 0 * * * *"), job("e/j", "0 * * * * *", jitter_ms=30_000)]
    assert core.reload(table, T0 + 90_000) == (1, [])
    assert core.jittered() == {"e/j": T0 + 120_000}


def test_a_job_dropped_while_its_instant_is_being_sent_is_not_scheduled_again() -> None:
    # The claim script reports max_runs used up while the on-time batch goes out,
    # between pop_head and advance.
    core = Scheduler()
    core.start([job("e/a"), job("e/b")], T0, {})
    assert core.on_time(T0 + 1000) is not None
    due, keys = core.pop_head()
    core.drop("e/a")
    assert core.advance(due, keys) == []
    assert core.head() == (T0 + 2000, ["e/b"]) and len(core) == 1


def test_a_fresh_or_cleared_scheduler_has_nothing_due() -> None:
    core = Scheduler()
    assert (len(core), core.next_due(), core.head(), core.jittered()) == (0, None, None, {})
    assert core.take(T0).sends == []
    core.drop("e/unknown")  # harmless
    core.start([job("e/a"), job("e/j", jitter_ms=500)], T0, {})
    assert len(core) == 2 and core.jittered() == {"e/j": T0 + 1000}
    core.clear()
    assert (len(core), core.next_due(), core.head(), core.jittered()) == (0, None, None, {})
    assert core.take(T0 + 10_000).sends == []


def test_reload_keeps_a_jittered_job_s_pending_tick_and_it_still_goes_out() -> None:
    table = [
        job("e/j", "0 * * * * *", jitter_ms=30_000),
        job("e/k", "0 * * * * *", jitter_ms=30_000),
        job("e/plain", "*/20 * * * * *"),
    ]
    core = Scheduler()
    core.start(table, T0, {})
    due = core.next_due()
    assert core.reload(table, T0 + 10) == (0, [])
    assert core.jittered() == {"e/j": T0 + 60_000, "e/k": T0 + 60_000}
    assert core.next_due() == due and len(core) == 3
    sends = run_on_time(core, T0 + 3 * 60_000 + 30_000)
    minutes = [T0 + i * 60_000 for i in range(1, 4)]
    for key in ("e/j", "e/k"):
        mine = [s for s in sends if s.job_key == key]
        assert [s.due_ms for s in mine] == minutes
        assert all(s.jitter_ms == jitter_offset_ms(key, s.due_ms, 30_000, 60_000) for s in mine)
    assert fires(sends, "e/plain") == [T0 + i * 20_000 for i in range(1, 11)]


def test_reload_counts_every_restarted_job_jittered_or_not() -> None:
    core = Scheduler()
    core.start([job("e/j", "0 * * * * *", jitter_ms=30_000), job("e/k", jitter_ms=500)], T0, {})
    changed, failures = core.reload(
        [
            job("e/j", "0 * * * * *", jitter_ms=20_000),  # jitter changed
            job("e/k", "*/2 * * * * *", jitter_ms=500),  # schedule changed
            job("e/new", "*/5 * * * * *"),  # added, after the jittered ones
        ],
        T0 + 10,
    )
    assert (changed, failures) == (3, [])
    assert core.jittered() == {"e/j": T0 + 60_000, "e/k": T0 + 2000}
    assert core.head() == (T0 + 5000, ["e/new"]) and len(core) == 3


def test_a_stall_catches_up_every_jittered_job_not_just_the_first() -> None:
    table = [job(f"e/j{i}", "*/10 * * * * *", grace=300, jitter_ms=5000) for i in range(3)]
    core = Scheduler()
    core.start(table, T0, {})
    sends = wake(core, T0 + 35_500)  # three or four ticks of each came due while asleep
    got = {(s.job_key, s.due_ms, s.trigger) for s in sends if s.kind is Kind.FIRE}
    # The newest tick is T0+30s, or T0+20s when T0+30s's delayed instant is still ahead.
    assert {key for key, _, _ in got} == {"e/j0", "e/j1", "e/j2"} and len(got) == 3
    assert all(trigger is Trigger.CATCH_UP for _, _, trigger in got)
    # Each goes on with its next tick.
    later = run_on_time(core, T0 + 60_000)
    for entry in table:
        assert fires(later, entry.key)[-2:] == [T0 + 40_000, T0 + 50_000]


def test_a_jittered_tick_is_stalled_once_the_next_one_s_delayed_instant_has_come() -> None:
    # Woken exactly at the second tick's delayed instant without having sent the first:
    # both are due, so the first is folded into a catch-up run of the second.
    core = Scheduler()
    core.start([job("e/j", "*/10 * * * * *", grace=300, jitter_ms=5000)], T0, {})
    second = T0 + 20_000
    at = second + jitter_offset_ms("e/j", second, 5000, 10_000)
    [sent] = wake(core, at)
    assert (sent.due_ms, sent.trigger, sent.kind, sent.count) == (
        second,
        Trigger.CATCH_UP,
        Kind.FIRE,
        1,
    )
    assert core.jittered() == {"e/j": T0 + 30_000}
    # A millisecond earlier, only the first is due: it goes out on schedule.
    core = Scheduler()
    core.start([job("e/j", "*/10 * * * * *", grace=300, jitter_ms=5000)], T0, {})
    [sent] = wake(core, at - 1)
    assert (sent.due_ms, sent.trigger) == (T0 + 10_000, Trigger.SCHEDULE)
    assert core.jittered() == {"e/j": second} and core.next_due() == at


def test_a_new_leader_sends_a_jittered_tick_whose_capped_delay_has_passed() -> None:
    # Jitter wider than the period: the offset is capped below the gap to the next tick
    # (740 ms here, 24.74 s uncapped), and the new leader judges by the capped one.
    waiting = T0 + 10_000
    offset = jitter_offset_ms("e/j", waiting, 30_000, 1000)
    assert 0 < offset < jitter_offset_ms("e/j", waiting, 30_000, None)
    table = [job("e/j", jitter_ms=30_000)]
    core = Scheduler()
    assert core.start(table, waiting + offset - 1, {"e/j": waiting - 1000}).sends == []
    assert core.next_due() == waiting + offset
    core = Scheduler()
    [sent] = core.start(table, waiting + offset, {"e/j": waiting - 1000}).sends
    assert (sent.due_ms, sent.trigger, sent.kind) == (waiting, Trigger.CATCH_UP, Kind.FIRE)
    assert core.jittered() == {"e/j": waiting + 1000}


def test_a_broken_jittered_schedule_drops_that_job_only() -> None:
    bad = Entry("e/bad", _Exploding(), 300, 500)
    core = Scheduler()
    plan = core.start([bad, job("e/a")], T0, {})
    assert [(f.job_key, f.during) for f in plan.failures] == [("e/bad", "schedule")]
    assert core.jittered() == {} and len(core) == 1
    assert fires(run_on_time(core, T0 + 3000)) == [T0 + 1000, T0 + 2000, T0 + 3000]
    changed, failures = core.reload([bad, job("e/a")], T0 + 3500)
    assert changed == 1 and [(f.job_key, f.during) for f in failures] == [("e/bad", "schedule")]
    assert core.head() == (T0 + 4000, ["e/a"]) and len(core) == 1
    # Handled before: catching it up raises too (jittered or not), and the jobs after
    # it still start.
    for broken in (bad, Entry("e/bad", _Exploding(), 300)):
        core = Scheduler()
        plan = core.start([broken, job("e/a")], T0, {"e/bad": T0 - 5000, "e/a": T0 - 1000})
        assert [(f.job_key, f.during) for f in plan.failures] == [("e/bad", "catch-up")]
        assert fires(plan.sends) == [T0] and core.head() == (T0 + 1000, ["e/a"])


def test_a_jittered_job_in_its_window_s_last_tick_is_done_after_it() -> None:
    core = Scheduler()
    core.start([job("e/w", "*/2 * * * * *", jitter_ms=1500, end=T0 + 2000)], T0, {})
    assert core.jittered() == {"e/w": T0 + 2000}
    sends: list[Send] = []
    while (due := core.next_due()) is not None:
        sends += wake(core, due)
    assert fires(sends) == [T0 + 2000] and len(core) == 0
    ended = Scheduler()
    plan = ended.start([job("e/w", jitter_ms=500, end=T0 - 1)], T0, {})
    assert plan.sends == plan.failures == [] and len(ended) == 0 and ended.next_due() is None


def test_start_hands_the_caller_a_pause_every_so_many_jobs() -> None:
    """Building 100,000 jobs takes seconds: the beat renews its lease in the pauses. They
    change nothing: the table is the one built without them."""
    jobs = [job(f"e/j{i}", "0 * * * * *") for i in range(3000)]
    jobs += [job(f"e/k{i}", "0 * * * * *", jitter_ms=30_000) for i in range(100)]
    pauses: list[int] = []
    core, plain = Scheduler(), Scheduler()
    now = to_ms(datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC))
    plan = core.start(jobs, now, {}, lambda: pauses.append(len(pauses)))
    assert pauses == [0, 1, 2]  # after 1024, 2048 and 3072 jobs
    assert plan == plain.start(jobs, now, {})
    assert core.head() == plain.head() and core.jittered() == plain.jittered()
