"""Test extension and helpers for the beat tests: real ``python -m beat`` processes.

Ticks are counted straight from the Redis queue lists (no worker needed): every message
is a Celery protocol-2 envelope whose body carries the job kwargs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis as redis_lib

from jobs_core import Extension, Job, JobContext, JobResult
from jobs_core.wire import decode

ROOT = Path(__file__).resolve().parent.parent
EXT = "beattest"
QUEUE = "beattest"
JOB = f"{EXT}/every-second"
JOB2 = f"{EXT}/also-every-second"
#: Lease TTL of the test beats, seconds.
TTL = 2.0


class _Nop(Job):
    async def execute(self, ctx: JobContext) -> JobResult:
        return JobResult.success()


class EverySecond(_Nop):
    name = "every-second"
    description = "fires every second"
    schedule = "* * * * * *"


class AlsoEverySecond(_Nop):
    name = "also-every-second"
    description = "fires every second too"
    schedule = "* * * * * *"


class Boot(_Nop):
    name = "boot"
    description = "manual only; used as a bootstrap job"
    schedule = None


class BeatTestExtension(Extension):
    name = EXT

    def jobs(self) -> list[Job]:
        return [EverySecond(), AlsoEverySecond(), Boot()]


def beat_profile(
    *,
    schedule: str | None = None,
    grace: str = "30s",
    bootstrap: bool = False,
    extra: str = "",
) -> str:
    """The text of a profile with the test extension on queue ``beattest``."""
    lines = [
        "extensions: [tests.beat_fixtures:BeatTestExtension]",
        "scheduler:",
        "  defaults:",
        f"    misfire_grace: {grace}",
        f"    queue: {QUEUE}",
    ]
    if schedule is not None:
        lines += [
            "  jobs:",
            f"    - extension: {EXT}",
            "      job: every-second",
            f'      schedule: "{schedule}"',
        ]
    if bootstrap:
        lines += [f"  bootstrap_jobs: [{EXT}/boot]"]
    return "\n".join(lines) + "\n" + extra


@dataclass(frozen=True)
class Msg:
    job: str
    scheduled_ms: int | None
    trigger: str
    run_id: str
    task_id: str
    skip_reason: str | None


def _iso_ms(value: str | None) -> int | None:
    if value is None:
        return None
    from datetime import datetime

    return round(datetime.fromisoformat(value).timestamp() * 1000)


def parse(payload: str | bytes) -> Msg:
    headers, kwargs = decode(payload)
    task = headers["task"]  # jobs.<ext>.<job>
    _, ext, job = task.split(".", 2)
    return Msg(
        job=f"{ext}/{job}",
        scheduled_ms=_iso_ms(kwargs["scheduled_for"]),
        trigger=kwargs["trigger"],
        run_id=kwargs["run_id"],
        task_id=headers["id"],
        skip_reason=kwargs.get("skip_reason"),
    )


def messages(client: redis_lib.Redis, queue: str = QUEUE) -> list[Msg]:
    """Every message on ``queue``, oldest first (LPUSH puts the newest at the head)."""
    raw = client.lrange(queue, 0, -1)
    return [parse(p) for p in reversed(raw)]  # type: ignore[union-attr]


class BeatProcs:
    """Starts ``python -m beat`` processes and kills every one of them at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self,
        name: str,
        profile: Path,
        redis_url: str,
        *,
        lease_ttl: float = 2.0,
        extra: tuple[str, ...] = (),
    ) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env.pop("REDIS_URL", None)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        args = [sys.executable, "-m", "beat", "--profile", str(profile), "--redis-url"]
        args += [redis_url, "--id", name, "--lease-ttl", str(lease_ttl), *extra]
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def signal(self, name: str, sig: int) -> None:
        self.procs[name].send_signal(sig)

    def stop(self, name: str, timeout: float = 10.0) -> int:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(Exception):
                proc.wait(10)


@contextlib.contextmanager
def beat_procs(workdir: Path) -> Iterator[BeatProcs]:
    procs = BeatProcs(workdir)
    try:
        yield procs
    finally:
        procs.close()
