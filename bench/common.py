"""What every benchmark shares: the run header, private servers, the queue stamper.

Every script prints the same header first (:func:`print_header`): the git commit it ran
on, the exact command, the machine (CPUs, load average: on a shared machine a figure
means little without it) and every setting, with the fast-path ones flagged. Benchmarks
default to production settings (durable PostgreSQL, default job policies); ``--fast``
(see :func:`add_fast_flag`) turns the fast path on and the header says so.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cli.embedded import PostgresServer, RedisServer  # noqa: E402

VENV_BIN = Path(sys.executable).parent

#: What ``--fast`` changes in PostgreSQL (the durable defaults are what ``infra up`` and
#: compose run).
FAST_PG = "fsync=off synchronous_commit=off full_page_writes=off"
DURABLE_PG = "fsync=on synchronous_commit=on full_page_writes=on"


def git_commit() -> str:
    """The commit the benchmark runs on, ``+dirty`` when tracked files differ from it."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha


def command_line() -> str:
    """The command as it can be re-run from the repository root."""
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(REPO)
    return shlex.join([".venv/bin/python", str(script), *sys.argv[1:]])


def add_fast_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--fast",
        action="store_true",
        help=f"fast path, NOT production settings: {what} (printed in the header)",
    )


def print_header(
    title: str,
    settings: dict[str, Any],
    fast: Sequence[str] = (),
    production: str = "durable PostgreSQL, default job policies",
) -> None:
    """The header every benchmark prints: commit, command, machine, settings."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"# {title}")
    print(f"# commit   : {git_commit()}")
    print(f"# command  : {command_line()}")
    print(f"# machine  : {os.cpu_count()} CPUs, load average {load} (1/5/15 min) at start")
    for key, value in settings.items():
        print(f"# {key:<9}: {value}")
    if fast:
        print("# FAST PATH (not production settings): " + "; ".join(fast))
    else:
        print(f"# settings : production defaults ({production})")
    print(flush=True)


@contextlib.contextmanager
def private_redis(base: Path) -> Iterator[RedisServer]:
    server = RedisServer(base / "redis")
    try:
        server.start()
        yield server
    finally:
        server.stop(kill=True)


@contextlib.contextmanager
def private_postgres(base: Path, *, durable: bool = True) -> Iterator[PostgresServer]:
    """A private PostgreSQL; ``durable`` (the default) keeps fsync and friends on."""
    base.chmod(0o755)  # PostgreSQL runs as an unprivileged user when we are root
    server = PostgresServer(base / "pg", durable=durable)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def pg_settings(url: str) -> str:
    """The durability settings the server really runs with (read back, not assumed)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN"
            " ('fsync', 'synchronous_commit', 'full_page_writes') ORDER BY name"
        ).fetchall()
    return " ".join(f"{name}={value}" for name, value in rows)


def memory_kib(pid: int) -> tuple[int, int]:
    """``(VmRSS, VmHWM)`` of a process in KiB: resident now, and the peak so far."""
    values = {"VmRSS": 0, "VmHWM": 0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in values:
            values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (``p`` in 0..1) of unsorted ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


# ---------------------------------------------------------------- the queue stamper


@dataclass(frozen=True)
class Arrival:
    """One message and (an upper bound of) the time it landed in the queue."""

    stamp: float
    payload: bytes


class Stamper(threading.Thread):
    """Stamps every message pushed onto ``queue`` with the time it landed there.

    The same consumer serves both sides of a comparison. Parsing thousands of messages
    per pop would make the stamps of later pops late by this thread's own work, so it
    does no per-message work while the window runs: a blocking pop of ONE message wakes
    it at the first arrival, then the rest of the list is moved aside with an O(1)
    RENAME and stamped with the time that returned. :meth:`drain` reads the moved lists
    back (call it between instants, or after the run).
    """

    _MOVE = (
        "if redis.call('EXISTS', KEYS[1]) == 1 then "
        "redis.call('RENAME', KEYS[1], KEYS[2]) return 1 end return 0"
    )

    def __init__(self, url: str, queue: str) -> None:
        import redis

        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.queue = queue
        self._lock = threading.Lock()
        self._popped: list[Arrival] = []
        self._stashes: list[tuple[float, str]] = []
        self._seq = 0
        self.first_arrival: float | None = None
        #: When the latest message was stamped: readers wait for a quiet spell before
        #: draining, so reading back does not compete with a burst still landing.
        self.last_arrival: float | None = None
        self.stopping = False

    def run(self) -> None:
        move = self.client.register_script(self._MOVE)
        while not self.stopping:
            reply: Any = self.client.blmpop(0.2, 1, self.queue, direction="RIGHT", count=1)
            if not reply:
                continue
            now = time.time()
            stash = f"bench:stash:{self.queue}:{self._seq}"
            self._seq += 1
            moved = move(keys=[self.queue, stash])
            later = time.time()
            with self._lock:
                if self.first_arrival is None:
                    self.first_arrival = now
                self.last_arrival = later
                self._popped.extend(Arrival(now, bytes(raw)) for raw in reply[1])
                if moved:
                    self._stashes.append((later, stash))

    def drain(self) -> list[Arrival]:
        """Everything stamped since the last drain, in arrival order."""
        with self._lock:
            popped, self._popped = self._popped, []
            stashes, self._stashes = self._stashes, []
        out = popped
        for stamp, stash in stashes:
            raws: list[bytes] = self.client.lrange(stash, 0, -1)  # type: ignore[assignment]
            out.extend(Arrival(stamp, raw) for raw in raws)
            self.client.delete(stash)
        out.sort(key=lambda a: a.stamp)
        return out

    def stop(self) -> None:
        self.stopping = True
        self.join(5)


def wait_for_arrivals(stamper: Stamper, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    """Until the first message arrives (the scheduler under test is up and sending)."""
    deadline = time.monotonic() + timeout
    while stamper.first_arrival is None:
        if proc.poll() is not None:
            raise RuntimeError(f"scheduler exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError("the scheduler sent nothing")
        time.sleep(0.05)


def child_env(**values: str) -> dict[str, str]:
    """:func:`tests.procs.service_env` with the repository (and so ``bench``) importable."""
    from tests.procs import service_env

    env = service_env(**values)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env
