"""Scale: one beat and the CLI over 100,000 jobs, against the targets of issue 15.

Run: ``.venv/bin/python bench/scale_jobs.py [--jobs 100000] [--minutes 2] [--cli-only]``
(``--minutes 3`` is the issue's full run). It starts a private redis-server and a
durable PostgreSQL, writes a profile loading :mod:`bench.scale_ext` (``--jobs`` jobs,
all on ``--schedule``, default ``0 * * * * *``, default policies), seeds one finished
run per job (so ``jobs list`` has a LAST to show), and starts one beat
(:mod:`bench.beat_probe`: the production beat plus timing marks) at ``--log-level``
(default INFO, the CLI's default: one log line per tick, to a file). Then it measures:

- start-up: process spawn to leadership, and to the full schedule (every job in the
  due-time heap);
- beat RSS (``VmRSS``) once scheduled, and its peak (``VmHWM``) over the whole run;
- every instant of the schedule in the ``--minutes`` window: lag of each tick = the
  time it landed in the queue (stamped by :class:`bench.common.Stamper`, the same
  consumer ``beat_lag.py`` uses) minus its scheduled instant; p50 / p99 / max, the time
  until all of the instant's ticks were in the queue, missed (ticks of the instant that
  never arrived) and doubled (arrivals beyond one per tick);
- a profile reload: SIGHUP ``--hup-lead`` seconds before the window's last instant;
  reload time = SIGHUP sent to reload finished; that instant's row shows whether it
  cost anything;
- CPU per instant, less disturbed by the machine's load than the lags: redis-server's
  and the beat's CPU time from a second before the instant until its ticks stopped
  landing (plus the claim script's time inside Redis, ``INFO commandstats``, which
  counts the waits for a CPU too); how often the beat lost its lease (its loop held up
  past the lease TTL);
- ``--jitter 30s`` (the profile's ``scheduler.defaults.jitter``): each tick is due at
  its instant plus its offset (``beat.schedule.jitter_offset_ms``, the beat's own
  function); lag counts from there, and the run prints how the arrivals spread over
  the window (per-second counts, p50 / p99 of the offset);
- after the beat stopped: wall time of ``systemprompt infra jobs list`` and
  ``jobs status NAME`` as an operator runs them (new process each, median of
  ``--cli-repeat``; with the CLI process's own CPU time), and the same with 0
  generated jobs (the fixed cost of the CLI).

``--cli-only`` starts no beat: it seeds the history and times only the CLI.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from beat.schedule import jitter_offset_ms
from bench.common import (
    DURABLE_PG,
    FAST_PG,
    REPO,
    VENV_BIN,
    Stamper,
    add_fast_flag,
    child_env,
    cpu_seconds,
    memory_kib,
    ms,
    percentile,
    pg_settings,
    print_header,
    private_postgres,
    private_redis,
)
from jobs_core.cron import CronSchedule
from jobs_core.durations import parse_duration
from jobs_core.wire import DEFAULT_QUEUE, decode

TASK_PREFIX = "jobs.scale."
GIB_KIB = 1024 * 1024


@dataclass
class InstantStats:
    instant: datetime
    expected: int
    lags_ms: list[float] = field(default_factory=list)
    distinct: int = 0
    after_reload: bool = False
    #: Arrival minus the instant (for jittered ticks: minus the instant, not the due time).
    since_instant_ms: list[float] = field(default_factory=list)
    redis_script_s: float | None = None
    redis_cpu_s: float | None = None
    beat_cpu_s: float | None = None

    @property
    def received(self) -> int:
        return len(self.lags_ms)

    @property
    def missed(self) -> int:
        return self.expected - self.distinct

    @property
    def doubled(self) -> int:
        return self.received - self.distinct

    def row(self) -> str:
        p50, p99 = percentile(self.lags_ms, 0.5), percentile(self.lags_ms, 0.99)
        last = max(self.lags_ms) if self.lags_ms else None
        note = "  (first instant after the reload)" if self.after_reload else ""
        cpu = ""
        if self.redis_script_s is not None and self.beat_cpu_s is not None:
            per_tick = (self.redis_cpu_s or 0) / max(self.received, 1) * 1e6
            cpu = (
                f"  redis script {self.redis_script_s:.2f} s, redis CPU {self.redis_cpu_s:.2f} s"
                f" ({per_tick:.1f} us/tick), beat CPU {self.beat_cpu_s:.2f} s"
            )
        return (
            f"{self.instant:%H:%M:%S}Z  received {self.received:>7} of {self.expected}  "
            f"lag p50 {ms(p50):>7} p99 {ms(p99):>7} max {ms(last):>7} ms  "
            f"missed {self.missed}  doubled {self.doubled}{note}{cpu}"
        )

    def spread(self) -> str:
        """How the arrivals spread after the instant: offset p50 / p99, per-second counts."""
        offs = self.since_instant_ms
        if not offs:
            return "  no arrivals"
        bins: dict[int, int] = {}
        for x in offs:
            bins[int(x // 1000)] = bins.get(int(x // 1000), 0) + 1
        hist = " ".join(f"{bins.get(i, 0)}" for i in range(min(bins), max(bins) + 1))
        return (
            f"  arrival after the instant p50 {percentile(offs, 0.5) or 0:.0f} ms, "
            f"p99 {percentile(offs, 0.99) or 0:.0f} ms, last {max(offs):.0f} ms; "
            f"per second from +{min(bins)} s: {hist}"
        )


class Probe:
    """The beat child and its ``BENCH`` marks (see :mod:`bench.beat_probe`)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.spawned = time.time()
        self.popen = subprocess.Popen(
            args, cwd=REPO, env=env, stdout=self._out, stderr=subprocess.STDOUT
        )

    def marks(self) -> list[dict[str, float | str]]:
        out = []
        with open(self.log, "rb") as f:
            for line in f:
                if line.startswith(b"BENCH "):
                    out.append(json.loads(line[6:]))
        return out

    def wait_mark(self, name: str, timeout: float, after: float = 0.0) -> float:
        deadline = time.monotonic() + timeout
        while True:
            for m in self.marks():
                if m["mark"] == name and float(m["t"]) >= after:
                    return float(m["t"])
            if self.popen.poll() is not None:
                tail = self.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"beat exited with {self.popen.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {name!r} mark from the beat within {timeout:.0f} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._out.close()


#: The project's packages: byte-compiled before the CLI is timed (see byte_compile).
PROJECT_PACKAGES = ("beat", "bench", "cli", "control", "extensions", "jobs_core", "ui", "worker")


def byte_compile(env: dict[str, str]) -> None:
    """Byte-compile the project's modules (``__pycache__``, ignored by git).

    An installed package has its modules byte-compiled; a checkout run with
    ``PYTHONDONTWRITEBYTECODE`` (as some CI and container setups are) compiles them from
    source in every process, ~0.1 s of each CLI command here. (Not through
    ``PYTHONPYCACHEPREFIX``: the standard library's and the dependencies' own ``.pyc``
    files would then be looked for there and missed.)
    """
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", *PROJECT_PACKAGES],
        cwd=REPO,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def seed_history(url: str, jobs: int) -> None:
    """One succeeded scheduled run per job, an hour ago (what ``jobs list`` shows)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO job_runs (id, job_key, trigger, status, scheduled_for, enqueued_at,"
            " started_at, finished_at, attempt, max_attempts, duration_ms, worker)"
            " SELECT gen_random_uuid(), 'scale/j' || lpad(i::text, 6, '0'), 'schedule',"
            " 'succeeded', t, t, t + interval '5 ms', t + interval '25 ms', 1, 3, 20,"
            " 'celery@bench'"
            " FROM generate_series(0, %s - 1) AS i,"
            " LATERAL (SELECT date_trunc('minute', now()) - interval '1 hour' AS t) AS s",
            (jobs,),
        )
        conn.execute("ANALYZE job_runs")


def collect(
    stamper: Stamper, stats: dict[str, InstantStats], jitter_ms: int = 0, gap_ms: int | None = None
) -> None:
    """Attribute the arrivals drained so far to their instants (ticks of scale/* only).

    With ``jitter_ms``, a tick is due at its instant plus the beat's offset for it (the
    job key ``<ext>/<name>`` is read back from the task name ``jobs.<ext>.<name>``)."""
    seen: dict[str, set[str]] = {}
    for arrival in stamper.drain():
        headers, kwargs = decode(arrival.payload)
        sched = kwargs.get("scheduled_for")
        st = stats.get(sched) if isinstance(sched, str) else None
        task = headers["task"]
        if st is None or not isinstance(sched, str) or not task.startswith(TASK_PREFIX):
            continue
        since = (arrival.stamp - st.instant.timestamp()) * 1000
        due = 0
        if jitter_ms:
            instant_ms = int(st.instant.timestamp() * 1000)
            key = task.removeprefix("jobs.").replace(".", "/", 1)  # jobs.<ext>.<name>
            due = jitter_offset_ms(key, instant_ms, jitter_ms, gap_ms)
        st.lags_ms.append(since - due)
        st.since_instant_ms.append(since)
        seen.setdefault(sched, set()).add(task)
    for sched, tasks in seen.items():
        stats[sched].distinct += len(tasks)


@dataclass
class CliTiming:
    """A CLI command timed in fresh processes: medians (and the fastest wall time)."""

    wall: float
    wall_min: float
    #: User + system CPU seconds of the CLI process itself (not of the servers): less
    #: disturbed by the machine's load than the wall time.
    cpu: float
    lines: int


def time_cli(args: list[str], env: dict[str, str], repeat: int) -> CliTiming:
    """Wall and CPU seconds of a CLI command in a fresh process, and its lines."""
    walls, cpus, lines = [], [], 0
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {done.returncode}:\n{done.stderr}")
        lines = done.stdout.count("\n")
    return CliTiming(statistics.median(walls), min(walls), statistics.median(cpus), lines)


def verdict(value: float | None, target: float) -> str:
    if value is None:
        return "n/a"
    return "meets" if value < target else "MISSES"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--schedule", default="0 * * * * *", help="every job's schedule")
    parser.add_argument(
        "--minutes", type=float, default=2.0, help="window observed (the issue's run: 3)"
    )
    parser.add_argument("--hup-lead", type=float, default=10.0, help="SIGHUP this long before")
    parser.add_argument("--log-level", default="INFO", help="beat log level (CLI default)")
    parser.add_argument("--cli-repeat", type=int, default=3)
    parser.add_argument("--startup-timeout", type=float, default=600.0)
    parser.add_argument(
        "--jitter", default=None, help="scheduler.defaults.jitter of every job (e.g. 30s)"
    )
    parser.add_argument(
        "--skip-cli", action="store_true", help="do not time jobs list / jobs status"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (beat log)")
    parser.add_argument(
        "--source-only",
        action="store_true",
        help="do not byte-compile the project's modules first (see byte_compile)",
    )
    parser.add_argument(
        "--cli-only",
        action="store_true",
        help="no beat: seed the history and time only the CLI commands (seconds, not minutes)",
    )
    add_fast_flag(parser, FAST_PG)
    opts = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="sp-bench-scale-"))
    try:
        with (
            private_redis(base) as redis_server,
            private_postgres(base, durable=not opts.fast) as pg,
        ):
            return run(opts, base, redis_server.url, pg.url)
    finally:
        if opts.keep:
            print(f"temp dir kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def run(opts: argparse.Namespace, base: Path, redis_url: str, database_url: str) -> int:
    from jobs_core.registry import discover_extensions
    from jobs_core.schema import migrate

    profile = base / "profile.yaml"
    text = "extensions: [bench.scale_ext:ScaleExtension]\n"
    jitter_ms = 0
    if opts.jitter:
        jitter_ms = round(parse_duration(opts.jitter, key="--jitter") * 1000)
        text += f"scheduler:\n  defaults:\n    jitter: {opts.jitter}\n"
    profile.write_text(text)
    env = child_env(
        REDIS_URL=redis_url,
        DATABASE_URL=database_url,
        BENCH_SCALE_JOBS=str(opts.jobs),
        BENCH_SCALE_SCHEDULE=opts.schedule,
    )
    if not opts.source_only:
        byte_compile(env)
    migrate(database_url, discover_extensions(None))
    seed_history(database_url, opts.jobs)
    print_header(
        "scale: one beat and the CLI over many jobs (issue 15)",
        {
            "jobs": f"{opts.jobs:,} generated (bench/scale_ext.py), all on {opts.schedule!r},"
            + (f" jitter {opts.jitter}" if opts.jitter else " default policies"),
            "window": "none (--cli-only)"
            if opts.cli_only
            else f"{opts.minutes:g} min; SIGHUP {opts.hup_lead:g} s before its last instant",
            "beat": "none (--cli-only)"
            if opts.cli_only
            else f"python -m bench.beat_probe, --log-level {opts.log_level} (log to a file)",
            "servers": f"private redis-server; PostgreSQL {pg_settings(database_url)}",
            "history": "one succeeded run per job (for the LAST column of jobs list)",
            "modules": "compiled from source by every process (--source-only)"
            if opts.source_only
            else f"byte-compiled first, as installed ({', '.join(PROJECT_PACKAGES)})",
        },
        [FAST_PG] if opts.fast else [],
    )
    announced = " ".join(sorted((FAST_PG if opts.fast else DURABLE_PG).split()))
    if pg_settings(database_url) != announced:
        raise RuntimeError(f"PostgreSQL does not run with {announced}")

    if opts.cli_only:
        results = cli_results(opts, profile, env)
        print_results(results)
        return 0

    stamper = Stamper(redis_url, DEFAULT_QUEUE)
    stamper.start()
    import redis as redis_lib

    probe = redis_lib.Redis.from_url(redis_url)
    redis_pid = int(probe.info("server")["process_id"])

    def script_s() -> float:
        stats_: Any = probe.info("commandstats")
        return float(stats_.get("cmdstat_evalsha", {}).get("usec", 0)) / 1e6

    args = [sys.executable, "-m", "bench.beat_probe", "--profile", str(profile)]
    args += ["--redis-url", redis_url, "--id", "scale", "--log-level", opts.log_level]
    beat = Probe(args, env, base / "beat.log")
    results: list[tuple[str, str, str, str]] = []
    try:
        init = beat.wait_mark("init", opts.startup_timeout)
        elected = beat.wait_mark("elected", opts.startup_timeout)
        scheduled = beat.wait_mark("scheduled", opts.startup_timeout)
        rss_sched, _ = memory_kib(beat.popen.pid)
        print(
            f"start-up: job table built {init - beat.spawned:.2f} s, leader "
            f"{elected - beat.spawned:.2f} s, full schedule {scheduled - beat.spawned:.2f} s "
            f"after spawn; RSS {rss_sched / 1024:.0f} MiB",
            flush=True,
        )

        cron = CronSchedule(opts.schedule)
        first = cron.next_after(datetime.fromtimestamp(time.time() + 2, UTC))
        window_end = first.timestamp() + opts.minutes * 60
        instants = [first]
        while (nxt := cron.next_after(instants[-1])).timestamp() < window_end:
            instants.append(nxt)
        stats = {t.isoformat(): InstantStats(t, opts.jobs) for t in instants}
        gap_ms = int((cron.next_after(first).timestamp() - first.timestamp()) * 1000)
        hup_at = instants[-1].timestamp() - opts.hup_lead
        reload_s: float | None = None
        reload_work_s: float | None = None
        print(f"observing {len(instants)} instant(s) from {first:%H:%M:%S}Z", flush=True)

        hup_sent: float | None = None
        for i, instant in enumerate(instants):
            if hup_at > time.time() and hup_at < instant.timestamp():
                time.sleep(max(0.0, hup_at - time.time()))
                hup_sent = time.time()
                beat.popen.send_signal(signal.SIGHUP)
                # Its end is read after the instant: waiting here would miss the CPU
                # figures of an instant the reload runs into.
                stats[instant.isoformat()].after_reload = True
            # Arrivals of an instant are read back once they have all landed (or the
            # next instant is near), so decoding them does not compete with the send.
            following = instants[i + 1].timestamp() if i + 1 < len(instants) else None
            limit = (following - 3) if following else instant.timestamp() + 60
            st = stats[instant.isoformat()]
            time.sleep(max(0.0, instant.timestamp() - 1 - time.time()))
            redis0, beat0 = script_s(), cpu_seconds(beat.popen.pid)
            rcpu0 = cpu_seconds(redis_pid)
            while time.time() < limit:
                time.sleep(0.5)
                if beat.popen.poll() is not None:
                    raise RuntimeError("the beat exited during the window")
                # Read back only after a quiet second: draining (LRANGE, decoding) while
                # ticks still land would compete with the burst for Redis and the CPUs.
                last = stamper.last_arrival
                # (With jitter, not before the spread is over: the beat may pause.)
                spread_end = instant.timestamp() + 1 + jitter_ms / 1000
                if time.time() < spread_end or last is None or last < instant.timestamp():
                    continue
                if time.time() - last < 1.0:
                    continue
                if st.redis_script_s is None:
                    st.redis_script_s = script_s() - redis0
                    st.beat_cpu_s = cpu_seconds(beat.popen.pid) - beat0
                    st.redis_cpu_s = cpu_seconds(redis_pid) - rcpu0
                collect(stamper, stats, jitter_ms, gap_ms)
                if st.distinct >= st.expected:
                    break
            collect(stamper, stats, jitter_ms, gap_ms)
            if st.after_reload and hup_sent is not None:
                end = beat.wait_mark("reload-end", 120, after=hup_sent)
                start = beat.wait_mark("reload-start", 1, after=hup_sent)
                reload_s, reload_work_s = end - hup_sent, end - start
                print(
                    f"reload (SIGHUP): {reload_s:.2f} s from the signal to the new table in"
                    f" place ({reload_work_s:.2f} s from its start)",
                    flush=True,
                )
            print(st.row(), flush=True)
            if jitter_ms:
                print(st.spread(), flush=True)
        rss_end, peak = memory_kib(beat.popen.pid)
    finally:
        beat.stop()
        stamper.stop()
        probe.close()
    lost = beat.log.read_text(errors="replace").count('event="leadership lost"')

    total = sum(s.expected for s in stats.values())
    missed = sum(s.missed for s in stats.values())
    doubled = sum(s.doubled for s in stats.values())
    all_lags = [x for s in stats.values() for x in s.lags_ms]
    p99 = percentile(all_lags, 0.99)
    clean = [x for s in stats.values() if not s.after_reload for x in s.lags_ms]
    p99_clean = percentile(clean, 0.99)
    in_queue = max((max(s.lags_ms) for s in stats.values() if s.lags_ms), default=None)

    redis_cpu = [s.redis_cpu_s for s in stats.values() if s.redis_cpu_s is not None]
    beat_cpu = [s.beat_cpu_s for s in stats.values() if s.beat_cpu_s is not None]
    cpu_row = f"{max(redis_cpu):.2f} / {max(beat_cpu):.2f} s" if redis_cpu and beat_cpu else "-"
    results += [
        ("beat start-up to leadership", f"{elected - beat.spawned:.2f} s", "-", ""),
        (
            "beat start-up to full schedule",
            f"{scheduled - beat.spawned:.2f} s",
            "< 10 s",
            verdict(scheduled - beat.spawned, 10),
        ),
        (
            "beat RSS once scheduled",
            f"{rss_sched / 1024:.0f} MiB",
            "< 1 GiB",
            verdict(rss_sched / GIB_KIB, 1),
        ),
        (
            "beat RSS at the end / peak",
            f"{rss_end / 1024:.0f} / {peak / 1024:.0f} MiB",
            "< 1 GiB",
            verdict(peak / GIB_KIB, 1),
        ),
        (
            "reload (SIGHUP to reloaded)",
            "-" if reload_s is None else f"{reload_s:.2f} s",
            "< 5 s",
            verdict(reload_s, 5),
        ),
        (
            f"tick lag p99 ({len(all_lags):,} ticks)",
            f"{ms(p99)} ms",
            "< 1000 ms",
            verdict(p99, 1000),
        ),
        (
            f"tick lag p99, instants without a reload ({len(clean):,})",
            f"{ms(p99_clean)} ms",
            "< 1000 ms",
            verdict(p99_clean, 1000),
        ),
        ("an instant's ticks all in the queue", f"{ms(in_queue)} ms", "-", ""),
        (
            f"missed / doubled of {total:,}",
            f"{missed} / {doubled}",
            "0 / 0",
            "meets" if missed == doubled == 0 else "MISSES",
        ),
    ]
    results += [
        ("an instant's Redis CPU / beat CPU (max)", cpu_row, "-", ""),
        ("beat leadership lost (lease not renewed in time)", str(lost), "-", ""),
    ]
    if not opts.skip_cli:
        results += cli_results(opts, profile, env)
    print_results(results)
    return 0


def cli_results(
    opts: argparse.Namespace, profile: Path, env: dict[str, str]
) -> list[tuple[str, str, str, str]]:
    """``jobs list`` and ``jobs status NAME`` over the jobs, and with 0 generated jobs."""
    cli = [str(VENV_BIN / "systemprompt"), "--profile", str(profile), "infra", "jobs"]
    name = "scale/j000042" if opts.jobs > 42 else "maintenance/cleanup"
    listed = time_cli([*cli, "list"], env, opts.cli_repeat)
    status = time_cli([*cli, "status", name], env, opts.cli_repeat)
    empty = dict(env, BENCH_SCALE_JOBS="0")
    base_list = time_cli([*cli, "list"], empty, opts.cli_repeat)
    base_status = time_cli([*cli, "status", "maintenance/cleanup"], empty, opts.cli_repeat)

    n = f"{opts.jobs:,}"
    return [
        (
            f"jobs list ({n} jobs, {listed.lines:,} lines)",
            f"{listed.wall:.2f} s (min {listed.wall_min:.2f}, cpu {listed.cpu:.2f})",
            "< 3 s",
            verdict(listed.wall, 3),
        ),
        (
            f"jobs status {name}",
            f"{status.wall * 1000:.0f} ms (min {status.wall_min * 1000:.0f}, "
            f"cpu {status.cpu * 1000:.0f})",
            "< 300 ms",
            verdict(status.wall, 0.3),
        ),
        (
            "jobs list / status, 0 generated jobs",
            f"{base_list.wall * 1000:.0f} / {base_status.wall * 1000:.0f} ms "
            f"(cpu {base_list.cpu * 1000:.0f} / {base_status.cpu * 1000:.0f})",
            "-",
            "(fixed CLI cost)",
        ),
    ]


def print_results(results: list[tuple[str, str, str, str]]) -> None:
    print()
    width = max(len(r[0]) for r in results)
    for what, value, target, mark in results:
        print(f"{what:<{width}}  {value:>32}  {target:>9}  {mark}")
    misses = sum(1 for r in results if r[3] == "MISSES")
    print(f"\n{misses} of {sum(1 for r in results if r[2] != '-')} targets missed")


if __name__ == "__main__":
    sys.exit(main())
