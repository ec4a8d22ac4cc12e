"""The pure classification of an attempt's result: status for history, action for the task."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs_core import JobResult
from jobs_core.policy import Overlap, RetryPolicy
from jobs_core.status import TERMINAL, Action, RunStatus, Trigger
from worker.outcome import (
    OVERLAP_WAIT_S,
    Busy,
    Raised,
    Returned,
    TimedOut,
    busy_reason,
    decide,
    duplicate,
    format_error,
    on_busy,
    skipped,
    when_busy,
)

NOW = datetime(2030, 1, 1, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=3, backoff=10, max_backoff=600, jitter=False)
TRACEBACK = 'Traceback (most recent call last):\n  File "x.py"\nValueError: broken'


def judge(execution: Returned | Raised | TimedOut, attempt: int = 1, elapsed_ms: int = 40):
    return decide(
        execution,
        run_id="r",
        job_key="ext/job",
        attempt=attempt,
        retry=POLICY,
        elapsed_ms=elapsed_ms,
        now=NOW,
    )


def test_success_is_acked_with_the_measured_duration() -> None:
    out, end = judge(Returned(JobResult.success().with_message("done").with_stats(3, 1)))
    assert (out.status, out.action, out.message, out.duration_ms) == (
        RunStatus.SUCCEEDED,
        Action.ACK,
        "done",
        40,
    )
    assert (end.status, end.duration_ms, end.items_processed, end.items_failed) == (
        RunStatus.SUCCEEDED,
        40,
        3,
        1,
    )
    assert end.closes_run and end.attempt_status is RunStatus.SUCCEEDED
    assert out.retry_in is None and end.next_attempt_at is None


def test_the_jobs_own_duration_and_data_win() -> None:
    out, end = judge(Returned(JobResult.success().with_duration(7).with_data(rows=2)))
    assert out.duration_ms == 7 and end.duration_ms == 7 and end.data == {"rows": 2}


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_a_failure_result_is_final_whatever_the_attempts_left(attempt: int) -> None:
    out, end = judge(Returned(JobResult.failure("nothing to do")), attempt)
    assert (out.status, out.action, out.message) == (RunStatus.FAILED, Action.ACK, "nothing to do")
    assert end.closes_run and end.next_attempt_at is None and out.retry_in is None


def test_a_value_that_is_not_a_job_result_is_a_failure() -> None:
    out, end = judge(Returned({"ok": True}))
    assert out.status is RunStatus.FAILED and out.action is Action.ACK
    assert end.message == "execute() returned dict, expected a JobResult"


def test_an_exception_is_retried_after_the_policys_delay() -> None:
    out, end = judge(Raised(TRACEBACK), attempt=2)
    assert (out.status, out.action, out.retry_in) == (RunStatus.RETRYING, Action.RETRY, 20.0)
    assert out.message == "ValueError: broken" and out.error == TRACEBACK
    assert end.status is RunStatus.RETRYING and not end.closes_run
    assert end.attempt_status is RunStatus.FAILED
    assert end.next_attempt_at == NOW + timedelta(seconds=20)
    assert end.error == TRACEBACK and end.duration_ms == 40


def test_an_exception_on_the_last_attempt_fails_the_run() -> None:
    out, end = judge(Raised(TRACEBACK), attempt=3)
    assert (out.status, out.action, out.retry_in) == (RunStatus.FAILED, Action.ACK, None)
    assert end.closes_run and end.next_attempt_at is None


def test_a_timeout_is_retried_then_timed_out() -> None:
    out, end = judge(TimedOut("timed out after 1s"), attempt=1)
    assert (out.status, out.action, out.retry_in) == (RunStatus.RETRYING, Action.RETRY, 10.0)
    assert end.attempt_status is RunStatus.FAILED and out.message == "timed out after 1s"
    out, end = judge(TimedOut("timed out after 1s"), attempt=3)
    assert (out.status, out.action) == (RunStatus.TIMED_OUT, Action.ACK)
    assert end.attempt_status is RunStatus.TIMED_OUT and end.closes_run


@given(
    max_attempts=st.integers(1, 8),
    attempt=st.integers(1, 8),
    timed_out=st.booleans(),
    backoff=st.floats(0, 100),
)
def test_retry_rules_hold_for_any_attempt(
    max_attempts: int, attempt: int, timed_out: bool, backoff: float
) -> None:
    policy = RetryPolicy(max_attempts=max_attempts, backoff=backoff, jitter=False)
    execution = TimedOut("t") if timed_out else Raised("E: x")
    out, end = decide(
        execution, run_id="r", job_key="k", attempt=attempt, retry=policy, elapsed_ms=1, now=NOW
    )
    last = attempt >= max_attempts
    assert (out.action is Action.ACK) == last
    assert (out.action is Action.RETRY) == (not last)
    assert out.status is end.status
    assert end.closes_run == last == (end.status in TERMINAL)
    if last:
        assert out.retry_in is None and end.next_attempt_at is None
        assert end.status is (RunStatus.TIMED_OUT if timed_out else RunStatus.FAILED)
    else:
        assert out.retry_in == policy.delay(attempt)
        assert end.next_attempt_at == NOW + timedelta(seconds=policy.delay(attempt))
        assert end.status is RunStatus.RETRYING and end.attempt_status is RunStatus.FAILED


def _busy(
    overlap: Overlap,
    trigger: Trigger = Trigger.SCHEDULE,
    *,
    started: bool = False,
    late_s: float | None = 1.0,
    full: bool = False,
) -> Busy:
    return on_busy(overlap, trigger, started=started, late_s=late_s, grace=300.0, buffer_full=full)


@pytest.mark.parametrize("trigger", [Trigger.SCHEDULE, Trigger.CATCH_UP])
def test_a_tick_under_overlap_skip_is_skipped(trigger: Trigger) -> None:
    busy = _busy(Overlap.SKIP, trigger)
    assert busy is Busy.SKIP
    reason = busy_reason(busy, "ext/job", "h1", Overlap.SKIP, full=False)
    out = when_busy("r", "ext/job", 1, busy, reason=reason)
    assert (out.status, out.action) == (RunStatus.SKIPPED, Action.ACK)
    assert out.message == "skipped: run h1 of ext/job was still active (overlap: skip)"


@pytest.mark.parametrize(
    ("overlap", "full", "late_s", "expected"),
    [
        (Overlap.BUFFER_ONE, False, 1.0, Busy.WAIT),
        (Overlap.BUFFER_ONE, True, 1.0, Busy.SKIP),  # the one waiting place is taken
        (Overlap.BUFFER_ONE, False, 301.0, Busy.SKIP),  # past the misfire grace
        (Overlap.BUFFER_ALL, False, 1.0, Busy.WAIT),
        (Overlap.BUFFER_ALL, False, 300.0, Busy.WAIT),  # the grace itself still waits
        (Overlap.BUFFER_ALL, False, 300.5, Busy.SKIP),
        (Overlap.BUFFER_ALL, False, None, Busy.WAIT),
        (Overlap.CANCEL_OTHER, False, 1.0, Busy.CANCEL_ACTIVE),
        (Overlap.TERMINATE_OTHER, False, 1.0, Busy.TERMINATE_ACTIVE),
    ],
)
def test_a_fresh_tick_follows_its_overlap_mode(
    overlap: Overlap, full: bool, late_s: float | None, expected: Busy
) -> None:
    assert _busy(overlap, late_s=late_s, full=full) is expected


@given(
    overlap=st.sampled_from([o for o in Overlap if o is not Overlap.ALLOW]),
    trigger=st.sampled_from(list(Trigger)),
    started=st.booleans(),
    late_s=st.one_of(st.none(), st.floats(-1e6, 1e6)),
    full=st.booleans(),
)
def test_started_and_operator_runs_always_wait(
    overlap: Overlap, trigger: Trigger, started: bool, late_s: float | None, full: bool
) -> None:
    """A retry or redelivery (started) and a manual/bootstrap/backfill/rerun run are never
    skipped and never pre-empt: skipping a started run would leave it open for ever."""
    busy = _busy(overlap, trigger, started=started, late_s=late_s, full=full)
    if started or not trigger.is_tick:
        assert busy is Busy.WAIT
    elif overlap is Overlap.SKIP:
        assert busy is Busy.SKIP
    elif overlap.preempts:
        assert busy in (Busy.CANCEL_ACTIVE, Busy.TERMINATE_ACTIVE)


@pytest.mark.parametrize("busy", [Busy.WAIT, Busy.CANCEL_ACTIVE, Busy.TERMINATE_ACTIVE])
def test_busy_runs_that_do_not_skip_wait_without_a_record(busy: Busy) -> None:
    out = when_busy("r", "ext/job", 2, busy, reason="x")
    assert (out.status, out.action, out.retry_in) == (None, Action.REQUEUE, OVERLAP_WAIT_S)
    assert out.attempt == 2


def test_busy_reasons_name_the_mode_and_the_active_run() -> None:
    full = busy_reason(Busy.SKIP, "e/j", "h1", Overlap.BUFFER_ONE, full=True)
    assert full == "skipped: a tick of e/j was already waiting for run h1 (overlap: buffer_one)"
    late = busy_reason(Busy.SKIP, "e/j", "h1", Overlap.BUFFER_ALL, full=False)
    assert "past the misfire grace" in late and "(overlap: buffer_all)" in late
    assert busy_reason(Busy.CANCEL_ACTIVE, "e/j", "h1", Overlap.CANCEL_OTHER, full=False) == (
        "overlap: cancel_other"
    )


def test_queue_is_an_alias_of_buffer_all() -> None:
    assert Overlap("queue") is Overlap.BUFFER_ALL is Overlap.QUEUE
    assert Overlap.QUEUE.value == "buffer_all"
    assert "queue" not in [o.value for o in Overlap]


def test_skipped_and_duplicate() -> None:
    out = skipped("r", "k", 1, "missed by 1h")
    assert (out.status, out.action, out.message) == (RunStatus.SKIPPED, Action.ACK, "missed by 1h")
    dup = duplicate("r", "k", 2, RunStatus.SUCCEEDED)
    assert (dup.status, dup.action, dup.message) == (None, Action.DUPLICATE, "succeeded")
    assert duplicate("r", "k", 1, None).message == "unknown"
    assert dup.to_json() == {
        "run_id": "r",
        "job_key": "k",
        "action": Action.DUPLICATE,
        "attempt": 2,
        "message": "succeeded",
    }


def test_format_error_keeps_the_end_of_a_long_traceback() -> None:
    try:
        raise ValueError("x" * 20_000)
    except ValueError as exc:
        text = format_error(exc)
    assert text.startswith("...\n") and text.endswith("x") and len(text) == 8004
