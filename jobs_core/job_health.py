"""The health of every job from run history, in one query (what the leading beat's
alerts and per-job metrics are computed from). The statement is
:data:`jobs_core.history_queries.JOB_HEALTH`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .alerts import MAX_RUN_IDS, JobHealth
from .history_queries import FAILURES, HEALTH_RECENT_RUNS, JOB_HEALTH

__all__ = ["HEALTH_RECENT_RUNS", "fetch_job_health", "health_from_row"]

_FINISHED = frozenset({"succeeded", "failed", "timed_out", "skipped", "cancelled", "lost"})
_FAILED = frozenset(status.value for status in FAILURES)


def _instant(epoch: str | None) -> datetime | None:
    return datetime.fromtimestamp(float(epoch), UTC) if epoch is not None else None


def health_from_row(row: Sequence[Any]) -> JobHealth:
    """One row of :data:`~jobs_core.history_queries.JOB_HEALTH` as a :class:`JobHealth`."""
    job, success_ref, _success_enqueued, failure_at, failures, ids, recent = row
    running: list[tuple[str, datetime]] = []
    last_finished: tuple[str, str] | None = None
    for run_id, status, started, *ended in recent or ():
        if status == "running" and started is not None:
            running.append((run_id, datetime.fromtimestamp(float(started), UTC)))
        elif last_finished is None and status in _FINISHED:
            last_finished = (run_id, status)
        # No failure since the latest success: the latest failure is one of the recent
        # runs, or further back than the query looks (see JOB_HEALTH).
        if failure_at is None and status in _FAILED and ended:
            failure_at = _instant(ended[0])
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
    with conn.transaction():
        # The planner cannot know that each lateral stops after a few rows, so its cost
        # estimate of the whole statement passes jit_above_cost for a few hundred jobs;
        # compiling it then takes longer than running it (45 ms against 40 ms).
        conn.execute("SET LOCAL jit = off")
        cur = conn.execute(JOB_HEALTH, {"keys": list(keys), "max_ids": MAX_RUN_IDS})
        rows = cur.fetchall()
    return {row[0]: health_from_row(row) for row in rows}
