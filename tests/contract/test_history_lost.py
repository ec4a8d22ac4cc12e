"""The RunHistory contract of lost runs (mark_lost, running_on), on both histories."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from jobs_core.history import RunHistory
from jobs_core.status import RunStatus

from .conftest import InHistory
from .test_history_contract import end, new_id, now, start, tick_start

DEAD = "dead@host"


def test_mark_lost_finishes_a_run_with_no_attempt_left(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        rid = new_id()
        assert (await h.start_attempt(tick_start(rid, 3, worker=DEAD))).started
        assert await h.mark_lost(rid, 3, DEAD, "lost: worker died", requeue=False)
        run = await h.get_run(rid)
        assert run is not None and run.status is RunStatus.LOST and run.finished
        assert run.finished_at is not None and run.attempt == 3 and run.worker == DEAD
        assert run.message == "lost: worker died" and run.next_attempt_at is None
        [attempt] = run.attempts
        assert (attempt.attempt, attempt.status, attempt.worker) == (3, RunStatus.LOST, DEAD)
        assert attempt.message == "lost: worker died" and attempt.finished_at is not None
        # Final: a later delivery of the same or another attempt is refused.
        assert not (await h.start_attempt(tick_start(rid, 3))).started
        assert not (await h.start_attempt(tick_start(rid, 4))).started
        assert await h.running_on(DEAD) == []

    in_history(body)


def test_mark_lost_with_requeue_opens_the_next_attempt(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        rid = new_id()
        assert (await h.start_attempt(start(rid, 1, worker=DEAD))).started
        assert await h.mark_lost(rid, 1, DEAD, "lost", requeue=True)
        run = await h.get_run(rid)
        assert run is not None and run.status is RunStatus.RETRYING and not run.finished
        assert run.attempt == 2 and run.next_attempt_at is not None
        assert [(a.attempt, a.status) for a in run.attempts] == [(1, RunStatus.LOST)]
        # The dead worker's message, delivered again, is older than the next attempt.
        refused = await h.start_attempt(start(rid, 1, worker="rescuer@host"))
        assert not refused.started and refused.status is RunStatus.RETRYING
        # A late outcome of the lost attempt (the worker was only cut off) is refused.
        assert not await h.finish_attempt(rid, 1, end(RunStatus.SUCCEEDED))
        claim = await h.start_attempt(start(rid, 2, worker="rescuer@host"))
        assert claim.started and not claim.took_over
        assert await h.finish_attempt(rid, 2, end(RunStatus.SUCCEEDED, message="ok"))
        run = await h.get_run(rid)
        assert run is not None and run.status is RunStatus.SUCCEEDED and run.attempt == 2
        statuses = [(a.attempt, a.status, a.worker) for a in run.attempts]
        assert statuses == [(1, RunStatus.LOST, DEAD), (2, RunStatus.SUCCEEDED, "rescuer@host")]

    in_history(body)


@pytest.mark.parametrize("requeue", [False, True])
def test_mark_lost_is_refused_unless_that_attempt_runs_there(
    in_history: InHistory[None], requeue: bool
) -> None:
    async def body(h: RunHistory) -> None:
        finished, taken, newer, queued = new_id(), new_id(), new_id(), new_id()
        # finished just before the reaper got to it
        assert (await h.start_attempt(start(finished, worker=DEAD))).started
        assert await h.finish_attempt(finished, 1, end(RunStatus.SUCCEEDED))
        # taken over by a redelivery of the same attempt on a live worker
        assert (await h.start_attempt(start(taken, worker=DEAD))).started
        assert (await h.start_attempt(start(taken, worker="rescuer@host"))).took_over
        # a newer attempt runs (on the same worker name)
        assert (await h.start_attempt(start(newer, 2, worker=DEAD))).started
        await h.create_run(job_key="ext/job", trigger=start(queued).trigger, max_attempts=3)
        for rid, attempt in ((finished, 1), (taken, 1), (newer, 1), (queued, 1), (new_id(), 1)):
            assert not await h.mark_lost(rid, attempt, DEAD, "lost", requeue=requeue)
        assert not await h.mark_lost("not-a-uuid", 1, DEAD, "lost", requeue=requeue)
        for rid, status in (
            (finished, RunStatus.SUCCEEDED),
            (taken, RunStatus.RUNNING),
            (newer, RunStatus.RUNNING),
        ):
            run = await h.get_run(rid)
            assert run is not None and run.status is status, (rid, run)
            assert all(a.status is not RunStatus.LOST for a in run.attempts)
        # Marked once, not twice.
        assert await h.mark_lost(newer, 2, DEAD, "lost", requeue=requeue)
        assert not await h.mark_lost(newer, 2, DEAD, "lost", requeue=requeue)

    in_history(body)


def test_running_on_a_worker(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        early, late, other, done = new_id(), new_id(), new_id(), new_id()
        assert (await h.start_attempt(start(early, worker=DEAD))).started
        # started_at comes from the store's clock: leave a visible gap between the two
        await asyncio.sleep(0.05)
        boundary = now()
        await asyncio.sleep(0.05)
        assert (await h.start_attempt(start(late, 2, worker=DEAD))).started
        assert (await h.start_attempt(start(other, worker="alive@host"))).started
        assert (await h.start_attempt(start(done, worker=DEAD))).started
        await h.finish_attempt(done, 1, end(RunStatus.FAILED))
        runs = await h.running_on(DEAD)
        assert [r.id for r in runs] == [early, late]
        assert [(r.attempt, r.worker, r.status) for r in runs] == [
            (1, DEAD, RunStatus.RUNNING),
            (2, DEAD, RunStatus.RUNNING),
        ]
        assert [r.id for r in await h.running_on(DEAD, started_before=boundary)] == [early]
        past = boundary - timedelta(hours=1)
        assert await h.running_on(DEAD, started_before=past) == []
        assert await h.running_on("nobody@host") == []

    in_history(body)
