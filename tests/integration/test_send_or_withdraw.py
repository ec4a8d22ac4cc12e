"""Manual runs and backfills are all or nothing: when Redis fails after their runs were
recorded, those runs are withdrawn from the history and the command exits 2 naming
Redis's URL with the password masked; once Redis is back, the same command enqueues
them all.

Real Redis (private, with a password) and PostgreSQL. Redis fails two ways: it refuses
writes (``maxmemory`` 1 byte: PING passes, the send is refused, as a full Redis does),
through the CLI as operators run it; and it dies between the history write and the
send, in process, where the test can stop it at that very moment.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis as redis_lib

from cli.embedded import RedisServer, free_port
from control.actions import NotEnqueued, backfill, enqueue, ticks_between
from control.context import Context
from jobs_core.history import RunHistory
from jobs_core.status import Trigger
from jobs_core.wire import DEFAULT_QUEUE
from tests.procs import VENV_BIN, Proc, free_port_for_tests, running, service_env

from .test_cli import cli
from .worker_support import History

pytestmark = [pytest.mark.integration, pytest.mark.servers]

PASSWORD = "s3cr3t-Pw"
JOB = "testjobs/counted"
PROFILE = """
extensions: [tests.worker_fixtures:WorkerTestExtension]
scheduler:
  jobs:
    - {extension: testjobs, job: counted, schedule: "0 * * * * *"}
"""
START = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
T = TypeVar("T")


@pytest.fixture
def server() -> Iterator[RedisServer]:
    base = Path(tempfile.mkdtemp(prefix="sp-test-send-"))
    srv = RedisServer(base, password=PASSWORD).start()
    try:
        yield srv
    finally:
        srv.stop(kill=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def env(tmp_path: Path, server: RedisServer, database_url: str) -> dict[str, str]:
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE)
    return service_env(
        REDIS_URL=server.url, DATABASE_URL=database_url, SYSTEMPROMPT_PROFILE=str(profile)
    )


def _client(server: RedisServer) -> redis_lib.Redis:
    return redis_lib.Redis.from_url(server.url)


def _queued(server: RedisServer) -> int:
    client = _client(server)
    try:
        return int(client.llen(DEFAULT_QUEUE))
    finally:
        client.close()


def _refuse_writes(server: RedisServer, refuse: bool) -> None:
    client = _client(server)
    try:
        client.config_set("maxmemory", "1" if refuse else "0")
    finally:
        client.close()


def _assert_one_clean_line(stderr: str, *words: str) -> None:
    assert "Traceback" not in stderr and PASSWORD not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_backfill_refused_by_redis_withdraws_its_runs_and_exits_2(
    env: dict[str, str], server: RedisServer, database_url: str
) -> None:
    history = History(database_url)
    args = ["infra", "jobs", "backfill", "counted", "--from", START.isoformat()]
    args += ["--to", (START + timedelta(minutes=5)).isoformat()]
    _refuse_writes(server, True)
    res = cli(env, *args)
    assert res.returncode == 2, res.stderr
    _assert_one_clean_line(
        res.stderr,
        "jobs backfill: Redis at redis://",
        f"127.0.0.1:{server.port}",
        "nothing was enqueued (the 5 runs recorded for it were withdrawn)",
    )
    assert history.runs(JOB) == []
    assert _queued(server) == 0

    # Redis accepts writes again: the same backfill enqueues every tick, once.
    _refuse_writes(server, False)
    again = cli(env, *args)
    assert again.returncode == 0, again.stderr
    assert "5 enqueued, 0 already present" in again.stdout
    assert _queued(server) == 5
    assert sorted(r.scheduled_for for r in history.runs(JOB)) == [  # type: ignore[type-var]
        START + timedelta(minutes=i) for i in range(5)
    ]


def test_jobs_run_refused_by_redis_withdraws_its_runs_and_exits_2(
    env: dict[str, str], server: RedisServer, database_url: str
) -> None:
    history = History(database_url)
    _refuse_writes(server, True)
    res = cli(env, "infra", "jobs", "run", "counted", "--reason", "try")
    assert res.returncode == 2, res.stderr
    _assert_one_clean_line(
        res.stderr, "jobs run: Redis at redis://", "the 1 run recorded for it were withdrawn"
    )
    assert history.runs(JOB) == []
    _refuse_writes(server, False)
    ok = cli(env, "infra", "jobs", "run", "counted", "--json")
    assert ok.returncode == 0, ok.stderr
    assert _queued(server) == 1 and len(history.runs(JOB)) == 1


def test_jobs_run_all_that_postgresql_fails_halfway_records_and_sends_nothing(
    env: dict[str, str], server: RedisServer, database_url: str
) -> None:
    """PostgreSQL refuses the row of one job (a trigger raising, as a failing statement
    does) after the rows of the jobs before it: none of them stays queued without its
    message, nothing is sent; without the failure the same command enqueues them all."""
    import psycopg

    def execute(statement: str) -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    history = History(database_url)
    refuse = "testjobs/counted"  # the extension's last job: the others come before it
    execute(
        "CREATE FUNCTION refuse_a_job() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        f" IF NEW.job_key = '{refuse}' THEN RAISE EXCEPTION 'refused by the test'; END IF;"
        " RETURN NEW; END $$"
    )
    execute(
        "CREATE TRIGGER refuse_a_job BEFORE INSERT ON job_runs"
        " FOR EACH ROW EXECUTE FUNCTION refuse_a_job()"
    )
    res = cli(env, "infra", "jobs", "run", "--all")
    assert res.returncode != 0 and "refused by the test" in res.stderr, res.stderr
    assert history.runs() == []
    assert _queued(server) == 0

    execute("DROP TRIGGER refuse_a_job ON job_runs")
    ok = cli(env, "infra", "jobs", "run", "--all", "--json")
    assert ok.returncode == 0, ok.stderr
    runs = history.runs()
    assert len(runs) > 2 and refuse in {r.job_key for r in runs}
    assert _queued(server) == len(runs)


class _RedisDiesAfterRecording(Context):
    """A context whose Redis is stopped right after the first history step (the one
    that records the runs), before the messages are sent."""

    server: RedisServer

    def with_history(self, why: str, fn: Callable[[RunHistory], Awaitable[T]]) -> T:
        out = super().with_history(why, fn)
        if self.server.running:
            self.server.stop(kill=True)
        return out


def _dying_context(profile: Path, server: RedisServer, database_url: str) -> Any:
    ctx = _RedisDiesAfterRecording()
    ctx.server = server
    from jobs_core.profile import load_profile

    ctx._profile = load_profile(
        str(profile), env={"REDIS_URL": server.url, "DATABASE_URL": database_url}
    )
    return ctx


@pytest.mark.parametrize("action", ["backfill", "run", "rerun"])
def test_redis_dying_mid_way_leaves_no_run_without_a_message(
    action: str, tmp_path: Path, server: RedisServer, database_url: str
) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE)
    history = History(database_url)
    ctx = _dying_context(profile, server, database_url)
    jd = ctx.registry.resolve("counted")
    ticks = ticks_between(jd, START, START + timedelta(minutes=3), 10)
    with pytest.raises(NotEnqueued) as err:
        if action == "backfill":
            backfill(ctx, jd, ticks)
        elif action == "run":
            enqueue(ctx, [jd, jd], {"n": 1}, triggered_by="ann@box")
        else:
            enqueue(ctx, [jd], {}, trigger=Trigger.RERUN, rerun_of=str(uuid.uuid4()))
    text = str(err.value)
    assert PASSWORD not in text and f"127.0.0.1:{server.port}" in text
    assert "nothing was enqueued" in text and "withdrawn" in text
    assert history.runs(JOB) == []
    ctx.close()

    # Redis back on the same port: the same action enqueues, and nothing is left over.
    server.start()
    fresh = Context()
    fresh._profile = ctx.profile
    try:
        if action == "backfill":
            assert len(backfill(fresh, jd, ticks).enqueued) == 3
            expected = 3
        else:
            expected = len(enqueue(fresh, [jd], {}))
    finally:
        fresh.close()
    assert _queued(server) == expected and len(history.runs(JOB)) == expected


def test_jobs_run_without_history_refused_by_redis_exits_2(
    tmp_path: Path, server: RedisServer
) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE)
    env = service_env(REDIS_URL=server.url, SYSTEMPROMPT_PROFILE=str(profile))
    _refuse_writes(server, True)
    res = cli(env, "infra", "jobs", "run", "counted")
    assert res.returncode == 2, res.stderr
    _assert_one_clean_line(res.stderr, "jobs run: Redis at redis://", "; nothing was enqueued")
    assert "withdrawn" not in res.stderr


def test_a_withdrawal_that_fails_says_which_runs_stay_queued(
    tmp_path: Path, server: RedisServer, database_url: str
) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE)
    history = History(database_url)
    ctx = _dying_context(profile, server, database_url)

    class AlsoLosesPostgres(type(ctx)):  # type: ignore[misc]
        """After recording, Redis dies and PostgreSQL becomes unreachable."""

        def with_history(self, why: str, fn: Callable[[RunHistory], Awaitable[T]]) -> T:
            out = super().with_history(why, fn)
            unreachable = f"postgresql://app:pg-Secret@127.0.0.1:{free_port()}/app"
            self._profile = self.profile.model_copy(update={"database_url": unreachable})
            return out

    ctx.__class__ = AlsoLosesPostgres
    jd = ctx.registry.resolve("counted")
    with pytest.raises(NotEnqueued) as err:
        enqueue(ctx, [jd], {})
    text = str(err.value)
    assert "nothing was enqueued, but the 1 run recorded for it could not be withdrawn" in text
    assert "`jobs cancel` them" in text
    assert "pg-Secret" not in text and PASSWORD not in text
    [run] = history.runs(JOB)
    assert run.status.value == "queued"


def test_the_dashboards_run_refused_by_redis_is_a_503_and_leaves_no_run(
    env: dict[str, str], server: RedisServer, database_url: str, tmp_path: Path
) -> None:
    from .test_ui import ADMIN, Stack

    port = free_port_for_tests()
    ui_env = dict(env, SYSTEMPROMPT_UI_USER=ADMIN[0], SYSTEMPROMPT_UI_PASSWORD=ADMIN[1])
    command = [str(VENV_BIN / "systemprompt"), "infra", "ui", "--port", str(port)]
    ui = Proc(command, ui_env, tmp_path / "ui.log")
    with running([ui]):
        ui.wait_output("Uvicorn running", 60)
        history = History(database_url)
        stack = Stack(f"http://127.0.0.1:{port}", env, history, database_url, server.url,
                      tmp_path, "", "")  # fmt: skip
        data = {"csrf_token": stack.csrf("/jobs/testjobs/counted"), "confirmed": "1"}
        _refuse_writes(server, True)
        try:
            status, _, body = stack.request("/jobs/testjobs/counted/run", data=data)
        finally:
            _refuse_writes(server, False)
        assert status == 503, body[:500]
        assert "nothing was enqueued" in body and PASSWORD not in body
        assert history.runs(JOB) == []
        status, _, _ = stack.request("/jobs/testjobs/counted/run", data=data)
        assert status == 303 and len(history.runs(JOB)) == 1
