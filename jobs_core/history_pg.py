"""Run history in PostgreSQL, on a ``psycopg_pool.AsyncConnectionPool`` (or anything
else that lends connections the same way: :class:`Connections`).

The statements live in :mod:`jobs_core.history_queries`; this module binds their
parameters and turns rows into :class:`~jobs_core.history.Run` records.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from . import history_queries as q
from .errors import DuplicateTick, UnknownJob
from .history import (
    Attempt,
    AttemptEnd,
    AttemptStart,
    Cancelled,
    Claim,
    Cursor,
    QueuedRun,
    Run,
    RunFilter,
)
from .status import RunStatus, Trigger

if TYPE_CHECKING:
    from psycopg import AsyncConnection

#: Where a prune's first batch starts: before every run.
_BEFORE_ALL = datetime(1, 1, 2, tzinfo=UTC)
_FIRST_ID = uuid.UUID(int=0)


def _json(value: dict[str, Any] | None) -> Any:
    from psycopg.types.json import Jsonb

    return Jsonb(value) if value is not None else None


def _start_params(start: AttemptStart) -> dict[str, Any]:
    return {
        "run_id": start.run_id,
        "job_key": start.job_key,
        "trigger": start.trigger.value,
        "attempt": start.attempt,
        "max_attempts": start.max_attempts,
        "worker": start.worker,
        "scheduled_for": start.scheduled_for,
        "enqueued_at": start.enqueued_at,
        "parameters": _json(start.parameters),
        "triggered_by": start.triggered_by,
        "reason": start.reason,
    }


def _end_params(end: AttemptEnd) -> dict[str, Any]:
    return {
        "status": end.status.value,
        "attempt_status": end.attempt_status.value,
        "closes_run": end.closes_run,
        "duration_ms": end.duration_ms,
        "message": end.message,
        "error": end.error,
        "items_processed": end.items_processed,
        "items_failed": end.items_failed,
        "data": _json(end.data),
        "next_attempt_at": end.next_attempt_at,
        "cancelled_by": end.cancelled_by,
    }


def _settle_params(start: AttemptStart, started_at: datetime, end: AttemptEnd) -> dict[str, Any]:
    return {**_start_params(start), **_end_params(end), "started_at": started_at}


#: RunStatus by value: a dict lookup, where calling the enum costs ~1 µs a row.
_STATUS_OF = {status.value: status for status in RunStatus}


def run_from_row(row: Sequence[Any], attempts: Iterable[Attempt] = ()) -> Run:
    """A :class:`Run` from a row of :data:`jobs_core.history_queries.RUN_COLUMNS`."""
    rid, job_key, trigger, status, *rest = row
    fields = (rid, job_key, Trigger(trigger), RunStatus(status), *rest)
    return Run(*fields, attempts=tuple(attempts))  # type: ignore[misc]


def _is_uuid(run_id: str) -> bool:
    try:
        uuid.UUID(run_id)
    except ValueError:
        return False
    return True


def settle_attempt_sync(
    database_url: str, start: AttemptStart, started_at: datetime, end: AttemptEnd
) -> bool:
    """:meth:`PostgresHistory.settle_attempt` on a fresh blocking connection.

    For the worker's last resort, when a job has blocked the event loop that owns the
    async pool and the outcome must still reach history.
    """
    import psycopg

    with psycopg.connect(database_url, connect_timeout=10, autocommit=True) as conn:
        params = _settle_params(start, started_at, end)
        try:
            return conn.execute(q.SETTLE_ATTEMPT, params).fetchone() is not None
        except psycopg.errors.UniqueViolation as exc:
            raise DuplicateTick.of(start.job_key, start.scheduled_for) from exc


class Connections(Protocol):
    """What :class:`PostgresHistory` needs of its pool: a connection lent for a block,
    its transaction committed at the end of the block (rolled back on an error)."""

    def connection(self) -> AbstractAsyncContextManager[AsyncConnection[Any]]: ...


class PostgresHistory:
    """:class:`jobs_core.history.RunHistory` in PostgreSQL (see the core migrations)."""

    def __init__(self, pool: Connections) -> None:
        self.pool = pool

    async def create_run(
        self,
        *,
        job_key: str,
        trigger: Trigger,
        max_attempts: int,
        parameters: dict[str, Any] | None = None,
        scheduled_for: datetime | None = None,
        run_id: str | None = None,
        status: RunStatus = RunStatus.QUEUED,
        message: str | None = None,
        triggered_by: str | None = None,
        reason: str | None = None,
        rerun_of: str | None = None,
    ) -> str:
        rid = run_id or str(uuid.uuid4())
        params = {
            "run_id": rid,
            "job_key": job_key,
            "trigger": trigger.value,
            "status": status.value,
            "closes_run": status.is_terminal,
            "scheduled_for": scheduled_for,
            "max_attempts": max_attempts,
            "parameters": _json(parameters or {}),
            "message": message,
            "triggered_by": triggered_by,
            "reason": reason,
            "rerun_of": rerun_of,
        }
        async with self.pool.connection() as conn:
            await conn.execute(q.CREATE_RUN, params)
        return rid

    async def create_tick_runs(
        self,
        job_key: str,
        ticks: Sequence[tuple[str, datetime]],
        *,
        trigger: Trigger,
        max_attempts: int,
        parameters: dict[str, Any],
        triggered_by: str | None = None,
        reason: str | None = None,
    ) -> list[str]:
        if not ticks:
            return []
        params = {
            "job_key": job_key,
            "trigger": trigger.value,
            "max_attempts": max_attempts,
            "parameters": _json(parameters),
            "triggered_by": triggered_by,
            "reason": reason,
            "ids": [rid for rid, _ in ticks],
            "ticks": [when for _, when in ticks],
        }
        async with self.pool.connection() as conn:
            cur = await conn.execute(q.CREATE_TICK_RUNS, params)
            return [r[0] for r in await cur.fetchall()]

    async def create_queued_runs(
        self,
        runs: Sequence[QueuedRun],
        *,
        trigger: Trigger,
        triggered_by: str | None = None,
        reason: str | None = None,
        rerun_of: str | None = None,
    ) -> list[str]:
        malformed = [r.run_id for r in runs if not _is_uuid(r.run_id)]
        if malformed:
            raise ValueError(f"not a run id: {malformed[0]!r}")
        if not runs:
            return []
        params = {
            "trigger": trigger.value,
            "triggered_by": triggered_by,
            "reason": reason,
            "rerun_of": rerun_of,
            "ids": [r.run_id for r in runs],
            "job_keys": [r.job_key for r in runs],
            "max_attempts": [r.max_attempts for r in runs],
            "parameters": [_json(r.parameters) for r in runs],
        }
        async with self.pool.connection() as conn:
            cur = await conn.execute(q.CREATE_QUEUED_RUNS, params)
            return [r[0] for r in await cur.fetchall()]

    async def cancel_run(self, run_id: str, *, by: str, message: str) -> Cancelled:
        if not _is_uuid(run_id):
            return Cancelled(False, None)
        params = {"run_id": run_id, "by": by, "message": message}
        async with self.pool.connection() as conn:
            cur = await conn.execute(q.CANCEL_RUN, params)
            row = await cur.fetchone()
        assert row is not None  # an aggregate-free SELECT of scalars: always one row
        changed, before = bool(row[0]), row[1]
        if changed:
            return Cancelled(True, RunStatus.CANCELLED)
        return Cancelled(False, RunStatus(before) if before is not None else None)

    async def withdraw_queued(self, run_ids: Sequence[str]) -> list[str]:
        ids = [rid for rid in run_ids if _is_uuid(rid)]
        if not ids:
            return []
        async with self.pool.connection() as conn:
            cur = await conn.execute(q.WITHDRAW_QUEUED, {"ids": ids})
            return [r[0] for r in await cur.fetchall()]

    async def start_attempt(self, start: AttemptStart) -> Claim:
        import psycopg

        params = _start_params(start)
        async with self.pool.connection() as conn:
            try:
                cur = await conn.execute(q.START_ATTEMPT, params)
            except psycopg.errors.UniqueViolation as exc:
                raise DuplicateTick.of(start.job_key, start.scheduled_for) from exc
            row = await cur.fetchone()
            if row is None:
                cur = await conn.execute(q.RUN_STATUS, {"run_id": start.run_id})
                current = await cur.fetchone()
                now = RunStatus(current[0]) if current else None
                return Claim(start.run_id, False, now)
        return Claim(start.run_id, True, RunStatus.RUNNING, took_over=row[0] == RunStatus.RUNNING)

    async def finish_attempt(self, run_id: str, attempt: int, end: AttemptEnd) -> bool:
        params = _end_params(end)
        params.update(run_id=run_id, attempt=attempt)
        async with self.pool.connection() as conn:
            cur = await conn.execute(q.FINISH_ATTEMPT, params)
            return await cur.fetchone() is not None

    async def settle_attempt(
        self, start: AttemptStart, started_at: datetime, end: AttemptEnd
    ) -> bool:
        import psycopg

        async with self.pool.connection() as conn:
            try:
                cur = await conn.execute(q.SETTLE_ATTEMPT, _settle_params(start, started_at, end))
            except psycopg.errors.UniqueViolation as exc:
                raise DuplicateTick.of(start.job_key, start.scheduled_for) from exc
            return await cur.fetchone() is not None

    async def mark_lost(
        self, run_id: str, attempt: int, worker: str, message: str, *, requeue: bool
    ) -> bool:
        if not _is_uuid(run_id):
            return False
        params = {
            "run_id": run_id,
            "attempt": attempt,
            "worker": worker,
            "message": message,
            "requeue": requeue,
            "attempt_status": RunStatus.LOST.value,
            "duration_ms": None,
            "error": None,
        }
        async with self.pool.connection() as conn:
            cur = await conn.execute(q.MARK_LOST, params)
            return await cur.fetchone() is not None

    async def running_on(self, worker: str, *, started_before: datetime | None = None) -> list[Run]:
        params = {"worker": worker, "started_before": started_before}
        async with self.pool.connection() as conn:
            cur = await conn.execute(q.RUNNING_ON, params)
            return [run_from_row(r) for r in await cur.fetchall()]

    async def get_run(self, run_id: str, *, with_attempts: bool = True) -> Run | None:
        if not _is_uuid(run_id):
            return None
        key = {"run_id": run_id}
        async with self.pool.connection() as conn:
            cur = await conn.execute(q.GET_RUN, key)
            row = await cur.fetchone()
            if row is None:
                return None
            attempts: list[Attempt] = []
            if with_attempts:
                cur = await conn.execute(q.GET_ATTEMPTS, key)
                attempts = [Attempt(a[0], RunStatus(a[1]), *a[2:]) for a in await cur.fetchall()]
        return run_from_row(row, attempts)

    async def history(self, job_key: str | None = None, *, limit: int = 20) -> list[Run]:
        runs, _ = await self.runs(RunFilter(job_key=job_key), limit=limit)
        return runs

    async def runs(
        self,
        filters: RunFilter,
        *,
        limit: int,
        after: Cursor | None = None,
        scan: int | None = None,
    ) -> tuple[list[Run], Cursor | None]:
        params: dict[str, Any] = {
            "job_key": filters.job_key,
            "status": filters.status.value if filters.status else None,
            "trigger": filters.trigger.value if filters.trigger else None,
            "since": filters.since,
            "until": filters.until,
            "limit": limit + 1,
        }
        used = {k for k, v in params.items() if v is not None and k != "limit"}
        if after is not None:
            used.add("after")
            params.update(after_enqueued_at=after.enqueued_at, after_id=after.id)
        if scan is not None and scan < 1:
            raise ValueError(f"scan must be at least 1, got {scan}")
        conditions = frozenset(used)
        bounded = scan is not None and bool(q.unindexed(conditions))
        async with self.pool.connection() as conn:
            if bounded:
                params["scan"] = scan
                cur = await conn.execute(q.scanned_runs(conditions), params)
            else:
                cur = await conn.execute(q.runs(conditions), params)
            rows = await cur.fetchall()
            page = [run_from_row(r) for r in rows[:limit]]
            if len(rows) > limit:
                return page, Cursor.after_run(page[-1])
            if not bounded:
                return page, None
            # A short page: the scan ended before enough runs matched, or nothing older
            # is left; in the first case the next page starts after the last run read.
            cur = await conn.execute(q.scan_end(conditions), params)
            end = await cur.fetchall()
        return page, (Cursor(end[0][0], end[0][1]) if len(end) > 1 else None)

    async def last_runs(self, job_keys: Sequence[str]) -> dict[str, Run]:
        if not job_keys:
            return {}
        async with self.pool.connection() as conn:
            cur = await conn.execute(q.LAST_RUNS, {"job_keys": list(job_keys)})
            return {r[1]: run_from_row(r) for r in await cur.fetchall()}

    async def last_statuses(self, job_keys: Sequence[str]) -> dict[str, tuple[RunStatus, datetime]]:
        if not job_keys:
            return {}
        joined = q.KEY_SEPARATOR.join(job_keys)
        if joined.count(q.KEY_SEPARATOR) != len(job_keys) - 1:
            # Never a job's key (NAME_RE): not one to look up.
            raise UnknownJob("a job key holds the control character U+001F")
        statuses = _STATUS_OF
        async with self.pool.connection() as conn, conn.transaction():
            # One index probe per job, estimated at 8 each: 100,000 jobs pass the JIT's
            # thresholds, and compiling took 37 ms of a 260 ms query (see job_health).
            await conn.execute("SET LOCAL jit = off")
            cur = await conn.execute(q.LAST_STATUSES, {"job_keys": joined})
            return {key: (statuses[status], at) for key, status, at in await cur.fetchall()}

    async def counts_since(self, job_key: str, since: datetime) -> dict[RunStatus, int]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(q.COUNTS_SINCE, {"job_key": job_key, "since": since})
            return {RunStatus(status): int(n) for status, n in await cur.fetchall()}

    async def prune(
        self,
        finished_before: datetime,
        *,
        batch: int = 5000,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        total = 0
        params: dict[str, Any] = {
            "before": finished_before,
            "batch": batch,
            "after_at": _BEFORE_ALL,
            "after_id": _FIRST_ID,
        }
        while True:
            # One short transaction per batch: locks are held for one batch only.
            async with self.pool.connection() as conn:
                cur = await conn.execute(q.PRUNE_BATCH, params)
                row = await cur.fetchone()
            if row is None:
                return total
            deleted, looked_at, params["after_at"], params["after_id"] = row
            total += int(deleted)
            if deleted and progress is not None:
                progress(total)
            if looked_at < batch:
                return total
