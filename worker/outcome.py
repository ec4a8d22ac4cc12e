"""What an attempt came to: the status history records and what the worker does next.

Pure functions of what happened (no I/O, the clock handed in as ``now``).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jobs_core.history import AttemptEnd
from jobs_core.policy import Overlap, RetryPolicy
from jobs_core.result import JobResult
from jobs_core.status import Action, RunStatus, Trigger

MAX_ERROR_CHARS = 8000
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


def when_busy(
    run_id: str, job_key: str, attempt: int, *, overlap: Overlap, trigger: Trigger, holder: str
) -> Outcome:
    """A run that found run ``holder`` of its job still active.

    Under ``overlap: skip`` a tick is skipped; anything else waits for the active run
    without holding a worker slot, and so do manual runs, which an operator asked for.
    """
    if overlap is Overlap.SKIP and trigger.is_tick:
        reason = f"skipped: run {holder} of {job_key} was still active (overlap: skip)"
        return skipped(run_id, job_key, attempt, reason)
    return Outcome(run_id, job_key, None, Action.REQUEUE, attempt, retry_in=OVERLAP_WAIT_S)


def duplicate(run_id: str, job_key: str, attempt: int, current: RunStatus | None) -> Outcome:
    """A delivery that history refused: the run finished or a later attempt owns it."""
    message = current.value if current is not None else "unknown"
    return Outcome(run_id, job_key, None, Action.DUPLICATE, attempt, message=message)
