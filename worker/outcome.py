"""What an attempt came to: the status history records and what the worker does next.

Pure functions of what happened (no I/O, the clock handed in as ``now``).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from jobs_core.history import AttemptEnd
from jobs_core.policy import Overlap, RetryPolicy
from jobs_core.result import JobResult
from jobs_core.status import Action, RunStatus, Trigger
from jobs_core.text import cut

MAX_ERROR_CHARS = 8000
#: The message's share of :meth:`Outcome.brief`.
BRIEF_MESSAGE_CHARS = 120
#: Seconds before a run waiting for the active run of its job (overlap) tries again.
OVERLAP_WAIT_S = 1.0


@dataclass(frozen=True)
class Returned:
    """``execute()`` returned ``value`` (a JobResult, unless the job is wrong)."""

    value: object


@dataclass(frozen=True)
class Raised:
    """``execute()`` raised; ``error`` is the formatted traceback."""

    error: str


@dataclass(frozen=True)
class TimedOut:
    """The job outlived its timeout; ``error`` says by how much."""

    error: str


@dataclass(frozen=True)
class Cancelled:
    """A cancel request (``by`` whom) cancelled ``execute()`` while it ran."""

    by: str


Execution = Returned | Raised | TimedOut | Cancelled


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
    #: The run id whose process the task kills (``overlap: terminate_other``).
    terminate: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def brief(self) -> str:
        """One short line: what the Celery task returns (Flower shows it; the record is
        in history). Celery repr()s, pickles and publishes a task's return value on
        every run, so a whole outcome with its traceback would cost every run that."""
        status = self.status.value if self.status is not None else "not recorded"
        return f"{status}: {cut(self.message, BRIEF_MESSAGE_CHARS)}" if self.message else status

    @property
    def retry_after(self) -> float:
        return self.retry_in or 0.0


def format_error(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc)).strip()
    if len(text) > MAX_ERROR_CHARS:
        text = "...\n" + text[-MAX_ERROR_CHARS:]
    return text


def _summary(error: str) -> str | None:
    """The last line of a traceback: the exception and its message."""
    lines = error.strip().splitlines()
    return lines[-1] if lines else None


def decide(
    execution: Execution,
    *,
    run_id: str,
    job_key: str,
    attempt: int,
    retry: RetryPolicy,
    elapsed_ms: int,
    now: datetime,
) -> tuple[Outcome, AttemptEnd]:
    """The outcome of an attempt that ran, and the end history records for it.

    A returned result is final (``JobResult.failure`` is not retried); an exception or a
    timeout is retried after the policy's delay unless this was the last attempt.
    """
    if isinstance(execution, Returned):
        result = execution.value
        if not isinstance(result, JobResult):
            kind = type(result).__name__
            result = JobResult.failure(f"execute() returned {kind}, expected a JobResult")
        end = AttemptEnd(
            status=RunStatus.SUCCEEDED if result.success else RunStatus.FAILED,
            duration_ms=result.duration_ms if result.duration_ms is not None else elapsed_ms,
            message=result.message,
            items_processed=result.items_processed,
            items_failed=result.items_failed,
            data=result.data,
        )
        outcome = Outcome(
            run_id,
            job_key,
            end.status,
            Action.ACK,
            attempt,
            message=end.message,
            duration_ms=end.duration_ms,
        )
        return outcome, end

    if isinstance(execution, Cancelled):
        message = f"cancelled by {execution.by}"
        end = AttemptEnd(
            status=RunStatus.CANCELLED,
            duration_ms=elapsed_ms,
            message=message,
            cancelled_by=execution.by,
        )
        outcome = Outcome(
            run_id,
            job_key,
            RunStatus.CANCELLED,
            Action.ACK,
            attempt,
            message=message,
            duration_ms=elapsed_ms,
        )
        return outcome, end

    last = attempt >= retry.max_attempts
    delay = None if last else retry.delay(attempt)
    if delay is None:
        status = RunStatus.TIMED_OUT if isinstance(execution, TimedOut) else RunStatus.FAILED
    else:
        status = RunStatus.RETRYING
    end = AttemptEnd(
        status=status,
        duration_ms=elapsed_ms,
        message=_summary(execution.error),
        error=execution.error,
        next_attempt_at=None if delay is None else now + timedelta(seconds=delay),
    )
    outcome = Outcome(
        run_id,
        job_key,
        status,
        Action.ACK if delay is None else Action.RETRY,
        attempt,
        message=end.message,
        error=end.error,
        retry_in=delay,
        duration_ms=elapsed_ms,
    )
    return outcome, end


def skipped(run_id: str, job_key: str, attempt: int, reason: str) -> Outcome:
    """A run that is not executed on purpose (a missed tick, an overlap skip)."""
    return Outcome(run_id, job_key, RunStatus.SKIPPED, Action.ACK, attempt, message=reason)


def cancelled(run_id: str, job_key: str, attempt: int, by: str) -> Outcome:
    """A run whose cancel request was there before it started: it never starts."""
    message = f"cancelled by {by} before it started"
    return Outcome(run_id, job_key, RunStatus.CANCELLED, Action.ACK, attempt, message=message)


class Busy(StrEnum):
    """What a run does when another run of its job holds the overlap lock."""

    WAIT = "wait"  # re-queued after OVERLAP_WAIT_S, no record
    SKIP = "skip"  # recorded skipped
    CANCEL_ACTIVE = "cancel_active"  # ask the active run to cancel, then wait for it
    TERMINATE_ACTIVE = "terminate_active"  # kill the active run's process, then wait


def on_busy(
    overlap: Overlap,
    trigger: Trigger,
    *,
    started: bool,
    late_s: float | None,
    grace: float,
    buffer_full: bool,
) -> Busy:
    """The overlap rule for a run that found another run of its job active.

    Only a fresh tick (first attempt, first delivery) follows the job's overlap mode. A
    run that already started (a retry, a redelivery) and a run an operator asked for
    (manual, bootstrap, backfill, rerun) wait for the active run: skipping a started run
    would leave it open for ever, and neither pre-empts anything. A buffered tick
    (``buffer_one``, ``buffer_all``) waits while it is within the misfire grace of its
    instant (``late_s`` is how late it is now); ``buffer_full`` says the one waiting
    place of ``buffer_one`` is taken by another tick.
    """
    if started or not trigger.is_tick:
        return Busy.WAIT
    if overlap is Overlap.SKIP:
        return Busy.SKIP
    if overlap.buffers:
        if overlap is Overlap.BUFFER_ONE and buffer_full:
            return Busy.SKIP
        if late_s is not None and late_s > grace:
            return Busy.SKIP
        return Busy.WAIT
    if overlap is Overlap.CANCEL_OTHER:
        return Busy.CANCEL_ACTIVE
    if overlap is Overlap.TERMINATE_OTHER:
        return Busy.TERMINATE_ACTIVE
    return Busy.WAIT


def busy_reason(busy: Busy, job_key: str, holder: str, overlap: Overlap, *, full: bool) -> str:
    """The message a skipped busy run records, or the ``by`` of a pre-emption."""
    mode = overlap.value
    if busy is Busy.SKIP and full:
        waiting = f"a tick of {job_key} was already waiting for run {holder}"
        return f"skipped: {waiting} (overlap: {mode})"
    if busy is Busy.SKIP and overlap.buffers:
        return (
            f"skipped: run {holder} of {job_key} was still active past the misfire grace "
            f"(overlap: {mode})"
        )
    if busy is Busy.SKIP:
        return f"skipped: run {holder} of {job_key} was still active (overlap: {mode})"
    return f"overlap: {mode}"


def when_busy(run_id: str, job_key: str, attempt: int, busy: Busy, *, reason: str) -> Outcome:
    """The outcome of a busy run: skipped (``reason`` recorded) or re-queued to wait."""
    if busy is Busy.SKIP:
        return skipped(run_id, job_key, attempt, reason)
    return Outcome(run_id, job_key, None, Action.REQUEUE, attempt, retry_in=OVERLAP_WAIT_S)


def duplicate(run_id: str, job_key: str, attempt: int, current: RunStatus | None) -> Outcome:
    """A delivery that history refused: the run finished or a later attempt owns it."""
    message = current.value if current is not None else "unknown"
    return Outcome(run_id, job_key, None, Action.DUPLICATE, attempt, message=message)
