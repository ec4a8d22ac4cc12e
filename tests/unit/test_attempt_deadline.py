"""How long the task waits for an attempt: the job's own time, apart from history waits."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker import execution
from worker.execution import (
    FINISH_WAIT,
    SETUP_WAIT,
    JobClock,
    Phase,
    attempt_deadline,
    hard_time_limit,
    stuck_after,
)
from worker.outcome import Outcome
from worker.runtime import HISTORY_WAIT
from worker.tasks import AttemptStalled, StuckJob, wait_for_attempt

times = st.floats(min_value=0, max_value=1e6, allow_nan=False)
timeouts = st.floats(min_value=0.001, max_value=86_400, allow_nan=False)


def test_before_the_job_starts_the_task_waits_for_setup_only() -> None:
    assert attempt_deadline(3.0, 100.0, None, None) == (Phase.SETUP, 100.0 + SETUP_WAIT)


def test_the_stuck_deadline_counts_from_the_job_start() -> None:
    # 25 s of waiting for PostgreSQL before the job started do not count against it.
    assert attempt_deadline(3.0, 100.0, 125.0, None) == (Phase.JOB, 125.0 + stuck_after(3.0))


def test_after_the_job_ends_the_task_waits_for_the_end_write() -> None:
    assert attempt_deadline(3.0, 100.0, 101.0, 102.0) == (Phase.FINISH, 102.0 + FINISH_WAIT)


def test_history_writes_fail_before_the_task_stops_waiting_for_them() -> None:
    # Setup: the pool's opening, then a claim (or a skip or cancel record), plus Redis.
    assert SETUP_WAIT > 2 * HISTORY_WAIT
    # Finish: the lazy "running" record, then the end.
    assert FINISH_WAIT > 2 * HISTORY_WAIT


@given(timeouts)
def test_celerys_hard_limit_comes_after_everything_the_task_waits_for(timeout: float) -> None:
    # Celery acknowledges a message whose task hit the hard limit: it must never cut
    # short a wait that would have re-queued the run.
    assert hard_time_limit(timeout) > SETUP_WAIT + stuck_after(timeout) + FINISH_WAIT


@given(timeouts, times, times, times)
def test_the_deadline_never_precedes_the_phase_start(
    timeout: float, submitted: float, job_after: float, end_after: float
) -> None:
    started, ended = submitted + job_after, submitted + job_after + end_after
    for job_started, job_ended, since in (
        (None, None, submitted),
        (started, None, started),
        (started, ended, ended),
    ):
        _, deadline = attempt_deadline(timeout, submitted, job_started, job_ended)
        assert deadline > since


def _done(value: Outcome | None = None) -> concurrent.futures.Future[Outcome]:
    future: concurrent.futures.Future[Outcome] = concurrent.futures.Future()
    if value is not None:
        future.set_result(value)
    return future


def test_a_job_past_its_timeout_and_grace_is_stuck() -> None:
    clock = JobClock(submitted=time.monotonic() - 60, job_started=time.monotonic() - 10)
    future = _done()
    with pytest.raises(StuckJob):
        wait_for_attempt(future, clock, 1.0)
    # A stuck job's thread is abandoned by the caller, not cancelled here.
    assert not future.cancelled()


@pytest.mark.parametrize("ended", [False, True])
def test_a_hung_history_or_redis_call_is_an_infrastructure_error(ended: bool) -> None:
    now = time.monotonic()
    if ended:
        clock = JobClock(submitted=now - 90, job_started=now - 80, job_ended=now - FINISH_WAIT)
    else:
        clock = JobClock(submitted=now - SETUP_WAIT)
    future = _done()
    with pytest.raises(AttemptStalled):
        wait_for_attempt(future, clock, 1.0)
    assert future.cancelled()


def _later(action: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=action)
    thread.start()
    return thread


@pytest.fixture
def short_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Phase bounds short enough to be waited out in a test: a job with a 0.2 s timeout
    is stuck 0.5 s after its start, an end write 0.5 s after the job's end, and setup
    is long (30 s): a wait that missed a phase change would overrun by seconds."""
    monkeypatch.setattr(execution, "CANCEL_GRACE", 0.2)
    monkeypatch.setattr(execution, "STUCK_MARGIN", 0.1)
    monkeypatch.setattr(execution, "FINISH_WAIT", 0.5)
    monkeypatch.setattr(execution, "SETUP_WAIT", 30.0)


@pytest.mark.usefixtures("short_waits")
def test_a_job_starting_during_the_setup_wait_is_held_to_its_own_deadline() -> None:
    """The task is waiting out the setup phase (long) when the job starts: nothing wakes
    it at the start, yet it must stop at the job's own deadline, not the setup's."""
    clock = JobClock()
    future = _done()
    started: list[float] = []

    def start() -> None:
        time.sleep(0.3)  # most likely once the task waits (the test holds either way)
        started.append(clock.start())

    thread = _later(start)
    try:
        with pytest.raises(StuckJob):
            wait_for_attempt(future, clock, 0.2)
    finally:
        thread.join(10)
    found = time.monotonic()
    assert started and found >= started[0] + stuck_after(0.2)
    assert found - started[0] < stuck_after(0.2) + 1.5  # not at the setup's deadline


@pytest.mark.usefixtures("short_waits")
def test_an_end_write_that_hangs_is_found_at_its_own_deadline() -> None:
    """The job (a long timeout) ends during the wait, then its end write hangs: nothing
    wakes the task at the end, yet it must stop FINISH_WAIT after the job's end, not at
    the job's deadline."""
    clock = JobClock()
    future = _done()
    ended: list[float] = []
    clock.start()  # the task first finds the job running

    def run() -> None:
        time.sleep(0.3)
        ended.append(clock.end())

    thread = _later(run)
    try:
        with pytest.raises(AttemptStalled, match="finish"):
            wait_for_attempt(future, clock, 5.0)  # the job's deadline: 5.3 s after its start
    finally:
        thread.join(10)
    found = time.monotonic()
    assert ended and found >= ended[0] + execution.FINISH_WAIT
    assert found - ended[0] < execution.FINISH_WAIT + 1.5
    assert future.cancelled()


def test_a_job_ending_during_the_wait_is_waited_for_its_end_write() -> None:
    from worker.outcome import skipped

    out = skipped("r", "k", 1, "done")
    # Setup ran out long ago, but the job started before that: the task is in the job
    # phase, then the job ends (finish phase), then the end is written.
    now = time.monotonic()
    clock = JobClock(submitted=now - SETUP_WAIT - 5, job_started=now - SETUP_WAIT - 1)
    future = _done()

    def attempt() -> None:
        clock.end()
        time.sleep(0.2)  # the end write, within FINISH_WAIT
        future.set_result(out)

    thread = _later(attempt)
    try:
        assert wait_for_attempt(future, clock, 30.0) is out
    finally:
        thread.join(10)


def test_an_attempt_failing_is_returned_as_its_error() -> None:
    clock = JobClock()
    future = _done()
    thread = _later(lambda: future.set_exception(OSError("history down")))
    try:
        with pytest.raises(OSError, match="history down"):
            wait_for_attempt(future, clock, 1.0)
    finally:
        thread.join(10)


def test_a_stuck_job_whose_timeout_cannot_be_recorded_is_not_acknowledged() -> None:
    """PostgreSQL refuses the timeout record: the task must not acknowledge (or retry)
    a run that history knows nothing of; the error goes to the re-queue path."""
    import psycopg

    from jobs_core.registry import JobDefinition
    from tests.procs import free_port_for_tests
    from tests.unit.test_attempt_flow import definition as flow_definition
    from tests.unit.test_attempt_flow import request, succeed
    from worker.runtime import WorkerRuntime
    from worker.tasks import _abandon_stuck_attempt

    jd: JobDefinition = flow_definition(succeed, max_attempts=1, timeout=1.0)
    # Nothing listens there: the connection is refused at once.
    url = f"postgresql://nobody@127.0.0.1:{free_port_for_tests()}/none?connect_timeout=2"
    runtime = WorkerRuntime(url, None)
    try:
        with pytest.raises(psycopg.OperationalError):
            _abandon_stuck_attempt(runtime, jd, request(), "w1")
    finally:
        runtime.close()
