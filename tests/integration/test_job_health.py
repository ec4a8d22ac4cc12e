"""The beat's job health (``fetch_job_health``) against real rows in a real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from jobs_core.alerts import MAX_RUN_IDS, JobHealth
from jobs_core.job_health import HEALTH_RECENT_RUNS, fetch_job_health

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
                    at + timedelta(seconds=10) if status != "running" else None,
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
