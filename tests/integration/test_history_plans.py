"""The run history's pages are index range scans in the indexes' order: no sort step
(a sort reads every matching run before the first page comes back)."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from jobs_core import history_queries as q

pytestmark = [pytest.mark.integration, pytest.mark.servers]

PARAMS = {
    "job_key": "a/b",
    "status": "failed",
    "trigger": "manual",
    "since": datetime(2026, 1, 1, tzinfo=UTC),
    "until": None,
    "after_enqueued_at": datetime(2026, 5, 1, tzinfo=UTC),
    "after_id": "00000000-0000-0000-0000-000000000000",
    "limit": 51,
    "scan": 5000,
}


def plan(conn: psycopg.Connection[tuple[str]], sql: str) -> str:
    # An empty table: without this the planner rightly prefers reading it whole.
    conn.execute("SET enable_seqscan = off")
    conn.execute("SET enable_bitmapscan = off")
    return "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, PARAMS).fetchall())


@pytest.mark.parametrize(
    "conditions",
    [{"job_key"}, {"job_key", "after"}, {"after"}, {"trigger", "since"}, {"job_key", "since"}],
)
def test_pages_need_no_sort(database_url: str, conditions: set[str]) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        text = plan(conn, q.runs(frozenset(conditions)))
    assert "Index Scan" in text and "Sort" not in text, text


def test_a_bounded_page_walks_an_index_for_the_runs_it_reads(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        text = plan(conn, q.scanned_runs(frozenset({"job_key", "status", "after"})))
        end = plan(conn, q.scan_end(frozenset({"job_key", "status", "after"})))
    scanned = text[: text.index("CTE page")] if "CTE page" in text else text
    assert "job_runs_job_page" in scanned and "Sort" not in end, text


def test_job_health_reads_running_runs_from_the_unfinished_runs_index(database_url: str) -> None:
    """The running runs come from the partial index of unfinished runs (migration 0004),
    not from a window of the newest runs: no LIMIT bounds that lateral."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET enable_bitmapscan = off")
        text = "\n".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN " + q.JOB_HEALTH, {"keys": ["a/b"], "max_ids": 10}
            ).fetchall()
        )
    assert "Index Scan using job_runs_unfinished" in text, text


def test_the_incremental_health_read_walks_small_indexes(database_url: str) -> None:
    """What an incremental health read asks besides JOB_HEALTH costs what changed: the
    runs inserted since the last read from ``job_runs_inserted`` (migration 0006), the
    unfinished ones from ``job_runs_unfinished``; never the whole table."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        inserted = "\n".join(
            r[0] for r in conn.execute("EXPLAIN " + q.INSERTED_SINCE, {"since": "1000"})
        )
        state = "\n".join(r[0] for r in conn.execute("EXPLAIN " + q.HEALTH_STATE))
    assert "job_runs_inserted" in inserted and "Seq Scan" not in inserted, inserted
    assert "job_runs_unfinished" in state and "Seq Scan" not in state, state
