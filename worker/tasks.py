"""One Celery task per job: the synchronous shell around :func:`run_attempt`."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery, Task

from jobs_core.errors import JobsError
from jobs_core.history_pg import settle_attempt_sync
from jobs_core.logjson import in_run_context, run_context
from jobs_core.redis_url import parse_redis_url
from jobs_core.registry import JobDefinition, JobRegistry
from jobs_core.status import Action
from jobs_core.wire import Keys, task_name

from . import metrics
from .execution import (
    CANCEL_GRACE,
    JobClock,
    Phase,
    TaskRequest,
    attempt_start,
    hard_time_limit,
    run_attempt,
    stuck_after,
)
from .outcome import Outcome, TimedOut, decide
from .runtime import WorkerRuntime

log = logging.getLogger("worker.tasks")

#: A run whose infrastructure (PostgreSQL, Redis) fails is put back this many times
#: at most, so an outage delays runs instead of losing them. Counted in the message
#: (``infra_errors``), apart from job retries and overlap waits.
MAX_INFRA_RETRIES = 100
INFRA_RETRY_DELAY = 5.0


class AttemptStalled(JobsError):
    """An attempt's history or Redis calls, before or after its job, outlasted what the
    task grants them: an infrastructure error, not a stuck job."""


class StuckJob(JobsError):
    """The job outlasted its timeout and the grace to unwind after its cancellation."""


def wait_for_attempt(
    future: concurrent.futures.Future[Outcome], clock: JobClock, timeout: float
) -> Outcome:
    """The attempt's outcome, waiting for its job no longer than its timeout + grace
    from the job's own start, and for its infrastructure calls within their own bounds.

    Raises :class:`StuckJob` or :class:`AttemptStalled` (the attempt is then cancelled).
    """
    while True:
        look = clock.look(timeout)
        if look.now >= look.deadline:
            if future.done():
                return future.result()
            break
        try:
            # Woken only by the outcome, or when the clock must be read again.
            future.exception(look.again - look.now)
        except concurrent.futures.TimeoutError:
            continue
        return future.result()
    phase, deadline = look.phase, look.deadline
    if phase is Phase.JOB:
        raise StuckJob(f"the job ran past {stuck_after(timeout):g}s")
    future.cancel()
    since = clock.submitted if phase is Phase.SETUP else (clock.job_ended or deadline)
    raise AttemptStalled(
        f"no outcome {deadline - since:g}s into its {phase.value} (history or Redis calls)"
    )


def register_job_tasks(app: Celery, registry: JobRegistry, runtime: WorkerRuntime) -> None:
    for jd in registry:
        _register(app, jd, runtime)


def _register(app: Celery, jd: JobDefinition, runtime: WorkerRuntime) -> None:
    @app.task(  # type: ignore[untyped-decorator]
        name=task_name(jd.key),
        bind=True,
        queue=jd.policy.queue,
        time_limit=hard_time_limit(jd.policy.timeout),
        acks_late=True,
        typing=False,
        ignore_result=True,
        Strategy="worker.screening:strategy",
        # The profile's retry policy and the overlap wait decide when a run stops coming
        # back; Celery's own limit (3 retries) would drop a run that waits or retries more.
        max_retries=None,
    )
    def job_task(self: Task, *args: Any, **kwargs: Any) -> str:
        with run_context(str(kwargs.get("run_id")), jd.key), metrics.METRICS.attempt(jd.key):
            return execute_task(self, runtime, jd, kwargs).brief()


def execute_task(
    task: Task, runtime: WorkerRuntime, jd: JobDefinition, kwargs: dict[str, Any]
) -> Outcome:
    req = TaskRequest.from_kwargs(kwargs)
    delivery = task.request.delivery_info or {}
    if delivery.get("redelivered"):
        req = dataclasses.replace(req, redelivered=True)
    hostname = task.request.hostname or socket.gethostname()
    # The last infrastructure retry gives up instead of re-queueing: its lock is freed.
    requeued = req.infra_errors < MAX_INFRA_RETRIES
    clock = JobClock()
    coro = run_attempt(runtime, jd, req, hostname, requeued_on_error=requeued, clock=clock)
    future = runtime.loop.submit(in_run_context(coro, req.run_id, jd.key))
    try:
        # The job's own timeout fires inside; this outer wait only trips when the job
        # ignores cancellation (or blocks the loop with synchronous work), or when a
        # history or Redis call hangs (an infrastructure error, below).
        try:
            outcome = wait_for_attempt(future, clock, jd.policy.timeout)
        except StuckJob:
            outcome = _abandon_stuck_attempt(runtime, jd, req, hostname)
    except Exception as exc:
        metrics.METRICS.infra_error(jd.key)
        if not requeued:
            log.error(
                "run %s %s: giving up after %d infrastructure errors",
                req.run_id,
                jd.key,
                req.infra_errors,
            )
            raise
        log.error(
            "run %s %s: infrastructure error, re-queued in %.0fs: %s",
            req.run_id,
            jd.key,
            INFRA_RETRY_DELAY,
            exc,
        )
        raise task.retry(
            kwargs=req.after_infra_error_kwargs(),
            countdown=INFRA_RETRY_DELAY,
            max_retries=None,
            exc=exc,
        ) from exc
    metrics.METRICS.outcome(jd.key, outcome.status, outcome.action, outcome.duration_ms)
    if outcome.terminate is not None:
        # overlap: terminate_other. The same kill as `jobs cancel --terminate`: the
        # worker running that run (its task id) kills the pool child running it.
        task.app.control.revoke(outcome.terminate, terminate=True, signal="SIGKILL")
    if outcome.action is Action.RETRY:
        raise task.retry(
            kwargs=req.next_attempt_kwargs(), countdown=outcome.retry_in, max_retries=None
        )
    if outcome.action is Action.REQUEUE:
        raise task.retry(kwargs=req.to_kwargs(), countdown=outcome.retry_in, max_retries=None)
    return outcome


def _abandon_stuck_attempt(
    runtime: WorkerRuntime, jd: JobDefinition, req: TaskRequest, hostname: str
) -> Outcome:
    """Record a timeout for a job that did not stop when cancelled, then move on."""
    error = (
        f"timed out after {jd.policy.timeout:g}s and ignored cancellation for "
        f"{CANCEL_GRACE:g}s; its worker thread was abandoned"
    )
    now = datetime.now(UTC)
    out, end = decide(
        TimedOut(error),
        run_id=req.run_id,
        job_key=jd.key,
        attempt=req.attempt,
        retry=jd.policy.retry,
        elapsed_ms=int((jd.policy.timeout + CANCEL_GRACE) * 1000),
        now=now,
    )
    if runtime.database_url:
        try:
            # An upsert: the run may never have been marked running (lazy start, and
            # the job blocked the loop before the marker could be written).
            started_at = now - timedelta(seconds=stuck_after(jd.policy.timeout))
            start = attempt_start(jd, req, hostname)
            settle_attempt_sync(runtime.database_url, start, started_at, end)
        except Exception:
            # Acknowledged or retried with nothing recorded, the run would be lost to
            # history: it is re-queued as an infrastructure error instead, keeping its
            # overlap lock (the abandoned job may still be running).
            log.exception("run %s %s: could not record the timeout", req.run_id, jd.key)
            if not runtime.loop.responsive():
                runtime.abandon_loop()
            raise
    try:
        from .redis_client import connect

        client = connect(parse_redis_url(runtime.redis_url or ""), socket_timeout=5)
        if client.get(Keys.lock(jd.key)) == req.run_id.encode():
            client.delete(Keys.lock(jd.key))
        client.close()
    except Exception:
        log.exception("run %s %s: could not release the overlap lock", req.run_id, jd.key)
    if not runtime.loop.responsive():
        runtime.abandon_loop()
    log.error("run %s %s attempt %d: %s", req.run_id, jd.key, req.attempt, error)
    return out
