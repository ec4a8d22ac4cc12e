"""End-to-end throughput of no-op job runs against bare Celery no-op tasks, in one run.

Run from anywhere: ``python bench/throughput.py [--runs N] [--concurrency 2] [--rounds 3]``.

It starts a private redis-server and PostgreSQL (never the machine's shared ones), then
two Celery workers on that Redis with the *same* settings (``worker.config.
celery_settings`` of the same profile: JSON only, acks_late, reject on worker lost,
prefetch multiplier 1, task events on) and the same command line (``-P prefork -c C
--without-gossip --without-mingle``; ``--pool threads`` runs both on Celery's thread
pool instead, where the tasks run in the main process):

* **bare**: a minimal Celery app (``bench.throughput:bare_app``) whose task does nothing
  but record that it ran (see :func:`bare_noop`);
* **ours**: ``celery -A worker.app`` with ``--jobs`` no-op jobs of
  :mod:`bench.scale_ext` (``scale/j000000`` ...), which set no policy of their own, so
  the defaults apply: overlap ``skip`` (the per-job Redis lock every such job pays),
  retry 3 attempts, timeout 15 min; run history on, in a *durable* PostgreSQL
  (fsync, synchronous_commit and full_page_writes on: what ``infra up`` and compose run).
  The runs go round-robin over the jobs, so with ``-c 2`` two runs of one job are never
  in flight together (no run is skipped; a skipped run fails the benchmark).

``--bare-wait-ms W`` makes the bare task sleep W ms before it records: an experiment,
not a comparison of equals, to see what a wait as long as one durable commit (a few ms
of fsync on a small VM's disk) does to bare Celery's rate and CPU per task.

``--fast`` is the old fast path, printed in the header: PostgreSQL with fsync,
synchronous_commit and full_page_writes off, and the jobs on ``overlap: allow`` with one
attempt (no lock). It is not what production runs.

Both sides get N messages enqueued the same way (hand-built protocol-2 messages from
``jobs_core.wire.task_message``, LPUSHed in pipelines: what the beat does), with the same
kwargs payload, after a warm-up batch (pool processes forked, connections and the DB pool
open). A round is timed from the first enqueue to the moment the last run was recorded:

* bare: each task does ``INCR`` of a counter plus ``SET`` of its finish time, one
  pipelined Redis round trip: the cheapest possible "it ran" record, and a small cost
  that makes bare slightly *slower*, i.e. the ratio slightly flatters us (a bare Celery
  task that records nothing at all cannot be observed without the events machinery,
  which would cost the observer far more CPU on this machine than one round trip);
* ours: the run's row in ``job_runs`` reaching ``status = 'succeeded'`` (enqueue ->
  finished history row), taken from ``max(finished_at)``.

Completion is polled every ``--poll`` seconds on both sides (``GET`` of the counter, or
``SELECT count(*) FROM job_runs WHERE status = 'succeeded'``), but the end instant is the
recorded finish time, not the poll time, so the poll interval does not distort either
figure. Rounds alternate bare / ours; the medians are compared. Enqueue time is reported
separately (it is part of the timed window on both sides).

Each round also reports the CPU time per run of every process involved (the Celery
consumer, its prefork pool, PostgreSQL, Redis, this script), read from /proc: on a
small or shared machine the wall-clock rates are noisy, CPU per run is the steadier
figure and shows where our extra cost goes. The PostgreSQL backend that answers ours'
completion polls (a count over ``job_runs`` every ``--poll`` seconds, 0.1-0.2 ms of
server CPU each) is the observer's cost, not the worker's: it is counted under "bench"
(this script), like bare's ``GET`` polls are in Redis's figure and this script's own;
"without bench" is the total of the worker's side. ``--ours-app MODULE`` benchmarks a variant
of ``worker.app`` (a module on PYTHONPATH that patches it and exposes ``app``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery import Celery

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
from bench.scale_ext import job_name  # noqa: E402
from jobs_core.status import Trigger  # noqa: E402
from jobs_core.wire import (  # noqa: E402
    job_kwargs,
    task_message,
    task_name,
)

VENV_BIN = Path(sys.executable).parent
JOB_EXTENSION = "scale"
OURS_QUEUE = "jobs"
BARE_QUEUE = "bare"
BARE_TASK = "bench.noop"
BARE_COUNT = "bench:bare:count"
BARE_LAST = "bench:bare:last"
PROFILE = """
extensions: [bench.scale_ext:ScaleExtension]
"""
#: ``--fast``: no overlap lock, one attempt (what this benchmark used to run).
FAST_PROFILE = """
extensions: [bench.scale_ext:ScaleExtension]
scheduler:
  defaults:
    overlap: allow
    retry: {max_attempts: 1}
"""
FAST_JOBS = "jobs on overlap: allow, retry max_attempts 1 (no overlap lock)"

# ---------------------------------------------------------------- the bare Celery side

#: Configured only inside the bare worker process (BENCH_ROLE=bare-worker), from the same
#: profile and env as ours, through the same settings function.
bare_app = Celery("bench-bare")
_bare_redis: Any = None
_bare_pid = -1


def _configure_bare_app() -> None:
    from jobs_core.profile import load_profile
    from jobs_core.registry import build_registry
    from worker.config import celery_settings

    profile = load_profile()
    bare_app.conf.update(celery_settings(profile.redis_url, build_registry(profile)))


if os.environ.get("BENCH_ROLE") == "bare-worker":
    _configure_bare_app()


#: ``--bare-wait-ms``: what the bare task waits before recording (0: not at all).
BARE_WAIT_ENV = "BENCH_BARE_WAIT_MS"


@bare_app.task(name=BARE_TASK, acks_late=True, ignore_result=True, typing=False)  # type: ignore[untyped-decorator]
def bare_noop(*args: Any, **kwargs: Any) -> None:
    """No work; records "ran" with one pipelined round trip (INCR + SET finish time)."""
    global _bare_redis, _bare_pid
    wait_ms = float(os.environ.get(BARE_WAIT_ENV) or 0)
    if wait_ms:
        time.sleep(wait_ms / 1000)
    if _bare_redis is None or _bare_pid != os.getpid():
        import redis

        _bare_redis = redis.Redis.from_url(bare_app.conf.broker_url)
        _bare_pid = os.getpid()
    pipe = _bare_redis.pipeline(transaction=False)
    pipe.incr(BARE_COUNT)
    pipe.set(BARE_LAST, repr(time.time()))
    pipe.execute()


# ---------------------------------------------------------------- processes


class Proc:
    """A child in its own session (process group), its output in a log file."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            list(args),
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(f"worker exited:\n{self.output()[-3000:]}")

    def _killpg(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen.poll() is None:
            self._killpg(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._killpg(signal.SIGKILL)
                self.popen.wait(10)
        self._killpg(signal.SIGKILL)  # pool children must not outlive the bench
        self._log.close()


def worker_env(profile: Path, redis_url: str, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_"))}
    env.update(
        SYSTEMPROMPT_PROFILE=str(profile),
        REDIS_URL=redis_url,
        DATABASE_URL=database_url,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")])),
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def worker_args(
    app: str, queue: str, name: str, concurrency: int, pool: str = "prefork"
) -> list[str]:
    return [
        str(VENV_BIN / "celery"),
        "-A",
        app,
        "worker",
        "-n",
        f"{name}@%h",
        "-Q",
        queue,
        "-P",
        pool,
        "-c",
        str(concurrency),
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "WARNING",
    ]


# ---------------------------------------------------------------- enqueue and measure


def enqueue(client: Any, tasks: Sequence[str], queue: str, n: int, batch: int = 1000) -> float:
    """LPUSH ``n`` task messages (round-robin over ``tasks``) in pipelines; returns seconds."""
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(start + batch, n)):
            task = tasks[i % len(tasks)]
            run_id = str(uuid.uuid4())
            kwargs = job_kwargs(
                run_id=run_id,
                trigger=Trigger.MANUAL,
                scheduled_for=None,
                enqueued_at=datetime.now(UTC),
            )
            key, payload = task_message(task, kwargs, queue=queue, task_id=run_id)
            pipe.lpush(key, payload)
        pipe.execute()
    return time.perf_counter() - t0


#: The worker processes; every wait checks they are still alive.
WATCHED: list[Proc] = []


def wait_until(check: Callable[[], bool], timeout: float, poll: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        for p in WATCHED:
            p.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)


def tree_cpu(root: int, *, descendants_only: bool = False) -> float:
    """CPU seconds (user + system) used so far by ``root`` and its live descendants.

    A worker with its pool children, the PostgreSQL postmaster with its backends (they
    call setsid, so a process group would miss them), redis-server. Linux only (0.0
    elsewhere); a process that exited takes its time with it, which is fine for these
    long-lived processes.
    """
    if not os.path.isdir("/proc"):
        return 0.0
    stats: dict[int, tuple[int, int]] = {}  # pid -> (ppid, utime + stime ticks)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        # fields[0] is stat field 3 (state): ppid is field 4, utime 14, stime 15
        stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, list(children.get(root, [])) if descendants_only else [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
        todo += children.get(pid, [])
    return total / os.sysconf("SC_CLK_TCK")


def pid_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by one process (0.0 when unknown)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(worker: int, postgres: int, redis: int, observer: int = 0) -> dict[str, float]:
    """CPU so far by role; ``observer`` is the PostgreSQL backend of this script's
    completion polls: counted with this script ("bench"), not as the worker's."""
    pool = tree_cpu(worker, descendants_only=True)
    polls = pid_cpu(observer) if observer else 0.0
    return {
        "consumer": tree_cpu(worker) - pool,  # the Celery worker's main process
        "pool": pool,  # its prefork children, where the tasks run
        "postgres": tree_cpu(postgres) - polls,
        "redis": tree_cpu(redis),
        "bench": polls,
    }


@dataclass
class Round:
    n: int
    enqueue_s: float
    total_s: float
    cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.n / self.total_s


class BareSide:
    def __init__(self, client: Any) -> None:
        self.client = client

    def run(self, n: int, poll: float, timeout: float) -> Round:
        self.client.delete(BARE_COUNT, BARE_LAST)
        t0 = time.time()
        enq = enqueue(self.client, [BARE_TASK], BARE_QUEUE, n)
        wait_until(
            lambda: int(self.client.get(BARE_COUNT) or 0) >= n, timeout, poll, f"{n} bare tasks"
        )
        last = float(self.client.get(BARE_LAST))
        return Round(n, enq, last - t0)


class OursSide:
    def __init__(self, client: Any, database_url: str, tasks: list[str]) -> None:
        import psycopg

        self.client = client
        self.tasks = tasks
        self.db = psycopg.connect(database_url, autocommit=True)
        row = self.db.execute("SELECT pg_backend_pid()").fetchone()
        #: The backend that serves the completion polls (see :func:`cpu_snapshot`).
        self.backend_pid = int(row[0]) if row else 0

    def _counts(self) -> tuple[int, int]:
        row = self.db.execute(
            "SELECT count(*) FILTER (WHERE status = 'succeeded'),"
            " count(*) FILTER (WHERE status IN ('failed', 'timed_out', 'skipped'))"
            " FROM job_runs"
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def run(self, n: int, poll: float, timeout: float) -> Round:
        self.db.execute("TRUNCATE job_run_attempts, job_runs")
        t0 = time.time()
        enq = enqueue(self.client, self.tasks, OURS_QUEUE, n)

        def done() -> bool:
            ok, bad = self._counts()
            if bad:
                raise RuntimeError(f"{bad} runs did not succeed; see the worker log")
            return ok >= n

        wait_until(done, timeout, poll, f"{n} job runs")
        row = self.db.execute(
            "SELECT extract(epoch FROM max(finished_at)) FROM job_runs WHERE status = 'succeeded'"
        ).fetchone()
        assert row is not None
        return Round(n, enq, float(row[0]) - t0)

    def close(self) -> None:
        self.db.close()


# ---------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2500, help="runs per timed round")
    parser.add_argument("--concurrency", type=int, default=2, help="worker -c")
    parser.add_argument(
        "--pool",
        choices=("prefork", "threads"),
        default="prefork",
        help="worker -P of both sides (threads: the tasks run in the main process, whose "
        "CPU is then reported as the consumer's)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per side")
    parser.add_argument("--warmup", type=int, default=300, help="untimed runs per side first")
    parser.add_argument("--poll", type=float, default=0.02, help="completion poll interval")
    parser.add_argument("--timeout", type=float, default=120.0, help="per round, seconds")
    parser.add_argument(
        "--ours-app", default="worker.app", help="celery -A of our side (to try variants)"
    )
    parser.add_argument(
        "--jobs", type=int, default=100, help="distinct jobs the runs go round-robin over"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (worker logs)")
    parser.add_argument(
        "--bare-wait-ms",
        type=float,
        default=0.0,
        help="the bare task sleeps this long first (an experiment: what a wait as long "
        "as a durable commit does to bare Celery); not a comparison of equals",
    )
    add_fast_flag(parser, f"PostgreSQL {FAST_PG}; {FAST_JOBS}")
    opts = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="sp-bench-throughput-"))
    try:
        with (
            private_redis(base) as redis_server,
            private_postgres(base, durable=not opts.fast) as pg_server,
        ):
            return _bench(opts, base, redis_server, pg_server)
    finally:
        if opts.keep:
            print(f"logs kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def _bench(opts: argparse.Namespace, base: Path, redis_server: Any, pg_server: Any) -> int:
    import redis

    from jobs_core.profile import load_profile
    from jobs_core.registry import discover_extensions
    from jobs_core.schema import migrate

    procs = WATCHED
    ours: OursSide | None = None
    redis_url, database_url = redis_server.url, pg_server.url
    try:
        profile_path = base / "profile.yaml"
        profile_path.write_text(FAST_PROFILE if opts.fast else PROFILE)
        env = {"REDIS_URL": redis_url, "DATABASE_URL": database_url}
        os.environ["BENCH_SCALE_JOBS"] = str(opts.jobs)  # inherited by both workers
        profile = load_profile(profile_path, env=env)
        migrate(database_url, discover_extensions(profile))

        c = opts.concurrency
        ours_env = worker_env(profile_path, redis_url, database_url)
        bare_env = worker_env(
            profile_path,
            redis_url,
            database_url,
            BENCH_ROLE="bare-worker",
            **{BARE_WAIT_ENV: str(opts.bare_wait_ms)},
        )
        procs.append(
            Proc(
                worker_args("bench.throughput:bare_app", BARE_QUEUE, "bare", c, opts.pool),
                bare_env,
                base / "worker-bare.log",
            )
        )
        procs.append(
            Proc(
                worker_args(opts.ours_app, OURS_QUEUE, "ours", c, opts.pool),
                ours_env,
                base / "worker-ours.log",
            )
        )
        # No "ready." line at the default log level: the untimed warm-up batch below is
        # the readiness gate (its wait checks that the workers are still alive).
        for p in procs:
            p.check_alive()

        client = redis.Redis.from_url(redis_url)
        bare = BareSide(client)
        tasks = [task_name(f"{JOB_EXTENSION}/{job_name(i)}") for i in range(opts.jobs)]
        ours = OursSide(client, database_url, tasks)
        print_header(
            "worker throughput: no-op job runs against bare Celery no-op tasks",
            {
                "runs": f"N={opts.runs} per round, {opts.rounds} rounds per side "
                f"(alternating), warm-up {opts.warmup}",
                "workers": f"{opts.pool} -c {c}, --without-gossip --without-mingle, JSON only, "
                "acks_late, reject_on_worker_lost, prefetch x1, task events on",
                "enqueue": "pipelined LPUSH of protocol-2 messages",
                "bare": "no-op task"
                + (f" that first sleeps {opts.bare_wait_ms:g} ms" if opts.bare_wait_ms else ""),
                "ours": f"{opts.jobs} jobs round-robin (bench/scale_ext.py), "
                + (FAST_JOBS if opts.fast else "default policies (overlap skip, retry 3)"),
                "servers": f"private redis-server; PostgreSQL {pg_settings(database_url)}",
            },
            [f"PostgreSQL {FAST_PG}", FAST_JOBS] if opts.fast else [],
        )
        bare.run(opts.warmup, opts.poll, opts.timeout)
        ours.run(opts.warmup, opts.poll, opts.timeout)

        results: dict[str, list[Round]] = {"bare": [], "ours": []}
        sides: dict[str, tuple[BareSide | OursSide, Proc]] = {
            "bare": (bare, procs[0]),
            "ours": (ours, procs[1]),
        }
        for i in range(opts.rounds):
            for name, (side, proc) in sides.items():
                observer = side.backend_pid if isinstance(side, OursSide) else 0
                pids = (proc.popen.pid, pg_server.proc.pid, redis_server.proc.pid, observer)
                before = cpu_snapshot(*pids)
                bench_cpu = time.process_time()
                r = side.run(opts.runs, opts.poll, opts.timeout)
                r.cpu_s = {k: v - before[k] for k, v in cpu_snapshot(*pids).items()}
                r.cpu_s["bench"] += time.process_time() - bench_cpu
                results[name].append(r)
                cpu = ", ".join(f"{k} {v / r.n * 1e6:.0f}" for k, v in r.cpu_s.items())
                print(
                    f"round {i + 1} {name:4}: {r.rate:8.0f} runs/s "
                    f"({r.n} in {r.total_s:.3f} s, enqueue {r.enqueue_s * 1000:.0f} ms); "
                    f"CPU us/run: {cpu}",
                    flush=True,
                )

        med = {k: statistics.median(r.rate for r in v) for k, v in results.items()}
        enq = {k: statistics.median(r.enqueue_s for r in v) for k, v in results.items()}
        ratio = med["ours"] / med["bare"]
        print()
        print(f"bare Celery no-op tasks : {med['bare']:8.0f} runs/s (median)")
        print(f"ours, history on        : {med['ours']:8.0f} runs/s (median)")
        print(
            f"enqueue of {opts.runs} (median): bare {enq['bare'] * 1000:.0f} ms, "
            f"ours {enq['ours'] * 1000:.0f} ms"
        )
        for k, v in results.items():
            per_run = {c: statistics.median(r.cpu_s[c] / r.n * 1e6 for r in v) for c in v[0].cpu_s}
            parts = ", ".join(f"{c} {us:.0f}" for c, us in per_run.items())
            worker_side = sum(us for c, us in per_run.items() if c != "bench")
            print(
                f"CPU per run, {k} (median, us): {parts}; total {sum(per_run.values()):.0f},"
                f" without bench {worker_side:.0f}"
            )
        verdict = "meets" if ratio >= 0.8 else "BELOW"
        print(f"ratio ours/bare         : {ratio:8.2f}  ({verdict} the 0.8 target)")
        return 0 if ratio >= 0.8 else 1
    finally:
        if ours is not None:
            with contextlib.suppress(Exception):
                ours.close()
        for p in procs:
            p.stop()


if __name__ == "__main__":
    sys.exit(main())
