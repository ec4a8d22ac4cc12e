"""One attempt of one run: overlap lock, history claim, execute with timeout, outcome.

Everything here runs on the worker process's event loop; the Celery task in
:mod:`worker.tasks` turns the :class:`Outcome` into an ack, a retry or a re-queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from jobs_core.context import JobContext, RunInfo
from jobs_core.policy import Overlap
from jobs_core.registry import JobDefinition
from jobs_core.result import JobResult
from jobs_core.status import Action, RunStatus
from jobs_core.store import RunStore
from jobs_core.wire import RunMessage

from .overlap import OverlapLock
from .runtime import WorkerRuntime

log = logging.getLogger("worker.runs")

#: Seconds a job gets, after its timeout cancelled it, to unwind before it counts as
#: ignoring cancellation.
CANCEL_GRACE = 5.0
#: A first attempt still running after this many seconds gets its "running" row.
LAZY_START_S = 0.25
#: The task waits this long past timeout + CANCEL_GRACE before declaring the job stuck.
STUCK_MARGIN = 2.0
MAX_ERROR_CHARS = 8000


#: The worker's name for a validated run message (the wire contract owns its parsing).
TaskRequest = RunMessage


@dataclass(frozen=True)
class Outcome:
    """What an attempt came to: the status history records and what to do next.

    ``status`` is None when nothing was recorded (a duplicate delivery, an overlap wait).
    """

    run_id: str
    job_key: str
    status: RunStatus | None
    action: Action
    attempt: int
    message: str | None = None
    error: str | None = None
    retry_in: float | None = None
    duration_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @property
    def retry_after(self) -> float:
        return self.retry_in or 0.0


def format_error(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc)).strip()
    if len(text) > MAX_ERROR_CHARS:
        text = "...\n" + text[-MAX_ERROR_CHARS:]
    return text


def stuck_after(timeout: float) -> float:
    """Seconds the task waits for an attempt before treating the job as stuck."""
    return timeout + CANCEL_GRACE + STUCK_MARGIN


def hard_time_limit(timeout: float) -> float:
    """Celery's hard limit: the last resort that kills a process whose job neither
    finished nor let the worker record the timeout. It must come after
    :func:`stuck_after` plus the time to record the outcome."""
    return stuck_after(timeout) + min(30.0, max(5.0, timeout / 2))


def lock_ttl(jd: JobDefinition) -> float:
    return hard_time_limit(jd.policy.timeout) + 5


async def run_attempt(
    runtime: WorkerRuntime, jd: JobDefinition, req: TaskRequest, hostname: str
) -> Outcome:
    store = await runtime.store()
    key = jd.key

    if req.skip_reason is not None:
        await _record_skipped(store, jd, req, req.skip_reason)
        log.info("run %s %s skipped: %s", req.run_id, key, req.skip_reason)
        return Outcome(
            req.run_id, key, RunStatus.SKIPPED, Action.ACK, req.attempt, message=req.skip_reason
        )

    lock: OverlapLock | None = None
    # Without Redis (an inline run with no redis_url) there is no one to overlap with.
    if jd.policy.overlap is not Overlap.ALLOW and runtime.redis_url:
        lock = OverlapLock(runtime.redis())
        holder = await lock.acquire(key, req.run_id, lock_ttl(jd))
        if holder is not None:
            if jd.policy.overlap is Overlap.SKIP and req.trigger.is_tick:
                reason = f"skipped: run {holder} of {key} was still active (overlap: skip)"
                await _record_skipped(store, jd, req, reason)
                log.info("run %s %s %s", req.run_id, key, reason)
                return Outcome(
                    req.run_id, key, RunStatus.SKIPPED, Action.ACK, req.attempt, message=reason
                )
            # overlap: queue (and manual runs, which an operator asked for explicitly):
            # wait for the active run without holding a worker slot.
            return Outcome(req.run_id, key, None, Action.REQUEUE, req.attempt, retry_in=1.0)

    try:
        return await _claimed_attempt(runtime, store, jd, req, hostname)
    finally:
        if lock is not None:
            await lock.release(key, req.run_id)


async def _record_skipped(
    store: RunStore | None, jd: JobDefinition, req: TaskRequest, reason: str
) -> None:
    if store is not None:
        await store.create_run(
            run_id=req.run_id,
            job_key=jd.key,
            trigger=req.trigger,
            scheduled_for=req.scheduled_for,
            max_attempts=jd.policy.retry.max_attempts,
            status=RunStatus.SKIPPED,
            message=reason,
        )


async def _claimed_attempt(
    runtime: WorkerRuntime,
    store: RunStore | None,
    jd: JobDefinition,
    req: TaskRequest,
    hostname: str,
) -> Outcome:
    key = jd.key
    retry = jd.policy.retry
    parameters = {**jd.parameters, **req.parameters}
    start_args: dict[str, Any] = {
        "run_id": req.run_id,
        "job_key": key,
        "trigger": req.trigger,
        "attempt": req.attempt,
        "max_attempts": retry.max_attempts,
        "worker": hostname,
        "scheduled_for": req.scheduled_for,
        "enqueued_at": req.enqueued_at,
        "parameters": parameters,
    }
    # Lazy start: a first delivery of a first attempt cannot have run before (kombu
    # flags every redelivery), so its "running" row is written only if it lasts longer
    # than LAZY_START_S, and a quick run costs one history statement instead of two.
    lazy = store is not None and req.attempt == 1 and not req.redelivered
    marker: asyncio.TimerHandle | None = None
    marking: list[asyncio.Future[Any]] = []
    started_at = datetime.now(UTC)
    if store is not None and lazy:
        marker = asyncio.get_running_loop().call_later(
            LAZY_START_S,
            lambda: marking.append(asyncio.ensure_future(store.start_attempt(**start_args))),
        )
    elif store is not None:
        claim = await store.start_attempt(**start_args)
        if not claim.started:
            log.info(
                "run %s %s attempt %d not started: already %s (redelivered message)",
                req.run_id,
                key,
                req.attempt,
                claim.status,
            )
            return Outcome(
                req.run_id, key, None, Action.DUPLICATE, req.attempt, message=claim.status
            )
        if claim.took_over:
            log.warning("run %s %s: taking over from a worker that died", req.run_id, key)

    run = RunInfo(
        run_id=req.run_id,
        job_key=key,
        attempt=req.attempt,
        max_attempts=retry.max_attempts,
        scheduled_for=req.scheduled_for,
        trigger=req.trigger,
    )
    ctx = JobContext(
        run=run,
        db_pool_factory=runtime.db_pool if runtime.database_url else None,
        config=jd.config,
        parameters=parameters,
        services={RunStore: store} if store is not None else {},
        logger=logging.getLogger(f"jobs.{key}"),
    )
    log.info("run %s %s attempt %d/%d started", req.run_id, key, req.attempt, retry.max_attempts)
    started = time.monotonic()
    result: JobResult | None = None
    error: str | None = None
    timed_out = False
    try:
        value = await asyncio.wait_for(jd.job.execute(ctx), jd.policy.timeout)
        if isinstance(value, JobResult):
            result = value
        else:
            result = JobResult.failure(
                f"execute() returned {type(value).__name__}, expected a JobResult"
            )
    except TimeoutError:
        timed_out = True
        error = f"timed out after {jd.policy.timeout:g}s"
    except Exception as exc:
        error = format_error(exc)
    elapsed_ms = int((time.monotonic() - started) * 1000)

    if result is not None:
        status = RunStatus.SUCCEEDED if result.success else RunStatus.FAILED
        duration = result.duration_ms if result.duration_ms is not None else elapsed_ms
        outcome = Outcome(
            req.run_id,
            key,
            status,
            Action.ACK,
            req.attempt,
            message=result.message,
            duration_ms=duration,
        )
        finish: dict[str, Any] = {
            "message": result.message,
            "items_processed": result.items_processed,
            "items_failed": result.items_failed,
            "data": result.data,
            "duration_ms": duration,
        }
    else:
        final = RunStatus.TIMED_OUT if timed_out else RunStatus.FAILED
        delay = None if run.is_last_attempt else retry.delay(req.attempt)
        status = final if delay is None else RunStatus.RETRYING
        first_line = (error or "").strip().splitlines()[-1] if error else None
        outcome = Outcome(
            req.run_id,
            key,
            status,
            Action.ACK if delay is None else Action.RETRY,
            req.attempt,
            message=first_line,
            error=error,
            retry_in=delay,
            duration_ms=elapsed_ms,
        )
        finish = {"message": first_line, "error": error, "duration_ms": elapsed_ms}
        if delay is not None:
            finish["next_attempt_at"] = datetime.now(UTC) + timedelta(seconds=delay)
    if marker is not None:
        marker.cancel()
    for pending in marking:  # the "running" row, if written, comes before the outcome
        try:
            await pending
        except Exception:
            log.warning("run %s %s: could not mark it running", req.run_id, key, exc_info=True)
    if store is not None and lazy:
        settled = await store.settle_attempt(
            job_key=key,
            trigger=req.trigger,
            max_attempts=retry.max_attempts,
            worker=hostname,
            scheduled_for=req.scheduled_for,
            enqueued_at=req.enqueued_at,
            started_at=started_at,
            parameters=parameters,
            run_id=req.run_id,
            attempt=req.attempt,
            status=status,
            **finish,
        )
        if not settled:
            log.warning(
                "run %s %s: history already had this run finished; outcome %s not recorded",
                req.run_id,
                key,
                status,
            )
    elif store is not None:
        await store.finish_attempt(run_id=req.run_id, attempt=req.attempt, status=status, **finish)
    _log_outcome(outcome, retry.max_attempts)
    return outcome


def _log_outcome(o: Outcome, max_attempts: int) -> None:
    where = f"run {o.run_id} {o.job_key} attempt {o.attempt}/{max_attempts}"
    if o.status is RunStatus.SUCCEEDED:
        log.info("%s succeeded in %s ms: %s", where, o.duration_ms, o.message or "")
    elif o.action is Action.RETRY:
        log.warning("%s failed, retrying in %.1fs: %s", where, o.retry_in or 0, o.message)
    else:
        log.error("%s %s: %s", where, o.status, o.message)
