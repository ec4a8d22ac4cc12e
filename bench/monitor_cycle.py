"""CPU of one round of the leading beat's job monitor (health, alerts, incidents) at
many jobs, full and incremental.

Run: ``.venv/bin/python bench/monitor_cycle.py [--jobs 100000] [--rounds 5]
[--changes 1000] [--cprofile]``. With a private redis-server and a durable PostgreSQL,
in this process: a :class:`beat.service.Beat` on the generated extension
(:mod:`bench.scale_ext`, schedules cycling through every minute, every 5 minutes and
hourly), elected but not started (no scheduling thread: the process's CPU time is the
monitor's), and its :class:`beat.monitor.Monitor`. The history is seeded with a recent
success per job, and for a few percent of the jobs: 3 failures after it (``failing``),
a run started 40 minutes ago (``too_long``), a run started 29 minutes ago (crosses the
30-minute limit during a long run), a skipped latest run.

Then ``--rounds`` full rounds (the monitor's incremental state dropped before each) and
``--rounds`` incremental ones, with ``--changes`` jobs getting a new finished run
before each round (the history that changed since the last round). Printed per kind:
CPU seconds of this process (``time.process_time``; of which the garbage collector's)
and wall time per round, median and max (and of it the wall time of the health read,
PostgreSQL's statements and their rows: ``read``), the jobs evaluated, and the alerts active
after the last round of each; then whether one more incremental round gives what
evaluating every job gives on the same input (else it missed something).
``--cprofile`` prints the functions with the most own CPU time of one full and one
incremental round.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import logging
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import pg_settings, print_header, private_postgres, private_redis

SCHEDULES = "0 * * * * *|0 */5 * * * *|0 0 * * * *"

#: One recent success per job; some jobs also fail, hang, run long or skip (i % 100).
SEED_SQL = """
INSERT INTO job_runs (id, job_key, trigger, status, scheduled_for, enqueued_at, started_at,
                      finished_at, attempt, max_attempts, duration_ms, worker)
SELECT gen_random_uuid(), 'scale/j' || lpad(i::text, 6, '0'), 'schedule', 'succeeded',
       t, t, t + interval '5 ms', t + interval '25 ms', 1, 3, 20, 'celery@bench'
FROM generate_series(0, %(jobs)s - 1) AS i,
     LATERAL (SELECT date_trunc('minute', now()) AS t) AS s;
INSERT INTO job_runs (id, job_key, trigger, status, enqueued_at, started_at, finished_at,
                      attempt, max_attempts, worker)
SELECT gen_random_uuid(), 'scale/j' || lpad(i::text, 6, '0'), 'manual', 'failed',
       now() + n * interval '1 ms', now(), now(), 1, 1, 'celery@bench'
FROM generate_series(0, %(jobs)s - 1) AS i, generate_series(1, 3) AS n
WHERE i %% 100 < 2;
INSERT INTO job_runs (id, job_key, trigger, status, enqueued_at, started_at, attempt,
                      max_attempts, worker)
SELECT gen_random_uuid(), 'scale/j' || lpad(i::text, 6, '0'), 'manual', 'running',
       now() - CASE WHEN i %% 100 = 2 THEN interval '40 min' ELSE interval '29 min' END,
       now() - CASE WHEN i %% 100 = 2 THEN interval '40 min' ELSE interval '29 min' END,
       1, 1, 'celery@bench'
FROM generate_series(0, %(jobs)s - 1) AS i
WHERE i %% 100 IN (2, 3);
INSERT INTO job_runs (id, job_key, trigger, status, enqueued_at, finished_at, attempt,
                      max_attempts)
SELECT gen_random_uuid(), 'scale/j' || lpad(i::text, 6, '0'), 'manual', 'skipped',
       now() + interval '1 s', now(), 0, 1
FROM generate_series(0, %(jobs)s - 1) AS i
WHERE i %% 100 = 4;
ANALYZE job_runs
"""

#: A new finished run for ``%(n)s`` random jobs.
CHANGE_SQL = """
INSERT INTO job_runs (id, job_key, trigger, status, enqueued_at, started_at, finished_at,
                      attempt, max_attempts, duration_ms, worker)
SELECT gen_random_uuid(), 'scale/j' || lpad((random() * (%(jobs)s - 1))::int::text, 6, '0'),
       'manual', 'succeeded', now(), now(), now(), 1, 1, 1, 'celery@bench'
FROM generate_series(1, %(n)s)
"""


class GcClock:
    """CPU time the cyclic garbage collector takes (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.total = 0.0
        self._started = 0.0
        gc.callbacks.append(self._on)

    def _on(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.total += time.process_time() - self._started


GC = GcClock()


class ReadClock:
    """Wall time of the monitor's health reads (``HealthReader.read``): the PostgreSQL
    statements, their round trips and the rows' decoding."""

    def __init__(self, monitor: Any) -> None:
        self.total = 0.0
        reader = monitor._health
        read = reader.read

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return read(*args, **kwargs)
            finally:
                self.total += time.perf_counter() - t0

        reader.read = timed


def rounds(
    monitor: Any, profile: Any, url: str, opts: argparse.Namespace, full: bool, clock: ReadClock
) -> tuple[list[float], list[float], list[int], list[float], list[float]]:
    import psycopg

    cpu: list[float] = []
    wall: list[float] = []
    evaluated: list[int] = []
    gcs: list[float] = []
    reads: list[float] = []
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(opts.rounds):
            if opts.changes:
                conn.execute(CHANGE_SQL, {"jobs": opts.jobs, "n": opts.changes})
            if full:
                forget = getattr(monitor, "forget", None)
                if forget is not None:
                    forget()
            c0, w0, g0, r0 = time.process_time(), time.perf_counter(), GC.total, clock.total
            monitor.check(profile)
            cpu.append(time.process_time() - c0)
            gcs.append(GC.total - g0)
            wall.append(time.perf_counter() - w0)
            reads.append(clock.total - r0)
            evaluator = getattr(monitor, "_evaluator", None)
            if evaluator is not None:
                evaluated.append(evaluator.evaluated)
    return cpu, wall, evaluated, gcs, reads


def verify(monitor: Any, profile: Any) -> str:
    """One more incremental round, checked against :func:`jobs_core.alerts.evaluate` of
    every job on the very same input (same ``now``), and its health against reading
    every job's (:func:`jobs_core.job_health.fetch_job_health`)."""
    evaluator = getattr(monitor, "_evaluator", None)
    if evaluator is None:
        return "n/a (no incremental rounds)"
    from jobs_core.alerts import evaluate

    verdict: list[str] = []
    incremental = evaluator.evaluate

    def checked(watches: Any, health: Any, active: Any, now: Any) -> Any:
        got = incremental(watches, health, active, now)
        want = evaluate(watches.values(), health, active, now)
        same = got.active == want.active and got.notifications == want.notifications
        verdict.append("the same" if same else "DIFFERENT (a bug)")
        return got

    evaluator.evaluate = checked
    try:
        monitor.check(profile)
    finally:
        del evaluator.evaluate
    from jobs_core.job_health import fetch_job_health

    everyone = fetch_job_health(monitor._db, list(monitor.jobs.jobs))
    read = "the same" if everyone == monitor.jobs.health else "DIFFERENT (a bug)"
    return f"{verdict[0] if verdict else 'not evaluated'}; health against a full read: {read}"


def profiled(monitor: Any, profile: Any, full: bool, top: int) -> None:
    if full and hasattr(monitor, "forget"):
        monitor.forget()
    prof = cProfile.Profile(time.process_time)  # CPU: a loaded machine inflates wall time
    prof.runcall(monitor.check, profile)
    text = io.StringIO()
    pstats.Stats(prof, stream=text).strip_dirs().sort_stats("tottime").print_stats(top)
    body = text.getvalue()
    print(f"\n-- cProfile of one {'full' if full else 'incremental'} round, by own CPU time:")
    print(body[body.index("   ncalls") :].rstrip())


def line(
    kind: str,
    cpu: list[float],
    wall: list[float],
    evaluated: list[int],
    gcs: list[float],
    reads: list[float],
) -> str:
    jobs = f"   jobs evaluated {min(evaluated):,}..{max(evaluated):,}" if evaluated else ""
    return (
        f"{kind:<12} CPU median {statistics.median(cpu):6.3f} s  max {max(cpu):6.3f} s"
        f" (GC median {statistics.median(gcs):5.3f} s)"
        f"   wall median {statistics.median(wall):6.3f} s  max {max(wall):6.3f} s"
        f" (read median {statistics.median(reads):6.3f} s  max {max(reads):6.3f} s){jobs}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of each kind")
    parser.add_argument("--changes", type=int, default=1000, help="jobs with a new run per round")
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    opts = parser.parse_args()
    logging.getLogger("beat.alerts").setLevel(logging.ERROR)  # a line per alert otherwise
    base = Path(tempfile.mkdtemp(prefix="sp-bench-monitor-"))
    try:
        with private_redis(base) as redis_server, private_postgres(base) as pg:
            import psycopg

            from beat.monitor import Monitor
            from beat.service import Beat
            from jobs_core.registry import discover_extensions
            from jobs_core.schema import migrate

            migrate(pg.url, discover_extensions(None))
            with psycopg.connect(pg.url, autocommit=True) as conn:
                for statement in SEED_SQL.split(";"):
                    if statement.strip():
                        conn.execute(statement, {"jobs": opts.jobs})
            profile_path = base / "profile.yaml"
            profile_path.write_text(
                "extensions: [bench.scale_ext:ScaleExtension]\n"
                "scheduler:\n  defaults:\n    alerts: {on_skip: true}\n"
            )
            os.environ.update(
                BENCH_SCALE_JOBS=str(opts.jobs),
                BENCH_SCALE_SCHEDULES=SCHEDULES,
                REDIS_URL=redis_server.url,
                DATABASE_URL=pg.url,
            )
            os.environ.pop("SYSTEMPROMPT_PROFILE", None)
            print_header(
                "beat monitor: CPU of one round, full and incremental",
                {
                    "jobs": f"{opts.jobs:,} (bench/scale_ext.py), schedules {SCHEDULES}",
                    "history": "a success per job; 2% failing, 1% too long, 1% skipped",
                    "changes": f"{opts.changes:,} jobs with a new finished run per round",
                    "rounds": f"{opts.rounds} of each kind",
                    "postgres": pg_settings(pg.url),
                },
            )
            beat = Beat(str(profile_path), redis_url=redis_server.url, assume_leader=True)
            beat._connect()
            beat._try_acquire()
            monitor = Monitor(beat, None)
            clock = ReadClock(monitor)
            profile = beat.profile
            try:
                monitor.check(profile)  # the first sight of every job: not timed
                full = rounds(monitor, profile, pg.url, opts, full=True, clock=clock)
                after_full = dict(monitor.jobs.active)
                incremental = rounds(monitor, profile, pg.url, opts, full=False, clock=clock)
                after_incremental = dict(monitor.jobs.active)
                same = verify(monitor, profile)
                print(line("full", *full))
                print(line("incremental", *incremental))
                print(
                    f"alerts active: {len(after_full):,} after the full rounds,"
                    f" {len(after_incremental):,} after the incremental ones; one more"
                    f" incremental round against evaluating every job on the same input:"
                    f" {same}"
                )
                if opts.cprofile:
                    profiled(monitor, profile, True, opts.top)
                    profiled(monitor, profile, False, opts.top)
            finally:
                monitor._disconnect()
                beat.stop()
                beat._shutdown()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
