"""The beat's job health (``fetch_job_health``) against real rows in a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from jobs_core.alerts import MAX_RUN_IDS, AlertKind, JobHealth, JobWatch, conditions
from jobs_core.history import AttemptStart
from jobs_core.history_pg import PostgresHistory
from jobs_core.job_health import HEALTH_RECENT_RUNS, HealthReader, fetch_job_health
from jobs_core.policy import AlertPolicy
from jobs_core.status import RunStatus, Trigger

pytestmark = [pytest.mark.integration, pytest.mark.servers]

T0 = datetime(2026, 5, 1, tzinfo=UTC)


class Runs:
    """Writes one job's runs oldest first, one minute apart, each finishing 10 s after
    its tick; remembers their ids in order."""

    def __init__(self, conn: psycopg.Connection[tuple[object, ...]], job: str) -> None:
        self.conn, self.job, self.ids = conn, job, list[str]()

    def add(self, *statuses: str) -> Runs:
        for status in statuses:
            at = self.at(len(self.ids))
            run_id = str(uuid.uuid4())
            self.conn.execute(
                "INSERT INTO job_runs (id, job_key, trigger, status, scheduled_for,"
                " enqueued_at, started_at, finished_at, attempt)"
                " VALUES (%s, %s, 'schedule', %s, %s, %s, %s, %s, 1)",
                (
                    run_id,
                    self.job,
                    status,
                    at,
                    at,
                    at,
                    at + timedelta(seconds=10) if RunStatus(status).is_terminal else None,
                ),
            )
            self.ids.append(run_id)
        return self

    @staticmethod
    def at(n: int) -> datetime:
        return T0 + timedelta(minutes=n)


def health(database_url: str, *jobs: str) -> dict[str, JobHealth]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return fetch_job_health(conn, list(jobs))


def test_failures_since_the_latest_success(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        runs = Runs(conn, "a/failing").add("failed", "succeeded", "failed", "skipped", "timed_out")
    h = health(database_url, "a/failing")["a/failing"]
    assert h.last_success_at == Runs.at(1)
    assert h.consecutive_failures == 2
    assert h.failing_run_ids == (runs.ids[4], runs.ids[2])
    assert h.last_failure_at == Runs.at(4) + timedelta(seconds=10)
    assert h.last_finished == (runs.ids[4], "timed_out")
    assert h.running == ()


def test_failing_run_ids_are_the_newest_few(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        runs = Runs(conn, "a/broken").add(*["failed"] * (MAX_RUN_IDS + 3))
    h = health(database_url, "a/broken")["a/broken"]
    assert h.last_success_at is None
    assert h.consecutive_failures == MAX_RUN_IDS + 3
    assert h.failing_run_ids == tuple(reversed(runs.ids))[:MAX_RUN_IDS]


def test_a_failure_before_the_latest_success_among_the_recent_runs(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        Runs(conn, "a/recovered").add("failed", "lost", *["succeeded"] * (HEALTH_RECENT_RUNS - 3))
        Runs(conn, "a/healthy").add("failed", *["succeeded"] * HEALTH_RECENT_RUNS)
        Runs(conn, "a/running").add("succeeded", "running")
    got = health(database_url, "a/recovered", "a/healthy", "a/running", "a/none")
    recovered = got["a/recovered"]
    assert recovered.consecutive_failures == 0 and recovered.failing_run_ids == ()
    assert recovered.last_failure_at == Runs.at(1) + timedelta(seconds=10)
    assert recovered.last_success_at == Runs.at(HEALTH_RECENT_RUNS - 2)
    # Further back than the recent runs, and older than the latest success: not looked
    # for (that walk would read every run of a job that never fails).
    assert got["a/healthy"].last_failure_at is None
    assert got["a/healthy"].consecutive_failures == 0
    running = got["a/running"]
    assert running.running == ((running_id := running.running[0][0], Runs.at(1)),)
    assert running.last_finished is not None and running.last_finished[1] == "succeeded"
    assert running_id != running.last_finished[0]
    assert got["a/none"] == JobHealth("a/none")


#: More newer runs than the job health ever read per job before migration 0004.
BURIED = 60


def with_history(database_url: str, fn: Callable[[PostgresHistory], Awaitable[Any]]) -> Any:
    from psycopg_pool import AsyncConnectionPool

    async def go() -> Any:
        async with AsyncConnectionPool(database_url, min_size=1, max_size=1) as pool:
            return await fn(PostgresHistory(pool))

    return asyncio.run(go())


def test_a_hung_run_buried_under_skipped_ticks_is_still_too_long(database_url: str) -> None:
    """``overlap: skip``: while a run hangs, every tick writes a skipped run after it. The
    run is still reported running (and too long) however many ticks were skipped."""
    job = "a/hung"
    start = AttemptStart(
        run_id=str(uuid.uuid4()),
        job_key=job,
        trigger=Trigger.SCHEDULE,
        attempt=1,
        max_attempts=1,
        worker="celery@w1",
        scheduled_for=T0,
        enqueued_at=None,
        parameters={},
    )

    async def write(history: PostgresHistory) -> list[str]:
        # As the worker writes them: the hung run marked running (lazy start's timer
        # fired), then each later tick recorded skipped by the overlap policy.
        assert (await history.start_attempt(start)).started
        return [
            await history.create_run(
                job_key=job,
                trigger=Trigger.SCHEDULE,
                scheduled_for=T0 + timedelta(minutes=n),
                max_attempts=1,
                status=RunStatus.SKIPPED,
                message="overlap: skip",
            )
            for n in range(1, BURIED + 1)
        ]

    skipped = with_history(database_url, write)
    h = health(database_url, job)[job]
    assert [run_id for run_id, _ in h.running] == [start.run_id]
    assert h.last_finished == (skipped[-1], "skipped")
    started = h.running[0][1]
    watch = JobWatch(job, AlertPolicy(max_duration=60.0), None, True, T0)
    found = conditions(watch, h, started + timedelta(seconds=61))
    too_long = [i for i in found if i.kind is AlertKind.TOO_LONG]
    assert len(too_long) == 1 and too_long[0].run_ids == (start.run_id,)
    assert conditions(watch, h, started + timedelta(seconds=59)) == []


def test_running_runs_are_all_reported_and_only_running_ones(database_url: str) -> None:
    """Every running run however old, newest first; queued and retrying runs are not
    running (no attempt executes), finished ones never are."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        runs = Runs(conn, "a/busy").add("running", "retrying", "queued", "running")
        runs.add(*["succeeded"] * BURIED, "running", "queued")
    h = health(database_url, "a/busy")["a/busy"]
    newest = len(runs.ids) - 2
    assert h.running == (
        (runs.ids[newest], Runs.at(newest)),
        (runs.ids[3], Runs.at(3)),
        (runs.ids[0], Runs.at(0)),
    )
    assert h.last_finished == (runs.ids[newest - 1], "succeeded")


def test_the_latest_finished_run_behind_many_unfinished_ones(database_url: str) -> None:
    """A backlog of queued runs (manual runs, a backfill) newer than the latest finished
    run does not hide it: the skipped alert keeps seeing it."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        runs = Runs(conn, "a/backlog").add("succeeded", "skipped", *["queued"] * BURIED)
    h = health(database_url, "a/backlog")["a/backlog"]
    assert h.last_finished == (runs.ids[1], "skipped")
    assert h.running == () and h.last_success_at == Runs.at(0)


def test_the_reader_keeps_the_health_of_jobs_whose_history_did_not_change(
    database_url: str,
) -> None:
    """Round after round, a job with no new run keeps the very object it had (what the
    monitor's incremental rounds test first); a new run gives a new one; the answer is
    fetch_job_health's, whatever characters the keys hold (one array literal)."""
    odd = ['a/"quoted"', "a/back\\slash", "a/{brace},comma", "a/ space", "a/NULL", "a/é"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        quiet = Runs(conn, "a/quiet").add("succeeded")
        busy = Runs(conn, "a/busy").add("succeeded", "failed")
        for key in odd:
            Runs(conn, key).add("failed")
        keys = ["a/quiet", "a/busy", "a/never", *odd]
        reader = HealthReader()
        first = reader.read(conn, keys)
        assert first == fetch_job_health(conn, keys)
        assert set(first) == set(keys) and reader.changed == len(keys)
        assert first["a/busy"].consecutive_failures == 1
        assert all(first[k].consecutive_failures == 1 for k in odd)

        busy.add("failed")
        second = reader.read(conn, keys)
        assert second == fetch_job_health(conn, keys)
        assert reader.changed == 1 and second["a/busy"].consecutive_failures == 2
        assert all(second[k] is first[k] for k in keys if k != "a/busy")

        quiet.add("running")  # a run starting is a change too
        third = reader.read(conn, keys)
        assert reader.changed == 1 and third["a/quiet"].running != ()
        assert third["a/busy"] is second["a/busy"]

        reader.reset()
        assert reader.read(conn, keys) == third and reader.changed == len(keys)
        # Another job table (a reload): the keys sent are its own.
        assert set(reader.read(conn, ["a/quiet", "a/new"])) == {"a/quiet", "a/new"}
