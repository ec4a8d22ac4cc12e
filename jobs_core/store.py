"""Run history in PostgreSQL: schema migrations and the queries the worker, beat and CLI use.

A run is one execution request: a scheduled tick, a catch-up tick, a manual or a bootstrap
run. It moves ``queued -> running -> succeeded | failed | timed_out | skipped`` with
``retrying`` between attempts; every attempt also gets a row in ``job_run_attempts``.
Scheduled ticks have deterministic ids (:func:`jobs_core.wire.tick_run_id`), so a
redelivered message for a tick lands on the same row and a finished tick is never run again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

from .errors import ServiceUnavailable, StoreError
from .status import TERMINAL, RunStatus, Trigger

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from .job import Extension

_MIGRATION_LOCK = 0x5359_5350_4A4F_4253  # arbitrary, constant: serialises concurrent migrates


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class Attempt:
    attempt: int
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    message: str | None
    error: str | None
    worker: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "status": self.status,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_ms": self.duration_ms,
            "message": self.message,
            "error": self.error,
            "worker": self.worker,
        }


@dataclass(frozen=True)
class Run:
    """One row of run history (JSON names follow the CLI contract)."""

    id: str
    job_key: str
    trigger: Trigger
    status: RunStatus
    scheduled_for: datetime | None
    enqueued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempt: int
    max_attempts: int
    duration_ms: int | None
    message: str | None
    error: str | None
    worker: str | None
    items_processed: int | None
    items_failed: int | None
    data: dict[str, Any]
    parameters: dict[str, Any]
    next_attempt_at: datetime | None
    attempts: tuple[Attempt, ...] = field(default=())

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "job": self.job_key,
            "trigger": self.trigger,
            "status": self.status,
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "scheduled_for": _iso(self.scheduled_for),
            "enqueued_at": _iso(self.enqueued_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_ms": self.duration_ms,
            "message": self.message,
            "error": self.error,
            "worker": self.worker,
            "items_processed": self.items_processed,
            "items_failed": self.items_failed,
            "data": self.data,
            "parameters": self.parameters,
            "next_attempt_at": _iso(self.next_attempt_at),
        }
        if self.attempts:
            out["attempts"] = [a.to_json() for a in self.attempts]
        return out


_RUN_COLUMNS = (
    "id::text, job_key, trigger, status, scheduled_for, enqueued_at, started_at, finished_at, "
    "attempt, max_attempts, duration_ms, message, error, worker, items_processed, "
    "items_failed, data, parameters, next_attempt_at"
)


def _run_from_row(row: Sequence[Any], attempts: Iterable[Attempt] = ()) -> Run:
    rid, job_key, trigger, status, *rest = row
    fields = (rid, job_key, Trigger(trigger), RunStatus(status), *rest)
    return Run(*fields, attempts=tuple(attempts))  # type: ignore[misc]


# ---------------------------------------------------------------- migrations


def core_migrations() -> list[tuple[str, str]]:
    folder = resources.files("jobs_core") / "migrations"
    found = sorted(
        (entry.name, entry.read_text("utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )
    return [(f"core/{name.removesuffix('.sql')}", sql) for name, sql in found]


def all_migrations(extensions: Iterable[Extension] = ()) -> list[tuple[str, str]]:
    out = core_migrations()
    for ext in extensions:
        out += [(f"{ext.name}/{mid}", sql) for mid, sql in ext.migrations()]
    return out


def migrate(database_url: str, extensions: Iterable[Extension] = ()) -> list[str]:
    """Apply every migration not yet applied; returns the ids applied now. Idempotent.

    Concurrent callers (two deploys at once) serialise on an advisory lock.
    """
    import psycopg

    try:
        conn = psycopg.connect(database_url, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable.at("PostgreSQL", database_url, exc) from None
    applied: list[str] = []
    with conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS systemprompt_migrations ("
            " id text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r[0] for r in conn.execute("SELECT id FROM systemprompt_migrations")}
        for mid, sql in all_migrations(extensions):
            if mid in done:
                continue
            try:
                conn.execute(sql.encode())
            except psycopg.Error as exc:
                raise StoreError(f"migration {mid} failed: {exc}") from exc
            conn.execute("INSERT INTO systemprompt_migrations (id) VALUES (%s)", (mid,))
            applied.append(mid)
    return applied


# ---------------------------------------------------------------- queries

_FINISH_SQL = """
WITH run AS (
    UPDATE job_runs SET status = %(status)s, duration_ms = %(dur)s,
        message = %(msg)s, error = %(err)s,
        items_processed = %(ip)s, items_failed = %(if)s,
        data = COALESCE(%(data)s, data),
        finished_at = CASE WHEN %(status)s = 'retrying' THEN NULL ELSE now() END,
        next_attempt_at = %(next)s, updated_at = now()
    WHERE id = %(id)s AND attempt = %(attempt)s
    RETURNING id, worker, started_at
)
INSERT INTO job_run_attempts (run_id, attempt, status, started_at, finished_at,
                              duration_ms, message, error, worker)
SELECT id, %(attempt)s, %(astatus)s, COALESCE(started_at, now()), now(), %(dur)s,
       %(msg)s, %(err)s, worker FROM run
ON CONFLICT (run_id, attempt) DO UPDATE SET status = EXCLUDED.status,
    finished_at = EXCLUDED.finished_at, duration_ms = EXCLUDED.duration_ms,
    message = EXCLUDED.message, error = EXCLUDED.error, worker = EXCLUDED.worker
"""


def finish_params(
    *,
    run_id: str,
    attempt: int,
    status: str,
    duration_ms: int | None,
    message: str | None = None,
    error: str | None = None,
    items_processed: int | None = None,
    items_failed: int | None = None,
    data: dict[str, Any] | None = None,
    next_attempt_at: datetime | None = None,
) -> dict[str, Any]:
    """Parameters of the end-of-attempt update: ``status`` is the run's new status.

    ``retrying`` keeps the run open (``next_attempt_at`` tells when it runs again);
    any terminal status closes it. The attempt row records what this attempt did.
    """
    try:
        status = RunStatus(status)
    except ValueError:
        raise StoreError(f"unknown run status {status!r}") from None
    from psycopg.types.json import Jsonb

    return {
        "id": run_id,
        "attempt": attempt,
        "status": status,
        "astatus": "failed" if status == "retrying" else status,
        "dur": duration_ms,
        "msg": message,
        "err": error,
        "ip": items_processed,
        "if": items_failed,
        "data": Jsonb(data) if data is not None else None,
        "next": next_attempt_at,
    }


_SETTLE_SQL = """
WITH run AS (
    INSERT INTO job_runs AS r (id, job_key, trigger, status, scheduled_for, enqueued_at,
        started_at, finished_at, attempt, max_attempts, worker, parameters, duration_ms,
        message, error, items_processed, items_failed, data, next_attempt_at, updated_at)
    VALUES (%(id)s, %(job)s, %(trigger)s, %(status)s, %(sched)s, COALESCE(%(enq)s, now()),
        %(started)s, CASE WHEN %(status)s = 'retrying' THEN NULL ELSE now() END,
        %(attempt)s, %(max)s, %(worker)s, %(params)s, %(dur)s, %(msg)s, %(err)s, %(ip)s,
        %(if)s, COALESCE(%(data)s, '{}'::jsonb), %(next)s, now())
    ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,
        started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at,
        attempt = EXCLUDED.attempt, max_attempts = EXCLUDED.max_attempts,
        worker = EXCLUDED.worker, parameters = EXCLUDED.parameters,
        duration_ms = EXCLUDED.duration_ms, message = EXCLUDED.message,
        error = EXCLUDED.error, items_processed = EXCLUDED.items_processed,
        items_failed = EXCLUDED.items_failed, data = EXCLUDED.data,
        next_attempt_at = EXCLUDED.next_attempt_at, updated_at = now()
    WHERE r.status NOT IN ('succeeded', 'failed', 'timed_out', 'skipped')
      AND r.attempt <= EXCLUDED.attempt
    RETURNING id, worker, started_at
)
INSERT INTO job_run_attempts (run_id, attempt, status, started_at, finished_at,
                              duration_ms, message, error, worker)
SELECT id, %(attempt)s, %(astatus)s, started_at, now(), %(dur)s, %(msg)s, %(err)s, worker
FROM run
ON CONFLICT (run_id, attempt) DO UPDATE SET status = EXCLUDED.status,
    finished_at = EXCLUDED.finished_at, duration_ms = EXCLUDED.duration_ms,
    message = EXCLUDED.message, error = EXCLUDED.error, worker = EXCLUDED.worker
RETURNING run_id
"""


def settle_params(
    *,
    job_key: str,
    trigger: Trigger | str,
    max_attempts: int,
    worker: str,
    scheduled_for: datetime | None,
    enqueued_at: datetime | None,
    started_at: datetime,
    parameters: dict[str, Any],
    **finish: Any,
) -> dict[str, Any]:
    """Parameters of :data:`_SETTLE_SQL`: the run's identity plus :func:`finish_params`."""
    from psycopg.types.json import Jsonb

    params = finish_params(**finish)
    params.update(
        job=job_key,
        trigger=str(Trigger(trigger).value),
        sched=scheduled_for,
        enq=enqueued_at,
        started=started_at,
        max=max_attempts,
        worker=worker,
        params=Jsonb(parameters),
    )
    return params


def settle_attempt_sync(database_url: str, **values: Any) -> bool:
    """:meth:`RunStore.settle_attempt` on a fresh blocking connection.

    For the worker's last resort, when a job has blocked the event loop that owns the
    async pool and the outcome must still reach history.
    """
    import psycopg

    with psycopg.connect(database_url, connect_timeout=10, autocommit=True) as conn:
        return conn.execute(_SETTLE_SQL, settle_params(**values)).fetchone() is not None


@dataclass(frozen=True)
class Claim:
    """Outcome of :meth:`RunStore.start_attempt`."""

    run_id: str
    started: bool  # False: the run is already finished (or a newer attempt owns it)
    status: str
    took_over: bool = False  # the row was 'running': its previous worker died


class RunStore:
    """Queries on the run history, on a ``psycopg_pool.AsyncConnectionPool``."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    async def create_run(
        self,
        *,
        job_key: str,
        trigger: Trigger | str,
        max_attempts: int,
        parameters: dict[str, Any] | None = None,
        scheduled_for: datetime | None = None,
        run_id: str | None = None,
        status: RunStatus = RunStatus.QUEUED,
        message: str | None = None,
    ) -> str:
        """Insert a run (manual, bootstrap or skipped tick); returns its id.

        For a tick that already has a row nothing changes (the tick happened once).
        """
        from psycopg.types.json import Jsonb

        rid = run_id or str(uuid.uuid4())
        finished = "now()" if status in TERMINAL else "NULL"
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO job_runs (id, job_key, trigger, status, scheduled_for, max_attempts,"
                f" parameters, message, finished_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,{finished})"
                " ON CONFLICT DO NOTHING",
                (
                    rid,
                    job_key,
                    str(Trigger(trigger).value),
                    status,
                    scheduled_for,
                    max_attempts,
                    Jsonb(parameters or {}),
                    message,
                ),
            )
        return rid

    async def start_attempt(
        self,
        *,
        run_id: str,
        job_key: str,
        trigger: Trigger | str,
        attempt: int,
        max_attempts: int,
        worker: str,
        scheduled_for: datetime | None,
        enqueued_at: datetime | None,
        parameters: dict[str, Any],
    ) -> Claim:
        """Mark ``attempt`` of the run as running (creating the row for a fresh tick).

        Refused when the run already finished or a later attempt exists: that is a
        redelivered message, and running it again would run a tick twice.
        """
        from psycopg.types.json import Jsonb

        sql = """
        WITH prev AS (SELECT status FROM job_runs WHERE id = %(id)s)
        INSERT INTO job_runs AS r (id, job_key, trigger, status, scheduled_for, enqueued_at,
                             started_at, attempt, max_attempts, worker, parameters, updated_at)
        VALUES (%(id)s, %(job)s, %(trigger)s, 'running', %(sched)s,
                COALESCE(%(enq)s, now()), now(), %(attempt)s, %(max)s, %(worker)s,
                %(params)s, now())
        ON CONFLICT (id) DO UPDATE SET
            status = 'running', started_at = now(), attempt = EXCLUDED.attempt,
            max_attempts = EXCLUDED.max_attempts, worker = EXCLUDED.worker,
            next_attempt_at = NULL, updated_at = now()
        WHERE r.status NOT IN ('succeeded', 'failed', 'timed_out', 'skipped')
          AND r.attempt <= EXCLUDED.attempt
        RETURNING (SELECT status FROM prev)
        """
        params = {
            "id": run_id,
            "job": job_key,
            "trigger": str(Trigger(trigger).value),
            "sched": scheduled_for,
            "enq": enqueued_at,
            "attempt": attempt,
            "max": max_attempts,
            "worker": worker,
            "params": Jsonb(parameters),
        }
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, params)
            row = await cur.fetchone()
            if row is None:
                cur = await conn.execute("SELECT status FROM job_runs WHERE id = %s", (run_id,))
                current = await cur.fetchone()
                return Claim(run_id, False, current[0] if current else "unknown")
        previous = row[0]
        return Claim(run_id, True, "running", took_over=previous == "running")

    async def finish_attempt(self, **values: Any) -> None:
        """Record the end of one attempt (see :func:`finish_params` for the arguments)."""
        sql, params = _FINISH_SQL, finish_params(**values)
        async with self.pool.connection() as conn:
            await conn.execute(sql, params)

    async def settle_attempt(self, **values: Any) -> bool:
        """Start-and-finish of an attempt in ONE statement, for a run that was never
        marked running (see the worker's lazy start). Same rules as
        :meth:`start_attempt`: a finished run or a later attempt is left alone, and then
        this returns False. Arguments: see :func:`settle_params`.
        """
        async with self.pool.connection() as conn:
            cur = await conn.execute(_SETTLE_SQL, settle_params(**values))
            return await cur.fetchone() is not None

    async def get_run(self, run_id: str, *, with_attempts: bool = True) -> Run | None:
        async with self.pool.connection() as conn:
            try:
                uuid.UUID(run_id)
            except ValueError:
                return None
            cur = await conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM job_runs WHERE id = %s", (run_id,)
            )
            row = await cur.fetchone()
            if row is None:
                return None
            attempts: list[Attempt] = []
            if with_attempts:
                cur = await conn.execute(
                    "SELECT attempt, status, started_at, finished_at, duration_ms, message,"
                    " error, worker FROM job_run_attempts WHERE run_id = %s ORDER BY attempt",
                    (run_id,),
                )
                attempts = [Attempt(a[0], RunStatus(a[1]), *a[2:]) for a in await cur.fetchall()]
        return _run_from_row(row, attempts)

    async def history(self, job_key: str | None = None, *, limit: int = 20) -> list[Run]:
        where = "WHERE job_key = %s" if job_key else ""
        args: tuple[Any, ...] = (job_key, limit) if job_key else (limit,)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM job_runs {where}"
                " ORDER BY enqueued_at DESC, id LIMIT %s",
                args,
            )
            return [_run_from_row(r) for r in await cur.fetchall()]

    async def last_runs(self, job_keys: Sequence[str]) -> dict[str, Run]:
        """The most recent run of each job (for ``jobs list``)."""
        if not job_keys:
            return {}
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT DISTINCT ON (job_key) {_RUN_COLUMNS} FROM job_runs"
                " WHERE job_key = ANY(%s) ORDER BY job_key, enqueued_at DESC",
                (list(job_keys),),
            )
            return {r[1]: _run_from_row(r) for r in await cur.fetchall()}

    async def counts_since(self, job_key: str, since: datetime) -> dict[str, int]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT status, count(*) FROM job_runs WHERE job_key = %s AND enqueued_at >= %s"
                " GROUP BY status",
                (job_key, since),
            )
            return {status: int(n) for status, n in await cur.fetchall()}

    async def prune(self, finished_before: datetime, *, batch: int = 5000) -> int:
        """Delete finished runs older than ``finished_before``, in batches; returns count."""
        total = 0
        while True:
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    "DELETE FROM job_runs WHERE id IN (SELECT id FROM job_runs"
                    " WHERE finished_at < %s AND status = ANY(%s) LIMIT %s)",
                    (finished_before, list(TERMINAL), batch),
                )
                deleted = int(cur.rowcount)
                total += deleted
                if deleted < batch:
                    return total
