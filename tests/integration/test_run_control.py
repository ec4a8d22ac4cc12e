"""Run control end to end through the CLI: backfill, cancel, rerun, audit, history filters.

Real Redis, PostgreSQL, worker and beat processes; the CLI as operators run it.
"""

from __future__ import annotations

import getpass
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobs_core.status import RunStatus, Trigger
from jobs_core.wire import job_kwargs, task_message, task_name, tick_run_id
from tests.procs import (
    VENV_BIN,
    Proc,
    descendants,
    running,
    service_env,
    start_worker,
    wait_for,
)

from .test_cli import cli
from .worker_support import History

pytestmark = [pytest.mark.integration, pytest.mark.servers]

ME = f"{getpass.getuser()}@{socket.gethostname()}"

PROFILE = """
extensions: [tests.worker_fixtures:WorkerTestExtension]
scheduler:
  defaults:
    retry: {{max_attempts: 1, backoff: 100ms, max_backoff: 1s, jitter: false}}
    timeout: 60s
  jobs:
    - {{extension: testjobs, job: counted, schedule: "0 * * * * *",
       parameters: {{log: "{log}"}}}}
    - {{extension: testjobs, job: slow, overlap: allow}}
    - {{extension: testjobs, job: stubborn, overlap: allow}}
    - {{extension: testjobs, job: long, queue: parked, parameters: {{seconds: 0}}}}
"""


@pytest.fixture
def env(tmp_path: Path, redis_url: str, database_url: str) -> dict[str, str]:
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE.format(log=tmp_path / "counted.log"))
    return service_env(
        REDIS_URL=redis_url, DATABASE_URL=database_url, SYSTEMPROMPT_PROFILE=str(profile)
    )


@pytest.fixture
def worker(tmp_path: Path, env: dict[str, str]) -> Iterator[Proc]:
    proc = start_worker(tmp_path, env, name="ctl", concurrency=2)
    with running([proc]):
        yield proc


def _jobs(env: dict[str, str], *args: str, timeout: float = 90) -> Any:
    return cli(env, "infra", "jobs", *args, timeout=timeout)


def _json(env: dict[str, str], *args: str) -> Any:
    res = _jobs(env, *args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _finished(history: History, run_id: str) -> Any:
    run = history.run(run_id)
    return run if run is not None and run.finished else None


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# ---------------------------------------------------------------- backfill


def test_backfill_twice_gives_one_run_per_tick(
    env: dict[str, str], worker: Proc, tmp_path: Path, redis_url: str, database_url: str
) -> None:
    history = History(database_url)
    start = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
    args = ["backfill", "counted", "--from", start.isoformat(), "--to", "2024-03-01T10:10:00Z"]
    first = _json(env, *args)
    assert (first["ticks"], first["enqueued"], first["already_present"]) == (10, 10, 0)
    second = _json(env, *args)
    assert (second["ticks"], second["enqueued"], second["already_present"]) == (10, 0, 10)
    # An overlapping range: only its new ticks are enqueued.
    wider = _jobs(env, *args[:-1], "2024-03-01T10:12:00Z")
    assert wider.returncode == 0 and "2 enqueued, 10 already present" in wider.stdout

    log = tmp_path / "counted.log"
    wait_for(lambda: len(_lines(log)) >= 12, 90, what="12 backfilled runs")
    runs = _json(env, "history", "counted", "--trigger", "backfill", "--limit", "100")
    assert len(runs) == 12
    assert {r["status"] for r in runs} == {"succeeded"}
    assert {r["triggered_by"] for r in runs} == {ME}
    ticks = sorted(datetime.fromisoformat(r["scheduled_for"]) for r in runs)
    assert ticks == [start + timedelta(minutes=i) for i in range(12)]

    # A recent tick (the beat could still send it, catching up within the misfire
    # grace): the beat's message for it lands on the backfilled run and is not run again.
    end = datetime.now(UTC).replace(microsecond=0)
    recent = _json(
        env, "backfill", "counted", "--from", (end - timedelta(minutes=3)).isoformat(),
        "--to", end.isoformat(),
    )  # fmt: skip
    assert recent["enqueued"] == 3
    wait_for(lambda: len(_lines(log)) >= 15, 90, what="15 backfilled runs")
    at = datetime.fromisoformat(recent["enqueued_ticks"][0])
    rid = tick_run_id("testjobs/counted", at)
    kwargs = job_kwargs(
        run_id=rid, trigger=Trigger.SCHEDULE, scheduled_for=at, enqueued_at=datetime.now(UTC)
    )
    queue, payload = task_message(task_name("testjobs/counted"), kwargs, task_id=rid)
    import redis

    client = redis.Redis.from_url(redis_url)
    client.lpush(queue, payload)
    worker.wait_output(f"run {rid} testjobs/counted attempt 1 not started", 60)
    client.close()
    assert len(_lines(log)) == 15
    assert len(history.runs("testjobs/counted")) == 15


def test_backfill_refusals_exit_2(env: dict[str, str]) -> None:
    too_many = _jobs(
        env, "backfill", "counted", "--from", "2024-01-01T00:00:00Z", "--to", "2024-01-02T00:00Z"
    )
    assert too_many.returncode == 2
    assert "more than 1000 ticks" in too_many.stderr and "Traceback" not in too_many.stderr
    capped = _jobs(
        env, "backfill", "counted", "--from", "2024-01-01T00:00Z", "--to", "2024-01-01T00:06Z",
        "--max", "5",
    )  # fmt: skip
    assert capped.returncode == 2 and "more than 5 ticks" in capped.stderr
    future = datetime.now(UTC) + timedelta(hours=1)
    ahead = _jobs(
        env, "backfill", "counted", "--from", "2024-01-01T00:00Z", "--to", future.isoformat()
    )
    assert ahead.returncode == 2 and "in the future" in ahead.stderr
    manual = _jobs(env, "backfill", "slow", "--from", "2024-01-01T00:00Z", "--to", "2024-01-02")
    assert manual.returncode == 2 and "no schedule" in manual.stderr
    bad = _jobs(env, "backfill", "counted", "--from", "yesterday", "--to", "2024-01-02")
    assert bad.returncode == 2 and "ISO 8601" in bad.stderr


# ---------------------------------------------------------------- cancel


def test_cancel_a_running_run_then_again_then_unknown(
    env: dict[str, str], worker: Proc, database_url: str
) -> None:
    history = History(database_url)
    (queued,) = _json(env, "run", "slow", "-p", "seconds=120")
    rid = queued["id"]
    wait_for(
        lambda: (r := history.run(rid)) is not None and r.status is RunStatus.RUNNING,
        60,
        what="the slow run running",
    )
    res = _jobs(env, "cancel", rid)
    assert res.returncode == 0, res.stdout + res.stderr
    run = history.run(rid)
    assert run is not None and run.status is RunStatus.CANCELLED
    assert run.cancelled_by == ME and run.message == f"cancelled by {ME}"
    assert run.duration_ms is not None and run.duration_ms < 60_000
    assert [a.status for a in run.attempts] == [RunStatus.CANCELLED]

    again = _jobs(env, "cancel", rid)
    assert again.returncode == 1 and "already cancelled" in again.stdout
    unknown = _jobs(env, "cancel", "0b0e7f5c-9f2a-4b8e-9d4c-2f6a1b3c4d5e")
    assert unknown.returncode == 2 and "no run with id" in unknown.stderr
    garbage = _jobs(env, "cancel", "not-a-run")
    assert garbage.returncode == 2


def test_a_cancelled_queued_run_never_starts(
    env: dict[str, str], tmp_path: Path, database_url: str, redis_url: str
) -> None:
    history = History(database_url)
    (queued,) = _json(env, "run", "long")  # queue "parked": no worker consumes it yet
    rid = queued["id"]
    res = _jobs(env, "cancel", rid)
    assert res.returncode == 0, res.stdout + res.stderr
    run = history.run(rid)
    assert run is not None and run.status is RunStatus.CANCELLED and run.cancelled_by == ME

    import redis

    client = redis.Redis.from_url(redis_url)
    proc = start_worker(tmp_path, env, name="parked", queues="parked", concurrency=1)
    with running([proc]):
        proc.wait_output(f"run {rid} testjobs/long cancelled by {ME} before it started", 60)
        wait_for(lambda: client.llen("parked") == 0, 30, what="the parked queue drained")
    client.close()
    after = history.run(rid)
    assert after is not None and after.status is RunStatus.CANCELLED
    assert after.started_at is None and after.attempts == ()


def test_cancel_terminate_kills_a_job_that_ignores_cancellation(
    env: dict[str, str], worker: Proc, database_url: str
) -> None:
    history = History(database_url)
    (queued,) = _json(env, "run", "stubborn", "-p", "seconds=40")
    rid = queued["id"]
    worker.wait_output(f"run {rid} testjobs/stubborn attempt 1/1 started", 60)
    children = descendants(worker.pid)
    res = _jobs(env, "cancel", rid, "--terminate")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "terminated" in res.stdout
    worker.wait_output(f"Terminating {rid} (9)", 30)
    # The pool child running the job is killed (Celery starts another in its place).
    wait_for(lambda: children - descendants(worker.pid), 30, what="the pool child killed")
    run = history.run(rid)
    assert run is not None and run.status is RunStatus.CANCELLED and run.cancelled_by == ME
    assert f"run {rid} testjobs/stubborn attempt 1/1 succeeded" not in worker.output()


# ---------------------------------------------------------------- rerun, audit, filters


def test_rerun_audit_and_history_filters(
    env: dict[str, str], worker: Proc, tmp_path: Path, database_url: str
) -> None:
    res = _jobs(env, "run", "ok", "-p", "who=bob", "--reason", "deploy check", "--wait", "--json")
    assert res.returncode == 0, res.stderr
    (original,) = json.loads(res.stdout)
    assert original["triggered_by"] == ME and original["reason"] == "deploy check"
    assert original["message"] == "hello bob"

    again = _jobs(env, "rerun", original["id"], "--wait", "--json")
    assert again.returncode == 0, again.stderr
    (rerun,) = json.loads(again.stdout)
    assert rerun["trigger"] == "rerun" and rerun["rerun_of"] == original["id"]
    assert rerun["parameters"] == original["parameters"] == {"who": "bob"}
    assert rerun["message"] == "hello bob" and rerun["triggered_by"] == ME
    assert _jobs(env, "rerun", "0b0e7f5c-9f2a-4b8e-9d4c-2f6a1b3c4d5e").returncode == 2

    status = _json(env, "status", "ok")
    assert status["last_run"]["id"] == rerun["id"]
    assert status["last_run"]["rerun_of"] == original["id"]

    (slow,) = _json(env, "run", "slow", "-p", "seconds=0.1", "--wait")
    assert slow["status"] == "succeeded"

    def ids(*args: str) -> list[str]:
        return [r["id"] for r in _json(env, "history", *args)]

    assert ids("--all") == [slow["id"], rerun["id"], original["id"]]
    assert ids("ok") == [rerun["id"], original["id"]]
    assert ids("--all", "--trigger", "rerun") == [rerun["id"]]
    assert ids("--all", "--trigger", "manual", "--limit", "1") == [slow["id"]]
    assert ids("ok", "--status", "succeeded", "--trigger", "manual") == [original["id"]]
    assert ids("--all", "--status", "failed") == []
    since = rerun["enqueued_at"]
    assert ids("--all", "--since", since) == [slow["id"], rerun["id"]]
    assert ids("--all", "--until", since) == [original["id"]]
    both = _jobs(env, "history", "ok", "--all")
    assert both.returncode == 2 and "one of them" in both.stderr
    bad = _jobs(env, "history", "--all", "--status", "exploded")
    assert bad.returncode == 2 and "exploded" in bad.stderr


def test_ticks_record_the_beat_id(
    tmp_path: Path, redis_url: str, database_url: str, worker: Proc
) -> None:
    profile = tmp_path / "beat-profile.yaml"
    profile.write_text(
        PROFILE.format(log=tmp_path / "counted.log").replace('"0 * * * * *"', '"* * * * * *"')
    )
    env = service_env(
        REDIS_URL=redis_url, DATABASE_URL=database_url, SYSTEMPROMPT_PROFILE=str(profile)
    )
    beat = Proc(
        [str(VENV_BIN / "systemprompt"), "infra", "beat", "--id", "beat-audit"],
        env,
        tmp_path / "beat.log",
    )
    with running([beat]):
        runs = wait_for(
            lambda: [
                r
                for r in _json(env, "history", "counted", "--trigger", "schedule")
                if r["status"] == "succeeded"
            ],
            90,
            what="a scheduled tick run",
        )
    assert {r["triggered_by"] for r in runs} == {"beat-audit"}
