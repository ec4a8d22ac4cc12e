"""Dead-worker rules (jobs_core.liveness) and the lock release after a run."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs_core.history import Run
from jobs_core.liveness import (
    HEARTBEAT_EVERY_S,
    HEARTBEAT_TTL_S,
    REAP_EVERY_S,
    Heartbeat,
    Suspect,
    plan_lost,
    suspects,
)
from jobs_core.status import Action, RunStatus, Trigger
from jobs_core.wire import RunMessage, decode, task_name
from worker.overlap import release_after_run

from .test_attempt_flow import FakeLock, SpyHistory, attempt, definition, request, succeed

TICK = datetime(2030, 1, 1, 12, tzinfo=UTC)
DEAD = Suspect("w1@node", None, True)


def running(attempt: int = 1, max_attempts: int = 3, trigger: Trigger = Trigger.SCHEDULE) -> Run:
    return Run(
        id=str(uuid.uuid4()),
        job_key="ext/job",
        trigger=trigger,
        status=RunStatus.RUNNING,
        scheduled_for=TICK if trigger.is_tick else None,
        enqueued_at=TICK + timedelta(seconds=1),
        started_at=TICK + timedelta(seconds=2),
        finished_at=None,
        attempt=attempt,
        max_attempts=max_attempts,
        duration_ms=None,
        message=None,
        error=None,
        worker="w1@node",
        items_processed=None,
        items_failed=None,
        data={},
        parameters={"days": 3},
        next_attempt_at=None,
    )


def test_the_timings_detect_a_dead_node_within_30_seconds() -> None:
    # Two renewals may fail before the key expires; the worst case is TTL + one round.
    assert HEARTBEAT_EVERY_S * 3 <= HEARTBEAT_TTL_S
    assert HEARTBEAT_TTL_S + REAP_EVERY_S <= 20


def test_a_run_with_attempts_left_is_requeued_as_the_next_attempt() -> None:
    run = running(attempt=1, max_attempts=3)
    plan = plan_lost(run, DEAD, "maintenance")
    assert (plan.run_id, plan.job_key, plan.attempt, plan.worker) == (
        run.id,
        "ext/job",
        1,
        "w1@node",
    )
    assert plan.message.startswith("lost: worker w1@node stopped")
    assert "attempt 1/3" in plan.message and "attempt 2 re-queued" in plan.message
    assert plan.requeue is not None
    queue, payload = plan.requeue
    assert queue == "maintenance"
    headers, kwargs = decode(payload)
    assert headers["task"] == task_name("ext/job") and headers["id"] == run.id
    sent = RunMessage.from_kwargs(kwargs)
    assert (sent.run_id, sent.attempt, sent.trigger) == (run.id, 2, Trigger.SCHEDULE)
    assert (sent.scheduled_for, sent.enqueued_at) == (run.scheduled_for, run.enqueued_at)
    assert sent.parameters == {"days": 3} and sent.skip_reason is None
    assert json.loads(payload)["properties"]["delivery_info"]["routing_key"] == "maintenance"


def test_the_last_attempt_or_an_unknown_job_is_not_requeued() -> None:
    last = plan_lost(running(attempt=3, max_attempts=3), DEAD, "jobs")
    assert last.requeue is None and last.message.endswith("no attempt left")
    unknown = plan_lost(running(attempt=1), DEAD, None)
    assert unknown.requeue is None and "not in this beat's profile" in unknown.message
    restarted = plan_lost(running(), Suspect("w1@node", TICK, False), "jobs")
    assert restarted.message.startswith("lost: worker w1@node restarted")


@given(st.integers(1, 50), st.integers(1, 50), st.sampled_from(list(Trigger)))
def test_requeue_exactly_while_attempts_remain(attempt: int, max_attempts: int, t: Trigger) -> None:
    plan = plan_lost(running(attempt, max_attempts, t), DEAD, "jobs")
    assert (plan.requeue is not None) == (attempt < max_attempts)
    if plan.requeue is not None:
        _, kwargs = decode(plan.requeue[1])
        assert RunMessage.from_kwargs(kwargs).attempt == attempt + 1


def test_suspects_are_known_workers_without_a_heartbeat_and_restarts() -> None:
    known = {"a@x": "{}", "b@x": "{}", "c@x": "{}"}
    alive = {"a@x": True, "b@x": False}
    boot = "2030-01-01T12:00:00+00:00"
    restarted = {"a@x": boot, "b@x": boot, "d@x": "not an instant", "e@x": "2030-01-01T12:00:00"}
    assert suspects(known, alive, restarted) == [
        Suspect("b@x", None, True),  # dead: all of its runs, whatever the restart
        Suspect("c@x", None, True),
        Suspect("a@x", datetime.fromisoformat(boot), False),
    ]
    assert suspects({}, {}, {}) == []
    assert suspects({"a@x": "{}"}, {"a@x": True}, {}) == []


def test_heartbeat_round_trip_and_foreign_values() -> None:
    beat = Heartbeat("w1@node", 42, TICK)
    assert Heartbeat.loads(beat.dumps()) == beat
    assert Heartbeat.loads(Heartbeat("w", 1).dumps()) == Heartbeat("w", 1, None)
    for junk in ("", "[]", "{}", '{"hostname": "w", "pid": "x"}', "not json"):
        assert Heartbeat.loads(junk) is None


class FailingLock(FakeLock):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.tries = 0

    async def release(self, job_key: str, run_id: str) -> None:
        self.tries += 1
        if self.tries <= self.failures:
            raise ConnectionError("master down")
        await super().release(job_key, run_id)


def test_a_release_is_retried_until_redis_answers() -> None:
    lock = FailingLock(failures=2)
    ok = asyncio.run(release_after_run(lock, "ext/job", "r1", delays=(0, 0, 0)))  # type: ignore[arg-type]
    assert ok and lock.tries == 3 and lock.released == ["r1"]


def test_a_release_that_never_succeeds_does_not_requeue_a_recorded_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def body() -> None:
        history = SpyHistory()
        lock = FailingLock(failures=100)
        jd, req = definition(succeed), request()
        out = await attempt(history, jd, req, "w1@host", lock=lock)  # type: ignore[arg-type]
        # The outcome stands (no exception: the task would have re-queued the run).
        assert (out.status, out.action) == (RunStatus.SUCCEEDED, Action.ACK)
        run = await history.get_run(req.run_id)
        assert run is not None and run.status is RunStatus.SUCCEEDED
        assert lock.tries == 6 and lock.released == []

    monkeypatch.setattr("worker.overlap.RELEASE_RETRY_DELAYS", (0, 0, 0, 0, 0))
    asyncio.run(body())
