"""Beat lag benchmark: this project's beat versus stock ``celery beat``, same Redis, one run.

Run: ``.venv/bin/python bench/beat_lag.py [--seconds 30] [--k 10,100,1000,10000]
[--workload uniform,mixed]``.

Both schedulers get the same K entries and fire them at the same instants: each entry
has a 6-field cron expression evaluated by the same engine (``jobs_core.cron``; for
celery beat through :class:`CronEntry`, a ``celery.schedules.BaseSchedule`` whose
``is_due`` asks it for the first instant after the entry's last run, as celery's own
``crontab`` does at minute resolution). Workloads:

- ``uniform``: every entry ``* * * * * *``, no parameters (one message template);
- ``mixed``: entries cycle through :data:`MIXED_EXPRESSIONS` (every second, every 2 /
  4 / 5 / 10 s, offsets, lists), each with its own parameter (``shard: i``, so no two
  messages share a template), in :data:`MIXED_ZONE` (UTC+05:45). One parameter, not
  more: the profile (where parameters live) may hold at most 100,000 YAML values, about
  11 per job entry with two parameters, so 10,000 entries with two would be refused.
  Every entry uses that one zone: a per-job ``timezone`` entry as well would take the
  profile of K = 10,000 past that limit.

One definition of each figure for both sides:

- each message carries its scheduled instant: ours in its kwargs (``scheduled_for``),
  celery beat's in a ``scheduled_for`` header set by a ``before_task_publish`` handler in
  the celery beat process from the instant :class:`CronEntry` found due (when celery
  beat falls behind, one message covers the first instant it missed, as ours coalesces);
- lag = the time the message landed in the queue (stamped by
  :class:`bench.common.Stamper` without parsing) minus its scheduled instant;
- expected = the (entry, instant) ticks of the window by the cron engine; missed =
  expected ticks no message arrived for; doubled = messages beyond one per tick;
- CPU: user + system seconds of the scheduler process per wall second.

Both log at ``--log-level`` (default INFO, the CLI's default: a line per tick on both
sides) to a file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    REPO,
    Stamper,
    child_env,
    cpu_seconds,
    ms,
    percentile,
    print_header,
    private_redis,
    wait_for_arrivals,
)
from jobs_core.cron import CronSchedule
from jobs_core.wire import decode

WARMUP_S = 3.0
QUEUE = "lagbench"
MIXED_EXPRESSIONS = (
    "* * * * * *",
    "*/2 * * * * *",
    "1/3 * * * * *",
    "*/5 * * * * *",
    "0,15,30,45 * * * * *",
    "*/4 * * * * *",
    "7/10 * * * * *",
    "*/10 * * * * *",
)
MIXED_ZONE = "Asia/Kathmandu"

#: The celery beat side; written to the work dir with K and the workload filled in.
CELERY_MODULE = """
import os
from datetime import datetime, timezone

from celery import Celery
from celery.schedules import BaseSchedule, schedstate
from celery.signals import before_task_publish

from jobs_core.cron import CronSchedule

K = {k}
EXPRESSIONS = {expressions!r}
ZONE = {zone!r}
MIXED = {mixed!r}

app = Celery("celerybench", broker=os.environ["BENCH_REDIS_URL"])
app.conf.task_serializer = "json"
app.conf.timezone = "UTC"
INSTANT = {{}}


class CronEntry(BaseSchedule):
    def __init__(self, index, expr):
        super().__init__()
        self.index = index
        self.cron = CronSchedule(expr, ZONE)

    def is_due(self, last_run_at):
        last = self.maybe_make_aware(last_run_at)
        now = datetime.now(timezone.utc)
        due = self.cron.next_after(last)
        if due <= now:
            INSTANT[self.index] = due
            return schedstate(True, (self.cron.next_after(now) - now).total_seconds())
        return schedstate(False, (due - now).total_seconds())

    def remaining_estimate(self, last_run_at):
        return self.cron.next_after(self.maybe_make_aware(last_run_at)) - self.now()

    def __reduce__(self):
        return (self.__class__, (self.index, self.cron.expr))


@before_task_publish.connect
def stamp(sender=None, body=None, headers=None, **kw):
    index = body[1]["entry"]
    headers["scheduled_for"] = INSTANT[index].astimezone(timezone.utc).isoformat()


def params(i):
    return {{"entry": i, "shard": i}} if MIXED else {{"entry": i}}


app.conf.beat_schedule = {{
    f"e{{i}}": {{
        "task": "bench.noop",
        "schedule": CronEntry(i, EXPRESSIONS[i % len(EXPRESSIONS)]),
        "kwargs": params(i),
        "options": {{"queue": "{queue}"}},
    }}
    for i in range(K)
}}
"""


@dataclass
class Result:
    name: str
    workload: str
    k: int
    lags_ms: list[float] = field(default_factory=list)
    received: int = 0
    expected: int = 0
    missed: int = 0
    doubled: int = 0
    cpu_per_s: float = 0.0

    def row(self) -> str:
        p50, p99 = percentile(self.lags_ms, 0.5), percentile(self.lags_ms, 0.99)
        mx = max(self.lags_ms) if self.lags_ms else None
        return (
            f"{self.name:<12} {self.workload:<8} K={self.k:<6} p50={ms(p50):>8} "
            f"p99={ms(p99):>8} max={ms(mx):>8} ms  received={self.received:<7} "
            f"expected={self.expected:<7} missed={self.missed:<6} doubled={self.doubled:<4} "
            f"cpu/s={self.cpu_per_s:.3f}"
        )


def expressions(workload: str) -> tuple[tuple[str, ...], str]:
    if workload == "mixed":
        return MIXED_EXPRESSIONS, MIXED_ZONE
    return ("* * * * * *",), "UTC"


def expected_ticks(k: int, workload: str, start: float, end: float) -> set[tuple[int, int]]:
    """``(entry, instant ms)`` of every tick due in ``[start, end)``."""
    exprs, zone = expressions(workload)
    per_expr: list[list[int]] = []
    for expr in exprs:
        cron = CronSchedule(expr, zone)
        instants, t = [], cron.next_after(datetime.fromtimestamp(start - 0.001, UTC))
        while t.timestamp() < end:
            instants.append(round(t.timestamp() * 1000))
            t = cron.next_after(t)
        per_expr.append(instants)
    return {(i, ms_) for i in range(k) for ms_ in per_expr[i % len(exprs)]}


def measure(
    result: Result,
    seconds: float,
    url: str,
    args: list[str],
    env: dict[str, str],
    log: Path,
    entry_of: dict[str, int] | None,
) -> None:
    """Run one scheduler, stamp its messages, fill ``result`` (same rules both sides)."""
    stamper = Stamper(url, QUEUE)
    stamper.start()
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_arrivals(stamper, 180, proc)
        # The window starts on a whole second after the warm-up, so it holds whole ticks.
        start = float(int(time.time() + WARMUP_S) + 1)
        time.sleep(max(0.0, start - time.time()))
        cpu0, wall0 = cpu_seconds(proc.pid), time.time()
        end = start + seconds
        time.sleep(max(0.0, end - time.time()))
        cpu1, wall1 = cpu_seconds(proc.pid), time.time()
        time.sleep(2.0)  # let the window's last ticks arrive
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        stamper.stop()
    arrivals = stamper.drain()
    result.cpu_per_s = (cpu1 - cpu0) / (wall1 - wall0)
    expected = expected_ticks(result.k, result.workload, start, end)
    seen: Counter[tuple[int, int]] = Counter()
    for arrival in arrivals:
        headers, kwargs = decode(arrival.payload)
        sched = kwargs.get("scheduled_for") or headers.get("scheduled_for")
        entry = kwargs.get("entry") if entry_of is None else entry_of.get(headers["task"])
        if sched is None or entry is None:
            continue  # not one of the K entries (the built-in maintenance jobs)
        tick = (int(entry), round(datetime.fromisoformat(sched).timestamp() * 1000))
        if tick not in expected:
            continue  # outside the window
        seen[tick] += 1
        result.lags_ms.append(arrival.stamp * 1000 - tick[1])
    result.received = sum(seen.values())
    result.expected = len(expected)
    result.missed = len(expected) - len(seen)
    result.doubled = result.received - len(seen)


def bench_beat(
    k: int,
    workload: str,
    seconds: float,
    url: str,
    work: Path,
    level: str,
    metrics_port: int | None = None,
) -> Result:
    exprs, zone = expressions(workload)
    profile = work / f"profile-{workload}-{k}.yaml"
    lines = [
        "extensions: [bench.scale_ext:ScaleExtension]",
        "scheduler:",
        f"  timezone: {zone}",
        f"  defaults: {{queue: {QUEUE}, misfire_grace: 10s}}",
    ]
    if workload == "mixed":
        lines.append("  jobs:")
        for i in range(k):
            lines.append(f"    - {{extension: scale, job: j{i:06d}, parameters: {{shard: {i}}}}}")
    profile.write_text("\n".join(lines) + "\n")
    env = child_env(BENCH_SCALE_JOBS=str(k), BENCH_SCALE_SCHEDULES="|".join(exprs))
    args = [sys.executable, "-m", "beat", "--profile", str(profile), "--redis-url", url]
    args += ["--id", "bench", "--log-level", level]
    if metrics_port is not None:
        args += ["--metrics-port", str(metrics_port)]
    result = Result("beat", workload, k)
    entry_of = {f"jobs.scale.j{i:06d}": i for i in range(k)}
    measure(result, seconds, url, args, env, work / f"beat-{workload}-{k}.log", entry_of)
    return result


def bench_celery(k: int, workload: str, seconds: float, url: str, work: Path, level: str) -> Result:
    exprs, zone = expressions(workload)
    module = CELERY_MODULE.format(
        k=k, expressions=exprs, zone=zone, mixed=workload == "mixed", queue=QUEUE
    )
    (work / "celerybench.py").write_text(module)
    env = child_env(BENCH_REDIS_URL=url)
    env["PYTHONPATH"] = f"{work}{os.pathsep}{env['PYTHONPATH']}"
    schedule_file = work / f"celerybeat-{workload}-{k}"
    args = [sys.executable, "-m", "celery", "-A", "celerybench", "beat", "--loglevel", level]
    args += ["-s", str(schedule_file)]
    result = Result("celery beat", workload, k)
    measure(result, seconds, url, args, env, work / f"celery-{workload}-{k}.log", None)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--k", default="10,100,1000,10000", help="comma-separated entry counts")
    parser.add_argument("--workload", default="uniform,mixed", help="uniform, mixed or both")
    parser.add_argument("--skip-celery", action="store_true")
    parser.add_argument(
        "--log-level", default="INFO", help="both schedulers (INFO: the CLI's default)"
    )
    parser.add_argument(
        "--metrics-port", type=int, help="run our beat with its metrics endpoint on this port"
    )
    opts = parser.parse_args()
    ks = [int(x) for x in opts.k.split(",") if x.strip()]
    workloads = [w.strip() for w in opts.workload.split(",") if w.strip()]
    if any(w not in ("uniform", "mixed") for w in workloads):
        parser.error("--workload takes uniform, mixed or both (comma-separated)")
    work = Path(tempfile.mkdtemp(prefix="sp-bench-beat-"))
    print_header(
        "beat lag: this project's beat against celery beat",
        {
            "window": f"{opts.seconds:g} s per run after a {WARMUP_S:g} s warm-up; K={opts.k}",
            "workloads": ", ".join(workloads)
            + f" (mixed: {len(MIXED_EXPRESSIONS)} expressions, per-entry parameters,"
            f" zone {MIXED_ZONE})",
            "beat": f"python -m beat --log-level {opts.log_level}; misfire_grace 10s"
            + (f"; --metrics-port {opts.metrics_port}" if opts.metrics_port else ""),
            "celery": f"celery beat --loglevel {opts.log_level}, default scheduler, CronEntry"
            " schedules (same cron engine)",
            "servers": "one private redis-server for both (no PostgreSQL involved)",
        },
        [] if opts.log_level.upper() == "INFO" else [f"log level {opts.log_level}"],
        production="log level INFO (the CLI's default), logs to a file",
    )
    results: list[Result] = []
    try:
        with private_redis(work) as server:
            client = redis.Redis.from_url(server.url)
            for workload in workloads:
                for k in ks:
                    client.flushall()
                    level, port = opts.log_level, opts.metrics_port
                    beat = bench_beat(k, workload, opts.seconds, server.url, work, level, port)
                    results.append(beat)
                    print(results[-1].row(), flush=True)
                    if not opts.skip_celery:
                        client.flushall()
                        results.append(
                            bench_celery(
                                k, workload, opts.seconds, server.url, work, opts.log_level
                            )
                        )
                        print(results[-1].row(), flush=True)
            client.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
