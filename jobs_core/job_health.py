"""The health of every job from run history, in one query (what the leading beat's
alerts and per-job metrics are computed from)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .alerts import MAX_RUN_IDS, JobHealth

#: Runs looked at per job for the runs still running and the latest finished run.
RECENT_RUNS = 50

_FAILED = "('failed', 'timed_out', 'lost')"

# One round trip for all jobs; every lateral walks job_runs_job_recent (job_key,
# enqueued_at DESC) from the newest run of one job and stops early, except the count of
# failures since the last success, which reads only the runs newer than that success.
SQL = f"""
SELECT k.job_key,
       s.ref_at,
       s.enqueued_at,
       f.finished_at,
       c.failures,
       c.ids,
       r.recent
FROM unnest(%(keys)s::text[]) AS k(job_key)
LEFT JOIN LATERAL (
    SELECT coalesce(scheduled_for, started_at, enqueued_at) AS ref_at, enqueued_at
    FROM job_runs
    WHERE job_key = k.job_key AND status = 'succeeded'
    ORDER BY enqueued_at DESC LIMIT 1
) s ON true
LEFT JOIN LATERAL (
    SELECT coalesce(finished_at, updated_at) AS finished_at
    FROM job_runs
    WHERE job_key = k.job_key AND status IN {_FAILED}
    ORDER BY enqueued_at DESC LIMIT 1
) f ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS failures,
           (array_agg(id::text ORDER BY enqueued_at DESC))[1:{MAX_RUN_IDS}] AS ids
    FROM job_runs
    WHERE job_key = k.job_key AND status IN {_FAILED}
      AND enqueued_at > coalesce(s.enqueued_at, '-infinity'::timestamptz)
) c ON true
LEFT JOIN LATERAL (
    SELECT array_agg(
               ARRAY[id::text, status, extract(epoch FROM coalesce(started_at, enqueued_at))::text]
               ORDER BY enqueued_at DESC
           ) AS recent
    FROM (
        SELECT id, status, started_at, enqueued_at
        FROM job_runs
        WHERE job_key = k.job_key
        ORDER BY enqueued_at DESC LIMIT {RECENT_RUNS}
    ) last
) r ON true
"""

_FINISHED = frozenset({"succeeded", "failed", "timed_out", "skipped", "cancelled", "lost"})


def health_from_row(row: Sequence[Any]) -> JobHealth:
    """One row of :data:`SQL` as a :class:`JobHealth`."""
    job, success_ref, _success_enqueued, failure_at, failures, ids, recent = row
    running: list[tuple[str, datetime]] = []
    last_finished: tuple[str, str] | None = None
    for run_id, status, started in recent or ():
        if status == "running" and started is not None:
            running.append((run_id, datetime.fromtimestamp(float(started), UTC)))
        elif last_finished is None and status in _FINISHED:
            last_finished = (run_id, status)
    return JobHealth(
        job=job,
        last_success_at=success_ref,
        last_failure_at=failure_at,
        consecutive_failures=int(failures or 0),
        failing_run_ids=tuple(ids or ()),
        running=tuple(running),
        last_finished=last_finished,
    )


def fetch_job_health(conn: Any, keys: Sequence[str]) -> dict[str, JobHealth]:
    """The health of each job of ``keys`` (a psycopg connection; one statement)."""
    if not keys:
        return {}
    rows = conn.execute(SQL, {"keys": list(keys)}).fetchall()
    return {row[0]: health_from_row(row) for row in rows}
