"""A worker killed while it holds a run's next attempt for its retry countdown (Celery
keeps such a message in memory, unacknowledged): the leading beat puts the message back
on its queue as soon as the worker is declared dead, so the attempt runs at its instant on
another worker, once, instead of after the broker's visibility timeout.

And the hand-back itself on a real Redis, with kombu's own entries: only a dead worker's,
only what is still unacknowledged as it was read.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis as redis_lib

from beat import reaper
from beat.reaper import hand_back
from jobs_core.liveness import KOMBU_UNACKED, KOMBU_UNACKED_INDEX
from jobs_core.profile import load_profile
from jobs_core.registry import build_registry
from jobs_core.status import RunStatus
from jobs_core.wire import Keys, job_kwargs, task_message, task_name
from tests.procs import Proc, running, service_env, start_worker, wait_for
from worker.config import visibility_timeout

from .test_cli import cli
from .worker_support import History

pytestmark = pytest.mark.integration

JOB = "testjobs/flaky"
BACKOFF_S = 30
PROFILE = f"""
extensions: [tests.worker_fixtures:WorkerTestExtension]
scheduler:
  defaults:
    retry: {{max_attempts: 2, backoff: {BACKOFF_S}s, max_backoff: {BACKOFF_S}s, jitter: false}}
    timeout: 5s
"""


def test_a_retry_held_by_a_killed_worker_runs_at_its_instant_elsewhere(
    tmp_path: Path, redis_url: str, database_url: str
) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE)
    env = service_env(
        REDIS_URL=redis_url, DATABASE_URL=database_url, SYSTEMPROMPT_PROFILE=str(profile)
    )
    visibility = visibility_timeout(build_registry(load_profile(str(profile), env={})))
    assert visibility > 2 * BACKOFF_S  # else this test could not tell the two apart
    history = History(database_url)
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)

    victim = start_worker(tmp_path, env, name="victim", concurrency=1)
    procs = [victim]
    with running(procs):
        procs.append(
            Proc([sys.executable, "-m", "beat", "--id", "solo"], env, tmp_path / "beat.log")
        )
        res = cli(env, "infra", "jobs", "run", "flaky", "--json")
        assert res.returncode == 0, res.stderr
        run_id = json.loads(res.stdout)[0]["id"]

        def retrying() -> bool:
            run = history.run(run_id)
            return run is not None and run.status is RunStatus.RETRYING

        wait_for(retrying, 60, 0.1, "attempt 1 to fail")
        failed = history.run(run_id)
        assert failed is not None and failed.next_attempt_at is not None

        def held_by_victim() -> str | None:
            for name in client.hkeys(Keys.WORKERS):
                for tag, rid in client.hgetall(Keys.held(name)).items():
                    if rid == run_id and name.startswith("victim@"):
                        return str(tag)
            return None

        tag = wait_for(held_by_victim, 30, 0.1, "the victim to publish the retry it holds")
        assert client.hexists(KOMBU_UNACKED, tag)
        delivered = float(client.zscore(KOMBU_UNACKED_INDEX, tag) or 0)
        victim.kill()
        rescuer = start_worker(tmp_path, env, name="rescuer", concurrency=1)
        procs.append(rescuer)

        def finished() -> bool:
            run = history.run(run_id)
            return run is not None and run.finished

        # Kombu alone would hand the message out at delivered + visibility (and up to
        # 5 s later): well after the retry's instant plus the time to declare the
        # victim dead (heartbeat ttl 10 s + a reaper round every 5 s).
        restored_by_kombu_at = delivered + visibility
        wait_for(finished, restored_by_kombu_at - time.time() - 5, 0.2, "attempt 2 to run")
        done = history.run(run_id)
        assert done is not None and done.status is RunStatus.SUCCEEDED, done
        assert [(a.attempt, a.status, (a.worker or "").split("@")[0]) for a in done.attempts] == [
            (1, RunStatus.FAILED, "victim"),
            (2, RunStatus.SUCCEEDED, "rescuer"),
        ]
        # At its instant, not before (the countdown is kept).
        assert done.started_at is not None
        assert done.started_at >= failed.next_attempt_at
        # The message is gone from kombu's unacknowledged ones: it never comes back.
        assert not client.hexists(KOMBU_UNACKED, tag)
        handled = f"Task {task_name(JOB)}[{run_id}] succeeded in"
        assert rescuer.output().count(handled) == 1
    beat_log = procs[1].output()
    assert f"run {run_id}: its message, held but not started by dead worker victim@" in beat_log
    assert not any(k.startswith(Keys.HELD_PREFIX + "victim@") for k in client.keys("sp:held:*"))


def _unacked(client: redis_lib.Redis, tag: str, queue: str = "jobs") -> str:
    kwargs = job_kwargs(
        run_id="3b1f6f2e-7c1a-4d59-8a53-6f1f0b7b9f10",
        trigger="manual",
        scheduled_for=None,
        enqueued_at=datetime.now(UTC),
        attempt=2,
    )
    _, payload = task_message(task_name(JOB), kwargs, queue=queue)
    raw = json.dumps([json.loads(payload), "", queue])
    client.hset(KOMBU_UNACKED, tag, raw)
    client.zadd(KOMBU_UNACKED_INDEX, {tag: time.time()})
    return raw


def test_hand_back_moves_only_a_dead_workers_unacknowledged_messages(redis_url: str) -> None:
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    dead, alive = "dead@node", "alive@node"
    _unacked(client, "t-held")
    _unacked(client, "t-other")  # held by someone else: never touched
    client.hset(Keys.held(dead), mapping={"t-held": "r1", "t-acked": "r2"})
    client.hset(Keys.held(alive), mapping={"t-other": "r3"})
    client.set(Keys.worker(alive), "{}")

    assert hand_back(client, alive) == 0  # alive: its messages are its own
    assert client.hexists(KOMBU_UNACKED, "t-other")

    assert hand_back(client, dead) == 1  # t-acked was acknowledged meanwhile
    assert not client.hexists(KOMBU_UNACKED, "t-held")
    assert client.zscore(KOMBU_UNACKED_INDEX, "t-held") is None
    assert client.hexists(KOMBU_UNACKED, "t-other")
    [back] = client.lrange("jobs", 0, -1)
    assert json.loads(back)["properties"]["delivery_info"]["redelivered"] is True
    assert hand_back(client, dead) == 0  # done once

    # The worker came back before the beat got to it: its messages stay with it.
    _unacked(client, "t-back")
    client.hset(Keys.held(dead), "t-back", "r4")
    client.set(Keys.worker(dead), "{}")
    assert hand_back(client, dead) == 0
    assert client.hexists(KOMBU_UNACKED, "t-back") and client.llen("jobs") == 1

    # Read, then acknowledged and delivered again (a new entry) before the move: the
    # script moves only the entry as read.
    raw = _unacked(client, "t-race")
    client.hset(KOMBU_UNACKED, "t-race", raw.replace('"retries": 0', '"retries": 1'))
    keys = (Keys.worker("gone@node"), KOMBU_UNACKED, KOMBU_UNACKED_INDEX, "jobs")
    assert client.eval(reaper._HAND_BACK, 4, *keys, "t-race", raw, "x") == 0
    assert client.llen("jobs") == 1 and client.hexists(KOMBU_UNACKED, "t-race")


def test_the_heartbeat_publishes_what_the_worker_holds(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery.worker import state

    from worker import heartbeat
    from worker.heartbeat import WorkerHeartbeat

    @dataclass(eq=False)
    class Message:
        delivery_tag: str

    @dataclass(eq=False)
    class Request:
        id: str
        message: Message

    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    beat = WorkerHeartbeat("hb@node", redis_url, None).start()
    kept = [Request("r1", Message("t1")), Request("r2", Message("t2"))]
    try:
        beat.beat()
        assert client.exists(Keys.worker("hb@node")) and not client.exists(Keys.held("hb@node"))
        state.scheduled_requests.add(kept[0])
        beat.beat()
        assert client.hgetall(Keys.held("hb@node")) == {"t1": "r1"}
        state.scheduled_requests.discard(kept[0])
        state.reserved_requests.add(kept[1])  # its countdown passed: waits for a slot
        beat.beat()
        assert client.hgetall(Keys.held("hb@node")) == {"t2": "r2"}

        # Listing them fails: the heartbeat goes on, the list stays as published.
        def broken() -> dict[str, str]:
            raise AttributeError("a Celery without that state")

        monkeypatch.setattr(heartbeat, "held_messages", broken)
        client.delete(Keys.worker("hb@node"))
        beat.beat()
        assert client.exists(Keys.worker("hb@node"))
        assert client.hgetall(Keys.held("hb@node")) == {"t2": "r2"}
    finally:
        beat.stop()
        state.scheduled_requests.clear()
        state.reserved_requests.clear()
    # A stop leaves the list: the beat decides what to put back.
    assert not client.exists(Keys.worker("hb@node"))
    assert client.hgetall(Keys.held("hb@node")) == {"t2": "r2"}
