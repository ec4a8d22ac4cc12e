"""One attempt of one run: overlap lock, history writes, the job under its timeout.

Everything here runs on the worker process's event loop. What an attempt came to is
decided by :mod:`worker.outcome`; the Celery task in :mod:`worker.tasks` turns the
:class:`~worker.outcome.Outcome` into an ack, a retry or a re-queue.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from jobs_core.context import JobContext, RunInfo
from jobs_core.errors import DuplicateTick
from jobs_core.history import AttemptEnd, AttemptStart, Claim, RunHistory
from jobs_core.policy import Overlap
from jobs_core.registry import JobDefinition
from jobs_core.status import Action, RunStatus, Trigger
from jobs_core.wire import RunMessage

from . import outcome
from .cancel import CancelRequest, CancelRequests
from .outcome import Busy, Cancelled, Execution, Outcome, Raised, Returned, TimedOut, format_error
from .overlap import Admission, OverlapLock, release_after_run
from .runtime import HISTORY_WAIT, WorkerRuntime

log = logging.getLogger("worker.runs")

#: Seconds a job gets, after its timeout cancelled it, to unwind before it counts as
#: ignoring cancellation.
CANCEL_GRACE = 5.0
#: A first attempt still running after this many seconds gets its "running" row.
LAZY_START_S = 0.25
#: The task waits this long past timeout + CANCEL_GRACE before declaring the job stuck.
STUCK_MARGIN = 2.0
#: What the task grants an attempt before its job starts (history pool opening, overlap
#: lock, claim) and after it ends (lazy "running" record, end): each history write fails
#: within HISTORY_WAIT when PostgreSQL is away, so these only trip when a write hangs.
SETUP_WAIT = 3 * HISTORY_WAIT
FINISH_WAIT = 2 * HISTORY_WAIT + STUCK_MARGIN


#: The worker's name for a validated run message (the wire contract owns its parsing).
TaskRequest = RunMessage


def stuck_after(timeout: float) -> float:
    """Seconds the task waits for an attempt before treating the job as stuck."""
    return timeout + CANCEL_GRACE + STUCK_MARGIN


def hard_time_limit(timeout: float) -> float:
    """Celery's hard limit: the last resort that kills a process whose job neither
    finished nor let the worker record the timeout. It must come after everything the
    task waits for (:func:`attempt_deadline` at its latest) plus the time to record the
    outcome: Celery acknowledges a message whose task hit this limit."""
    return SETUP_WAIT + stuck_after(timeout) + FINISH_WAIT + min(30.0, max(5.0, timeout / 2))


class Phase(enum.Enum):
    """Where an attempt is, as the task waiting for it sees it."""

    SETUP = "setup"  # gates and claim: history and Redis
    JOB = "job"  # the job's own coroutine
    FINISH = "finish"  # the end write


def attempt_deadline(
    timeout: float, submitted: float, job_started: float | None, job_ended: float | None
) -> tuple[Phase, float]:
    """The phase an attempt is in and the monotonic instant the task stops waiting for it.

    Only the job's own execution is held to its timeout (+ grace): time spent waiting
    for PostgreSQL or Redis before or after it is an infrastructure wait, bounded apart.
    """
    if job_started is None:
        return Phase.SETUP, submitted + SETUP_WAIT
    if job_ended is None:
        return Phase.JOB, job_started + stuck_after(timeout)
    return Phase.FINISH, job_ended + FINISH_WAIT


@dataclasses.dataclass
class JobClock:
    """When the job of one attempt started and ended (monotonic), set on the event loop
    and read by the task's thread.

    The task's thread is not woken at each step (two thread switches per run): a step's
    instant is taken under the clock's lock, so it is never earlier than a read that did
    not see it, and no later phase can bring a deadline before the read instant plus the
    shortest span a later phase grants (:meth:`look`). The task waits for the outcome
    until then, reads again, and so still stops at each phase's exact deadline.
    """

    submitted: float = dataclasses.field(default_factory=time.monotonic)
    job_started: float | None = None
    job_ended: float | None = None
    _lock: threading.Lock = dataclasses.field(
        default_factory=threading.Lock, repr=False, compare=False
    )

    def start(self) -> float:
        """Mark the job started now; returns that instant."""
        with self._lock:
            self.job_started = at = time.monotonic()
        return at

    def end(self) -> float:
        """Mark the job ended now; returns that instant."""
        with self._lock:
            self.job_ended = at = time.monotonic()
        return at

    def deadline(self, timeout: float) -> tuple[Phase, float]:
        return attempt_deadline(timeout, self.submitted, self.job_started, self.job_ended)

    def look(self, timeout: float) -> Look:
        """The phase now, its deadline, and the instant to read the clock again."""
        with self._lock:
            now = time.monotonic()
            phase, deadline = self.deadline(timeout)
        if phase is Phase.SETUP:  # the job may start (and end) right after this read
            again = min(deadline, now + min(stuck_after(timeout), FINISH_WAIT))
        elif phase is Phase.JOB:  # the job may end right after this read
            again = min(deadline, now + FINISH_WAIT)
        else:
            again = deadline
        return Look(phase, deadline, now, again)


@dataclasses.dataclass(frozen=True)
class Look:
    """One read of a :class:`JobClock` (monotonic instants): the ``phase`` at ``now``,
    its ``deadline``, and ``again``: no later phase's deadline can come before it."""

    phase: Phase
    deadline: float
    now: float
    again: float


def lock_ttl(jd: JobDefinition) -> float:
    return hard_time_limit(jd.policy.timeout) + 5


async def run_attempt(
    runtime: WorkerRuntime,
    jd: JobDefinition,
    req: TaskRequest,
    hostname: str,
    *,
    requeued_on_error: bool = False,
    clock: JobClock | None = None,
) -> Outcome:
    """One attempt with the process's resources: its history, Redis lock and DB pool.

    ``requeued_on_error``, ``clock``: see :func:`attempt`.
    """
    lock = None
    cancels = None
    # Without Redis (an inline run with no redis_url) there is no one to overlap with,
    # and no one to cancel it.
    if runtime.redis_url:
        cancels, overlap_lock = runtime.gates()
        if jd.policy.overlap is not Overlap.ALLOW:
            lock = overlap_lock
    return await attempt(
        await runtime.history(),
        jd,
        req,
        hostname,
        lock=lock,
        cancels=cancels,
        db_pool_factory=runtime.db_pool if runtime.database_url else None,
        requeued_on_error=requeued_on_error,
        clock=clock,
    )


async def attempt(
    history: RunHistory,
    jd: JobDefinition,
    req: TaskRequest,
    hostname: str,
    *,
    lock: OverlapLock | None = None,
    cancels: CancelRequests | None = None,
    db_pool_factory: Callable[[], Any] | None = None,
    requeued_on_error: bool = False,
    clock: JobClock | None = None,
) -> Outcome:
    """Run one attempt of ``req``: gates (skip, cancel, overlap), claim, execute, record.

    ``clock``: told when the job starts and ends, for the task's stuck deadline.

    ``requeued_on_error``: the caller puts this same run back on the queue when the
    attempt raises (history could not record its claim or its end: an infrastructure
    error). The overlap lock then stays with the run, to its TTL, so no other run of the
    job starts before it comes back and takes its own lock again.
    """
    key = jd.key
    if req.skip_reason is not None:
        out = outcome.skipped(req.run_id, key, req.attempt, req.skip_reason)
        await _record_skipped(history, jd, req, req.skip_reason)
        log.info("run %s %s skipped: %s", req.run_id, key, req.skip_reason)
        return out

    backfilled = False
    admitted: Admission | None = None
    if cancels is not None:
        if lock is not None and not _waits_in_turn(jd, req):
            # The usual case: cancel request, backfill mark and lock in one round trip.
            admitted = await lock.admit(key, req.run_id, lock_ttl(jd))
            request, backfilled = admitted.cancel, admitted.backfilled
        else:
            request, backfilled = await cancels.before_start(req.run_id)
        if request is not None:
            out = outcome.cancelled(req.run_id, key, req.attempt, request.by)
            await history.cancel_run(req.run_id, by=request.by, message=out.message or "")
            if lock is not None:
                # It may hold a place among the waiting ticks, or (re-queued after its
                # worker died) the lock itself.
                await lock.leave(key, req.run_id)
                await lock.release(key, req.run_id)
            log.info("run %s %s %s", req.run_id, key, out.message)
            return out

    if lock is not None:
        busy = await _when_busy(history, jd, req, lock, cancels, admitted)
        if busy is not None:
            return busy

    keep_lock = False
    try:
        return await _claimed_attempt(
            history, jd, req, hostname, db_pool_factory, cancels, backfilled=backfilled, clock=clock
        )
    except (Exception, asyncio.CancelledError) as exc:
        # The job may have run (or be recorded running) with its end unknown to history:
        # until the re-queued run settles it, the job counts as active. So too when the
        # task cancels an attempt whose history or Redis calls stalled (it re-queues it
        # the same way). A duplicate tick is a conflict, not an outage: it fails alike
        # every time, holding nothing back.
        keep_lock = lock is not None and requeued_on_error and not isinstance(exc, DuplicateTick)
        if keep_lock:
            log.warning(
                "run %s %s: not recorded (infrastructure error); the job's overlap lock "
                "stays with this run until it comes back",
                req.run_id,
                key,
            )
        raise
    finally:
        if lock is not None and not keep_lock:
            await release_after_run(lock, key, req.run_id)


def started_before(req: TaskRequest) -> bool:
    """The run may have started already: a retry, or a message delivered again."""
    return req.attempt > 1 or req.redelivered


def _waits_in_turn(jd: JobDefinition, req: TaskRequest) -> bool:
    """A buffered tick takes a place among the job's waiting ticks instead of trying
    the lock directly."""
    return (
        jd.policy.overlap.buffers
        and req.trigger.is_tick
        and not started_before(req)
        and req.scheduled_for is not None
    )


async def _when_busy(
    history: RunHistory,
    jd: JobDefinition,
    req: TaskRequest,
    lock: OverlapLock,
    cancels: CancelRequests | None,
    admitted: Admission | None = None,
) -> Outcome | None:
    """Take the job's overlap lock (unless ``admitted`` already tried it), or say what
    this run does instead (None: taken)."""
    key, overlap = jd.key, jd.policy.overlap
    started = started_before(req)
    in_turn = _waits_in_turn(jd, req)
    if admitted is not None:
        holder, full = admitted.holder, False
    elif in_turn and req.scheduled_for is not None:
        places = 1 if overlap is Overlap.BUFFER_ONE else 0
        order_ms = int(req.scheduled_for.timestamp() * 1000)
        turn = await lock.take_turn(key, req.run_id, lock_ttl(jd), order_ms=order_ms, places=places)
        holder, full = turn.holder, turn.full
    else:
        holder, full = await lock.acquire(key, req.run_id, lock_ttl(jd)), False
    if holder is None:
        return None
    late_s = None
    if req.scheduled_for is not None:
        late_s = (datetime.now(UTC) - req.scheduled_for).total_seconds()
    busy = outcome.on_busy(
        overlap,
        req.trigger,
        started=started,
        late_s=late_s,
        grace=jd.policy.misfire_grace,
        buffer_full=full,
    )
    reason = outcome.busy_reason(busy, key, holder, overlap, full=full)
    out = outcome.when_busy(req.run_id, key, req.attempt, busy, reason=reason)
    if busy is Busy.SKIP:
        if in_turn and not full:
            await lock.leave(key, req.run_id)
        await _record_skipped(history, jd, req, reason)
        log.info("run %s %s %s", req.run_id, key, reason)
    elif busy in (Busy.CANCEL_ACTIVE, Busy.TERMINATE_ACTIVE) and cancels is not None:
        terminate = busy is Busy.TERMINATE_ACTIVE
        by = f"run {req.run_id} ({reason})"
        await cancels.request(holder, CancelRequest(by, terminate=terminate), first=True)
        if terminate:
            message = f"cancelled by {by}; its process was terminated"
            done = await history.cancel_run(holder, by=by, message=message)
            # Killed only once recorded cancelled: a run not yet recorded (its claim
            # is under way) or finishing by itself is waited for instead.
            if done.changed or done.status is RunStatus.CANCELLED:
                log.warning("run %s %s: terminating active run %s", req.run_id, key, holder)
                # The task kills its process (a Celery revoke); the lock it held is
                # freed here, compare-and-delete, so this run takes it at its next try.
                await lock.release(key, holder)
                out = dataclasses.replace(out, terminate=holder)
        else:
            log.info("run %s %s: asked active run %s to cancel", req.run_id, key, holder)
    return out


def attempt_start(jd: JobDefinition, req: TaskRequest, hostname: str) -> AttemptStart:
    return AttemptStart(
        run_id=req.run_id,
        job_key=jd.key,
        trigger=req.trigger,
        attempt=req.attempt,
        max_attempts=jd.policy.retry.max_attempts,
        worker=hostname,
        scheduled_for=req.scheduled_for,
        enqueued_at=req.enqueued_at,
        parameters={**jd.parameters, **req.parameters},
        triggered_by=req.triggered_by,
        reason=req.reason,
    )


async def _record_skipped(
    history: RunHistory, jd: JobDefinition, req: TaskRequest, reason: str
) -> None:
    await history.create_run(
        run_id=req.run_id,
        job_key=jd.key,
        trigger=req.trigger,
        scheduled_for=req.scheduled_for,
        max_attempts=jd.policy.retry.max_attempts,
        status=RunStatus.SKIPPED,
        message=reason,
        triggered_by=req.triggered_by,
        reason=req.reason,
    )


class AttemptRecorder:
    """The history writes of one attempt: its claim, now or lazily, then its end.

    Lazy start: a first delivery of a first attempt cannot have run before (kombu flags
    every redelivery), so its "running" record is written only if it lasts longer than
    LAZY_START_S, and a quick run costs one history statement instead of two.
    """

    def __init__(self, history: RunHistory, start: AttemptStart, *, lazy: bool) -> None:
        self.history = history
        self.start = start
        self.lazy = lazy
        self.started_at = datetime.now(UTC)
        self._marker: asyncio.TimerHandle | None = None
        self._marking: asyncio.Future[Claim] | None = None

    async def claim(self) -> Claim | None:
        """The claim, or None when it is deferred (lazy start)."""
        if self.lazy:
            self._marker = asyncio.get_running_loop().call_later(LAZY_START_S, self._mark)
            return None
        return await self.history.start_attempt(self.start)

    def _mark(self) -> None:
        self._marking = asyncio.ensure_future(self.history.start_attempt(self.start))

    async def finish(self, end: AttemptEnd) -> bool:
        """Record the end; False when history refused it (the run finished meanwhile)."""
        if self._marker is not None:
            self._marker.cancel()
        if self._marking is not None:  # the "running" record comes before the end
            try:
                await self._marking
            except Exception:
                log.warning("run %s: could not mark it running", self.start.run_id, exc_info=True)
        if self.lazy:
            return await self.history.settle_attempt(self.start, self.started_at, end)
        return await self.history.finish_attempt(self.start.run_id, self.start.attempt, end)


async def _claimed_attempt(
    history: RunHistory,
    jd: JobDefinition,
    req: TaskRequest,
    hostname: str,
    db_pool_factory: Callable[[], Any] | None,
    cancels: CancelRequests | None = None,
    *,
    backfilled: bool = False,
    clock: JobClock | None = None,
) -> Outcome:
    key = jd.key
    retry = jd.policy.retry
    start = attempt_start(jd, req, hostname)
    # A tick that both a backfill and the beat sent has two first deliveries: claim
    # before running, so the second finds the run taken (or finished) and is refused.
    # Under terminate_other the run is recorded before it runs: a newer tick records
    # it cancelled before killing its process, which then cannot record anything.
    lazy = (
        req.attempt == 1
        and not req.redelivered
        and req.trigger is not Trigger.BACKFILL
        and not backfilled
        and jd.policy.overlap is not Overlap.TERMINATE_OTHER
    )
    recorder = AttemptRecorder(history, start, lazy=lazy)
    claim = await recorder.claim()
    if claim is not None and not claim.started:
        log.info(
            "run %s %s attempt %d not started: already %s (redelivered message)",
            req.run_id,
            key,
            req.attempt,
            claim.status,
        )
        return outcome.duplicate(req.run_id, key, req.attempt, claim.status)
    if claim is not None and claim.took_over:
        log.warning("run %s %s: taking over from a worker that died", req.run_id, key)

    ctx = JobContext(
        run=RunInfo(
            run_id=req.run_id,
            job_key=key,
            attempt=req.attempt,
            max_attempts=retry.max_attempts,
            scheduled_for=req.scheduled_for,
            trigger=req.trigger,
        ),
        db_pool_factory=db_pool_factory,
        config=jd.config,
        parameters=start.parameters,
        services={RunHistory: history},
        logger=logging.getLogger(f"jobs.{key}"),
    )
    log.info("run %s %s attempt %d/%d started", req.run_id, key, req.attempt, retry.max_attempts)
    execution, elapsed_ms = await _execute(jd, ctx, cancels, clock)
    out, end = outcome.decide(
        execution,
        run_id=req.run_id,
        job_key=key,
        attempt=req.attempt,
        retry=retry,
        elapsed_ms=elapsed_ms,
        now=datetime.now(UTC),
    )
    if not await recorder.finish(end):
        log.warning(
            "run %s %s: history already had this run finished; outcome %s not recorded",
            req.run_id,
            key,
            end.status,
        )
    _log_outcome(out, retry.max_attempts)
    return out


async def _execute(
    jd: JobDefinition,
    ctx: JobContext,
    cancels: CancelRequests | None = None,
    clock: JobClock | None = None,
) -> tuple[Execution, int]:
    """Run the job under its timeout, watching for a cancel request; returns what
    happened and the elapsed ms."""
    started = clock.start() if clock is not None else time.monotonic()
    execution: Execution
    job = asyncio.ensure_future(jd.job.execute(ctx))
    watch = cancels.watch(ctx.run.run_id, job) if cancels is not None else None
    try:
        async with asyncio.timeout(jd.policy.timeout) as deadline:
            execution = Returned(await job)
    except TimeoutError as exc:
        if deadline.expired():
            execution = TimedOut(f"timed out after {jd.policy.timeout:g}s")
        else:  # the job's own TimeoutError (a socket, a lock): an ordinary failure
            execution = Raised(format_error(exc))
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if watch is None or watch.found is None or (current and current.cancelling()):
            raise  # this attempt itself is being cancelled (shutdown): not a run's cancel
        execution = Cancelled(watch.found.by)
    except Exception as exc:
        execution = Raised(format_error(exc))
    finally:
        if watch is not None:
            watch.stop()
        if clock is not None:
            clock.end()
    asked = watch.outcome() if watch is not None else None
    if asked is not None:
        # Asked to cancel: whatever the job did once cancelled, the run is cancelled.
        execution = Cancelled(asked.by)
    return execution, int((time.monotonic() - started) * 1000)


def _log_outcome(o: Outcome, max_attempts: int) -> None:
    where = f"run {o.run_id} {o.job_key} attempt {o.attempt}/{max_attempts}"
    if o.status is RunStatus.SUCCEEDED:
        log.info("%s succeeded in %s ms: %s", where, o.duration_ms, o.message or "")
    elif o.action is Action.RETRY:
        log.warning("%s failed, retrying in %.1fs: %s", where, o.retry_in or 0, o.message)
    else:
        log.error("%s %s: %s", where, o.status, o.message)
