"""The health of every job from run history, in one query (what the leading beat's
alerts and per-job metrics are computed from). The statement is
:data:`jobs_core.history_queries.JOB_HEALTH`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .alerts import MAX_RUN_IDS, JobHealth
from .history_queries import HEALTH_RECENT_RUNS, JOB_HEALTH

__all__ = ["HEALTH_RECENT_RUNS", "HealthReader", "fetch_job_health", "health_from_row"]


def health_from_row(row: Sequence[Any]) -> JobHealth:
    """One row of :data:`~jobs_core.history_queries.JOB_HEALTH` as a :class:`JobHealth`."""
    (
        job,
        success_ref,
        _success_enqueued,
        failure_at,
        failures,
        ids,
        running_ids,
        running_since,
        finished_id,
        finished_status,
        recent_failure_at,
    ) = row
    return JobHealth(
        job=job,
        last_success_at=success_ref,
        # No failure since the latest success: the latest failure is one of the recent
        # runs, or further back than the query looks (see JOB_HEALTH).
        last_failure_at=failure_at if failure_at is not None else recent_failure_at,
        consecutive_failures=int(failures or 0),
        failing_run_ids=tuple(ids or ()),
        running=tuple(zip(running_ids or (), running_since or (), strict=True)),
        last_finished=(finished_id, finished_status) if finished_id is not None else None,
    )


def fetch_job_health(conn: Any, keys: Sequence[str]) -> dict[str, JobHealth]:
    """The health of each job of ``keys`` (a psycopg connection; one statement)."""
    return {row[0]: health_from_row(row) for row in _health_rows(conn, keys)}


class HealthReader:
    """:func:`fetch_job_health` round after round: a job whose row is the one it had
    last time gets the very :class:`JobHealth` object it had, so that an unchanged
    history is one identity test away (:mod:`jobs_core.alert_rounds`), and building
    100,000 of them every round is saved."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[tuple[Any, ...], JobHealth]] = {}
        self._keys: tuple[list[str], str] = ([], "{}")
        #: Jobs whose row changed (or is new) in the last read.
        self.changed = 0

    def reset(self) -> None:
        self._last = {}

    def read(self, conn: Any, keys: Sequence[str]) -> dict[str, JobHealth]:
        last = self._last
        kept: dict[str, tuple[tuple[Any, ...], JobHealth]] = {}
        out: dict[str, JobHealth] = {}
        changed = 0
        listed = list(keys)
        if listed != self._keys[0]:
            # Sent as one array literal, made once per job table: psycopg adapts a list
            # element by element in Python (most of the round's CPU once the rest is
            # incremental).
            self._keys = (listed, array_literal(listed))
        for row in _health_rows(conn, listed, self._keys[1]):
            row = tuple(row)
            job = row[0]
            before = last.get(job)
            if before is None or before[0] != row:
                before = (row, health_from_row(row))
                changed += 1
            kept[job] = before
            out[job] = before[1]
        self._last, self.changed = kept, changed
        return out


def array_literal(values: Sequence[str]) -> str:
    """``values`` as a PostgreSQL array literal (every element quoted)."""
    quoted = (v.replace("\\", "\\\\").replace('"', '\\"') for v in values)
    return "{" + ",".join(f'"{v}"' for v in quoted) + "}"


def _health_rows(conn: Any, keys: Sequence[str], literal: str | None = None) -> list[Sequence[Any]]:
    """The rows of JOB_HEALTH for ``keys`` (``literal``: the same as an array literal)."""
    if not keys:
        return []
    with conn.transaction():
        # The planner cannot know that each lateral stops after a few rows, so its cost
        # estimate of the whole statement passes jit_above_cost for a few hundred jobs;
        # compiling it then takes longer than running it (45 ms against 40 ms).
        conn.execute("SET LOCAL jit = off")
        cur = conn.execute(
            JOB_HEALTH, {"keys": list(keys) if literal is None else literal, "max_ids": MAX_RUN_IDS}
        )
        rows: list[Sequence[Any]] = cur.fetchall()
    return rows
