"""Overlap modes end to end: buffered ticks waiting in turn (the waiting-set script on a
real Redis), then ``buffer_one`` and ``cancel_other`` under a real beat and worker with
a slow job, counting the runs in each final state.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobs_core.history import Run
from jobs_core.status import ACTIVE, RunStatus
from jobs_core.wire import Keys
from tests.procs import VENV_BIN, Proc, running, service_env, start_worker, wait_for
from worker import overlap
from worker.cancel import CancelRequest
from worker.overlap import Admission, OverlapLock, Turn

from .worker_support import History

pytestmark = [pytest.mark.integration, pytest.mark.servers]

JOB = "testjobs/slow"


def _turns(redis_url: str, *calls: tuple[str, int, int]) -> list[Turn]:
    """take_turn for each (run id, order ms, places), in order, on one client."""
    import redis.asyncio as aioredis

    async def go() -> list[Turn]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            lock = OverlapLock(client)
            return [
                await lock.take_turn(JOB, rid, 60, order_ms=order, places=places)
                for rid, order, places in calls
            ]
        finally:
            await client.aclose()

    return asyncio.run(go())


@pytest.fixture
def clean(redis_url: str) -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = [Keys.lock(JOB), Keys.waiting(JOB), Keys.waiting_seen(JOB)]
    client.delete(*keys)
    yield client
    client.delete(*keys)
    client.close()


def _admit(redis_url: str, *run_ids: str) -> list[Admission]:
    """OverlapLock.admit for each run id, in order, on one client."""
    import redis.asyncio as aioredis

    async def go() -> list[Admission]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            lock = OverlapLock(client)
            return [await lock.admit(JOB, rid, 60) for rid in run_ids]
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_admit_reads_cancel_and_backfill_and_takes_the_lock_in_one_script(
    redis_url: str, clean: Any
) -> None:
    a, b, c = "run-a", "run-b", "run-c"
    clean.delete(*(Keys.cancel(r) for r in (a, b, c)), *(Keys.backfilled(r) for r in (a, b, c)))
    clean.set(Keys.backfilled(a), "1")
    # a takes the free lock (and learns its tick was backfilled); b finds a holding it;
    # a again (a redelivery) takes it over.
    assert _admit(redis_url, a, b, a) == [
        Admission(None, True, None),
        Admission(None, False, a),
        Admission(None, True, None),
    ]
    assert clean.get(Keys.lock(JOB)) == a.encode() and 0 < clean.pttl(Keys.lock(JOB)) <= 60_000
    # A cancelled run is told so and never takes the lock, free or not.
    clean.set(Keys.cancel(c), CancelRequest("ann@box", terminate=True).dumps())
    assert _admit(redis_url, c) == [Admission(CancelRequest("ann@box", True), False, None)]
    assert clean.get(Keys.lock(JOB)) == a.encode()
    clean.delete(Keys.lock(JOB))
    assert _admit(redis_url, c) == [Admission(CancelRequest("ann@box", True), False, None)]
    assert clean.get(Keys.lock(JOB)) is None
    clean.delete(*(Keys.cancel(r) for r in (a, b, c)), Keys.backfilled(a))


def test_waiting_ticks_take_the_lock_in_tick_order(redis_url: str, clean: Any) -> None:
    # "active" runs; ticks 3, 1, 2 (by instant) arrive in that order and wait.
    got = _turns(redis_url, ("active", 0, 0), ("t3", 3000, 0), ("t1", 1000, 0), ("t2", 2000, 0))
    assert got == [Turn(None), Turn("active"), Turn("active"), Turn("active")]
    clean.delete(Keys.lock(JOB))  # the active run ends
    # The lock is free, but only the oldest waiting tick may take it.
    assert _turns(redis_url, ("t3", 3000, 0), ("t2", 2000, 0)) == [Turn("t1"), Turn("t1")]
    assert _turns(redis_url, ("t1", 1000, 0)) == [Turn(None)]
    clean.delete(Keys.lock(JOB))
    assert _turns(redis_url, ("t3", 3000, 0), ("t2", 2000, 0)) == [Turn("t2"), Turn(None)]
    assert clean.zrange(Keys.waiting(JOB), 0, -1) == [b"t3"]


def test_buffer_one_lets_one_tick_wait_even_when_two_workers_race(
    redis_url: str, clean: Any
) -> None:
    import redis.asyncio as aioredis

    assert _turns(redis_url, ("active", 0, 1)) == [Turn(None)]

    async def race() -> list[Turn]:
        clients = [aioredis.Redis.from_url(redis_url) for _ in range(8)]
        try:
            return await asyncio.gather(
                *(
                    OverlapLock(c).take_turn(JOB, f"t{i}", 60, order_ms=1000 + i, places=1)
                    for i, c in enumerate(clients)
                )
            )
        finally:
            for c in clients:
                await c.aclose()

    turns = asyncio.run(race())
    assert sum(not t.full for t in turns) == 1 and all(t.holder == "active" for t in turns)
    (waiting,) = clean.zrange(Keys.waiting(JOB), 0, -1)
    # Its redelivered message (same run id) keeps its place; others are still refused.
    again = _turns(redis_url, (waiting.decode(), 1000, 1), ("late", 9000, 1))
    assert again == [Turn("active"), Turn("active", full=True)]


def test_a_tick_that_stops_trying_loses_its_place(
    redis_url: str, clean: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(overlap, "WAITING_STALE_S", 0.3)
    assert _turns(redis_url, ("active", 0, 1), ("gone", 1000, 1)) == [
        Turn(None),
        Turn("active"),
    ]
    assert _turns(redis_url, ("next", 2000, 1)) == [Turn("active", full=True)]
    wait_for(lambda: not _turns(redis_url, ("next", 2000, 1))[0].full, 10, what="the place freed")
    assert clean.zrange(Keys.waiting(JOB), 0, -1) == [b"next"]


# ---------------------------------------------------------------- end to end

PROFILE = """
extensions: [tests.worker_fixtures:WorkerTestExtension]
scheduler:
  defaults:
    retry: {{max_attempts: 1}}
    timeout: 60s
  jobs:
    - {{extension: testjobs, job: slow, schedule: "{schedule}", overlap: {overlap},
       parameters: {{seconds: {seconds}}}}}
"""


def _run_beat(
    tmp_path: Path, redis_url: str, database_url: str, *, text: str, ticks: int, job: str = JOB
) -> list[Run]:
    """A beat and a worker until ``ticks`` runs exist; then, the beat stopped, every run
    finished. Returns the runs."""
    profile = tmp_path / "profile.yaml"
    profile.write_text(text)
    env = service_env(
        REDIS_URL=redis_url, DATABASE_URL=database_url, SYSTEMPROMPT_PROFILE=str(profile)
    )
    history = History(database_url)
    worker = start_worker(tmp_path, env, name="ovl", concurrency=2)
    beat = Proc(
        [str(VENV_BIN / "systemprompt"), "infra", "beat", "--id", "beat-ovl"],
        env,
        tmp_path / "beat.log",
    )
    with running([worker]):
        with running([beat]):
            wait_for(lambda: len(history.runs(job)) >= ticks, 120, 0.5, what=f"{ticks} runs")
        return wait_for(
            lambda: (r := history.runs(job)) and all(x.status not in ACTIVE for x in r) and r,
            120,
            0.5,
            what="every run finished",
        )


def test_buffer_one_keeps_at_most_one_tick_waiting(
    tmp_path: Path, redis_url: str, database_url: str
) -> None:
    text = PROFILE.format(schedule="* * * * * *", overlap="buffer_one", seconds=3)
    runs = _run_beat(tmp_path, redis_url, database_url, text=text, ticks=10)
    counts = Counter(r.status for r in runs)
    assert set(counts) == {RunStatus.SUCCEEDED, RunStatus.SKIPPED}, counts
    ran = sorted((r for r in runs if r.status is RunStatus.SUCCEEDED), key=lambda r: r.started_at)
    skipped = [r for r in runs if r.status is RunStatus.SKIPPED]
    assert len(ran) >= 2 and len(skipped) >= 2, counts
    assert all("already waiting" in (r.message or "") for r in skipped)
    for a, b in itertools.pairwise(ran):
        assert a.finished_at is not None and b.started_at is not None
        assert b.started_at >= a.finished_at  # never two at once
        # While a run is active at most one tick waits for it, then runs.
        waited = [
            r
            for r in ran
            if r.scheduled_for is not None and a.started_at <= r.scheduled_for < a.finished_at
        ]
        assert len(waited) <= 1, [(r.scheduled_for, r.started_at) for r in waited]
    # Every tick the beat sent while a run was active, but one, was skipped: one run
    # of 3 s sees about three ticks.
    assert len(skipped) >= len(ran) - 2, counts


def test_cancel_other_cancels_the_active_run_for_the_new_tick(
    tmp_path: Path, redis_url: str, database_url: str
) -> None:
    text = PROFILE.format(schedule="*/3 * * * * *", overlap="cancel_other", seconds=8)
    runs = _run_beat(tmp_path, redis_url, database_url, text=text, ticks=4)
    counts = Counter(r.status for r in runs)
    # Each tick cancels the run before it; only the last run has no newer tick.
    assert counts == {RunStatus.CANCELLED: len(runs) - 1, RunStatus.SUCCEEDED: 1}, counts
    ids = {r.id for r in runs}
    for r in runs:
        if r.status is RunStatus.CANCELLED:
            assert r.cancelled_by is not None and r.cancelled_by.endswith("(overlap: cancel_other)")
            by = r.cancelled_by.split()[1]
            assert by in ids and by != r.id
            assert r.duration_ms is not None and r.duration_ms < 8000


def test_terminate_other_kills_the_process_of_the_active_run(
    tmp_path: Path, redis_url: str, database_url: str
) -> None:
    # The job blocks its event loop (it cannot be cancelled): only a kill stops it.
    text = PROFILE.format(schedule="*/4 * * * * *", overlap="terminate_other", seconds=9)
    text = text.replace("job: slow", "job: stubborn")
    runs = _run_beat(tmp_path, redis_url, database_url, text=text, ticks=3, job="testjobs/stubborn")
    counts = Counter(r.status for r in runs)
    assert counts == {RunStatus.CANCELLED: len(runs) - 1, RunStatus.SUCCEEDED: 1}, counts
    for r in runs:
        if r.status is RunStatus.CANCELLED:
            assert r.message is not None and "its process was terminated" in r.message
            assert r.cancelled_by is not None and "(overlap: terminate_other)" in r.cancelled_by
            # Celery killed the pool child that ran it.
            assert f"Terminating {r.id} (9)" in (tmp_path / "worker-ovl.log").read_text()
