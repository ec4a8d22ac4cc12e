"""``systemprompt infra up`` as a new user runs it: from a private directory, servers
found by itself (``SYSTEMPROMPT_LOCAL_SERVERS`` decides which: ``make test`` runs this
once with the system's servers and once with the bundled ones)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.embedded import postgres_account
from cli.local_servers import Choice, choice_from_env, shared_data_dir
from tests.procs import VENV_BIN, alive, descendants, service_env, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.servers]


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """A clone's directory as ``mktemp -d`` makes it: mode 0700, so when we are root the
    account PostgreSQL runs as cannot enter it."""
    path = Path(tempfile.mkdtemp(prefix="sp-up-test-"))
    assert path.stat().st_mode & 0o777 == 0o700
    yield path
    if postgres_account() is not None:
        shutil.rmtree(shared_data_dir(path / ".systemprompt", "postgres").parent)
    shutil.rmtree(path, ignore_errors=True)


def _cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "systemprompt"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _get(url: str, auth: tuple[str, str] | None = None) -> int:
    """The HTTP status of a GET (0 when nothing answers)."""
    import base64
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


def test_infra_up_runs_a_job_and_stops_cleanly(private_dir: Path) -> None:
    env = service_env()
    choice = choice_from_env(env)
    log_path = private_dir / "up.log"
    log = open(log_path, "w")  # noqa: SIM115
    up = subprocess.Popen(
        [str(VENV_BIN / "systemprompt"), "infra", "up", "--no-flower"],
        cwd=private_dir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    family: set[int] = set()
    try:
        wait_for(
            lambda: "stack ready in" in log_path.read_text() or up.poll() is not None,
            120,
            0.2,
            "infra up to report a ready stack",
        )
        text = log_path.read_text()
        assert up.poll() is None, text
        for server in ("redis-server", "PostgreSQL"):
            line = next(x for x in text.splitlines() if x.startswith(f"[up] {server} "))
            assert re.search(rf"^\[up\] {server} \d+\.\d+\S* \((system|bundled), /", line), line
            if choice is not Choice.AUTO:
                assert f"({choice.value}, " in line, line
        if choice is Choice.BUNDLED:
            assert "[up] redis-server 6." in text and "[up] PostgreSQL 18" in text, text
        if postgres_account() is not None:
            # Root: the data went where PostgreSQL's account can reach it, and it says so.
            assert "data in /var/lib/systemprompt/stacks/" in text, text
            assert (private_dir / ".systemprompt" / "postgres").is_symlink()
        ready = re.search(r"\[up\] stack ready in (\d+\.\d) s", text)
        assert ready, text
        print(f"infra up ({choice.value}): stack ready in {ready.group(1)} s")

        result = _cli(env, private_dir, "infra", "jobs", "run", "heartbeat", "--wait")
        assert result.returncode == 0, result.stdout + result.stderr + log_path.read_text()
        assert "succeeded: alive" in result.stdout

        # The dashboard, with the local password `up` generated and printed.
        printed = re.search(
            r"dashboard on (http://127.0.0.1:\d+/) \(user admin, password (\S+)\)",
            log_path.read_text(),
        )
        assert printed, log_path.read_text()
        url, password = printed.groups()
        saved = (private_dir / ".systemprompt" / "ui-password").read_text().strip()
        assert saved == password
        assert wait_for(lambda: _get(url + "healthz") == 200, 60, 0.2, "the dashboard")
        assert _get(url) == 401
        assert _get(url, ("admin", password)) == 200

        family |= descendants(up.pid)
        assert len(family) >= 4  # redis, postgres (+ its processes), beat, worker (+ pool)
        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0
        wait_for(lambda: not any(alive(p) for p in family), 20, 0.2, "children to exit")
        text = log_path.read_text()
        assert "[up] stopped" in text and "succeeded" in text
        assert not (private_dir / ".systemprompt" / "stack.json").exists()
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(10)
        log.close()
        for pid in family | descendants(up.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
