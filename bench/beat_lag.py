"""Beat lag benchmark: this project's beat versus stock ``celery beat``, same Redis, one run.

For each K (default 10, 100, 1000, 10000) both schedulers get K entries firing every
second for ``--seconds`` (default 30). A consumer thread in this process wakes on each
arrival (``BLMPOP`` of one message) and moves the rest of the list aside with ``RENAME``,
stamping both with the time the call returned; so "lag" is that stamp minus the
scheduled instant, an upper bound of "landed in Redis minus scheduled" that the
consumer's own parsing does not inflate.

- beat: K jobs ``* * * * * *``; scheduled instant read from the message kwargs; missed =
  ticks of the window never received, doubled = ticks received more than once.
- celery beat: K interval entries of 1 s (``schedule: 1.0``). Its messages carry no
  scheduled instant and its next due time is "last send + 1 s", so its lag is measured
  against its own due time (arrival minus the previous arrival of that entry minus 1 s);
  missed = K x seconds minus messages received in the window (it cannot double alone).
- CPU: user + system seconds of the scheduler process (from /proc) per wall second.

Run: ``.venv/bin/python bench/beat_lag.py --seconds 30 --k 10,100,1000,10000``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cli.embedded import RedisServer  # noqa: E402
from jobs_core.wire import decode  # noqa: E402

WARMUP_S = 3.0

EXT_MODULE = """
from jobs_core import Extension, Job, JobResult

class _Nop(Job):
    schedule = "* * * * * *"
    async def execute(self, ctx):
        return JobResult.success()

_CLASSES = [type(f"J{i}", (_Nop,), {"name": f"j{i}", "description": "bench"}) for i in range(K)]

class BenchExtension(Extension):
    name = "bench"
    def jobs(self):
        return [c() for c in _CLASSES]
"""

CELERY_MODULE = """
import os
from celery import Celery

app = Celery("celerybench", broker=os.environ["BENCH_REDIS_URL"])
app.conf.task_serializer = "json"
app.conf.beat_schedule = {
    f"e{i}": {"task": "bench.noop", "schedule": 1.0, "args": (i,),
              "options": {"queue": "celerybench"}}
    for i in range(K)
}
"""


@dataclass
class Result:
    name: str
    k: int
    seconds: float
    lags_ms: list[float] = field(default_factory=list)
    received: int = 0
    expected: int = 0
    missed: int = 0
    doubled: int = 0
    cpu_per_s: float = 0.0

    def row(self) -> str:
        lags = sorted(self.lags_ms)

        def pct(p: float) -> str:
            if not lags:
                return "-"
            return f"{lags[min(len(lags) - 1, int(p * len(lags)))]:.1f}"

        mx = f"{lags[-1]:.1f}" if lags else "-"
        return (
            f"{self.name:<12} K={self.k:<6} p50={pct(0.50):>8} p99={pct(0.99):>8} "
            f"max={mx:>8} ms  received={self.received:<7} expected={self.expected:<7} "
            f"missed={self.missed:<6} doubled={self.doubled:<4} cpu/s={self.cpu_per_s:.3f}"
        )


class Consumer(threading.Thread):
    """Stamps every message with (an upper bound of) the time it landed in the list.

    Parsing thousands of messages per pop would make the stamps of later pops late by
    the consumer's own work, so the loop does no per-message work while the window runs:
    a blocking pop of ONE message wakes it at the first arrival, then the rest of the
    list is moved aside with an O(1) RENAME and stamped with the time that returned.
    The moved lists are read back after the run (:meth:`collect`).
    """

    _MOVE = (
        "if redis.call('EXISTS', KEYS[1]) == 1 then "
        "redis.call('RENAME', KEYS[1], KEYS[2]) return 1 end return 0"
    )

    def __init__(self, url: str, queue: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.queue = queue
        self.batches: list[tuple[float, list[bytes]]] = []
        self.stashes: list[tuple[float, str]] = []
        self.stopping = False

    def run(self) -> None:
        move = self.client.register_script(self._MOVE)
        while not self.stopping:
            reply: Any = self.client.blmpop(0.2, 1, self.queue, direction="RIGHT", count=1)
            if not reply:
                continue
            self.batches.append((time.time(), reply[1]))
            stash = f"bench:stash:{self.queue}:{len(self.stashes)}"
            if move(keys=[self.queue, stash]):
                self.stashes.append((time.time(), stash))

    def collect(self) -> None:
        """Read the moved lists back into :attr:`batches` (after the run)."""
        for stamp, stash in self.stashes:
            self.batches.append((stamp, self.client.lrange(stash, 0, -1)))
            self.client.delete(stash)
        self.stashes = []
        self.batches.sort(key=lambda batch: batch[0])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_first(consumer: Consumer, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while not consumer.batches:
        if proc.poll() is not None:
            raise RuntimeError(f"scheduler exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError("the scheduler sent nothing")
        time.sleep(0.05)


def measure(
    name: str,
    k: int,
    seconds: float,
    url: str,
    queue: str,
    args: list[str],
    env: dict[str, str],
    log: Path,
) -> tuple[Result, Consumer, float, float]:
    consumer = Consumer(url, queue)
    consumer.start()
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_first(consumer, 120, proc)
        # The window starts on a whole second after the warm-up, so it holds whole ticks.
        start = float(int(time.time() + WARMUP_S) + 1)
        time.sleep(max(0.0, start - time.time()))
        cpu0, wall0 = cpu_seconds(proc.pid), time.time()
        end = start + seconds
        time.sleep(max(0.0, end - time.time()))
        cpu1, wall1 = cpu_seconds(proc.pid), time.time()
        time.sleep(1.5)  # let the window's last ticks arrive
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        consumer.stopping = True
        consumer.join(5)
        consumer.collect()
    result = Result(name, k, seconds, cpu_per_s=(cpu1 - cpu0) / (wall1 - wall0))
    return result, consumer, start, end


def bench_beat(
    k: int, seconds: float, url: str, work: Path, metrics_port: int | None = None
) -> Result:
    (work / "benchext.py").write_text(f"K = {k}\n" + EXT_MODULE)
    profile = work / "profile.yaml"
    profile.write_text(
        "extensions: [benchext:BenchExtension]\n"
        "scheduler:\n  defaults:\n    queue: beatbench\n    misfire_grace: 10s\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{work}{os.pathsep}{ROOT}")
    env.pop("REDIS_URL", None)
    args = [sys.executable, "-m", "beat", "--profile", str(profile), "--redis-url", url]
    args += ["--id", "bench", "--log-level", "WARNING"]
    if metrics_port is not None:
        args += ["--metrics-port", str(metrics_port)]
    result, consumer, start, end = measure(
        "beat", k, seconds, url, "beatbench", args, env, work / f"beat-{k}.log"
    )
    start_ms, end_ms = int(start * 1000), int(end * 1000)
    seen: Counter[tuple[str, int]] = Counter()
    for arrival, payloads in consumer.batches:
        for raw in payloads:
            headers, kwargs = decode(raw)
            sched = kwargs["scheduled_for"]
            # The built-in maintenance jobs share the queue; only the K jobs count.
            if sched is None or not headers["task"].startswith("jobs.bench."):
                continue
            ms = round(datetime.fromisoformat(sched).timestamp() * 1000)
            if not start_ms <= ms < end_ms:
                continue
            seen[(headers["task"], ms)] += 1
            result.lags_ms.append(arrival * 1000 - ms)
    result.received = sum(seen.values())
    result.expected = k * int(seconds)
    result.missed = result.expected - len(seen)
    result.doubled = result.received - len(seen)
    return result


def bench_celery(k: int, seconds: float, url: str, work: Path) -> Result:
    (work / "celerybench.py").write_text(f"K = {k}\n" + CELERY_MODULE)
    env = dict(os.environ, PYTHONPATH=f"{work}{os.pathsep}{ROOT}", BENCH_REDIS_URL=url)
    schedule_file = work / f"celerybeat-{k}"
    args = [sys.executable, "-m", "celery", "-A", "celerybench", "beat", "--loglevel", "WARNING"]
    args += ["-s", str(schedule_file)]
    result, consumer, start, end = measure(
        "celery beat", k, seconds, url, "celerybench", args, env, work / f"celery-{k}.log"
    )
    previous: dict[int, float] = {}
    count = 0
    per_entry: defaultdict[int, int] = defaultdict(int)
    for arrival, payloads in consumer.batches:
        for raw in payloads:
            entry = json.loads(base64.b64decode(json.loads(raw)["body"]))[0][0]
            prev = previous.get(entry)
            previous[entry] = arrival
            if not start <= arrival < end:
                continue
            count += 1
            per_entry[entry] += 1
            if prev is not None:
                result.lags_ms.append(max(0.0, (arrival - prev - 1.0) * 1000))
    result.received = count
    result.expected = k * int(seconds)
    result.missed = max(0, result.expected - count)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--k", default="10,100,1000,10000", help="comma-separated job counts")
    parser.add_argument("--skip-celery", action="store_true")
    parser.add_argument(
        "--metrics-port", type=int, help="run our beat with its metrics endpoint on this port"
    )
    opts = parser.parse_args()
    ks = [int(x) for x in opts.k.split(",") if x.strip()]
    work = Path(tempfile.mkdtemp(prefix="sp-bench-beat-"))
    server = RedisServer(work / "redis").start()
    client = redis.Redis.from_url(server.url)
    print(f"# {os.cpu_count()} CPUs, redis-server on {server.url}, {opts.seconds:g}s per run")
    results: list[Result] = []
    try:
        for k in ks:
            client.flushall()
            results.append(bench_beat(k, opts.seconds, server.url, work, opts.metrics_port))
            print(results[-1].row(), flush=True)
            if not opts.skip_celery:
                client.flushall()
                results.append(bench_celery(k, opts.seconds, server.url, work))
                print(results[-1].row(), flush=True)
    finally:
        client.close()
        server.stop(kill=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
