"""Filtered history (``jobs history NAME|--all --status --trigger --since --until``) on a
large table: the plan PostgreSQL picks and the time of one page, per filter.

Starts a private PostgreSQL, migrates, fills ``job_runs`` with ``--rows`` runs of
``--jobs`` jobs (a mix of triggers and statuses), then EXPLAIN ANALYZEs the one
statement the CLI and the dashboard share (:func:`jobs_core.history_queries.runs`).

    .venv/bin/python -m bench.history_filters --rows 500000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cli.embedded import PostgresServer
from jobs_core import history_queries as q
from jobs_core.schema import migrate

FILL_SQL = """
INSERT INTO job_runs (id, job_key, trigger, status, scheduled_for, enqueued_at, started_at,
                      finished_at, attempt, max_attempts, duration_ms, message, worker,
                      triggered_by)
SELECT gen_random_uuid(), 'bench/job-' || lpad((g %% %(jobs)s)::text, 4, '0'),
       CASE WHEN g %% 50 = 0 THEN 'manual' WHEN g %% 97 = 0 THEN 'backfill'
            ELSE 'schedule' END,
       CASE WHEN g %% 17 = 0 THEN 'failed' WHEN g %% 501 = 0 THEN 'cancelled'
            ELSE 'succeeded' END,
       t, t, t, t + interval '1 second', 1, 3, 1000, 'ok', 'worker@bench', 'beat-1'
FROM generate_series(1, %(rows)s) AS g,
     LATERAL (SELECT now() - (g / %(jobs)s) * interval '1 minute' AS t) AS x
"""


def explain(conn: Any, label: str, params: dict[str, Any], used: set[str]) -> None:
    sql = q.runs(frozenset(used))
    params = {"limit": 21, **params}
    for _ in range(2):  # warm the cache
        conn.execute(sql, params).fetchall()
    started = time.perf_counter()
    rounds = 20
    for _ in range(rounds):
        conn.execute(sql, params).fetchall()
    took = (time.perf_counter() - started) / rounds * 1000
    plan = [r[0] for r in conn.execute("EXPLAIN " + sql, params).fetchall()]
    scans = [line.strip() for line in plan if "Scan" in line]
    print(f"{label:<44} {took:7.2f} ms   {scans[0] if scans else plan[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rows", type=int, default=500_000)
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="sp-bench-history-"))
    base.chmod(0o755)
    pg = PostgresServer(base / "pg")
    try:
        pg.start()
        migrate(pg.url, [])
        import psycopg

        with psycopg.connect(pg.url, autocommit=True) as conn:
            started = time.perf_counter()
            conn.execute(FILL_SQL, {"jobs": args.jobs, "rows": args.rows})
            conn.execute("VACUUM ANALYZE job_runs")
            print(
                f"{args.rows:,} runs of {args.jobs} jobs in {time.perf_counter() - started:.1f} s"
            )
            job = "bench/job-0007"
            day = datetime.now(UTC) - timedelta(days=1)
            cases: list[tuple[str, dict[str, Any]]] = [
                ("job, newest page", {"job_key": job}),
                ("job + status failed", {"job_key": job, "status": "failed"}),
                ("job + trigger manual", {"job_key": job, "trigger": "manual"}),
                (
                    "job + since/until (a day ago)",
                    {"job_key": job, "since": day - timedelta(hours=1), "until": day},
                ),
                ("--all, newest page", {}),
                ("--all + trigger backfill", {"trigger": "backfill"}),
                ("--all + status failed", {"status": "failed"}),
                ("--all + status cancelled (rare)", {"status": "cancelled"}),
                (
                    "--all + since/until (a day ago)",
                    {"since": day - timedelta(hours=1), "until": day},
                ),
            ]
            for label, params in cases:
                explain(conn, label, params, set(params))
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
