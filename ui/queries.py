"""The dashboard's reads of run history: the store's public methods plus the few
queries only the dashboard needs (recent runs of many jobs at once, the tick ledger),
whose SQL is in :mod:`jobs_core.history_queries` with the rest. Filtered, paged history
is the store's (shared with the CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobs_core import history_queries as q
from jobs_core.history import Cursor, Run, RunFilter, RunHistory
from jobs_core.history_pg import PostgresHistory, run_from_row
from jobs_core.status import RunStatus

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool


@dataclass(frozen=True)
class Recent:
    """A job's last runs, as the overview shows them (oldest first in the lists)."""

    last_id: str
    last_status: RunStatus
    statuses: list[str]
    durations: list[int | None]


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
        async with self.pool.connection() as conn:
            cur = await conn.execute(q.RECENT_OF_JOBS, {"job_keys": job_keys, "per_job": per_job})
            rows = await cur.fetchall()
        return {
            key: Recent(last_id, RunStatus(last_status), statuses[::-1], durations[::-1])
            for key, last_id, last_status, statuses, durations in rows
        }

    async def history(
        self,
        filters: RunFilter,
        *,
        limit: int,
        after: Cursor | None = None,
        scan: int | None = None,
    ) -> tuple[list[Run], Cursor | None]:
        """One page of runs, newest first, and the cursor of the next page (``scan``:
        see :meth:`jobs_core.history.RunHistory.runs`)."""
        return await self.store.runs(filters, limit=limit, after=after, scan=scan)

    async def ticks(self, job_key: str, limit: int) -> list[Run]:
        """The tick ledger: the job's latest ticks by scheduled instant, skipped ones too."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(q.TICKS, {"job_key": job_key, "limit": limit})
            return [run_from_row(r) for r in await cur.fetchall()]
