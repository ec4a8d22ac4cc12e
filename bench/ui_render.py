"""Server time of the dashboard's overview and job page with 1,000 jobs and 1,000,000 runs.

Run: ``python bench/ui_render.py [--jobs 1000] [--rows 1000000] [--requests 30]``.

It starts a private, durable (unless ``--fast``) PostgreSQL and a redis-server,
migrates, fills ``job_runs`` with ``--rows`` finished runs spread evenly over the jobs
(one ``INSERT ... SELECT FROM generate_series``, then ANALYZE), and builds the real app
(``ui.app.create_app``) over a job table of ``--jobs`` scheduled jobs. Requests are
driven in-process through ASGI, so the figures are the app's own time (routing, Redis
reads, SQL, cron next-run times, Jinja rendering), without a network or an HTTP client.
Each page is requested ``--requests`` times after two warm-up requests; median and p95
are printed in milliseconds, with the page size. The overview shows 100 jobs a page
(``ui.app.JOBS_PAGE``), so its cost does not grow with the number of jobs beyond the
filtering of the job table.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import FAST_PG, add_fast_flag, pg_settings, print_header, private_postgres
from bench.common import private_redis as private_redis_server
from control.context import Context
from jobs_core import Extension, Job, JobContext, JobResult
from jobs_core.profile import Profile
from jobs_core.registry import build_registry
from jobs_core.schema import migrate
from ui.app import create_app
from ui.settings import Account, UiSettings

SCHEDULES = ("0 */5 * * * *", "0 0 * * * *", "0 30 3 * * *", "*/30 * * * * *", "0 0 4 * * 1-5")
USER, PASSWORD = "bench", "bench-password"


class BenchJob(Job):
    description = "a benchmark job"

    def __init__(self, index: int) -> None:
        self.name = f"job-{index:04d}"
        self.schedule = SCHEDULES[index % len(SCHEDULES)]
        self.tags = ("even",) if index % 2 == 0 else ("odd",)

    async def execute(self, ctx: JobContext) -> JobResult:
        return JobResult.success()


class ManyJobs(Extension):
    name = "bench"

    def __init__(self, count: int) -> None:
        self.count = count

    def jobs(self) -> list[Job]:
        return [BenchJob(i) for i in range(self.count)]


FILL_SQL = """
INSERT INTO job_runs (id, job_key, trigger, status, scheduled_for, enqueued_at, started_at,
                      finished_at, attempt, max_attempts, duration_ms, message, worker)
SELECT gen_random_uuid(), 'bench/job-' || lpad((g %% %(jobs)s)::text, 4, '0'), 'schedule',
       CASE WHEN g %% 17 = 0 THEN 'failed' ELSE 'succeeded' END,
       t, t, t, t + d * interval '1 millisecond', 1, 3, d,
       'processed ' || g || ' rows', 'worker@bench'
FROM generate_series(1, %(rows)s) AS g,
     LATERAL (SELECT now() - (g / %(jobs)s) * interval '1 minute' AS t,
                     (50 + (g::bigint * 7919) %% 5000) AS d) AS x
"""


async def call(app: Any, path: str) -> tuple[float, int, int]:
    """(milliseconds, status, bytes) of one GET through the ASGI interface."""
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    path_part, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path_part,
        "raw_path": path_part.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"authorization", f"Basic {token}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("bench", 80),
    }
    status = 0
    size = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, size
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            size += len(message.get("body", b""))

    start = time.perf_counter()
    await app(scope, receive, send)
    return (time.perf_counter() - start) * 1000, status, size


async def measure(app: Any, paths: dict[str, str], requests: int) -> None:
    starlette_app = app
    async with starlette_app.router.lifespan_context(starlette_app):
        for label, path in paths.items():
            for _ in range(2):
                await call(app, path)
            times = []
            for _ in range(requests):
                took, status, size = await call(app, path)
                assert status == 200, f"{path}: HTTP {status}"
                times.append(took)
            times.sort()
            p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
            print(
                f"{label:<28} median {statistics.median(times):7.1f} ms   p95 {p95:7.1f} ms"
                f"   {size / 1024:7.0f} KiB"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=30)
    add_fast_flag(parser, FAST_PG)
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="sp-bench-ui-"))
    try:
        with (
            private_redis_server(base) as redis,
            private_postgres(base, durable=not args.fast) as pg,
        ):
            run(args, redis.url, pg.url)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run(args: argparse.Namespace, redis_url: str, database_url: str) -> None:
    print_header(
        "dashboard: server time of the overview and job pages",
        {
            "history": f"{args.rows:,} finished runs of {args.jobs:,} jobs",
            "requests": f"{args.requests} per page after 2 warm-up ones, in-process (ASGI)",
            "servers": f"private redis-server; PostgreSQL {pg_settings(database_url)}",
        },
        [FAST_PG] if args.fast else [],
    )
    migrate(database_url, [])
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(FILL_SQL, {"jobs": args.jobs, "rows": args.rows})
        conn.execute("ANALYZE job_runs")
    fill_s = time.perf_counter() - started
    print(f"{args.rows:,} runs of {args.jobs:,} jobs written in {fill_s:.1f} s")

    profile = Profile.from_dict(
        {"redis_url": redis_url, "database_url": database_url, "scheduler": {"timezone": "UTC"}}
    )
    ctx = Context(_profile=profile, _registry=build_registry(profile, [ManyJobs(args.jobs)]))
    settings = UiSettings((Account(USER, PASSWORD, can_act=True),), None)
    app = create_app(ctx, settings, ping_workers=False)
    middle = f"bench/job-{args.jobs // 2:04d}"
    paths = {
        f"overview ({args.jobs} jobs), page 1": "/",
        "overview, last page": f"/?page={max(1, -(-args.jobs // 100))}",
        "overview, tag filter (1/2)": "/?tag=even",
        "overview, search one job": f"/?q={middle}",
        "job page": f"/jobs/{middle}",
        "job page, status=failed": f"/jobs/{middle}?status=failed",
    }
    asyncio.run(measure(app, paths, args.requests))
    ctx.close()


if __name__ == "__main__":
    main()
