"""Run control's pure and in-process parts: cancel requests in the attempt flow, the
cancelled outcome, backfilled ticks claimed before running, backfill tick ranges."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from control.actions import TooManyTicks, ticks_between
from jobs_core import JobContext, JobResult
from jobs_core.errors import ConfigError
from jobs_core.history_memory import MemoryHistory
from jobs_core.policy import RetryPolicy
from jobs_core.status import Action, RunStatus, Trigger
from jobs_core.wire import Keys
from worker import cancel as cancel_module
from worker.cancel import CancelRequest, CancelRequests
from worker.execution import attempt
from worker.outcome import Cancelled, decide

from .test_attempt_flow import (
    TICK,
    FakeLock,
    SpyHistory,
    calls,
    definition,
    request,
    succeed,
)


class DictRedis:
    """The three commands CancelRequests uses, over a dict (Redis itself: integration)."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.data.get(key)

    async def mget(self, *keys: str) -> list[str | None]:
        return [self.data.get(k) for k in keys]

    async def set(self, key: str, value: str, ex: int | None = None, nx: bool = False) -> None:
        if not (nx and key in self.data):
            self.data[key] = value


def test_decide_a_cancelled_execution() -> None:
    out, end = decide(
        Cancelled("ann@box"),
        run_id="r",
        job_key="ext/job",
        attempt=1,
        retry=RetryPolicy(max_attempts=3),
        elapsed_ms=1200,
        now=TICK,
    )
    assert (out.status, out.action, out.retry_in) == (RunStatus.CANCELLED, Action.ACK, None)
    assert end.status is RunStatus.CANCELLED and end.closes_run
    assert end.cancelled_by == "ann@box" and end.message == "cancelled by ann@box"
    assert end.duration_ms == 1200 and end.next_attempt_at is None


def test_a_run_cancelled_before_it_starts_never_runs() -> None:
    async def body() -> None:
        history = MemoryHistory()
        redis = DictRedis()
        jd = definition(succeed)
        rid = await history.create_run(job_key=jd.key, trigger=Trigger.MANUAL, max_attempts=3)
        await CancelRequests(redis).request(rid, CancelRequest("ann@box"))
        req = request(rid, trigger=Trigger.MANUAL)
        out = await attempt(history, jd, req, "w1@host", cancels=CancelRequests(redis))
        assert calls(jd) == []
        assert (out.status, out.action) == (RunStatus.CANCELLED, Action.ACK)
        run = await history.get_run(rid)
        assert run is not None and run.status is RunStatus.CANCELLED
        assert run.cancelled_by == "ann@box" and run.started_at is None

    asyncio.run(body())


def test_a_running_job_is_cancelled_by_a_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cancel_module, "CANCEL_POLL_S", 0.01)
    started = asyncio.Event()

    async def slow(ctx: JobContext) -> JobResult:
        started.set()
        await asyncio.sleep(60)
        return JobResult.success()

    async def body() -> None:
        history = SpyHistory()
        redis = DictRedis()
        jd = definition(slow)
        req = request(trigger=Trigger.MANUAL, redelivered=True)  # claims before running
        run = asyncio.ensure_future(
            attempt(history, jd, req, "w1@host", cancels=CancelRequests(redis))
        )
        await asyncio.wait_for(started.wait(), 10)
        await CancelRequests(redis).request(req.run_id, CancelRequest("ann@box"))
        out = await asyncio.wait_for(run, 10)
        assert (out.status, out.action) == (RunStatus.CANCELLED, Action.ACK)
        recorded = await history.get_run(req.run_id)
        assert recorded is not None and recorded.status is RunStatus.CANCELLED
        assert recorded.cancelled_by == "ann@box"
        assert [a.status for a in recorded.attempts] == [RunStatus.CANCELLED]
        assert recorded.duration_ms is not None and recorded.duration_ms < 10_000

    asyncio.run(body())


def test_a_job_that_finishes_without_a_request_is_not_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cancel_module, "CANCEL_POLL_S", 0.01)

    async def quickish(ctx: JobContext) -> JobResult:
        await asyncio.sleep(0.05)
        return JobResult.success()

    async def body() -> None:
        history = MemoryHistory()
        jd = definition(quickish)
        out = await attempt(history, jd, request(), "w1@host", cancels=CancelRequests(DictRedis()))
        assert out.status is RunStatus.SUCCEEDED

    asyncio.run(body())


class CountingRedis(DictRedis):
    """A DictRedis that counts the cancel-request reads."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    async def get(self, key: str) -> str | None:
        self.gets += 1
        return await super().get(key)


def test_the_cancel_watch_polls_while_the_job_runs_and_stops_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cancel_module, "CANCEL_POLL_S", 0.01)
    redis = CountingRedis()

    async def runs_a_while(ctx: JobContext) -> JobResult:
        deadline = asyncio.get_running_loop().time() + 10
        while redis.gets < 3 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)
        return JobResult.success()

    async def quick(ctx: JobContext) -> JobResult:
        return JobResult.success()

    async def body() -> None:
        history = MemoryHistory()
        out = await attempt(
            history,
            definition(runs_a_while),
            request(trigger=Trigger.MANUAL),
            "w1@host",
            cancels=CancelRequests(redis),
        )
        assert out.status is RunStatus.SUCCEEDED and redis.gets >= 3
        seen = redis.gets
        # A quick job ends before the first look: no read, and nothing left scheduled.
        out = await attempt(
            history,
            definition(quick),
            request(trigger=Trigger.MANUAL),
            "w1@host",
            cancels=CancelRequests(redis),
        )
        assert out.status is RunStatus.SUCCEEDED
        await asyncio.sleep(0.1)  # ten poll intervals: a watch left running would read
        assert redis.gets == seen
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(body())


def test_a_failing_cancel_poll_fails_the_attempt_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis failing under the watch is an infrastructure error of the attempt (the task
    re-queues it), not a silently unwatched run."""
    monkeypatch.setattr(cancel_module, "CANCEL_POLL_S", 0.01)

    class Failing(DictRedis):
        async def get(self, key: str) -> str | None:
            raise ConnectionError("redis gone")

    async def slowish(ctx: JobContext) -> JobResult:
        await asyncio.sleep(0.1)
        return JobResult.success()

    async def body() -> None:
        with pytest.raises(ConnectionError):
            await attempt(
                MemoryHistory(),
                definition(slowish),
                request(trigger=Trigger.MANUAL),
                "w1@host",
                cancels=CancelRequests(Failing()),
            )

    asyncio.run(body())


def test_a_locked_job_reads_cancel_backfill_and_lock_in_one_admission() -> None:
    """overlap skip: one script answers the three gates; a cancelled run never takes the
    lock (and frees one an earlier delivery of it held), a backfilled tick claims first."""

    async def body() -> None:
        history = SpyHistory()
        jd = definition(succeed)
        cancels = CancelRequests(DictRedis())
        lock = FakeLock(cancels=cancels)
        cancelled = request(trigger=Trigger.MANUAL)
        await cancels.request(cancelled.run_id, CancelRequest("ann@box"))
        out = await attempt(history, jd, cancelled, "w1@host", lock=lock, cancels=cancels)  # type: ignore[arg-type]
        assert (out.status, out.action) == (RunStatus.CANCELLED, Action.ACK) and calls(jd) == []
        assert lock.admitted == [cancelled.run_id] and lock.released == [cancelled.run_id]

        tick = request()
        lock.backfilled.add(tick.run_id)
        out = await attempt(history, jd, tick, "w1@host", lock=lock, cancels=cancels)  # type: ignore[arg-type]
        assert out.status is RunStatus.SUCCEEDED and history.writes[-2:] == ["start", "finish"]
        assert lock.admitted[-1] == tick.run_id and lock.released[-1] == tick.run_id

        busy = type(tick)(**{**tick.__dict__, "run_id": str(uuid.uuid4())})
        lock.holder = "other"
        out = await attempt(history, jd, busy, "w1@host", lock=lock, cancels=cancels)  # type: ignore[arg-type]
        assert out.status is RunStatus.SKIPPED and calls(jd) == [1]

    asyncio.run(body())


@pytest.mark.parametrize("backfill_message", [True, False])
def test_a_backfilled_tick_is_claimed_before_it_runs(backfill_message: bool) -> None:
    """The backfill's and the beat's messages of one tick: whichever comes second is
    refused before running, even on a first delivery (no lazy start)."""

    async def body() -> None:
        history = SpyHistory()
        redis = DictRedis()
        jd = definition(succeed)
        rid = str(uuid.uuid4())
        await history.create_tick_runs(
            jd.key, [(rid, TICK)], trigger=Trigger.BACKFILL, max_attempts=3, parameters={}
        )
        if not backfill_message:
            redis.data[Keys.backfilled(rid)] = "1"
        first = request(rid, trigger=Trigger.BACKFILL if backfill_message else Trigger.SCHEDULE)
        first = type(first)(**{**first.__dict__, "scheduled_for": TICK})
        cancels = CancelRequests(redis)
        out = await attempt(history, jd, first, "w1@host", cancels=cancels)
        assert out.status is RunStatus.SUCCEEDED and history.writes[-2:] == ["start", "finish"]
        again = await attempt(history, jd, first, "w1@host", cancels=cancels)
        assert again.action is Action.DUPLICATE and calls(jd) == [1]

    asyncio.run(body())


def test_ticks_between_is_half_open_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs_core.cron import CronSchedule

    jd = definition(succeed)
    jd = type(jd)(**{**jd.__dict__, "cron": CronSchedule("0 */10 * * * *"), "schedule": "x"})
    start = datetime(2024, 1, 1, tzinfo=UTC)
    ticks = ticks_between(jd, start, start + timedelta(hours=1), 100)
    assert ticks == [start + timedelta(minutes=10 * i) for i in range(6)]
    assert ticks_between(jd, start + timedelta(seconds=1), start + timedelta(minutes=10), 9) == []
    assert len(ticks_between(jd, start, start + timedelta(hours=1), 6)) == 6
    with pytest.raises(TooManyTicks, match="more than 5 ticks"):
        ticks_between(jd, start, start + timedelta(hours=1), 5)
    with pytest.raises(ConfigError, match="not before"):
        ticks_between(jd, start, start, 5)
    with pytest.raises(ConfigError, match="in the future"):
        ticks_between(jd, start, datetime.now(UTC) + timedelta(minutes=1), 10**6)
    manual = definition(succeed)
    with pytest.raises(ConfigError, match="no schedule"):
        ticks_between(manual, start, start + timedelta(hours=1), 5)


def test_cancel_request_round_trip_and_garbage() -> None:
    req = CancelRequest("ann@box", terminate=True)
    assert CancelRequest.loads(req.dumps()) == req
    assert CancelRequest.loads("not json").by == "unknown"
    assert CancelRequest.loads("[1]").by == "unknown"


def test_run_messages_carry_and_check_the_audit_fields() -> None:
    import json

    from jobs_core.errors import InvalidMessage
    from jobs_core.wire import MAX_REASON, RunMessage, TickTemplate, decode, job_kwargs

    rid = str(uuid.uuid4())
    kwargs = job_kwargs(
        run_id=rid,
        trigger=Trigger.MANUAL,
        scheduled_for=None,
        enqueued_at=TICK,
        triggered_by="ann@box",
        reason="deploy",
    )
    msg = RunMessage.from_kwargs(kwargs)
    assert (msg.triggered_by, msg.reason) == ("ann@box", "deploy")
    assert RunMessage.from_kwargs(msg.to_kwargs()) == msg
    with pytest.raises(InvalidMessage, match="triggered_by: 7 is not a string"):
        RunMessage.from_kwargs({**kwargs, "triggered_by": 7})
    with pytest.raises(InvalidMessage, match=f"at most {MAX_REASON} characters"):
        RunMessage.from_kwargs({**kwargs, "reason": "x" * (MAX_REASON + 1)})
    template = TickTemplate("jobs", Trigger.SCHEDULE, "{}", "beat-1")
    text = template.render("jobs.ext.job", rid, TICK.isoformat(), TICK.isoformat())
    _, sent = decode(text)
    assert RunMessage.from_kwargs(sent).triggered_by == "beat-1"
    assert json.loads(text)["headers"]["id"] == rid
