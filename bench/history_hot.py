"""What the partial index of unfinished runs (migration 0004) costs the worker's writes.

Run: ``.venv/bin/python bench/history_hot.py [--runs 2000] [--rounds 3]``. It starts a
private, durable PostgreSQL with two databases migrated alike, then drops
``job_runs_unfinished`` from one of them ("before"), and writes runs into both through
:class:`jobs_core.history_pg.PostgresHistory` itself, one connection each, in
alternating rounds, each side first in every other one (so both see the same machine
load):

- short runs, as lazy start writes them: one ``settle_attempt`` (the row is inserted
  finished, so it never enters the partial index);
- long runs: ``start_attempt`` then ``finish_attempt`` (the row enters the index at its
  start and leaves it at its finish: that update cannot be HOT).

For each side and kind it prints the row updates and how many were HOT
(``pg_stat_user_tables``, read after the writing sessions ended, so their counts are
flushed), and the writing backend's CPU time per run (Linux /proc: a figure the
machine's load barely changes, unlike wall time).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import cpu_seconds, pg_settings, print_header, private_postgres
from jobs_core.history import AttemptEnd, AttemptStart
from jobs_core.history_pg import PostgresHistory
from jobs_core.status import RunStatus, Trigger

STATS = (
    "SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'job_runs'"
)


@dataclass
class Tally:
    runs: int = 0
    updates: int = 0
    hot: int = 0
    cpu_s: float = 0.0


def _start(job: str) -> AttemptStart:
    return AttemptStart(
        run_id=str(uuid.uuid4()),
        job_key=job,
        trigger=Trigger.MANUAL,
        attempt=1,
        max_attempts=1,
        worker="celery@bench",
        scheduled_for=None,
        enqueued_at=None,
        parameters={},
    )


#: One run written the worker's way, for one job.
Kind = Callable[[PostgresHistory, str], Awaitable[None]]
END = AttemptEnd(status=RunStatus.SUCCEEDED, duration_ms=1200, message="Deleted 12 records")


async def short_run(history: PostgresHistory, job: str) -> None:
    await history.settle_attempt(_start(job), datetime.now(UTC), END)


async def long_run(history: PostgresHistory, job: str) -> None:
    start = _start(job)
    await history.start_attempt(start)
    await history.finish_attempt(start.run_id, start.attempt, END)


KINDS: dict[str, Kind] = {
    "short run (settle_attempt)": short_run,
    "long run (start_attempt + finish_attempt)": long_run,
}


def _stats(url: str) -> tuple[int, int, int]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(STATS).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


async def _write(url: str, kind: Kind, n: int) -> float:
    from psycopg_pool import AsyncConnectionPool

    async with AsyncConnectionPool(url, min_size=1, max_size=1) as pool:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT pg_backend_pid()")
            row = await cur.fetchone()
        assert row is not None
        pid = int(row[0])
        history = PostgresHistory(pool)
        cpu0 = cpu_seconds(pid)
        for i in range(n):
            await kind(history, f"bench/job-{i % 50:02d}")
        return cpu_seconds(pid) - cpu0


def measure(url: str, kind: Kind, n: int) -> Tally:
    _, upd0, hot0 = _stats(url)
    cpu = asyncio.run(_write(url, kind, n))
    # The writing session has ended: its counts are flushed (PostgreSQL 15 flushes a
    # backend's table statistics at exit at the latest).
    _, upd1, hot1 = _stats(url)
    return Tally(n, upd1 - upd0, hot1 - hot0, cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000, help="runs per kind, side and round")
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()
    import psycopg

    from jobs_core.schema import migrate

    base = Path(tempfile.mkdtemp(prefix="sp-bench-hot-"))
    try:
        with private_postgres(base) as pg:
            sides = {"with job_runs_unfinished": "with_index", "before (no such index)": "without"}
            with psycopg.connect(pg.url_for("postgres"), autocommit=True) as conn:
                for name in sides.values():
                    conn.execute(f"CREATE DATABASE {name}")
            for name in sides.values():
                migrate(pg.url_for(name))
            with psycopg.connect(pg.url_for("without"), autocommit=True) as conn:
                conn.execute("DROP INDEX job_runs_unfinished")
            print_header(
                "the worker's history writes with and without the partial index of unfinished runs",
                {
                    "server": f"private PostgreSQL, {pg_settings(pg.url_for('postgres'))}",
                    "writes": f"{opts.runs} runs per kind, side and round, {opts.rounds}"
                    " rounds alternating the sides, one connection, autocommit",
                },
            )
            tallies: dict[tuple[str, str], Tally] = {}
            for n in range(opts.rounds):
                # Each side goes first in every other round: neither always writes into
                # a cache the other has just warmed.
                order = list(sides.items())[:: -1 if n % 2 else 1]
                for kind_name, kind in KINDS.items():
                    for side, db in order:
                        t = measure(pg.url_for(db), kind, opts.runs)
                        total = tallies.setdefault((kind_name, side), Tally())
                        total.runs += t.runs
                        total.updates += t.updates
                        total.hot += t.hot
                        total.cpu_s += t.cpu_s
            print(f"{'kind':<44}{'side':<27}{'updates':>9}{'HOT':>9}{'CPU µs/run':>12}")
            for (kind_name, side), t in tallies.items():
                print(
                    f"{kind_name:<44}{side:<27}{t.updates:>9,}{t.hot:>9,}"
                    f"{t.cpu_s / t.runs * 1e6:>12.0f}"
                )
            with psycopg.connect(pg.url_for("with_index"), autocommit=True) as conn:
                size: Any = conn.execute(
                    "SELECT pg_relation_size('job_runs_unfinished'),"
                    " (SELECT count(*) FROM job_runs WHERE finished_at IS NULL)"
                ).fetchone()
            print(f"\njob_runs_unfinished: {size[0]:,} bytes for {size[1]} unfinished runs")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
