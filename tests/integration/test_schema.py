"""The history schema on a real PostgreSQL: what it accepts and refuses after migrating."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from cli.embedded import PostgresServer
from jobs_core.job_health import fetch_job_health
from jobs_core.schema import all_migrations, apply_migrations, core_migrations, migrate
from jobs_core.status import RunStatus, Trigger

UNFINISHED = "core/0004_unfinished_runs"

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


@pytest.fixture
def empty_database(pg_server: PostgresServer) -> Iterator[str]:
    """A database with no migration applied."""
    name = f"e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield pg_server.url_for(name)
    with psycopg.connect(pg_server.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _before_unfinished(url: str) -> None:
    """The schema as it was before migration 0004, then runs of every status."""
    older = [(mid, sql) for mid, sql in core_migrations() if mid < UNFINISHED]
    assert [mid for mid, _ in older] == [
        "core/0001_job_runs",
        "core/0002_run_control",
        "core/0003_run_control_indexes",
    ]
    apply_migrations(url, older)
    with psycopg.connect(url, autocommit=True) as conn:
        for status in RunStatus:
            conn.execute(
                "INSERT INTO job_runs (id, job_key, trigger, status, started_at, finished_at)"
                " VALUES (%s, 'a/b', 'schedule', %s, now(),"
                " CASE WHEN %s THEN now() END)",
                (str(uuid.uuid4()), status.value, status.is_terminal),
            )


def _unfinished_index(conn: psycopg.Connection[tuple[object, ...]]) -> tuple[object, ...] | None:
    return conn.execute(
        "SELECT i.indisvalid, i.indisunique, pg_get_indexdef(i.indexrelid) FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'job_runs_unfinished'"
    ).fetchone()


def test_the_unfinished_runs_index_is_built_on_a_database_with_runs(empty_database: str) -> None:
    _before_unfinished(empty_database)
    applied = migrate(empty_database)
    assert applied[0] == UNFINISHED
    with psycopg.connect(empty_database, autocommit=True) as conn:
        index = _unfinished_index(conn)
        assert index is not None and index[0] is True and index[1] is False
        assert "WHERE (finished_at IS NULL)" in str(index[2])
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET enable_bitmapscan = off")
        sql = "SELECT status FROM job_runs WHERE job_key = 'a/b' AND finished_at IS NULL"
        plan = "\n".join(str(r[0]) for r in conn.execute("EXPLAIN " + sql))
        assert "job_runs_unfinished" in plan, plan
        found = {r[0] for r in conn.execute(sql)}
        assert found == {s.value for s in RunStatus if not s.is_terminal}
        h = fetch_job_health(conn, ["a/b"])["a/b"]
    assert len(h.running) == 1
    assert migrate(empty_database) == []


def test_an_index_build_that_failed_is_built_again(empty_database: str) -> None:
    """A concurrent build that fails leaves an invalid index behind; the next migrate,
    which has not recorded the migration, replaces it."""
    _before_unfinished(empty_database)
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO job_runs (id, job_key, trigger, status) VALUES (%s, 'a/b', 'manual',"
            " 'queued')",
            (str(uuid.uuid4()),),
        )
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "CREATE UNIQUE INDEX CONCURRENTLY job_runs_unfinished ON job_runs (job_key)"
                " WHERE finished_at IS NULL"
            )
        assert _unfinished_index(conn) == (
            False,
            True,
            "CREATE UNIQUE INDEX job_runs_unfinished ON public.job_runs USING btree (job_key)"
            " WHERE (finished_at IS NULL)",
        )
    assert UNFINISHED in migrate(empty_database)
    with psycopg.connect(empty_database, autocommit=True) as conn:
        index = _unfinished_index(conn)
    assert index is not None and index[:2] == (True, False)


def test_concurrent_migrates_apply_each_migration_once(empty_database: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            results.append(migrate(empty_database))
        except BaseException as exc:  # the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and len(results) == 3
    applied = sorted(mid for r in results for mid in r)
    assert applied == sorted(mid for mid, _ in all_migrations())
