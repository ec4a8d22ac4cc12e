"""The `systemprompt` command as operators run it: a real process, real servers, a real worker."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.procs import REPO, VENV_BIN, running, service_env, start_worker

from .worker_support import History

pytestmark = [pytest.mark.integration, pytest.mark.servers]

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
    assert lines[0].split()[:6] == ["JOB", "SCHEDULE", "TIMEZONE", "STATE", "QUEUE", "NEXT"]
    cleanup = next(line for line in lines if line.startswith("maintenance/cleanup"))
    assert "0 */30 * * * * (profile)" in cleanup and "enabled" in cleanup
    assert "Europe/London (profile defaults)" in cleanup
    assert any(line.startswith("testjobs/flaky") and "manual only" in line for line in lines)
    assert "next runs in each job's time zone" in table.stdout

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
        "timezone",
        "paused_note",
        "paused_by",
        "paused_at",
        "remaining_runs",
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
    assert (c["timezone"], c["timezone_source"]) == ("Europe/London", "profile defaults")
    assert c["remaining_runs"] is None and c["paused_note"] is None
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

    # `jobs list` shows each job's last run: status in LAST, status and time in JSON.
    lines = cli(env, "infra", "jobs", "list").stdout.splitlines()
    last_at = lines[0].index("LAST")
    row = {line.split()[0]: line for line in lines[1:] if line and not line[0].isspace()}
    assert row["testjobs/broken"][last_at:].split()[0] == "failed"
    assert row["testjobs/ok"][last_at:].split()[0] == "succeeded"
    assert row["other/ok"][last_at:].split()[0] == "-"
    items = {i["key"]: i for i in json.loads(cli(env, "infra", "jobs", "list", "--json").stdout)}
    assert (items["testjobs/broken"]["last_status"], items["other/ok"]["last_status"]) == (
        "failed",
        None,
    )
    finished = datetime.fromisoformat(items["testjobs/broken"]["last_run_at"])
    assert finished == max(r.finished_at for r in history.runs("testjobs/broken") if r.finished_at)
    assert items["other/ok"]["last_run_at"] is None


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
    next_lines = out.split("next runs:")[1].split("next DST change:")[0].strip().splitlines()
    assert len(next_lines) == 5
    dst = out.split("next DST change:")[1].split("beat:")[0].strip()
    assert dst.startswith(("spring-forward at ", "fall-back at ")) and "Europe" not in dst

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


def test_pause_note_shown_by_status_and_list_and_cleared_by_enable(env: dict[str, str]) -> None:
    from datetime import UTC, datetime

    before = datetime.now(UTC)
    paused = cli(env, "infra", "jobs", "disable", "cleanup", "--note", "DB migration, ask Ana")
    assert paused.returncode == 0, paused.stderr
    status = json.loads(cli(env, "infra", "jobs", "status", "cleanup", "--json").stdout)["job"]
    assert status["paused"] is True and status["enabled"] is False
    assert status["paused_note"] == "DB migration, ask Ana"
    assert status["paused_by"].count("@") == 1  # user@host
    at = datetime.fromisoformat(status["paused_at"])
    assert before <= at <= datetime.now(UTC)
    listed = {i["key"]: i for i in json.loads(cli(env, "infra", "jobs", "list", "--json").stdout)}
    assert listed["maintenance/cleanup"]["paused_note"] == "DB migration, ask Ana"
    assert listed["other/ok"]["paused_note"] is None
    text = cli(env, "infra", "jobs", "status", "cleanup").stdout
    assert 'paused at runtime: "DB migration, ask Ana" by ' in text
    assert '"DB migration, ask Ana"' in cli(env, "infra", "jobs", "list").stdout

    assert cli(env, "infra", "jobs", "enable", "cleanup").returncode == 0
    status = json.loads(cli(env, "infra", "jobs", "status", "cleanup", "--json").stdout)["job"]
    assert status["paused"] is False
    assert (status["paused_note"], status["paused_by"], status["paused_at"]) == (None, None, None)


def test_list_next_run_keeps_each_jobs_window_when_jobs_share_a_schedule(
    env: dict[str, str], tmp_path: Path
) -> None:
    """`jobs list` computes a next run once per shared schedule; a job with a start_at
    on the same schedule must still show its own next run, in the table and in --json."""
    profile = tmp_path / "window.yaml"
    profile.write_text(
        CLI_PROFILE
        + """    - extension: other
      job: ok
      schedule: "0 */30 * * * *"
      start_at: "2098-01-01T00:00:00Z"
"""
    )
    env = {**env, "SYSTEMPROMPT_PROFILE": str(profile)}
    items = {i["key"]: i for i in json.loads(cli(env, "infra", "jobs", "list", "--json").stdout)}
    assert items["other/ok"]["next_run_at"].startswith("2098-01-01T00:00:00")
    assert not items["maintenance/cleanup"]["next_run_at"].startswith("2098")
    text = cli(env, "infra", "jobs", "list").stdout
    rows = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    assert "2098-01-01" in rows["other/ok"] and "2098" not in rows["maintenance/cleanup"]


def test_status_shows_zone_bounds_runs_left_and_the_next_dst_change(
    env: dict[str, str], tmp_path: Path
) -> None:
    import redis

    from jobs_core.wire import Keys

    profile = tmp_path / "bounded.yaml"
    profile.write_text(
        CLI_PROFILE
        + """      max_runs: 4
    - extension: other
      job: ok
      schedule: "0 30 1 * * *"
      timezone: America/New_York
      jitter: 30s
      start_at: "2020-01-01T00:00:00Z"
      end_at: 2099-01-01T00:00:00+01:00
"""
    )
    env = {**env, "SYSTEMPROMPT_PROFILE": str(profile)}
    raw = json.loads(cli(env, "infra", "jobs", "status", "cleanup", "--json").stdout)
    assert raw["job"]["remaining_runs"] == 4 and raw["job"]["next_run_at"] is not None
    dst = raw["dst"]
    # Every half hour, hour field "*" (interval-like): a gap skips, a repeat fires twice.
    assert dst["zone"] == "Europe/London"
    assert dst["effect"] == {"spring-forward": "skipped", "fall-back": "fires twice"}[dst["kind"]]
    assert dst["wall_times"] == ["01:00:00", "01:30:00"]

    other = json.loads(cli(env, "infra", "jobs", "status", "other/ok", "--json").stdout)
    job = other["job"]
    assert (job["timezone"], job["timezone_source"]) == ("America/New_York", "profile")
    assert job["jitter_s"] == 30 and job["start_at"] == "2020-01-01T00:00:00+00:00"
    assert other["dst"]["zone"] == "America/New_York"
    assert all(t.endswith(("-05:00", "-04:00")) for t in other["next_runs"])

    client = redis.Redis.from_url(env["REDIS_URL"])
    try:
        client.hset(Keys.SCHEDULED_RUNS, "maintenance/cleanup", 4)
        raw = json.loads(cli(env, "infra", "jobs", "status", "cleanup", "--json").stdout)
        assert raw["job"]["remaining_runs"] == 0
        assert raw["job"]["next_run_at"] is None and raw["next_runs"] == []
        text = cli(env, "infra", "jobs", "status", "cleanup").stdout
        assert "finished: max_runs used up, no longer scheduled" in text
        assert "4 scheduled runs, 0 left" in text
    finally:
        client.close()


BROKEN_EXTENSION = """
from jobs_core import Extension, Job, JobResult


class Fine(Job):
    name = "fine"
    schedule = "0 0 * * * *"

    async def execute(self, ctx):
        return JobResult.success()


class Broken(Fine):
    name = "broken"
    schedule = "0 0 25 * * *"


class BrokenExtension(Extension):
    name = "brokenext"

    def jobs(self):
        return [Fine(), Broken()]
"""


def test_commands_about_one_job_still_refuse_a_broken_job_elsewhere(
    env: dict[str, str], tmp_path: Path
) -> None:
    """`jobs status NAME` builds only NAME's definition but checks every job: a broken
    job in another extension is reported (exit 2) by it as by `jobs list`."""
    (tmp_path / "broken_fixture.py").write_text(BROKEN_EXTENSION)
    profile = tmp_path / "broken.yaml"
    profile.write_text(
        CLI_PROFILE.replace("extensions:\n", "extensions:\n  - broken_fixture:BrokenExtension\n")
    )
    env = {**env, "SYSTEMPROMPT_PROFILE": str(profile), "PYTHONPATH": str(tmp_path)}
    for args in (
        ["status", "cleanup"],
        ["status", "brokenext/fine"],
        ["history", "flaky"],
        ["list"],
    ):
        result = cli(env, "infra", "jobs", *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "job brokenext/broken: invalid schedule: hour: 25" in result.stderr, args
        assert "Traceback" not in result.stderr
    # Fixed, the same profile works, and a status shows the one job asked for.
    (tmp_path / "broken_fixture.py").write_text(BROKEN_EXTENSION.replace("0 0 25", "0 0 3"))
    result = cli(env, "infra", "jobs", "status", "brokenext/broken")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("brokenext/broken:")


#: What a quick look such as `jobs status` must not import: Celery (and what it brings),
#: the beat's own machinery, the dashboard, the connection pool (one connection does).
NOT_FOR_STATUS = ("celery", "kombu", "billiard", "worker", "ui", "psycopg_pool", "uvicorn")
BEAT_MACHINERY = ("beat.service", "beat.core", "beat.ticks", "beat.lease", "beat.schedule")


def test_status_imports_neither_celery_nor_the_beat_machinery(env: dict[str, str]) -> None:
    args = ["-X", "importtime", "-m", "cli.main", "infra", "jobs", "status", "maintenance/cleanup"]
    done = subprocess.run(
        [str(VENV_BIN / "python"), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {
        line.rpartition("|")[2].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert {"beat.control", "jobs_core.history_pg", "psycopg", "redis"} <= imported  # seen
    unwanted = sorted(
        m for m in imported if m.split(".")[0] in NOT_FOR_STATUS or m.startswith(BEAT_MACHINERY)
    )
    assert unwanted == []
