"""The `systemprompt` command as operators run it: a real process, real servers, a real worker."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.procs import REPO, VENV_BIN, running, service_env, start_worker, wait_for

from .worker_support import History

pytestmark = pytest.mark.integration

CLI_PROFILE = """
extensions:
  - tests.worker_fixtures:WorkerTestExtension
  - tests.worker_fixtures:OtherExtension
scheduler:
  timezone: Europe/London
  defaults:
    retry: {max_attempts: 2, backoff: 100ms, max_backoff: 1s, jitter: false}
    timeout: 20s
  jobs:
    - extension: maintenance
      job: cleanup
      schedule: "0 */30 * * * *"
      parameters: {batch_size: 500}
"""


def cli(
    env: dict[str, str], *args: str, cwd: Path = REPO, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "systemprompt"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def env(tmp_path: Path, redis_url: str, database_url: str) -> dict[str, str]:
    profile = tmp_path / "profile.yaml"
    profile.write_text(CLI_PROFILE)
    return service_env(
        REDIS_URL=redis_url, DATABASE_URL=database_url, SYSTEMPROMPT_PROFILE=str(profile)
    )


@pytest.fixture
def worker(tmp_path: Path, env: dict[str, str]) -> Iterator[Any]:
    proc = start_worker(tmp_path, env, name="cli", concurrency=2)
    with running([proc]):
        yield proc


def test_list_table_and_json(env: dict[str, str]) -> None:
    table = cli(env, "infra", "jobs", "list")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:5] == ["JOB", "SCHEDULE", "STATE", "QUEUE", "NEXT"]
    cleanup = next(line for line in lines if line.startswith("maintenance/cleanup"))
    assert "0 */30 * * * * (profile)" in cleanup and "enabled" in cleanup
    assert any(line.startswith("testjobs/flaky") and "manual only" in line for line in lines)
    assert "times in Europe/London" in table.stdout

    raw = cli(env, "infra", "jobs", "list", "--json")
    assert raw.returncode == 0, raw.stderr
    items = {item["key"]: item for item in json.loads(raw.stdout)}
    contract = {
        "key",
        "extension",
        "name",
        "description",
        "schedule",
        "schedule_source",
        "enabled",
        "queue",
        "next_run_at",
    }
    for item in items.values():
        assert contract <= set(item)
    c = items["maintenance/cleanup"]
    assert (c["extension"], c["name"], c["schedule"]) == (
        "maintenance",
        "cleanup",
        "0 */30 * * * *",
    )
    assert c["schedule_source"] == "profile" and c["enabled"] is True and c["queue"] == "jobs"
    next_run = c["next_run_at"]
    assert next_run is not None and next_run.endswith(("+00:00", "+01:00"))
    assert items["other/ok"]["schedule_source"] == "code"
    assert items["testjobs/ok"]["next_run_at"] is None


def test_run_wait_inline_exit_codes_and_history(env: dict[str, str], worker: Any) -> None:
    ok = cli(env, "infra", "jobs", "run", "testjobs/ok", "-p", "who=cli", "--wait")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "succeeded: hello cli" in ok.stdout

    failing = cli(env, "infra", "jobs", "run", "broken", "--wait", "--json")
    assert failing.returncode == 1, failing.stdout + failing.stderr
    [run] = json.loads(failing.stdout)
    assert run["status"] == "failed" and run["attempt"] == 2 and run["trigger"] == "manual"
    assert "ValueError: broken on attempt 2" in run["error"]
    assert run["worker"].startswith("cli@")
    for key in (
        "id",
        "job",
        "trigger",
        "status",
        "attempt",
        "scheduled_for",
        "enqueued_at",
        "started_at",
        "finished_at",
        "duration_ms",
        "message",
        "error",
        "worker",
    ):
        assert key in run
    # live progress went to stderr with --json (a short retry wait may fall between polls)
    assert "failed (attempt 2/2)" in failing.stderr

    refused = cli(env, "infra", "jobs", "run", "refusing", "--wait")
    assert refused.returncode == 1 and "nothing to do here" in refused.stdout

    inline_ok = cli(env, "infra", "jobs", "run", "testjobs/db", "--inline")
    assert inline_ok.returncode == 0, inline_ok.stdout + inline_ok.stderr
    inline_bad = cli(env, "infra", "jobs", "run", "refusing", "--inline")
    assert inline_bad.returncode == 1 and "nothing to do here" in inline_bad.stdout

    tagged = cli(env, "infra", "jobs", "run", "--tag", "fast", "--wait")
    assert tagged.returncode == 0 and "testjobs/ok" in tagged.stdout

    history = History(env["DATABASE_URL"])
    db_runs = history.runs("testjobs/db")
    assert len(db_runs) == 1 and db_runs[0].worker and db_runs[0].worker.startswith("cli@")

    table = cli(env, "infra", "jobs", "history", "broken")
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split()[:4] == ["RUN", "TRIGGER", "STATUS", "TRY"]
    assert "failed" in table.stdout and "2/2" in table.stdout
    as_json = json.loads(cli(env, "infra", "jobs", "history", "broken", "--json").stdout)
    assert [r["status"] for r in as_json] == ["failed"]


def test_status_enable_disable(env: dict[str, str], worker: Any) -> None:
    assert cli(env, "infra", "jobs", "run", "maintenance/cleanup", "--wait").returncode == 0
    text = cli(env, "infra", "jobs", "status", "cleanup")
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert "schedule       0 */30 * * * *  (profile)" in out
    assert "timezone       Europe/London" in out
    assert "max 2 attempts" in out and "(profile defaults)" in out
    assert "batch_size=500" in out
    assert "no beat leader seen" in out
    assert "status         succeeded" in out and "Deleted 0 records" in out
    assert "last 24 h: 1 succeeded" in out
    next_lines = out.split("next runs:")[1].split("beat:")[0].strip().splitlines()
    assert len(next_lines) == 5

    raw = json.loads(cli(env, "infra", "jobs", "show", "maintenance/cleanup", "--json").stdout)
    assert raw["job"]["key"] == "maintenance/cleanup"
    assert len(raw["next_runs"]) == 5 and raw["beat"] is None
    assert raw["last_run"]["status"] == "succeeded" and raw["counts_24h"] == {"succeeded": 1}

    assert cli(env, "infra", "jobs", "disable", "cleanup").returncode == 0
    listed = {i["key"]: i for i in json.loads(cli(env, "infra", "jobs", "list", "--json").stdout)}
    assert listed["maintenance/cleanup"]["enabled"] is False
    assert listed["maintenance/cleanup"]["next_run_at"] is None
    assert "paused at runtime" in cli(env, "infra", "jobs", "status", "cleanup").stdout
    assert cli(env, "infra", "jobs", "enable", "cleanup").returncode == 0
    listed = {i["key"]: i for i in json.loads(cli(env, "infra", "jobs", "list", "--json").stdout)}
    assert listed["maintenance/cleanup"]["enabled"] is True


BAD = [
    (["infra", "jobs", "status", "nosuchjob"], "unknown job 'nosuchjob'"),
    (["infra", "jobs", "run", "ok"], "ambiguous"),
    (["infra", "jobs", "run"], "name the jobs to run"),
    (["infra", "jobs", "run", "flaky", "-p", "novalue"], "KEY=VALUE"),
    (["infra", "jobs", "run", "--tag", "nosuchtag"], "no job is tagged 'nosuchtag'"),
    (["infra", "jobs", "history", "flaky", "--limit", "0"], "--limit"),
]


@pytest.mark.parametrize(("args", "needle"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_invocations_exit_2(env: dict[str, str], args: list[str], needle: str) -> None:
    result = cli(env, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_ambiguous_name_lists_candidates(env: dict[str, str]) -> None:
    result = cli(env, "infra", "jobs", "status", "ok")
    assert result.returncode == 2
    assert "other/ok" in result.stderr and "testjobs/ok" in result.stderr


def test_unknown_job_suggests_closest(env: dict[str, str]) -> None:
    result = cli(env, "infra", "jobs", "status", "flakey")
    assert result.returncode == 2
    assert "closest known: testjobs/flaky" in result.stderr


def test_broken_profile_exit_2_names_file_and_line(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("scheduler:\n  defaults:\n    timeout: forever\n")
    result = cli(env, "--profile", str(bad), "infra", "jobs", "list")
    assert result.returncode == 2
    assert f"{bad}:3" in result.stderr and "timeout" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    debug = cli(env, "--debug", "--profile", str(bad), "infra", "jobs", "list")
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_unreachable_servers_exit_2_with_masked_urls(env: dict[str, str]) -> None:
    from cli.embedded import free_port

    dead_redis = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    result = cli({**env, "REDIS_URL": dead_redis}, "infra", "jobs", "list")
    assert result.returncode == 2
    assert "cannot connect to Redis at redis://:***@127.0.0.1" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout

    dead_pg = f"postgresql://app:hunter2@127.0.0.1:{free_port()}/app"
    result = cli({**env, "DATABASE_URL": dead_pg}, "infra", "jobs", "history", "flaky")
    assert result.returncode == 2
    assert "cannot connect to PostgreSQL at postgresql://app:***@127.0.0.1" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def _descendants(pid: int) -> set[int]:
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


def _get(url: str, auth: tuple[str, str] | None = None) -> int:
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


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Not tmp_path: PostgreSQL runs as an unprivileged user when we are root and must
    # reach its data dir; pytest's base dir is private to root.
    path = Path(tempfile.mkdtemp(prefix="sp-up-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_infra_up_runs_a_job_and_stops_cleanly(workdir: Path) -> None:
    env = service_env()
    log = open(workdir / "up.log", "w")  # noqa: SIM115
    up = subprocess.Popen(
        [str(VENV_BIN / "systemprompt"), "infra", "up", "--no-flower"],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    family: set[int] = set()
    try:
        started = time.monotonic()
        wait_for(
            lambda: (
                "local@" in (workdir / "up.log").read_text()
                and "ready." in (workdir / "up.log").read_text()
            ),
            60,
            0.2,
            "the stack's worker to be ready",
        )
        result = cli(env, "infra", "jobs", "run", "heartbeat", "--wait", cwd=workdir)
        assert result.returncode == 0, (
            result.stdout + result.stderr + (workdir / "up.log").read_text()
        )
        assert "succeeded: alive" in result.stdout
        assert time.monotonic() - started < 60
        # The dashboard, with the local password `up` generated and printed.
        printed = re.search(
            r"dashboard on (http://127.0.0.1:\d+/) \(user admin, password (\S+)\)",
            (workdir / "up.log").read_text(),
        )
        assert printed, (workdir / "up.log").read_text()
        url, password = printed.groups()
        assert (workdir / ".systemprompt" / "ui-password").read_text().strip() == password
        assert wait_for(lambda: _get(url + "healthz") == 200, 60, 0.2, "the dashboard")
        assert _get(url) == 401
        assert _get(url, ("admin", password)) == 200
        family |= _descendants(up.pid)
        assert len(family) >= 4  # redis, postgres (+ its processes), beat, worker (+ pool)
        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0
        wait_for(lambda: not any(_alive(p) for p in family), 20, 0.2, "children to exit")
        text = (workdir / "up.log").read_text()
        assert "[up] stopped" in text and "run " in text and "succeeded" in text
        assert not (workdir / ".systemprompt" / "stack.json").exists()
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(10)
        log.close()
        for pid in family | _descendants(up.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
