"""History at scale: the CLI's run-history queries on millions of rows, with their plans.

Run: ``.venv/bin/python bench/history_scale.py [--rows 1000000] [--jobs 500]
[--months 6]`` (``--rows 10000000`` is the issue's size). It starts a private, durable
PostgreSQL, applies the migrations and fills ``job_runs`` (and one
``job_run_attempts`` row per run) with ``--rows`` runs of ``--jobs`` jobs over
``--months`` months, in one INSERT ... SELECT over generate_series:

- job ``k`` (1-based) gets a share of the rows proportional to 1/k (a few jobs fire
  every few seconds, most a few times a day: the catalogue of the seed's jobs), its
  runs one period apart, back from now;
- 2% manual runs (no scheduled instant), 2% failed with an error text, 0.5% timed out,
  0.5% skipped, the newest run of every 37th job still running; durations, messages,
  worker names vary; rows are written oldest first, as a table filled over time is.

The table's secondary indexes and the attempts' foreign key are dropped for the load
and re-created with their own definitions afterwards (read back from the catalogue),
then ``VACUUM ANALYZE``: the indexes are therefore freshly built and compact, a
best case compared with a table grown by months of inserts, updates and prunes.

Then, for the job with the most rows and for a median one, it times the queries the
CLI runs, through :class:`jobs_core.history_pg.PostgresHistory` itself (so it measures
what the run history does today): ``jobs status NAME`` (``history(limit=1)``, ``get_run``,
``counts_since(24 h)``), ``jobs history NAME --limit 50``, the LAST column of ``jobs
list`` (``last_runs`` of every job) and one nightly ``prune-history`` (the cutoff the
job computes with ``retention_days`` = the window minus one day, so it deletes about
one day of runs: the steady state). Each read is run once untimed, then ``--repeat``
times (median); the statements the store sent are recorded and shown with their
``EXPLAIN (ANALYZE, BUFFERS)`` plans (the prune's first batch inside a rolled-back
transaction).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    FAST_PG,
    add_fast_flag,
    pg_settings,
    print_header,
    private_postgres,
)
from jobs_core.history_pg import PostgresHistory

TARGET_MS = 50.0

FILL_SQL = """
INSERT INTO job_runs (id, job_key, trigger, status, scheduled_for, enqueued_at, started_at,
    finished_at, attempt, max_attempts, duration_ms, message, error, worker, items_processed,
    items_failed, data, parameters, updated_at)
SELECT gen_random_uuid(), r.job_key, r.trigger, r.status,
    CASE WHEN r.trigger = 'manual' THEN NULL ELSE r.t END,
    r.t + interval '2 ms', r.t + interval '9 ms',
    CASE WHEN r.status = 'running' THEN NULL ELSE r.t + r.dur * interval '1 ms' END,
    1, 3, CASE WHEN r.status = 'running' THEN NULL ELSE r.dur END,
    CASE WHEN r.status = 'succeeded' THEN 'Deleted ' || (r.n %% 977) || ' records' END,
    CASE WHEN r.status IN ('failed', 'timed_out') THEN
        'Traceback (most recent call last):' || chr(10) || '  File "job.py", line 42' ||
        chr(10) || 'psycopg.OperationalError: connection to server lost (run ' || r.n || ')'
    END,
    'celery@worker-' || (r.n %% 8), r.n %% 977, 0, '{}'::jsonb,
    CASE WHEN r.k %% 3 = 0 THEN '{"retention_days": 30}'::jsonb ELSE '{}'::jsonb END,
    r.t + r.dur * interval '1 ms'
FROM (
    SELECT 'bench/job-' || lpad(c.k::text, 5, '0') AS job_key, c.k, s.n,
        date_trunc('second', %(now)s::timestamptz) - s.n * c.period * interval '1 s' AS t,
        CASE WHEN s.n %% 50 = 7 THEN 'manual' ELSE 'schedule' END AS trigger,
        CASE
            WHEN s.n = 1 AND c.k %% 37 = 0 THEN 'running'
            WHEN (s.n * 7 + c.k) %% 200 < 4 THEN 'failed'
            WHEN (s.n * 7 + c.k) %% 200 = 4 THEN 'timed_out'
            WHEN (s.n * 7 + c.k) %% 200 = 5 THEN 'skipped'
            ELSE 'succeeded'
        END AS status,
        20 + (s.n::bigint * 7919 + c.k) %% 4000 AS dur
    FROM unnest(%(counts)s::int[], %(periods)s::int[]) WITH ORDINALITY AS c(cnt, period, k)
    CROSS JOIN LATERAL generate_series(1, c.cnt) AS s(n)
) AS r
ORDER BY r.t
"""

ATTEMPTS_SQL = """
INSERT INTO job_run_attempts (run_id, attempt, status, started_at, finished_at, duration_ms,
    message, error, worker)
SELECT id, 1, CASE WHEN status = 'running' THEN 'running' ELSE status END,
    started_at, finished_at, duration_ms, message, error, worker
FROM job_runs WHERE started_at IS NOT NULL
"""


def shares(rows: int, jobs: int, window_s: int) -> tuple[list[int], list[int]]:
    """Rows per job (proportional to 1/k, summing to ``rows``) and each job's period."""
    weights = [1 / k for k in range(1, jobs + 1)]
    total = sum(weights)
    counts = [max(1, int(rows * w / total)) for w in weights]
    counts[0] += rows - sum(counts)
    periods = [max(1, window_s // c) for c in counts]
    return counts, periods


def fill(url: str, rows: int, jobs: int, months: int, now: datetime) -> dict[str, float]:
    import psycopg

    counts, periods = shares(rows, jobs, months * 30 * 86400)
    took: dict[str, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '256MB'")
        recreate = [
            r[0]
            for r in conn.execute(
                "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i"
                " WHERE i.indrelid = 'job_runs'::regclass AND NOT i.indisprimary"
            )
        ]
        fks = conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'job_run_attempts'::regclass AND contype = 'f'"
        ).fetchall()
        for name, _ in fks:
            conn.execute(f"ALTER TABLE job_run_attempts DROP CONSTRAINT {name}")
        for row in conn.execute(
            "SELECT indexrelid::regclass::text FROM pg_index"
            " WHERE indrelid = 'job_runs'::regclass AND NOT indisprimary"
        ).fetchall():
            conn.execute(f"DROP INDEX {row[0]}")
        t0 = time.perf_counter()
        conn.execute(FILL_SQL, {"now": now, "counts": counts, "periods": periods})
        took["runs"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        conn.execute(ATTEMPTS_SQL)
        took["attempts"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for sql in recreate:
            conn.execute(sql)
        for name, definition in fks:
            conn.execute(f"ALTER TABLE job_run_attempts ADD CONSTRAINT {name} {definition}")
        took["indexes"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        conn.execute("VACUUM ANALYZE job_runs")
        conn.execute("VACUUM ANALYZE job_run_attempts")
        took["vacuum"] = time.perf_counter() - t0
    return took


# ---------------------------------------------------------------- recording the store


@dataclass
class Recorder:
    """Keeps every statement the store sends (text and parameters), in order."""

    statements: list[tuple[str, Any]] = field(default_factory=list)
    on: bool = False


class _RecordingConnection:
    def __init__(self, conn: Any, rec: Recorder) -> None:
        self._conn = conn
        self._rec = rec

    async def execute(self, query: Any, params: Any = None, **kw: Any) -> Any:
        if self._rec.on:
            self._rec.statements.append((query, params))
        return await self._conn.execute(query, params, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class RecordingPool:
    """A pool for :class:`PostgresHistory` that records the statements sent through it."""

    def __init__(self, pool: Any, rec: Recorder) -> None:
        self._pool = pool
        self._rec = rec

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[_RecordingConnection]:
        async with self._pool.connection() as conn:
            yield _RecordingConnection(conn, self._rec)


@dataclass
class Timed:
    name: str
    median_ms: float
    min_ms: float
    statements: list[tuple[str, Any]]
    note: str = ""


async def timed(
    name: str, rec: Recorder, call: Callable[[], Awaitable[Any]], repeat: int, note: str = ""
) -> Timed:
    await call()  # warm: plans cached, pages in shared buffers as after any earlier call
    rec.statements, rec.on = [], True
    await call()
    rec.on = False
    statements = rec.statements
    walls = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await call()
        walls.append((time.perf_counter() - t0) * 1000)
    return Timed(
        name,
        statements=statements,
        median_ms=statistics.median(walls),
        min_ms=min(walls),
        note=note,
    )


async def explain(pool: Any, sql: str, params: Any) -> str:
    async with pool.connection() as conn, conn.transaction(force_rollback=True):
        cur = await conn.execute("EXPLAIN (ANALYZE, BUFFERS, SETTINGS) " + sql, params)
        return "\n".join(r[0] for r in await cur.fetchall())


def short(sql: str, params: Any) -> str:
    text = " ".join(str(sql).split())
    shown = params

    def one(p: Any) -> Any:
        return f"<{len(p)} keys>" if isinstance(p, list) and len(p) > 3 else p

    if isinstance(params, tuple | list):
        shown = [one(p) for p in params]
    elif isinstance(params, dict):
        shown = {k: one(v) for k, v in params.items()}
    return f"{text}\n    params: {shown}"


async def bench(url: str, opts: argparse.Namespace, now: datetime) -> list[Timed]:
    import psycopg
    from psycopg_pool import AsyncConnectionPool

    from jobs_core.status import TERMINAL

    with psycopg.connect(url) as conn:
        per_job = conn.execute(
            "SELECT job_key, count(*) FROM job_runs GROUP BY job_key ORDER BY 2 DESC"
        ).fetchall()
    keys = [k for k, _ in per_job]
    heavy, heavy_n = per_job[0]
    median, median_n = per_job[len(per_job) // 2]
    pool = AsyncConnectionPool(url, min_size=1, max_size=2, open=False)
    await pool.open(wait=True, timeout=30)
    rec = Recorder()
    store = PostgresHistory(RecordingPool(pool, rec))  # type: ignore[arg-type]
    out: list[Timed] = []
    try:
        for key, n in ((heavy, heavy_n), (median, median_n)):
            label = f"{key} ({n:,} runs)"

            async def status(key: str = key) -> None:
                recent = await store.history(key, limit=1)
                if recent:
                    await store.get_run(recent[0].id)
                await store.counts_since(key, datetime.now(UTC) - timedelta(hours=24))

            async def history(key: str = key) -> None:
                await store.history(key, limit=50)

            out.append(await timed(f"jobs status {label}", rec, status, opts.repeat))
            out.append(await timed(f"jobs history --limit 50 {label}", rec, history, opts.repeat))

        async def last() -> None:
            await store.last_runs(keys)

        out.append(await timed(f"jobs list LAST column ({len(keys)} jobs)", rec, last, opts.repeat))

        retention_days = opts.months * 30 - 1
        cutoff = now - timedelta(days=retention_days)
        async with pool.connection() as aconn:
            cur = await aconn.execute(
                "SELECT count(*) FROM job_runs WHERE finished_at < %s AND status = ANY(%s)",
                (cutoff, list(TERMINAL)),
            )
            row = await cur.fetchone()
            doomed = int(row[0]) if row else 0
        rec.statements, rec.on = [], True
        t0 = time.perf_counter()
        deleted = await store.prune(cutoff)
        wall = (time.perf_counter() - t0) * 1000
        rec.on = False
        batches = len(rec.statements)
        # The plan of a batch like the first one (the rows it deleted are gone now, so a
        # cutoff one day later finds a full batch), rolled back.
        first_sql, first_params = rec.statements[0]
        later = cutoff + timedelta(days=1)
        if isinstance(first_params, dict):
            again: Any = {**first_params, "before": later}
        else:
            again = (later, *first_params[1:])
        out.append(
            Timed(
                f"prune-history, retention_days={retention_days} ({deleted:,} of "
                f"{doomed:,} doomed runs deleted in {batches} batches)",
                wall,
                wall,
                [(first_sql, again)],
                note=f"{wall / max(batches, 1):.0f} ms per batch of 5,000",
            )
        )
        plans: list[tuple[Timed, str, str]] = []
        for t in out:
            for sql, params in t.statements:
                plans.append((t, short(sql, params), await explain(pool, str(sql), params)))
        print("\nplans (EXPLAIN (ANALYZE, BUFFERS, SETTINGS), as the store sends them):")
        for t, text, plan in plans:
            print(f"\n--- {t.name}\n{text}\n{plan}")
    finally:
        await pool.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="runs (issue: 10000000)")
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per read query")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    add_fast_flag(parser, FAST_PG)
    opts = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="sp-bench-history-"))
    try:
        with private_postgres(base, durable=not opts.fast) as pg:
            return run(opts, pg.url)
    finally:
        if opts.keep:
            print(f"temp dir kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def run(opts: argparse.Namespace, url: str) -> int:
    import psycopg

    from jobs_core.registry import discover_extensions
    from jobs_core.schema import migrate

    migrate(url, discover_extensions(None))
    with psycopg.connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()
    print_header(
        "history at scale: the CLI's run-history queries (issue 15)",
        {
            "history": f"{opts.rows:,} runs (+ one attempt row each) of {opts.jobs} jobs over"
            f" {opts.months} months; rows per job ~ 1/k",
            "server": f"private PostgreSQL {version[0] if version else '?'},"
            f" {pg_settings(url)}, shared_buffers=64MB (cli/embedded.py)",
            "timing": "through jobs_core.history_pg.PostgresHistory, warm,"
            f" median of {opts.repeat}",
        },
        [FAST_PG] if opts.fast else [],
    )
    now = datetime.now(UTC)
    took = fill(url, opts.rows, opts.jobs, opts.months, now)
    with psycopg.connect(url) as conn:
        sizes = conn.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('job_runs')),"
            " pg_size_pretty(pg_total_relation_size('job_run_attempts'))"
        ).fetchone()
    print(
        "filled in "
        + ", ".join(f"{k} {v:.1f} s" for k, v in took.items())
        + f"; job_runs {sizes[0] if sizes else '?'}, job_run_attempts {sizes[1] if sizes else '?'}",
        flush=True,
    )
    results = asyncio.run(bench(url, opts, now))
    print("\nsummary (target: every query < 50 ms):")
    width = max(len(t.name) for t in results)
    missed = 0
    for t in results:
        reads = not t.name.startswith(("prune", "SUGGESTED"))
        mark = "meets" if t.median_ms < TARGET_MS else "MISSES"
        if t.name.startswith("prune"):
            mark = "(batch job)"
        missed += mark == "MISSES" and reads
        extra = f"  {t.note}" if t.note else ""
        print(f"{t.name:<{width}}  {t.median_ms:10.1f} ms  {mark}{extra}")
    print(f"\n{missed} read queries miss the {TARGET_MS:.0f} ms target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
