"""The RunHistory contract, run against the in-memory and the PostgreSQL history."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobs_core.errors import DuplicateTick
from jobs_core.history import AttemptEnd, AttemptStart, QueuedRun, RunFilter, RunHistory
from jobs_core.status import RunStatus, Trigger

from .conftest import InHistory

JOB = "ext/job"
TICK = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def start(
    run_id: str,
    attempt: int = 1,
    *,
    job: str = JOB,
    trigger: Trigger = Trigger.MANUAL,
    scheduled_for: datetime | None = None,
    enqueued_at: datetime | None = None,
    worker: str = "w1@host",
    parameters: dict[str, Any] | None = None,
) -> AttemptStart:
    return AttemptStart(
        run_id=run_id,
        job_key=job,
        trigger=trigger,
        attempt=attempt,
        max_attempts=3,
        worker=worker,
        scheduled_for=scheduled_for,
        enqueued_at=enqueued_at,
        parameters=parameters or {},
    )


def tick_start(run_id: str, attempt: int = 1, **kw: Any) -> AttemptStart:
    return start(run_id, attempt, trigger=Trigger.SCHEDULE, scheduled_for=TICK, **kw)


def end(status: RunStatus, **kw: Any) -> AttemptEnd:
    kw.setdefault("duration_ms", 12)
    return AttemptEnd(status=status, **kw)


def now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- create_run


def test_create_run_records_a_queued_run(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        rid = await h.create_run(
            job_key=JOB, trigger=Trigger.MANUAL, max_attempts=4, parameters={"days": 3}
        )
        run = await h.get_run(rid)
        assert run is not None
        assert (run.id, run.job_key, run.trigger, run.status) == (
            rid,
            JOB,
            Trigger.MANUAL,
            RunStatus.QUEUED,
        )
        assert run.max_attempts == 4 and run.attempt == 0
        assert run.parameters == {"days": 3} and run.data == {}
        assert not run.finished and run.finished_at is None and run.started_at is None
        assert run.attempts == ()

    in_history(body)


def test_a_skipped_run_is_finished_when_created(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        rid = await h.create_run(
            job_key=JOB,
            trigger=Trigger.SCHEDULE,
            scheduled_for=TICK,
            max_attempts=1,
            run_id=new_id(),
            status=RunStatus.SKIPPED,
            message="missed by 1h",
        )
        run = await h.get_run(rid)
        assert run is not None and run.status is RunStatus.SKIPPED and run.finished
        assert run.finished_at is not None and run.message == "missed by 1h"
        assert run.scheduled_for == TICK

    in_history(body)


def test_a_tick_and_an_id_are_recorded_once(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        first = await h.create_run(
            job_key=JOB, trigger=Trigger.SCHEDULE, scheduled_for=TICK, max_attempts=1
        )
        await h.create_run(
            job_key=JOB, trigger=Trigger.CATCH_UP, scheduled_for=TICK, max_attempts=1
        )
        await h.create_run(
            job_key=JOB,
            trigger=Trigger.MANUAL,
            max_attempts=1,
            run_id=first,
            status=RunStatus.SKIPPED,
            message="again",
        )
        runs = await h.history(JOB)
        assert [r.id for r in runs] == [first]
        assert runs[0].status is RunStatus.QUEUED and runs[0].message is None
        # The same instant of another job, or a manual run at no instant, is another run.
        await h.create_run(
            job_key="ext/other", trigger=Trigger.SCHEDULE, scheduled_for=TICK, max_attempts=1
        )
        await h.create_run(job_key=JOB, trigger=Trigger.MANUAL, max_attempts=1)
        await h.create_run(job_key=JOB, trigger=Trigger.MANUAL, max_attempts=1)
        assert len(await h.history(None)) == 4

    in_history(body)


def test_a_second_run_id_for_a_claimed_tick_is_an_error(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        assert (await h.start_attempt(tick_start(new_id()))).started
        with pytest.raises(DuplicateTick):
            await h.start_attempt(tick_start(new_id()))
        with pytest.raises(DuplicateTick):
            await h.settle_attempt(tick_start(new_id()), now(), end(RunStatus.SUCCEEDED))
        assert len(await h.history(JOB)) == 1

    in_history(body)


# ---------------------------------------------------------------- claims


def test_a_claim_creates_the_run_of_a_fresh_tick(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        rid = new_id()
        enqueued = now() - timedelta(seconds=5)
        claim = await h.start_attempt(tick_start(rid, enqueued_at=enqueued, parameters={"a": 1}))
        assert claim.started and claim.status is RunStatus.RUNNING and not claim.took_over
        run = await h.get_run(rid)
        assert run is not None and run.status is RunStatus.RUNNING
        assert run.trigger is Trigger.SCHEDULE and run.scheduled_for == TICK
        assert run.enqueued_at == enqueued and run.started_at is not None
        assert run.worker == "w1@host" and run.attempt == 1 and run.parameters == {"a": 1}

    in_history(body)


def test_a_claim_of_a_running_run_takes_it_over(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        rid = await h.create_run(job_key=JOB, trigger=Trigger.MANUAL, max_attempts=3)
        first = await h.start_attempt(start(rid, worker="dead@host"))
        assert first.started and not first.took_over  # it was queued
        again = await h.start_attempt(start(rid, worker="rescuer@host"))
        assert again.started and again.took_over
        run = await h.get_run(rid)
        assert run is not None and run.worker == "rescuer@host"

    in_history(body)


@pytest.mark.parametrize("final", [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.TIMED_OUT])
def test_claims_are_refused_for_finished_runs(
    in_history: InHistory[None], final: RunStatus
) -> None:
    async def body(h: RunHistory) -> None:
        rid = new_id()
        assert (await h.start_attempt(tick_start(rid))).started
        await h.finish_attempt(rid, 1, end(final, message="done"))
        refused = await h.start_attempt(tick_start(rid, 2))
        assert not refused.started and refused.status is final
        assert not await h.settle_attempt(tick_start(rid, 2), now(), end(RunStatus.SUCCEEDED))
        run = await h.get_run(rid)
        assert run is not None and run.status is final and run.attempt == 1
        assert run.message == "done" and len(run.attempts) == 1

    in_history(body)


def test_claims_are_refused_for_a_skipped_run(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        rid = await h.create_run(
            job_key=JOB,
            trigger=Trigger.SCHEDULE,
            scheduled_for=TICK,
            max_attempts=1,
            run_id=new_id(),
            status=RunStatus.SKIPPED,
        )
        refused = await h.start_attempt(tick_start(rid))
        assert not refused.started and refused.status is RunStatus.SKIPPED

    in_history(body)


def test_claims_are_refused_for_older_attempts(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        rid = new_id()
        assert (await h.start_attempt(start(rid, 2))).started
        refused = await h.start_attempt(start(rid, 1))
        assert not refused.started and refused.status is RunStatus.RUNNING
        assert not await h.settle_attempt(start(rid, 1), now(), end(RunStatus.SUCCEEDED))
        run = await h.get_run(rid)
        assert run is not None and run.attempt == 2 and run.status is RunStatus.RUNNING
        assert run.attempts == ()

    in_history(body)


# ---------------------------------------------------------------- finishing attempts


def test_a_retried_run_stays_open_then_succeeds(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        rid = new_id()
        await h.start_attempt(start(rid, 1))
        retry_at = now() + timedelta(seconds=30)
        assert await h.finish_attempt(
            rid,
            1,
            end(
                RunStatus.RETRYING,
                message="boom",
                error="Traceback\nboom",
                next_attempt_at=retry_at,
            ),
        )
        run = await h.get_run(rid)
        assert run is not None and run.status is RunStatus.RETRYING and not run.finished
        assert run.finished_at is None and run.next_attempt_at == retry_at
        assert [a.status for a in run.attempts] == [RunStatus.FAILED]
        assert run.attempts[0].error == "Traceback\nboom"

        claim = await h.start_attempt(start(rid, 2, worker="w2@host"))
        assert claim.started and not claim.took_over
        run = await h.get_run(rid)
        assert run is not None and run.next_attempt_at is None
        await h.finish_attempt(
            rid,
            2,
            end(
                RunStatus.SUCCEEDED,
                message="ok",
                items_processed=7,
                items_failed=1,
                data={"rows": 7},
            ),
        )
        run = await h.get_run(rid)
        assert run is not None and run.status is RunStatus.SUCCEEDED and run.finished
        assert run.finished_at is not None and run.attempt == 2 and run.error is None
        assert (run.items_processed, run.items_failed, run.data) == (7, 1, {"rows": 7})
        assert [(a.attempt, a.status, a.worker) for a in run.attempts] == [
            (1, RunStatus.FAILED, "w1@host"),
            (2, RunStatus.SUCCEEDED, "w2@host"),
        ]
        assert all(a.finished_at is not None for a in run.attempts)

    in_history(body)


def test_finishing_another_attempt_changes_nothing(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        rid = new_id()
        await h.start_attempt(start(rid, 2))
        assert not await h.finish_attempt(rid, 1, end(RunStatus.SUCCEEDED))
        assert not await h.finish_attempt(new_id(), 1, end(RunStatus.SUCCEEDED))
        run = await h.get_run(rid)
        assert run is not None and run.status is RunStatus.RUNNING and run.attempts == ()

    in_history(body)


def test_a_finished_run_is_not_finished_again(in_history: InHistory[None]) -> None:
    """An attempt recorded as timed out (it ignored cancellation) that ends after all."""

    async def body(h: RunHistory) -> None:
        rid = new_id()
        assert (await h.start_attempt(start(rid, 2))).started
        assert await h.settle_attempt(start(rid, 2), now(), end(RunStatus.TIMED_OUT))
        assert not await h.finish_attempt(rid, 2, end(RunStatus.SUCCEEDED, message="late"))
        run = await h.get_run(rid)
        assert run is not None and run.status is RunStatus.TIMED_OUT and run.message is None
        assert [a.status for a in run.attempts] == [RunStatus.TIMED_OUT]

    in_history(body)


def test_finishing_without_data_keeps_the_data(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        rid = new_id()
        await h.start_attempt(start(rid, 1))
        await h.finish_attempt(rid, 1, end(RunStatus.RETRYING, data={"seen": 1}))
        await h.start_attempt(start(rid, 2))
        await h.finish_attempt(rid, 2, end(RunStatus.FAILED, message="no"))
        run = await h.get_run(rid)
        assert run is not None and run.data == {"seen": 1} and run.status is RunStatus.FAILED

    in_history(body)


# ---------------------------------------------------------------- settle (lazy start)


def test_settle_records_a_run_in_one_step(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        rid = new_id()
        began = now() - timedelta(seconds=2)
        enqueued = began - timedelta(seconds=1)
        settled = await h.settle_attempt(
            tick_start(rid, enqueued_at=enqueued, parameters={"p": "x"}),
            began,
            end(RunStatus.SUCCEEDED, duration_ms=2000, message="fine", data={"n": 1}),
        )
        assert settled
        run = await h.get_run(rid)
        assert run is not None and run.status is RunStatus.SUCCEEDED
        assert run.started_at == began and run.enqueued_at == enqueued
        assert run.finished_at is not None and run.finished_at >= began
        assert (run.duration_ms, run.message, run.data, run.parameters) == (
            2000,
            "fine",
            {"n": 1},
            {"p": "x"},
        )
        assert [(a.attempt, a.status, a.started_at) for a in run.attempts] == [
            (1, RunStatus.SUCCEEDED, began)
        ]

    in_history(body)


def test_settle_after_the_running_mark(in_history: InHistory[None]) -> None:
    """A lazy start that ran past its delay: the mark, then the settle, one attempt."""

    async def body(h: RunHistory) -> None:
        rid = new_id()
        began = now()
        assert (await h.start_attempt(tick_start(rid))).started
        assert await h.settle_attempt(tick_start(rid), began, end(RunStatus.TIMED_OUT))
        run = await h.get_run(rid)
        assert run is not None and run.status is RunStatus.TIMED_OUT and run.finished
        assert [a.status for a in run.attempts] == [RunStatus.TIMED_OUT]

    in_history(body)


def test_settle_of_a_queued_run_and_a_retry(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        rid = await h.create_run(job_key=JOB, trigger=Trigger.MANUAL, max_attempts=3)
        retry_at = now() + timedelta(seconds=10)
        assert await h.settle_attempt(
            start(rid), now(), end(RunStatus.RETRYING, next_attempt_at=retry_at)
        )
        run = await h.get_run(rid)
        assert run is not None and run.status is RunStatus.RETRYING and run.finished_at is None
        assert run.next_attempt_at == retry_at and run.trigger is Trigger.MANUAL
        assert [a.status for a in run.attempts] == [RunStatus.FAILED]

    in_history(body)


# ---------------------------------------------------------------- reads


def test_get_run_of_unknown_or_malformed_ids(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        assert await h.get_run(new_id()) is None
        assert await h.get_run("not-a-uuid") is None
        rid = new_id()
        await h.settle_attempt(start(rid), now(), end(RunStatus.SUCCEEDED))
        bare = await h.get_run(rid, with_attempts=False)
        assert bare is not None and bare.attempts == ()
        assert await h.get_run(rid.upper()) is not None

    in_history(body)


def test_history_is_newest_first_per_job_and_limited(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        base = now() - timedelta(hours=1)
        ids = []
        for minutes, job in [(1, JOB), (3, JOB), (2, "ext/other"), (4, JOB)]:
            rid = new_id()
            ids.append(rid)
            at = base + timedelta(minutes=minutes)
            await h.settle_attempt(
                start(rid, job=job, enqueued_at=at), at, end(RunStatus.SUCCEEDED)
            )
        assert [r.id for r in await h.history(JOB)] == [ids[3], ids[1], ids[0]]
        assert [r.id for r in await h.history(JOB, limit=2)] == [ids[3], ids[1]]
        assert [r.id for r in await h.history(None, limit=10)] == [ids[3], ids[1], ids[2], ids[0]]
        assert await h.history("ext/none") == []
        last = await h.last_runs([JOB, "ext/other", "ext/none"])
        assert {k: r.id for k, r in last.items()} == {JOB: ids[3], "ext/other": ids[2]}
        assert await h.last_runs([]) == {}
        # What `jobs list` shows: the same runs' status and when they last changed.
        statuses = await h.last_statuses([JOB, "ext/other", "ext/none"])
        assert statuses == {
            k: (r.status, r.finished_at or r.started_at or r.enqueued_at) for k, r in last.items()
        }
        assert all(type(status) is RunStatus for status, _ in statuses.values())
        assert await h.last_statuses([]) == {}

    in_history(body)


def test_counts_since(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        old = now() - timedelta(days=2)
        await h.settle_attempt(start(new_id(), enqueued_at=old), old, end(RunStatus.FAILED))
        since = now() - timedelta(seconds=1)
        for status in (RunStatus.SUCCEEDED, RunStatus.SUCCEEDED, RunStatus.FAILED):
            await h.settle_attempt(start(new_id()), now(), end(status))
        await h.create_run(job_key=JOB, trigger=Trigger.MANUAL, max_attempts=1)
        await h.create_run(job_key="ext/other", trigger=Trigger.MANUAL, max_attempts=1)
        counts = await h.counts_since(JOB, since)
        assert counts == {RunStatus.SUCCEEDED: 2, RunStatus.FAILED: 1, RunStatus.QUEUED: 1}
        assert all(isinstance(k, RunStatus) for k in counts)

    in_history(body)


# ---------------------------------------------------------------- prune


def test_prune_deletes_only_runs_finished_before_the_cutoff(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        done = [new_id() for _ in range(3)]
        for rid in done:
            await h.settle_attempt(
                tick_start(rid) if rid == done[0] else start(rid), now(), end(RunStatus.SUCCEEDED)
            )
        skipped = await h.create_run(
            job_key=JOB, trigger=Trigger.MANUAL, max_attempts=1, status=RunStatus.SKIPPED
        )
        running, retrying = new_id(), new_id()
        await h.start_attempt(start(running))
        await h.settle_attempt(start(retrying), now(), end(RunStatus.RETRYING))
        queued = await h.create_run(job_key=JOB, trigger=Trigger.MANUAL, max_attempts=1)
        everything = {*done, skipped, running, retrying, queued}

        assert await h.prune(now() - timedelta(hours=1)) == 0
        assert {r.id for r in await h.history(None, limit=100)} == everything

        assert await h.prune(now() + timedelta(seconds=1), batch=2) == 4
        assert {r.id for r in await h.history(None, limit=100)} == {running, retrying, queued}
        for rid in (*done, skipped):
            assert await h.get_run(rid) is None
        # The pruned tick's instant is free again: its run is gone with its attempts.
        assert (await h.start_attempt(tick_start(new_id()))).started

    in_history(body)


# ---------------------------------------------------------------- run control


def test_create_tick_runs_records_each_tick_once(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        ticks = [(new_id(), TICK + timedelta(minutes=i)) for i in range(3)]
        # The beat already ran the second tick (under the same tick, another id here).
        await h.start_attempt(start(new_id(), trigger=Trigger.SCHEDULE, scheduled_for=ticks[1][1]))
        created = await h.create_tick_runs(
            JOB,
            ticks,
            trigger=Trigger.BACKFILL,
            max_attempts=2,
            parameters={"days": 1},
            triggered_by="ann@box",
        )
        assert sorted(created) == sorted([ticks[0][0], ticks[2][0]])
        again = await h.create_tick_runs(
            JOB, ticks, trigger=Trigger.BACKFILL, max_attempts=2, parameters={}
        )
        assert again == []
        run = await h.get_run(ticks[0][0])
        assert run is not None
        assert (run.trigger, run.status, run.scheduled_for) == (
            Trigger.BACKFILL,
            RunStatus.QUEUED,
            ticks[0][1],
        )
        assert run.triggered_by == "ann@box" and run.parameters == {"days": 1}
        # A schedule tick of a backfilled instant is the same tick: refused.
        with pytest.raises(DuplicateTick):
            await h.start_attempt(
                start(new_id(), trigger=Trigger.SCHEDULE, scheduled_for=ticks[2][1])
            )
        assert (
            await h.create_tick_runs(
                JOB, [], trigger=Trigger.BACKFILL, max_attempts=1, parameters={}
            )
            == []
        )

    in_history(body)


def test_create_queued_runs_records_them_all_in_one_step(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        taken = await h.create_run(job_key=JOB, trigger=Trigger.MANUAL, max_attempts=1)
        runs = [
            QueuedRun(new_id(), JOB, 2, {"who": "ann"}),
            QueuedRun(taken, JOB, 5, {}),
            QueuedRun(new_id(), "ext/other", 1),
        ]
        source = new_id()
        created = await h.create_queued_runs(
            runs, trigger=Trigger.RERUN, triggered_by="ann@box", reason="why", rerun_of=source
        )
        assert sorted(created) == sorted([runs[0].run_id, runs[2].run_id])
        first = await h.get_run(runs[0].run_id)
        assert first is not None
        assert (first.job_key, first.trigger, first.status, first.max_attempts) == (
            JOB,
            Trigger.RERUN,
            RunStatus.QUEUED,
            2,
        )
        assert first.parameters == {"who": "ann"} and first.scheduled_for is None
        assert (first.triggered_by, first.reason, first.rerun_of) == ("ann@box", "why", source)
        other = await h.get_run(runs[2].run_id)
        assert other is not None and other.job_key == "ext/other" and other.parameters == {}
        kept = await h.get_run(taken)
        assert kept is not None and kept.max_attempts == 1 and kept.trigger is Trigger.MANUAL
        assert await h.create_queued_runs([], trigger=Trigger.MANUAL) == []

    in_history(body)


def test_create_queued_runs_is_all_or_none(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        good = QueuedRun(new_id(), JOB, 1)
        with pytest.raises(ValueError):
            await h.create_queued_runs(
                [good, QueuedRun("not-a-uuid", JOB, 1)], trigger=Trigger.MANUAL
            )
        assert await h.get_run(good.run_id) is None

    in_history(body)


def test_withdraw_queued_deletes_only_runs_never_started(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        ticks = [(new_id(), TICK + timedelta(minutes=i)) for i in range(3)]
        created = await h.create_tick_runs(
            JOB, ticks, trigger=Trigger.BACKFILL, max_attempts=1, parameters={}
        )
        manual = await h.create_run(job_key=JOB, trigger=Trigger.MANUAL, max_attempts=1)
        # A worker took the second tick before the withdrawal: it stays.
        await h.start_attempt(
            start(ticks[1][0], trigger=Trigger.BACKFILL, scheduled_for=ticks[1][1])
        )
        cancelled = await h.create_run(job_key=JOB, trigger=Trigger.MANUAL, max_attempts=1)
        await h.cancel_run(cancelled, by="ann@box", message="m")
        asked = [*created, manual, cancelled, new_id(), "not-a-uuid"]
        gone = await h.withdraw_queued(asked)
        assert sorted(gone) == sorted([ticks[0][0], ticks[2][0], manual])
        for rid in gone:
            assert await h.get_run(rid) is None
        assert (await h.get_run(ticks[1][0])).status is RunStatus.RUNNING  # type: ignore[union-attr]
        assert (await h.get_run(cancelled)).status is RunStatus.CANCELLED  # type: ignore[union-attr]
        assert await h.withdraw_queued(asked) == []
        assert await h.withdraw_queued([]) == []
        # The withdrawn ticks are free again: a later backfill records them anew.
        again = await h.create_tick_runs(
            JOB, ticks, trigger=Trigger.BACKFILL, max_attempts=1, parameters={}
        )
        assert sorted(again) == sorted([ticks[0][0], ticks[2][0]])
        # A message sent after all records its run again (a claim is an upsert).
        await h.withdraw_queued([ticks[0][0]])
        settled = await h.settle_attempt(
            start(ticks[0][0], trigger=Trigger.BACKFILL, scheduled_for=ticks[0][1]),
            now(),
            end(RunStatus.SUCCEEDED),
        )
        assert settled and (await h.get_run(ticks[0][0])).status is RunStatus.SUCCEEDED  # type: ignore[union-attr]

    in_history(body)


def test_cancel_run(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        queued = await h.create_run(job_key=JOB, trigger=Trigger.MANUAL, max_attempts=1)
        done = await h.cancel_run(queued, by="ann@box", message="cancelled by ann@box")
        assert (done.changed, done.status) == (True, RunStatus.CANCELLED)
        run = await h.get_run(queued)
        assert run is not None and run.finished and run.finished_at is not None
        assert run.cancelled_by == "ann@box" and run.message == "cancelled by ann@box"
        assert run.duration_ms is None  # it never started
        again = await h.cancel_run(queued, by="bob@box", message="x")
        assert (again.changed, again.status) == (False, RunStatus.CANCELLED)
        assert (await h.get_run(queued)).cancelled_by == "ann@box"  # type: ignore[union-attr]
        # A cancelled run cannot be claimed (a queued message of it never starts).
        assert not (await h.start_attempt(start(queued))).started

        running = new_id()
        await h.start_attempt(start(running))
        assert (await h.cancel_run(running, by="ann@box", message="m")).changed
        assert not await h.finish_attempt(running, 1, end(RunStatus.SUCCEEDED))
        finished = new_id()
        await h.start_attempt(start(finished))
        await h.finish_attempt(finished, 1, end(RunStatus.FAILED))
        late = await h.cancel_run(finished, by="ann@box", message="m")
        assert (late.changed, late.status) == (False, RunStatus.FAILED)
        unknown = await h.cancel_run(new_id(), by="ann@box", message="m")
        assert (unknown.changed, unknown.status) == (False, None)
        assert (await h.cancel_run("nope", by="a", message="m")).status is None

    in_history(body)


def test_a_cancelled_attempt_records_who(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        rid = new_id()
        await h.start_attempt(start(rid))
        await h.finish_attempt(rid, 1, end(RunStatus.CANCELLED, cancelled_by="ann@box"))
        run = await h.get_run(rid)
        assert run is not None and run.status is RunStatus.CANCELLED
        assert run.cancelled_by == "ann@box"
        assert [a.status for a in run.attempts] == [RunStatus.CANCELLED]

    in_history(body)


def test_audit_fields_are_recorded(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        first = await h.create_run(
            job_key=JOB,
            trigger=Trigger.MANUAL,
            max_attempts=1,
            triggered_by="ann@box",
            reason="deploy",
        )
        rerun = await h.create_run(
            job_key=JOB,
            trigger=Trigger.RERUN,
            max_attempts=1,
            triggered_by="bob@box",
            rerun_of=first.upper(),
        )
        tick = new_id()
        await h.settle_attempt(
            AttemptStart(
                run_id=tick,
                job_key=JOB,
                trigger=Trigger.SCHEDULE,
                attempt=1,
                max_attempts=1,
                worker="w",
                scheduled_for=TICK,
                enqueued_at=None,
                parameters={},
                triggered_by="beat-1",
            ),
            now(),
            end(RunStatus.SUCCEEDED),
        )
        a, b, c = [await h.get_run(r) for r in (first, rerun, tick)]
        assert a is not None and (a.triggered_by, a.reason, a.rerun_of) == (
            "ann@box",
            "deploy",
            None,
        )
        assert b is not None and (b.triggered_by, b.rerun_of) == ("bob@box", first)
        assert c is not None and c.triggered_by == "beat-1"
        assert b.to_json()["rerun_of"] == first and a.to_json()["reason"] == "deploy"

    in_history(body)


def test_runs_filters_and_pages(in_history: InHistory[None]) -> None:
    async def body(h: RunHistory) -> None:
        ids = []
        for i in range(7):
            rid = new_id()
            ids.append(rid)
            trigger = Trigger.MANUAL if i % 2 else Trigger.SCHEDULE
            await h.start_attempt(
                start(
                    rid,
                    job=JOB if i < 5 else "ext/other",
                    trigger=trigger,
                    scheduled_for=TICK + timedelta(minutes=i) if trigger.is_tick else None,
                    enqueued_at=TICK + timedelta(seconds=i),
                )
            )
            status = RunStatus.FAILED if i == 3 else RunStatus.SUCCEEDED
            await h.finish_attempt(rid, 1, end(status))
        newest = ids[::-1]

        async def page(f: RunFilter, limit: int = 100) -> list[str]:
            runs, _ = await h.runs(f, limit=limit)
            return [r.id for r in runs]

        assert await page(RunFilter()) == newest
        assert await page(RunFilter(job_key=JOB)) == newest[2:]
        assert await page(RunFilter(trigger=Trigger.MANUAL)) == [ids[5], ids[3], ids[1]]
        assert await page(RunFilter(job_key=JOB, status=RunStatus.FAILED)) == [ids[3]]
        assert await page(RunFilter(since=TICK + timedelta(seconds=5))) == [ids[6], ids[5]]
        assert await page(RunFilter(until=TICK + timedelta(seconds=2))) == [ids[1], ids[0]]
        assert await page(RunFilter(job_key="ext/none")) == []
        # Keyset pages: every run once, in order, then no cursor.
        seen: list[str] = []
        cursor = None
        while True:
            runs, cursor = await h.runs(RunFilter(), limit=3, after=cursor)
            seen += [r.id for r in runs]
            if cursor is None:
                break
        assert seen == newest
        # Ties on enqueued_at are ordered by id, highest first.
        same = [new_id() for _ in range(3)]
        for rid in same:
            await h.start_attempt(start(rid, job="ext/tie", enqueued_at=TICK))
        first, cursor = await h.runs(RunFilter(job_key="ext/tie"), limit=2)
        rest, last = await h.runs(RunFilter(job_key="ext/tie"), limit=2, after=cursor)
        assert [r.id for r in first + rest] == sorted(same, reverse=True) and last is None

    in_history(body)


def test_runs_with_a_bounded_scan(in_history: InHistory[None]) -> None:
    """``scan`` bounds the runs a page filtered by status (or, for one job, trigger)
    looks at: pages may come back short or empty, with a cursor while older runs are
    left, and paging on yields exactly the runs an unbounded page would."""

    async def body(h: RunHistory) -> None:
        ids = []
        for i in range(10):
            rid = new_id()
            ids.append(rid)
            trigger = Trigger.MANUAL if i == 8 else Trigger.SCHEDULE
            await h.start_attempt(
                start(
                    rid,
                    job=JOB if i % 4 != 2 else "ext/other",
                    trigger=trigger,
                    scheduled_for=TICK + timedelta(minutes=i) if trigger.is_tick else None,
                    # Runs 4 and 5 enqueued at the same instant: ordered by id.
                    enqueued_at=TICK + timedelta(seconds=i - (i == 5)),
                )
            )
            failed = i in (1, 4, 5, 6)
            await h.finish_attempt(rid, 1, end(RunStatus.FAILED if failed else RunStatus.SUCCEEDED))

        async def pages(f: RunFilter, limit: int, scan: int | None) -> list[list[str]]:
            out, cursor = [], None
            while True:
                runs, cursor = await h.runs(f, limit=limit, after=cursor, scan=scan)
                out.append([r.id for r in runs])
                if cursor is None:
                    return out

        failed = RunFilter(job_key=JOB, status=RunStatus.FAILED)
        everything = (await h.runs(failed, limit=100))[0]
        assert {r.id for r in everything} == {ids[1], ids[4], ids[5]}  # 6 is another job's
        # JOB's runs, newest first: 9 8 7 5|4 3 1 0 (run 5 and 4 tie); scan 3 at a time.
        got = await pages(failed, limit=2, scan=3)
        assert [rid for page in got for rid in page] == [r.id for r in everything]
        assert got[0] == [] and len(got) == 3  # 9 8 7 | 5 4 3 | 1 0
        # A page fills up within the scan: the usual cursor, after its last run.
        runs, cursor = await h.runs(failed, limit=1, scan=100)
        assert [r.id for r in runs] == [everything[0].id] and cursor is not None
        # Whatever the limit and the scan, paging yields what one unbounded page does.
        filters = [
            failed,
            RunFilter(job_key=JOB, trigger=Trigger.MANUAL),
            RunFilter(status=RunStatus.SUCCEEDED),
            RunFilter(status=RunStatus.FAILED, until=TICK + timedelta(seconds=6)),
            RunFilter(job_key="ext/none", status=RunStatus.FAILED),
        ]
        for f in filters:
            want = [r.id for r in (await h.runs(f, limit=100))[0]]
            for limit, scan in ((1, 1), (2, 3), (1, 4), (5, 2), (100, 100)):
                got = await pages(f, limit=limit, scan=scan)
                assert [rid for page in got for rid in page] == want, (f, limit, scan)
                assert all(len(page) <= limit for page in got)
        # Filters an index answers are not bounded: the whole page at once.
        manual, cursor = await h.runs(RunFilter(trigger=Trigger.MANUAL), limit=100, scan=1)
        assert [r.id for r in manual] == [ids[8]] and cursor is None
        alone, cursor = await h.runs(RunFilter(job_key=JOB), limit=100, scan=1)
        assert len(alone) == 8 and cursor is None

    in_history(body)


def test_prune_walks_past_unfinished_runs_in_batches_and_reports_progress(
    in_history: InHistory[None],
) -> None:
    async def body(h: RunHistory) -> None:
        # Older unfinished runs than a batch holds come first: the prune must go on
        # past them to the finished runs behind them.
        stuck = [new_id() for _ in range(5)]
        for rid in stuck:
            await h.start_attempt(start(rid))
        done = [new_id() for _ in range(5)]
        for rid in done:
            await h.settle_attempt(start(rid), now(), end(RunStatus.FAILED))
        totals: list[int] = []
        assert await h.prune(now() + timedelta(seconds=1), batch=2, progress=totals.append) == 5
        assert totals and totals[-1] == 5 and totals == sorted(totals)
        assert {r.id for r in await h.history(None, limit=100)} == set(stuck)
        assert await h.prune(now() + timedelta(seconds=1), batch=2) == 0

    in_history(body)
