"""One reaper round at a time, against the real Redis and PostgreSQL: what it marks, the
locks it releases or keeps, the messages it sends, the workers it forgets."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from beat.reaper import Reaper
from jobs_core.history import AttemptStart
from jobs_core.liveness import Heartbeat
from jobs_core.redis_url import parse_redis_url
from jobs_core.status import RunStatus, Trigger
from jobs_core.wire import Keys, RunMessage, decode
from tests.procs import write_profile

from .worker_support import WORKER_PROFILE, History, registry_for

pytestmark = pytest.mark.integration

DEAD, LIVE = "dead@node", "live@node"


def _beat(tmp: Path, redis_url: str, database_url: str, leader: bool = True) -> Any:
    registry = registry_for(
        write_profile(tmp / "profile.yaml", WORKER_PROFILE), redis_url, database_url
    )
    return SimpleNamespace(
        is_leader=leader,
        next_instant_at=None,
        reloading=False,
        profile=SimpleNamespace(database_url=database_url),
        registry=registry,
        redis_target=parse_redis_url(redis_url),
    )


def _start(history: History, job: str, worker: str, attempt: int = 1) -> str:
    rid = str(uuid.uuid4())
    start = AttemptStart(
        run_id=rid,
        job_key=job,
        trigger=Trigger.MANUAL,
        attempt=attempt,
        max_attempts=2 if job == "testjobs/slow" else 1,
        worker=worker,
        scheduled_for=None,
        enqueued_at=datetime.now(UTC),
        parameters={"seconds": 1},
    )
    assert history._call(lambda h: h.start_attempt(start)).started
    return rid


@pytest.fixture
def client(redis_url: str) -> Any:
    import redis

    c = redis.Redis.from_url(redis_url, decode_responses=True)
    yield c
    c.close()


def _announce(client: Any, hostname: str, alive: bool, boot: datetime | None = None) -> None:
    value = Heartbeat(hostname, 1, boot).dumps()
    client.hset(Keys.WORKERS, hostname, value)
    if alive:
        client.set(Keys.worker(hostname), value, px=10_000)


def test_a_round_marks_releases_keeps_and_requeues(
    tmp_path: Path, redis_url: str, database_url: str, client: Any
) -> None:
    history = History(database_url)
    final = _start(history, "testjobs/long", DEAD)  # max_attempts 1: finished as lost
    again = _start(history, "testjobs/slow", DEAD)  # max_attempts 2: re-queued
    spared = _start(history, "testjobs/ok", LIVE)
    client.set(Keys.lock("testjobs/long"), final, px=60_000)
    client.set(Keys.lock("testjobs/slow"), again, px=1_000)
    client.set(Keys.lock("testjobs/ok"), spared, px=60_000)
    _announce(client, DEAD, alive=False)
    _announce(client, LIVE, alive=True)
    reaper = Reaper(_beat(tmp_path, redis_url, database_url))

    assert asyncio.run(reaper.reap()) == 2

    lost = history.run(final)
    assert lost is not None and lost.status is RunStatus.LOST and lost.finished
    assert [(a.attempt, a.status, a.worker) for a in lost.attempts] == [(1, RunStatus.LOST, DEAD)]
    assert client.get(Keys.lock("testjobs/long")) is None  # released: the next tick runs
    retrying = history.run(again)
    assert retrying is not None and retrying.status is RunStatus.RETRYING
    assert retrying.attempt == 2
    assert client.get(Keys.lock("testjobs/slow")) == again  # kept for attempt 2...
    assert client.pttl(Keys.lock("testjobs/slow")) > 50_000  # ...long enough to start
    alive = history.run(spared)
    assert alive is not None and alive.status is RunStatus.RUNNING
    assert client.get(Keys.lock("testjobs/ok")) == spared
    # Exactly one message: attempt 2 of the re-queued run, on the job's queue.
    assert client.llen("jobs") == 1
    headers, kwargs = decode(client.rpop("jobs"))
    sent = RunMessage.from_kwargs(kwargs)
    assert (headers["id"], sent.run_id, sent.attempt) == (again, again, 2)
    assert sent.parameters == {"seconds": 1}
    # The dead worker is forgotten, the live one kept; a second round does nothing.
    assert set(client.hgetall(Keys.WORKERS)) == {LIVE}
    assert asyncio.run(reaper.reap()) == 0
    assert client.llen("jobs") == 0


def test_a_lock_taken_by_another_run_is_left_alone(
    tmp_path: Path, redis_url: str, database_url: str, client: Any
) -> None:
    history = History(database_url)
    final = _start(history, "testjobs/long", DEAD)
    client.set(Keys.lock("testjobs/long"), "another-run", px=60_000)
    _announce(client, DEAD, alive=False)
    assert asyncio.run(Reaper(_beat(tmp_path, redis_url, database_url)).reap()) == 1
    assert history.run(final).status is RunStatus.LOST  # type: ignore[union-attr]
    assert client.get(Keys.lock("testjobs/long")) == "another-run"


def test_a_restarted_worker_loses_only_its_earlier_runs(
    tmp_path: Path, redis_url: str, database_url: str, client: Any
) -> None:
    history = History(database_url)
    earlier = _start(history, "testjobs/long", DEAD)
    boot = history.sql("SELECT now() + interval '1 millisecond'")[0][0]
    later = _start(history, "testjobs/ok", DEAD)
    history.sql(
        "UPDATE job_runs SET started_at = %s WHERE id = %s RETURNING id",
        boot + timedelta(seconds=1),
        later,
    )
    _announce(client, DEAD, alive=True, boot=boot)
    client.hset(Keys.WORKERS_RESTARTED, DEAD, boot.isoformat())
    assert asyncio.run(Reaper(_beat(tmp_path, redis_url, database_url)).reap()) == 1
    assert history.run(earlier).status is RunStatus.LOST  # type: ignore[union-attr]
    assert history.run(later).status is RunStatus.RUNNING  # type: ignore[union-attr]
    assert client.hgetall(Keys.WORKERS_RESTARTED) == {}
    assert DEAD in client.hgetall(Keys.WORKERS)


def test_a_follower_beat_does_nothing(
    tmp_path: Path, redis_url: str, database_url: str, client: Any
) -> None:
    history = History(database_url)
    rid = _start(history, "testjobs/long", DEAD)
    _announce(client, DEAD, alive=False)
    reaper = Reaper(_beat(tmp_path, redis_url, database_url, leader=False), every=0.05)
    reaper.start()
    try:
        asyncio.run(asyncio.sleep(0.5))  # several of its rounds
    finally:
        reaper.close()
    assert history.run(rid).status is RunStatus.RUNNING  # type: ignore[union-attr]
    assert DEAD in client.hgetall(Keys.WORKERS)
