"""The maintenance extension's jobs against real rows in a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from jobs_core import JobContext, JobResult, RunInfo, Trigger
from jobs_core.profile import parse_profile
from jobs_core.registry import build_registry

pytestmark = [pytest.mark.integration, pytest.mark.servers]

PROFILE = """
scheduler:
  jobs:
    - extension: maintenance
      job: prune-history
      parameters: {retention_days: 30}
    - extension: maintenance
      job: cleanup
      parameters: {batch_size: 2}
"""


def run_job(database_url: str, key: str, parameters: Mapping[str, Any] | None = None) -> JobResult:
    """Run the registered job ``key`` once, as a worker would, with a real pool."""
    jd = build_registry(parse_profile(PROFILE, env={})).resolve(key)

    async def go() -> JobResult:
        async with AsyncConnectionPool(database_url, min_size=1, max_size=2) as pool:
            ctx = JobContext(
                run=RunInfo(
                    run_id=str(uuid.uuid4()),
                    job_key=jd.key,
                    attempt=1,
                    max_attempts=jd.policy.retry.max_attempts,
                    scheduled_for=None,
                    trigger=Trigger.MANUAL,
                ),
                db_pool_factory=lambda: pool,
                config=jd.config,
                parameters={**jd.parameters, **(parameters or {})},
            )
            return await jd.job.execute(ctx)

    return asyncio.run(go())


def insert_run(
    conn: psycopg.Connection[Any], status: str, finished_days_ago: float | None, now: datetime
) -> str:
    run_id = str(uuid.uuid4())
    finished = None if finished_days_ago is None else now - timedelta(days=finished_days_ago)
    started = now - timedelta(days=(finished_days_ago or 40) + 0.01)
    conn.execute(
        "INSERT INTO job_runs (id, job_key, trigger, status, enqueued_at, started_at,"
        " finished_at, attempt, max_attempts) VALUES (%s, 'app/job', 'manual', %s, %s, %s,"
        " %s, 1, 1)",
        (run_id, status, started, started, finished),
    )
    conn.execute(
        "INSERT INTO job_run_attempts (run_id, attempt, status, started_at, finished_at)"
        " VALUES (%s, 1, %s, %s, %s)",
        (run_id, status, started, finished),
    )
    return run_id


def test_prune_history_deletes_finished_runs_older_than_the_retention(database_url: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        old = [
            insert_run(conn, "succeeded", 45, now),
            insert_run(conn, "failed", 31, now),
            insert_run(conn, "timed_out", 400, now),
            insert_run(conn, "skipped", 30.5, now),
        ]
        kept = [
            insert_run(conn, "succeeded", 29.5, now),
            insert_run(conn, "failed", 1, now),
            # Not finished: never pruned, however old.
            insert_run(conn, "running", None, now),
            insert_run(conn, "queued", None, now),
        ]

    result = run_job(database_url, "maintenance/prune-history")

    assert result.success, result.message
    assert result.items_processed == len(old) and result.items_failed == 0
    assert result.message is not None and result.message.startswith(f"Deleted {len(old)} runs")
    assert result.data["retention_days"] == 30
    cutoff = datetime.fromisoformat(result.data["cutoff"])
    assert abs(now - cutoff - timedelta(days=30)) < timedelta(minutes=5)
    with psycopg.connect(database_url) as conn:
        left = {str(r[0]) for r in conn.execute("SELECT id FROM job_runs").fetchall()}
        attempts = {str(r[0]) for r in conn.execute("SELECT run_id FROM job_run_attempts")}
    assert left == set(kept)
    assert attempts == set(kept), "a pruned run's attempts go with it"

    # Nothing left to prune: a second run reports zero and deletes nothing.
    again = run_job(database_url, "maintenance/prune-history")
    assert again.success and again.items_processed == 0


def test_prune_history_takes_the_retention_from_its_parameters(database_url: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        ten_days = insert_run(conn, "succeeded", 10, now)
        two_days = insert_run(conn, "succeeded", 2, now)

    result = run_job(database_url, "maintenance/prune-history", {"retention_days": "7"})

    assert result.success and result.items_processed == 1
    with psycopg.connect(database_url) as conn:
        left = {str(r[0]) for r in conn.execute("SELECT id FROM job_runs").fetchall()}
    assert left == {two_days} and ten_days not in left

    refused = run_job(database_url, "maintenance/prune-history", {"retention_days": 0})
    assert not refused.success and "retention_days must be >= 1" in (refused.message or "")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM job_runs").fetchone() == (1,)


def test_cleanup_deletes_expired_records_in_batches(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        # Expired: 5 rows, more than two batches of 2 (batch_size in the profile).
        conn.execute(
            "INSERT INTO temp_records (payload, expires_at)"
            " SELECT jsonb_build_object('n', n), now() - n * interval '1 hour'"
            " FROM generate_series(1, 5) AS n"
        )
        conn.execute(
            "INSERT INTO temp_records (payload, expires_at)"
            " SELECT jsonb_build_object('n', -n), now() + n * interval '1 minute'"
            " FROM generate_series(1, 3) AS n"
        )

    result = run_job(database_url, "maintenance/cleanup")

    assert result.success, result.message
    assert result.message == "Deleted 5 records"
    assert (result.items_processed, result.items_failed) == (5, 0)
    with psycopg.connect(database_url) as conn:
        left = sorted(r[0] for r in conn.execute("SELECT (payload->>'n')::int FROM temp_records"))
        assert left == [-3, -2, -1]
        assert conn.execute(
            "SELECT count(*) FROM temp_records WHERE expires_at < now()"
        ).fetchone() == (0,)

    again = run_job(database_url, "maintenance/cleanup", {"batch_size": 10_000})
    assert again.success and again.items_processed == 0 and again.message == "Deleted 0 records"
