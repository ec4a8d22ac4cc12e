"""worker.outcome: every outcome names the run it is about, and errors are kept as Python
printed them, up to the bound."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from jobs_core import JobResult
from jobs_core.policy import RetryPolicy
from jobs_core.status import RunStatus
from worker.outcome import (
    MAX_ERROR_CHARS,
    Busy,
    Outcome,
    Raised,
    Returned,
    TimedOut,
    decide,
    duplicate,
    format_error,
    skipped,
    when_busy,
)

RUN, JOB, ATTEMPT = "run-7", "ext/job", 2
POLICY = RetryPolicy(max_attempts=3, backoff=10, max_backoff=600, jitter=False)


def _decide(execution: Returned | Raised | TimedOut, *, last: bool = False) -> Outcome:
    outcome, _ = decide(
        execution,
        run_id=RUN,
        job_key=JOB,
        attempt=ATTEMPT,
        retry=RetryPolicy(max_attempts=ATTEMPT) if last else POLICY,
        elapsed_ms=1234,
        now=datetime(2030, 1, 1, tzinfo=UTC),
    )
    return outcome


# Built inside the test, not at collection: a mutation tool that forks after collecting
# would otherwise judge outcomes made before the mutant was switched on.
@pytest.mark.parametrize(
    "make",
    [
        lambda: _decide(Returned(JobResult.success())),
        lambda: _decide(Raised("ValueError: broken")),  # retried
        lambda: _decide(Raised("ValueError: broken"), last=True),
        lambda: _decide(TimedOut("timed out after 30s"), last=True),
        lambda: skipped(RUN, JOB, ATTEMPT, "missed"),
        lambda: when_busy(RUN, JOB, ATTEMPT, Busy.SKIP, reason="skipped: run r1 was still active"),
        lambda: when_busy(RUN, JOB, ATTEMPT, Busy.WAIT, reason="overlap: buffer_all"),
        lambda: duplicate(RUN, JOB, ATTEMPT, RunStatus.SUCCEEDED),
    ],
    ids=["returned", "retried", "failed", "timed-out", "skipped", "busy-skip", "busy-wait", "dup"],
)
def test_every_outcome_names_its_run_job_and_attempt(make: Callable[[], Outcome]) -> None:
    outcome = make()
    assert (outcome.run_id, outcome.job_key, outcome.attempt) == (RUN, JOB, ATTEMPT)


@pytest.mark.parametrize("last", [False, True])
def test_a_failed_attempt_reports_how_long_it_ran(last: bool) -> None:
    assert _decide(Raised("ValueError: broken"), last=last).duration_ms == 1234
    assert _decide(TimedOut("timed out after 30s"), last=last).duration_ms == 1234


def test_an_empty_error_has_no_summary() -> None:
    outcome = _decide(Raised(""), last=True)
    assert (outcome.status, outcome.message) == (RunStatus.FAILED, None)


def _raised(message: str) -> BaseException:
    try:
        raise ValueError(message)
    except ValueError as exc:
        return exc


def test_an_error_reads_as_python_printed_it() -> None:
    lines = format_error(_raised("broken")).splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[1].startswith('  File "')
    assert lines[-1] == "ValueError: broken"


def test_an_error_of_exactly_the_bound_is_kept_whole_and_one_more_is_cut() -> None:
    base = len(format_error(_raised("x")))
    exact = format_error(_raised("x" * (MAX_ERROR_CHARS - base + 1)))
    assert len(exact) == MAX_ERROR_CHARS and exact.startswith("Traceback")
    over = format_error(_raised("x" * (MAX_ERROR_CHARS - base + 2)))
    assert over.startswith("...\n") and len(over) == MAX_ERROR_CHARS + 4
    assert over.endswith("x" * 100)
