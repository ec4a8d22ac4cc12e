"""One attempt end to end against the in-memory history: claim, lazy start, execute, record."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from jobs_core import Job, JobContext, JobResult
from jobs_core.errors import DuplicateTick
from jobs_core.history import AttemptEnd, AttemptStart, Claim, RunHistory
from jobs_core.history_memory import MemoryHistory
from jobs_core.policy import JobPolicy, Overlap, RetryPolicy
from jobs_core.registry import JobDefinition
from jobs_core.status import Action, RunStatus, Trigger
from worker import execution
from worker.cancel import CancelRequest
from worker.execution import TaskRequest, attempt
from worker.overlap import Admission, Turn

TICK = datetime(2030, 1, 1, 12, tzinfo=UTC)


class SpyHistory(MemoryHistory):
    """A MemoryHistory that lists the writes made to it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    async def start_attempt(self, start: AttemptStart) -> Claim:
        self.writes.append("start")
        return await super().start_attempt(start)

    async def finish_attempt(self, run_id: str, attempt: int, end: AttemptEnd) -> bool:
        self.writes.append("finish")
        return await super().finish_attempt(run_id, attempt, end)

    async def settle_attempt(
        self, start: AttemptStart, started_at: datetime, end: AttemptEnd
    ) -> bool:
        self.writes.append("settle")
        return await super().settle_attempt(start, started_at, end)

    async def create_run(self, **kw: Any) -> str:
        self.writes.append("create")
        return await super().create_run(**kw)


class ScriptedJob(Job):
    """Runs ``script(ctx)``; counts its executions."""

    name = "scripted"
    description = "test job"

    def __init__(self, script: Callable[[JobContext], Awaitable[Any]]) -> None:
        self.script = script
        self.calls: list[int] = []

    async def execute(self, ctx: JobContext) -> JobResult:
        self.calls.append(ctx.run.attempt)
        return await self.script(ctx)  # type: ignore[no-any-return]


def definition(
    script: Callable[[JobContext], Awaitable[Any]],
    *,
    max_attempts: int = 3,
    timeout: float = 30.0,
    overlap: Overlap = Overlap.SKIP,
) -> JobDefinition:
    return JobDefinition(
        extension="ext",
        name="scripted",
        description="test job",
        job=ScriptedJob(script),
        schedule=None,
        cron=None,
        enabled=True,
        policy=JobPolicy(
            retry=RetryPolicy(max_attempts=max_attempts, backoff=2, jitter=False),
            timeout=timeout,
            overlap=overlap,
        ),
        parameters={"from_profile": 1},
        config={},
        tags=(),
    )


def calls(jd: JobDefinition) -> list[int]:
    job = jd.job
    assert isinstance(job, ScriptedJob)
    return job.calls


def request(
    run_id: str | None = None,
    *,
    trigger: Trigger = Trigger.SCHEDULE,
    attempt: int = 1,
    redelivered: bool = False,
    skip_reason: str | None = None,
) -> TaskRequest:
    return TaskRequest(
        run_id=run_id or str(uuid.uuid4()),
        trigger=trigger,
        scheduled_for=TICK if trigger.is_tick else None,
        enqueued_at=datetime.now(UTC),
        attempt=attempt,
        parameters={"who": "tests"},
        skip_reason=skip_reason,
        redelivered=redelivered,
    )


async def succeed(ctx: JobContext) -> JobResult:
    return JobResult.success().with_message(f"hello {ctx.parameter('who', str)}")


async def boom(ctx: JobContext) -> JobResult:
    raise ValueError(f"broken on attempt {ctx.run.attempt}")


async def poll(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the condition")
        await asyncio.sleep(0.01)


def test_a_quick_first_delivery_writes_history_once() -> None:
    async def body() -> None:
        history = SpyHistory()
        jd, req = definition(succeed), request()
        out = await attempt(history, jd, req, "w1@host")
        assert (out.status, out.action, out.message) == (
            RunStatus.SUCCEEDED,
            Action.ACK,
            "hello tests",
        )
        assert history.writes == ["settle"]
        run = await history.get_run(req.run_id)
        assert run is not None and run.status is RunStatus.SUCCEEDED and run.worker == "w1@host"
        assert run.parameters == {"from_profile": 1, "who": "tests"}
        assert [a.status for a in run.attempts] == [RunStatus.SUCCEEDED]

    asyncio.run(body())


def test_a_long_first_attempt_is_marked_running_then_settled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(execution, "LAZY_START_S", 0.01)

    async def body() -> None:
        history = SpyHistory()
        release = asyncio.Event()

        async def wait(ctx: JobContext) -> JobResult:
            await release.wait()
            return JobResult.success()

        jd, req = definition(wait), request()
        task = asyncio.create_task(attempt(history, jd, req, "w1@host"))

        async def running() -> bool:
            run = await history.get_run(req.run_id)
            return run is not None and run.status is RunStatus.RUNNING

        await poll(running)
        release.set()
        out = await task
        assert out.status is RunStatus.SUCCEEDED
        assert history.writes == ["start", "settle"]
        run = await history.get_run(req.run_id)
        assert run is not None and run.status is RunStatus.SUCCEEDED and len(run.attempts) == 1

    asyncio.run(body())


@pytest.mark.parametrize(("attempt_no", "redelivered"), [(1, True), (2, False)])
def test_redeliveries_and_retries_claim_before_running(attempt_no: int, redelivered: bool) -> None:
    async def body() -> None:
        history = SpyHistory()
        claimed: list[RunStatus] = []

        async def look(ctx: JobContext) -> JobResult:
            run = await ctx.service(RunHistory).get_run(ctx.run.run_id)  # type: ignore[type-abstract]
            assert run is not None
            claimed.append(run.status)
            return JobResult.success()

        jd = definition(look)
        req = request(attempt=attempt_no, redelivered=redelivered)
        out = await attempt(history, jd, req, "w1@host")
        assert out.status is RunStatus.SUCCEEDED
        assert claimed == [RunStatus.RUNNING]
        assert history.writes == ["start", "finish"]

    asyncio.run(body())


def test_a_redelivered_message_of_a_finished_run_is_dropped() -> None:
    async def body() -> None:
        history = SpyHistory()
        jd, req = definition(succeed), request()
        await attempt(history, jd, req, "w1@host")
        again = await attempt(history, jd, request(req.run_id, redelivered=True), "w2@host")
        assert (again.status, again.action, again.message) == (
            None,
            Action.DUPLICATE,
            "succeeded",
        )
        assert calls(jd) == [1]
        run = await history.get_run(req.run_id)
        assert run is not None and run.worker == "w1@host" and len(run.attempts) == 1

    asyncio.run(body())


def test_an_older_attempt_is_dropped() -> None:
    async def body() -> None:
        history = SpyHistory()
        jd = definition(boom)
        rid = str(uuid.uuid4())
        await attempt(history, jd, request(rid, attempt=2), "w1@host")
        stale = await attempt(history, jd, request(rid, attempt=1, redelivered=True), "w1@host")
        assert stale.action is Action.DUPLICATE and calls(jd) == [2]

    asyncio.run(body())


def test_a_first_delivery_of_a_finished_run_runs_but_history_keeps_the_first_outcome() -> None:
    async def body() -> None:
        history = SpyHistory()
        jd, req = definition(succeed), request()
        await history.create_run(
            run_id=req.run_id,
            job_key=jd.key,
            trigger=req.trigger,
            scheduled_for=req.scheduled_for,
            max_attempts=3,
            status=RunStatus.SKIPPED,
            message="skipped by beat",
        )
        out = await attempt(history, jd, req, "w1@host")
        assert out.status is RunStatus.SUCCEEDED
        run = await history.get_run(req.run_id)
        assert run is not None and run.status is RunStatus.SKIPPED
        assert run.message == "skipped by beat" and run.attempts == ()

    asyncio.run(body())


def test_failures_are_retried_until_the_last_attempt() -> None:
    async def body() -> None:
        history = SpyHistory()
        jd, req = definition(boom, max_attempts=3), request()
        outcomes = []
        while True:
            out = await attempt(history, jd, req, "w1@host")
            outcomes.append((out.status, out.action, out.retry_in))
            if out.action is not Action.RETRY:
                break
            req = TaskRequest.from_kwargs(req.next_attempt_kwargs())
        assert outcomes == [
            (RunStatus.RETRYING, Action.RETRY, 2.0),
            (RunStatus.RETRYING, Action.RETRY, 4.0),
            (RunStatus.FAILED, Action.ACK, None),
        ]
        assert calls(jd) == [1, 2, 3]
        run = await history.get_run(req.run_id)
        assert run is not None and run.status is RunStatus.FAILED and run.attempt == 3
        assert [a.status for a in run.attempts] == [RunStatus.FAILED] * 3
        assert run.message == "ValueError: broken on attempt 3"
        assert run.error is not None and "Traceback" in run.error

    asyncio.run(body())


def test_a_timeout_is_retried_then_recorded_as_timed_out() -> None:
    async def body() -> None:
        history = SpyHistory()

        async def hang(ctx: JobContext) -> JobResult:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        jd, req = definition(hang, max_attempts=2, timeout=0.05), request()
        first = await attempt(history, jd, req, "w1@host")
        assert (first.status, first.action) == (RunStatus.RETRYING, Action.RETRY)
        second = await attempt(
            history, jd, TaskRequest.from_kwargs(req.next_attempt_kwargs()), "w1@host"
        )
        assert (second.status, second.action) == (RunStatus.TIMED_OUT, Action.ACK)
        assert second.message == "timed out after 0.05s"
        run = await history.get_run(req.run_id)
        assert run is not None and run.status is RunStatus.TIMED_OUT
        assert [a.status for a in run.attempts] == [RunStatus.FAILED, RunStatus.TIMED_OUT]

    asyncio.run(body())


def test_the_jobs_own_timeout_error_is_a_failure_not_a_timeout() -> None:
    async def body() -> None:
        async def own_timeout(ctx: JobContext) -> JobResult:
            raise TimeoutError("the upstream API did not answer")

        history = SpyHistory()
        jd = definition(own_timeout, max_attempts=1, timeout=30)
        out = await attempt(history, jd, request(), "w1@host")
        assert out.status is RunStatus.FAILED
        assert out.message == "TimeoutError: the upstream API did not answer"

    asyncio.run(body())


def test_a_failure_result_is_not_retried() -> None:
    async def body() -> None:
        async def refuse(ctx: JobContext) -> JobResult:
            return JobResult.failure("nothing to do")

        history = SpyHistory()
        jd, req = definition(refuse), request()
        out = await attempt(history, jd, req, "w1@host")
        assert (out.status, out.action) == (RunStatus.FAILED, Action.ACK)
        assert calls(jd) == [1]

    asyncio.run(body())


def test_a_skip_reason_records_a_skipped_run_without_running() -> None:
    async def body() -> None:
        history = SpyHistory()
        jd, req = definition(succeed), request(skip_reason="missed by 1h")
        out = await attempt(history, jd, req, "w1@host")
        assert (out.status, out.action) == (RunStatus.SKIPPED, Action.ACK)
        assert calls(jd) == [] and history.writes == ["create"]
        run = await history.get_run(req.run_id)
        assert run is not None and run.status is RunStatus.SKIPPED
        assert run.message == "missed by 1h" and run.scheduled_for == TICK

    asyncio.run(body())


class FakeLock:
    """The OverlapLock interface over a dict (the Redis lock has integration tests).

    ``cancels``: the cancel requests :meth:`admit` reads with the lock, as the Redis
    script reads both in one round trip."""

    def __init__(self, holder: str | None = None, cancels: Any = None) -> None:
        self.holders: dict[str, str] = {}
        self.holder = holder
        self.cancels = cancels
        self.released: list[str] = []
        self.left: list[str] = []
        self.admitted: list[str] = []
        self.backfilled: set[str] = set()

    async def admit(self, job_key: str, run_id: str, ttl_s: float) -> Admission:
        assert self.cancels is not None, "admit reads the cancel requests: pass cancels="
        self.admitted.append(run_id)
        request, _ = await self.cancels.before_start(run_id)
        backfilled = run_id in self.backfilled
        if request is not None:
            return Admission(request, backfilled, None)
        return Admission(None, backfilled, await self.acquire(job_key, run_id, ttl_s))

    async def acquire(self, job_key: str, run_id: str, ttl_s: float) -> str | None:
        if self.holder is not None and self.holder != run_id:
            return self.holder
        return None

    async def take_turn(
        self, job_key: str, run_id: str, ttl_s: float, *, order_ms: int, places: int
    ) -> Turn:
        return Turn(await self.acquire(job_key, run_id, ttl_s))

    async def leave(self, job_key: str, run_id: str) -> None:
        self.left.append(run_id)

    async def release(self, job_key: str, run_id: str) -> None:
        self.released.append(run_id)


@pytest.mark.parametrize(
    ("overlap", "trigger", "skips"),
    [
        (Overlap.SKIP, Trigger.SCHEDULE, True),
        (Overlap.SKIP, Trigger.MANUAL, False),
        (Overlap.QUEUE, Trigger.SCHEDULE, False),
    ],
)
def test_a_busy_job_skips_or_waits(overlap: Overlap, trigger: Trigger, skips: bool) -> None:
    async def body() -> None:
        history = SpyHistory()
        lock = FakeLock(holder="other-run")
        jd, req = definition(succeed, overlap=overlap), request(trigger=trigger)
        out = await attempt(history, jd, req, "w1@host", lock=lock)  # type: ignore[arg-type]
        assert calls(jd) == [] and lock.released == []
        run = await history.get_run(req.run_id)
        if skips:
            assert (out.status, out.action) == (RunStatus.SKIPPED, Action.ACK)
            assert run is not None and run.status is RunStatus.SKIPPED
            assert "other-run" in (run.message or "")
        else:
            assert (out.status, out.action) == (None, Action.REQUEUE)
            assert run is None and history.writes == []

    asyncio.run(body())


def test_the_lock_is_released_after_the_run_even_when_it_fails() -> None:
    async def body() -> None:
        lock = FakeLock()
        jd, req = definition(boom, max_attempts=1), request()
        out = await attempt(SpyHistory(), jd, req, "w1@host", lock=lock)  # type: ignore[arg-type]
        assert out.status is RunStatus.FAILED and lock.released == [req.run_id]

    asyncio.run(body())


def test_an_attempt_recorded_as_stuck_does_not_overwrite_its_timeout() -> None:
    """The task abandoned the attempt and recorded a timeout; the job then ends after all."""

    async def body() -> None:
        history = SpyHistory()
        jd = definition(succeed, max_attempts=2)

        async def late(ctx: JobContext) -> JobResult:
            start = execution.attempt_start(jd, req, "w1@host")
            stuck = AttemptEnd(status=RunStatus.TIMED_OUT, duration_ms=1, message="stuck")
            assert await history.settle_attempt(start, datetime.now(UTC), stuck)
            return JobResult.success().with_message("finished late")

        jd.job.script = late  # type: ignore[attr-defined]
        req = request(attempt=2)
        out = await attempt(history, jd, req, "w1@host")
        assert out.status is RunStatus.SUCCEEDED  # what the job said; history is final
        run = await history.get_run(req.run_id)
        assert run is not None and run.status is RunStatus.TIMED_OUT and run.message == "stuck"
        assert [a.status for a in run.attempts] == [RunStatus.TIMED_OUT]

    asyncio.run(body())


@pytest.mark.parametrize("overlap", [Overlap.SKIP, Overlap.BUFFER_ONE, Overlap.CANCEL_OTHER])
def test_a_retry_that_finds_the_job_busy_waits_and_then_runs(overlap: Overlap) -> None:
    """A retry of a started run is not a new tick: it waits for the active run (it was
    once recorded skipped, which did nothing to the existing run: retrying for ever)."""

    async def body() -> None:
        history = SpyHistory()
        jd = definition(boom, overlap=overlap)
        req = request()
        first = await attempt(history, jd, req, "w1@host", lock=FakeLock())  # type: ignore[arg-type]
        assert first.action is Action.RETRY
        retry = request(req.run_id, attempt=2)
        lock = FakeLock(holder="newer-tick")
        out = await attempt(history, jd, retry, "w1@host", lock=lock)  # type: ignore[arg-type]
        assert (out.status, out.action) == (None, Action.REQUEUE)
        run = await history.get_run(req.run_id)
        assert run is not None and run.status is RunStatus.RETRYING and calls(jd) == [1]

        lock.holder = None  # the newer tick finished: the retry runs
        jd.job.script = succeed  # type: ignore[attr-defined]
        done = await attempt(history, jd, retry, "w1@host", lock=lock)  # type: ignore[arg-type]
        assert done.status is RunStatus.SUCCEEDED and calls(jd) == [1, 2]

    asyncio.run(body())


def test_a_redelivered_first_attempt_is_not_skipped_either() -> None:
    async def body() -> None:
        history = SpyHistory()
        jd, req = definition(succeed), request(redelivered=True)
        out = await attempt(history, jd, req, "w1@host", lock=FakeLock("other"))  # type: ignore[arg-type]
        assert (out.status, out.action) == (None, Action.REQUEUE) and history.writes == []

    asyncio.run(body())


class FakeCancels:
    """CancelRequests over a dict (the Redis one has integration tests)."""

    def __init__(self) -> None:
        self.requests: dict[str, CancelRequest] = {}

    async def before_start(self, run_id: str) -> tuple[CancelRequest | None, bool]:
        return self.requests.get(run_id), False

    async def request(self, run_id: str, request: CancelRequest, *, first: bool = False) -> None:
        if not (first and run_id in self.requests):
            self.requests[run_id] = request


@pytest.mark.parametrize("overlap", [Overlap.CANCEL_OTHER, Overlap.TERMINATE_OTHER])
def test_a_tick_stops_the_active_run_then_waits_for_it(overlap: Overlap) -> None:
    async def body() -> None:
        history = SpyHistory()
        jd = definition(succeed, overlap=overlap)
        active = request(trigger=Trigger.MANUAL)
        await history.start_attempt(execution.attempt_start(jd, active, "w2@host"))
        cancels = FakeCancels()
        lock = FakeLock(holder=active.run_id, cancels=cancels)
        req = request()
        out = await attempt(history, jd, req, "w1@host", lock=lock, cancels=cancels)  # type: ignore[arg-type]
        assert (out.status, out.action) == (None, Action.REQUEUE) and calls(jd) == []
        asked = cancels.requests[active.run_id]
        assert asked.by == f"run {req.run_id} (overlap: {overlap.value})"
        assert asked.terminate is (overlap is Overlap.TERMINATE_OTHER)
        run = await history.get_run(active.run_id)
        assert run is not None
        if overlap is Overlap.TERMINATE_OTHER:
            # The task kills its process; its run is recorded cancelled, its lock freed.
            assert out.terminate == active.run_id and lock.released == [active.run_id]
            assert run.status is RunStatus.CANCELLED and run.cancelled_by == asked.by
        else:
            # Its own worker cancels it and frees the lock; this run waits meanwhile.
            assert out.terminate is None and lock.released == []
            assert run.status is RunStatus.RUNNING

    asyncio.run(body())


def test_a_cancelled_waiting_tick_gives_up_its_place() -> None:
    async def body() -> None:
        history = SpyHistory()
        jd, req = definition(succeed, overlap=Overlap.BUFFER_ONE), request()
        cancels = FakeCancels()
        cancels.requests[req.run_id] = CancelRequest("me@host")
        lock = FakeLock(holder="other")
        out = await attempt(history, jd, req, "w1@host", lock=lock, cancels=cancels)  # type: ignore[arg-type]
        assert out.status is RunStatus.CANCELLED and lock.left == [req.run_id]

    asyncio.run(body())


class TurnLock(FakeLock):
    """Records what a buffered tick asks the waiting-set script for."""

    def __init__(self, holder: str | None = None, full: bool = False) -> None:
        super().__init__(holder)
        self.full = full
        self.turns: list[tuple[str, int, int]] = []

    async def take_turn(
        self, job_key: str, run_id: str, ttl_s: float, *, order_ms: int, places: int
    ) -> Turn:
        self.turns.append((run_id, order_ms, places))
        return Turn(self.holder, full=self.full)


@pytest.mark.parametrize(("overlap", "places"), [(Overlap.BUFFER_ONE, 1), (Overlap.BUFFER_ALL, 0)])
def test_a_buffered_tick_waits_in_the_order_of_its_instant(overlap: Overlap, places: int) -> None:
    async def body() -> None:
        history = SpyHistory()
        jd, req = definition(succeed, overlap=overlap), request()
        lock = TurnLock(holder="active")
        out = await attempt(history, jd, req, "w1@host", lock=lock)  # type: ignore[arg-type]
        assert (out.status, out.action) == (None, Action.REQUEUE)
        assert lock.turns == [(req.run_id, int(TICK.timestamp() * 1000), places)]
        assert history.writes == [] and lock.left == []

        # A manual run does not take a place: it waits for the lock like under skip.
        manual = request(trigger=Trigger.MANUAL)
        await attempt(history, jd, manual, "w1@host", lock=lock)  # type: ignore[arg-type]
        assert len(lock.turns) == 1

    asyncio.run(body())


def test_a_tick_refused_a_place_or_past_the_grace_is_recorded_skipped() -> None:
    async def body() -> None:
        history = SpyHistory()
        jd, req = definition(succeed, overlap=Overlap.BUFFER_ONE), request()
        full = TurnLock(holder="active", full=True)
        out = await attempt(history, jd, req, "w1@host", lock=full)  # type: ignore[arg-type]
        assert out.status is RunStatus.SKIPPED and full.left == []  # it had no place
        assert "already waiting" in (out.message or "")

        late = dataclasses.replace(request(), scheduled_for=datetime(2020, 1, 1, tzinfo=UTC))
        lock = TurnLock(holder="active")
        out = await attempt(history, jd, late, "w1@host", lock=lock)  # type: ignore[arg-type]
        assert out.status is RunStatus.SKIPPED and lock.left == [late.run_id]
        assert "past the misfire grace" in (out.message or "")
        run = await history.get_run(late.run_id)
        assert run is not None and run.status is RunStatus.SKIPPED

    asyncio.run(body())


def test_terminate_other_waits_for_an_active_run_not_yet_recorded() -> None:
    """No kill before the active run is recorded cancelled: killed unrecorded, it would
    vanish from history (its process cannot record anything any more)."""

    async def body() -> None:
        history = SpyHistory()
        jd, req = definition(succeed, overlap=Overlap.TERMINATE_OTHER), request()
        cancels = FakeCancels()
        lock = FakeLock(holder="claim-under-way", cancels=cancels)
        out = await attempt(history, jd, req, "w1@host", lock=lock, cancels=cancels)  # type: ignore[arg-type]
        assert (out.action, out.terminate) == (Action.REQUEUE, None) and lock.released == []

    asyncio.run(body())


def test_under_terminate_other_a_first_attempt_is_recorded_before_it_runs() -> None:
    async def body() -> None:
        history = SpyHistory()
        jd, req = definition(succeed, overlap=Overlap.TERMINATE_OTHER), request()
        out = await attempt(history, jd, req, "w1@host", lock=FakeLock())  # type: ignore[arg-type]
        assert out.status is RunStatus.SUCCEEDED and history.writes == ["start", "finish"]

    asyncio.run(body())


class DownHistory(SpyHistory):
    """A history whose ``broken`` write raises, as PostgreSQL being down makes it."""

    def __init__(self, broken: str) -> None:
        super().__init__()
        self.broken = broken

    async def start_attempt(self, start: AttemptStart) -> Claim:
        if self.broken == "start":
            raise ConnectionError("history is down")
        return await super().start_attempt(start)

    async def finish_attempt(self, run_id: str, attempt: int, end: AttemptEnd) -> bool:
        if self.broken == "finish":
            raise ConnectionError("history is down")
        return await super().finish_attempt(run_id, attempt, end)

    async def settle_attempt(
        self, start: AttemptStart, started_at: datetime, end: AttemptEnd
    ) -> bool:
        if self.broken == "settle":
            raise ConnectionError("history is down")
        return await super().settle_attempt(start, started_at, end)


@pytest.mark.parametrize(
    ("broken", "attempt_no", "ran"),
    [("settle", 1, [1]), ("finish", 2, [2]), ("start", 2, [])],
)
def test_a_run_history_could_not_record_keeps_the_lock_for_its_requeue(
    broken: str, attempt_no: int, ran: list[int]
) -> None:
    """The task re-queues the same run: until it comes back no other run of the job may
    start, so the lock stays; the re-queued run takes its own lock again and finishes."""

    async def body() -> None:
        history = DownHistory(broken)
        jd, req = definition(succeed), request(attempt=attempt_no)
        lock = FakeLock()
        with pytest.raises(ConnectionError):
            await attempt(history, jd, req, "w1@host", lock=lock, requeued_on_error=True)  # type: ignore[arg-type]
        assert lock.released == [] and calls(jd) == ran
        lock.holder = req.run_id  # what the Redis lock holds: the same run takes it back

        history.broken = ""
        out = await attempt(history, jd, req, "w1@host", lock=lock, requeued_on_error=True)  # type: ignore[arg-type]
        assert out.status is RunStatus.SUCCEEDED and lock.released == [req.run_id]

    asyncio.run(body())


def test_a_caller_that_does_not_requeue_frees_the_lock_when_history_fails() -> None:
    """``jobs run --inline`` gives up on an error: its lock must not block the job."""

    async def body() -> None:
        jd, req = definition(succeed), request()
        lock = FakeLock()
        with pytest.raises(ConnectionError):
            await attempt(DownHistory("settle"), jd, req, "w1@host", lock=lock)  # type: ignore[arg-type]
        assert lock.released == [req.run_id]

    asyncio.run(body())


def test_a_duplicate_tick_frees_the_lock_though_the_run_is_requeued() -> None:
    """History refusing a second run for a tick fails the same way at every re-queue:
    holding the lock meanwhile would only hold the job's other ticks back."""

    class Conflicting(SpyHistory):
        async def start_attempt(self, start: AttemptStart) -> Claim:
            raise DuplicateTick.of(start.job_key, start.scheduled_for)

    async def body() -> None:
        jd, req = definition(succeed), request(attempt=2)
        lock = FakeLock()
        with pytest.raises(DuplicateTick):
            await attempt(Conflicting(), jd, req, "w1@host", lock=lock, requeued_on_error=True)  # type: ignore[arg-type]
        assert lock.released == [req.run_id] and calls(jd) == []

    asyncio.run(body())


class SlowClaimHistory(MemoryHistory):
    """A history whose writes each take a while, as while PostgreSQL is slow to answer."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def start_attempt(self, start: AttemptStart) -> Claim:
        await asyncio.sleep(self.delay)
        return await super().start_attempt(start)

    async def finish_attempt(self, run_id: str, attempt: int, end: AttemptEnd) -> bool:
        await asyncio.sleep(self.delay)
        return await super().finish_attempt(run_id, attempt, end)


def test_the_clock_times_the_job_alone_not_its_history_writes() -> None:
    """The task's stuck deadline is counted from the job's start: the claim and the end
    write, however slow, are outside the span the clock marks."""

    async def body() -> None:
        history = SlowClaimHistory(0.3)
        inside: list[float] = []

        async def job(ctx: JobContext) -> JobResult:
            inside.append(time.monotonic())
            await asyncio.sleep(0.05)
            inside.append(time.monotonic())
            return JobResult.success()

        clock = execution.JobClock()
        out = await attempt(history, definition(job), request(redelivered=True), "w", clock=clock)
        assert out.status is RunStatus.SUCCEEDED
        assert clock.job_started is not None and clock.job_ended is not None
        assert clock.job_started - clock.submitted >= 0.3  # after the slow claim
        assert clock.job_started <= inside[0] and inside[1] <= clock.job_ended
        assert time.monotonic() - clock.job_ended >= 0.3  # before the slow end write

    asyncio.run(body())


def test_the_clock_marks_the_end_of_a_job_that_timed_out() -> None:
    async def body() -> None:
        async def hang(ctx: JobContext) -> JobResult:
            await asyncio.sleep(60)
            return JobResult.success()

        clock = execution.JobClock()
        out = await attempt(
            MemoryHistory(),
            definition(hang, timeout=0.05, max_attempts=1),
            request(),
            "w",
            clock=clock,
        )
        assert out.status is RunStatus.TIMED_OUT
        assert clock.job_started is not None and clock.job_ended is not None
        assert clock.job_ended - clock.job_started >= 0.05

    asyncio.run(body())
