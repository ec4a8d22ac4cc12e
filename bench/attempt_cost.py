"""CPU per attempt of the worker's run path alone, without Celery, in one process.

Run from anywhere: ``python bench/attempt_cost.py [--attempts N] [--rounds R]``.

It starts a private redis-server and a durable PostgreSQL (``--fast``: fsync off), then
drives :func:`worker.execution.run_attempt` through a :class:`worker.runtime.
WorkerRuntime` the way a pool process does (the task thread hands each attempt to the
process's event loop thread and waits for its outcome, with the job clock and
:func:`worker.tasks.wait_for_attempt` of the Celery task): no-op jobs of
:mod:`bench.scale_ext` on the default policies (overlap ``skip``: the lock is taken and
released; cancel requests read and watched), lazy start, one history statement per run.
It prints this process's CPU time (all threads) and wall time per attempt, per round.

``bench/throughput.py`` measures the whole worker, whose figures on a shared machine move
with the load by more than a change of the run path; this one isolates the run path.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    FAST_PG,
    add_fast_flag,
    pg_settings,
    print_header,
    private_postgres,
    private_redis,
)
from jobs_core.status import RunStatus, Trigger  # noqa: E402
from jobs_core.wire import job_kwargs  # noqa: E402

PROFILE = """
extensions: [bench.scale_ext:ScaleExtension]
"""
JOBS = 100


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attempts", type=int, default=2000, help="attempts per round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=300, help="untimed attempts first")
    add_fast_flag(parser, f"PostgreSQL {FAST_PG}")
    opts = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="sp-bench-attempt-"))
    try:
        with (
            private_redis(base) as redis_server,
            private_postgres(base, durable=not opts.fast) as pg_server,
        ):
            return _bench(opts, base, redis_server.url, pg_server.url)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _bench(opts: argparse.Namespace, base: Path, redis_url: str, database_url: str) -> int:
    from jobs_core.profile import load_profile
    from jobs_core.registry import build_registry, discover_extensions
    from jobs_core.schema import migrate
    from worker.execution import JobClock, TaskRequest, run_attempt
    from worker.runtime import WorkerRuntime
    from worker.tasks import wait_for_attempt

    os.environ["BENCH_SCALE_JOBS"] = str(JOBS)
    profile_path = base / "profile.yaml"
    profile_path.write_text(PROFILE)
    profile = load_profile(profile_path, env={"REDIS_URL": redis_url, "DATABASE_URL": database_url})
    migrate(database_url, discover_extensions(profile))
    jobs = list(build_registry(profile))
    runtime = WorkerRuntime(database_url, redis_url)
    print_header(
        "CPU per attempt of the worker's run path (run_attempt, no Celery)",
        {
            "attempts": f"{opts.attempts} per round, {opts.rounds} rounds, warm-up {opts.warmup}",
            "jobs": f"{len(jobs)} no-op jobs round-robin (bench/scale_ext.py), default "
            "policies (overlap skip, retry 3)",
            "servers": f"private redis-server; PostgreSQL {pg_settings(database_url)}",
        },
        [f"PostgreSQL {FAST_PG}"] if opts.fast else [],
    )

    def one(i: int) -> None:
        run_id = str(uuid.uuid4())
        kwargs = job_kwargs(
            run_id=run_id,
            trigger=Trigger.MANUAL,
            scheduled_for=None,
            enqueued_at=datetime.now(UTC),
        )
        req = TaskRequest.from_kwargs(kwargs)
        jd = jobs[i % len(jobs)]
        clock = JobClock()
        future = runtime.loop.submit(run_attempt(runtime, jd, req, "bench@host", clock=clock))
        if wait_for_attempt(future, clock, jd.policy.timeout).status is not RunStatus.SUCCEEDED:
            raise RuntimeError(f"attempt {i} did not succeed")

    try:
        for i in range(opts.warmup):
            one(i)
        cpu_us, wall_us = [], []
        for r in range(opts.rounds):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for i in range(opts.attempts):
                one(i)
            cpu_us.append((time.process_time() - cpu0) / opts.attempts * 1e6)
            wall_us.append((time.perf_counter() - wall0) / opts.attempts * 1e6)
            print(f"round {r + 1}: CPU {cpu_us[-1]:.0f} us/attempt, wall {wall_us[-1]:.0f} us")
        print(
            f"median: CPU {statistics.median(cpu_us):.0f} us/attempt, "
            f"wall {statistics.median(wall_us):.0f} us/attempt"
        )
    finally:
        runtime.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
