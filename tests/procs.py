"""Real child processes for integration tests: started, watched and always cleaned up."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T], timeout: float, interval: float = 0.05, what: str = "condition"
) -> T:
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def missing_tool(what: str) -> NoReturn:
    """A tool a test needs is not installed: fail under CI (which must install it), skip
    elsewhere, so a green CI never hides a test that did not run."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI must provide it: see .ci/run)")
    pytest.skip(what)


def write_profile(path: Path, text: str) -> Path:
    """Write a profile for a test and return its path."""
    path.write_text(text)
    return path


class Proc:
    """A child process in its own session, with its output in a log file."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log_path: Path) -> None:
        self.args = list(args)
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            self.args,
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_output(self, needle: str, timeout: float) -> None:
        wait_for(lambda: needle in self.output() or self._dead(), timeout, 0.1, f"{needle!r}")
        if needle not in self.output():
            raise AssertionError(f"process exited before printing {needle!r}:\n{self.output()}")

    def _dead(self) -> bool:
        return self.popen.poll() is not None

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        """kill -9 of the whole process group (a worker and its pool children)."""
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.popen.poll() is None:
            # The main process only, as `docker stop` does: a Celery worker then shuts
            # down warm instead of its pool children dying mid-job.
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        # Children of the group (pool processes) must not outlive the test either.
        self.signal(signal.SIGKILL)
        self._log.close()
        return self.popen.returncode


@contextlib.contextmanager
def running(procs: list[Proc]) -> Iterator[list[Proc]]:
    try:
        yield procs
    finally:
        for p in procs:
            p.stop()


def service_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_"))}
    env.pop("SYSTEMPROMPT_PROFILE", None)
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(values)
    return env


def start_worker(
    tmp: Path,
    env: dict[str, str],
    *,
    name: str = "w1",
    concurrency: int = 2,
    pool: str = "prefork",
    queues: str = "jobs",
    extra: Sequence[str] = (),
) -> Proc:
    args = [
        str(VENV_BIN / "celery"),
        "-A",
        "worker.app",
        "worker",
        "-n",
        f"{name}@%h",
        "-Q",
        queues,
        "-P",
        pool,
        "-c",
        str(concurrency),
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        *extra,
    ]
    proc = Proc(args, env, tmp / f"worker-{name}.log")
    proc.wait_output("ready.", 60)
    return proc


def free_port_for_tests() -> int:
    from cli.embedded import free_port

    return free_port()


def flower_proc(tmp: Path, env: dict[str, str], port: int, *extra: str) -> Proc:
    """``celery -A worker.app flower`` on 127.0.0.1:``port`` (not yet waited for)."""
    args = [str(VENV_BIN / "celery"), "-A", "worker.app", "flower"]
    args += [f"--port={port}", "--address=127.0.0.1", *extra]
    return Proc(args, env, tmp / "flower.log")


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (Linux /proc), whatever session it moved to."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
