"""The history schema on a real PostgreSQL: what it accepts and refuses after migrating."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from jobs_core.schema import migrate
from jobs_core.status import RunStatus, Trigger

pytestmark = [pytest.mark.integration, pytest.mark.servers]


def _insert(conn: psycopg.Connection, trigger: str, status: str) -> None:
    conn.execute(
        "INSERT INTO job_runs (id, job_key, trigger, status) VALUES (%s, 'a/b', %s, %s)",
        (str(uuid.uuid4()), trigger, status),
    )


def test_every_status_and_trigger_of_the_enums_is_accepted(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for trigger in Trigger:
            for status in RunStatus:
                _insert(conn, trigger.value, status.value)
        total = conn.execute("SELECT count(*) FROM job_runs").fetchone()
        assert total == (len(Trigger) * len(RunStatus),)


def test_unknown_status_and_trigger_are_refused(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.CheckViolation):
            _insert(conn, "manual", "exploded")
        with pytest.raises(psycopg.errors.CheckViolation):
            _insert(conn, "cron", "queued")


def test_audit_columns_exist_and_migrate_is_idempotent(database_url: str) -> None:
    assert migrate(database_url) == []
    with psycopg.connect(database_url, autocommit=True) as conn:
        rid, original = str(uuid.uuid4()), str(uuid.uuid4())
        conn.execute(
            "INSERT INTO job_runs (id, job_key, trigger, status, triggered_by, reason, rerun_of)"
            " VALUES (%s, 'a/b', 'rerun', 'queued', 'ops@host', 'why', %s)",
            (rid, original),
        )
        row = conn.execute(
            "SELECT triggered_by, reason, rerun_of::text FROM job_runs WHERE id = %s", (rid,)
        ).fetchone()
        assert row == ("ops@host", "why", original)
