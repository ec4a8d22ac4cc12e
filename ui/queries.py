"""The dashboard's reads of run history: the store's public methods plus the few
queries only the dashboard needs (recent runs of many jobs at once, filtered and paged
history, the tick ledger), kept here in one place."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jobs_core.history import Run, RunHistory
from jobs_core.history_pg import PostgresHistory, run_from_row
from jobs_core.history_queries import RUN_COLUMNS
from jobs_core.status import RunStatus, Trigger

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

#: Triggers that are ticks of the schedule: the rows of the tick ledger. Written into
#: the SQL as literals so PostgreSQL can use the partial index on ticks.
TICK_TRIGGERS = tuple(t.value for t in Trigger if t.is_tick)
_TICKS_SQL = ", ".join(f"'{t}'" for t in TICK_TRIGGERS)


@dataclass(frozen=True)
class Recent:
    """A job's last runs, as the overview shows them (oldest first in the lists)."""

    last_id: str
    last_status: RunStatus
    statuses: list[str]
    durations: list[int | None]


@dataclass(frozen=True)
class HistoryFilter:
    status: RunStatus | None = None
    trigger: Trigger | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Cursor:
    """Keyset paging: the page after the run enqueued at ``enqueued_at`` with id ``id``."""

    enqueued_at: datetime
    id: str

    def encode(self) -> str:
        return f"{self.enqueued_at.isoformat()}_{self.id}"

    @classmethod
    def decode(cls, text: str) -> Cursor | None:
        when, sep, rid = text.rpartition("_")
        try:
            return cls(datetime.fromisoformat(when), rid) if sep else None
        except ValueError:
            return None


class Queries:
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool
        self.store: RunHistory = PostgresHistory(pool)

    async def get_run(self, run_id: str) -> Run | None:
        return await self.store.get_run(run_id)

    async def recent(self, job_keys: list[str], per_job: int) -> dict[str, Recent]:
        """The last ``per_job`` runs of each job: one index probe per job, one row each."""
        if not job_keys:
            return {}
        sql = """
        SELECT k.key, r.ids[1], r.statuses[1], r.statuses, r.durations
        FROM unnest(%s::text[]) AS k(key)
        CROSS JOIN LATERAL (
            SELECT array_agg(id::text ORDER BY enqueued_at DESC) AS ids,
                   array_agg(status ORDER BY enqueued_at DESC) AS statuses,
                   array_agg(duration_ms ORDER BY enqueued_at DESC) AS durations
            FROM (SELECT id, status, duration_ms, enqueued_at FROM job_runs
                  WHERE job_key = k.key ORDER BY enqueued_at DESC LIMIT %s) AS last
        ) AS r
        WHERE r.ids IS NOT NULL
        """
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, (job_keys, per_job))
            rows = await cur.fetchall()
        return {
            key: Recent(last_id, RunStatus(last_status), statuses[::-1], durations[::-1])
            for key, last_id, last_status, statuses, durations in rows
        }

    async def history(
        self, job_key: str, filters: HistoryFilter, *, limit: int, after: Cursor | None = None
    ) -> tuple[list[Run], Cursor | None]:
        """One page of a job's runs, newest first, and the cursor of the next page."""
        where = ["job_key = %s"]
        args: list[Any] = [job_key]
        if filters.status is not None:
            where.append("status = %s")
            args.append(filters.status.value)
        if filters.trigger is not None:
            where.append("trigger = %s")
            args.append(filters.trigger.value)
        if filters.since is not None:
            where.append("enqueued_at >= %s")
            args.append(filters.since)
        if filters.until is not None:
            where.append("enqueued_at < %s")
            args.append(filters.until)
        if after is not None:
            where.append("(enqueued_at, id) < (%s, %s::uuid)")
            args += [after.enqueued_at, after.id]
        sql = (
            f"SELECT {RUN_COLUMNS} FROM job_runs WHERE {' AND '.join(where)}"
            " ORDER BY enqueued_at DESC, id DESC LIMIT %s"
        )
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, (*args, limit + 1))
            rows = await cur.fetchall()
        runs = [run_from_row(r) for r in rows[:limit]]
        more = len(rows) > limit
        return runs, (Cursor(runs[-1].enqueued_at, runs[-1].id) if more and runs else None)

    async def ticks(self, job_key: str, limit: int) -> list[Run]:
        """The tick ledger: the job's latest ticks by scheduled instant, skipped ones too."""
        sql = (
            f"SELECT {RUN_COLUMNS} FROM job_runs WHERE job_key = %s"
            f" AND trigger IN ({_TICKS_SQL}) ORDER BY scheduled_for DESC LIMIT %s"
        )
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, (job_key, limit))
            return [run_from_row(r) for r in await cur.fetchall()]
