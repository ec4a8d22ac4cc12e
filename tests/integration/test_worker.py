"""Real worker processes, real Redis and PostgreSQL: outcomes, retries, scaling, kill -9."""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobs_core.status import RunStatus
from jobs_core.wire import job_kwargs, task_message, task_name, tick_run_id
from tests.procs import (
    flower_proc,
    free_port_for_tests,
    running,
    service_env,
    start_worker,
    wait_for,
    write_profile,
)
from worker.factory import create_app

from .worker_support import WORKER_PROFILE, History, registry_for, send

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def _stack(
    tmp_path: Path, redis_url: str, database_url: str, profile_text: str = WORKER_PROFILE
) -> Iterator[dict[str, Any]]:
    from jobs_core.profile import load_profile

    profile_path = write_profile(tmp_path / "profile.yaml", profile_text)
    env = service_env(
        REDIS_URL=redis_url, DATABASE_URL=database_url, SYSTEMPROMPT_PROFILE=str(profile_path)
    )
    profile = load_profile(profile_path, env=env)
    registry = registry_for(profile_path, redis_url, database_url)
    app, _, _ = create_app(profile, registry)
    try:
        yield {"tmp": tmp_path, "env": env, "app": app, "history": History(database_url)}
    finally:
        app.close()


@pytest.fixture
def setup(tmp_path: Path, redis_url: str, database_url: str) -> Iterator[dict[str, Any]]:
    with _stack(tmp_path, redis_url, database_url) as stack:
        yield stack


def _profile_with(old: str, new: str) -> str:
    """The worker tests' profile with one job line changed."""
    assert old in WORKER_PROFILE, old
    return WORKER_PROFILE.replace(old, new)


def _push_tick(redis_url: str, key: str, at: datetime, **extra: Any) -> str:
    """Send a tick of ``key`` the way the beat does (a raw message pushed onto the queue)."""
    import redis

    rid = tick_run_id(key, at)
    kwargs = job_kwargs(
        run_id=rid,
        trigger="schedule",
        scheduled_for=at,
        enqueued_at=datetime.now(UTC),
        parameters=extra.pop("parameters", None),
    )
    kwargs.update(extra)
    queue, payload = task_message(task_name(key), kwargs, task_id=rid)
    client = redis.Redis.from_url(redis_url)
    try:
        client.lpush(queue, payload)
    finally:
        client.close()
    return rid


def _is_running(history: History, run_id: str) -> bool:
    run = history.run(run_id)
    return run is not None and run.status == RunStatus.RUNNING


def _finished(history: History, run_ids: list[str]) -> bool:
    runs = [history.run(r) for r in run_ids]
    return all(r is not None and r.finished for r in runs)


def test_outcomes_retries_timeouts_and_history(setup: dict[str, Any], redis_url: str) -> None:
    import redis

    app, history = setup["app"], setup["history"]
    worker = start_worker(setup["tmp"], setup["env"], concurrency=3)
    with running([worker]):
        ids = {
            "ok": send(app, "testjobs/ok", parameters={"who": "tests"}),
            "flaky": send(app, "testjobs/flaky"),
            "broken": send(app, "testjobs/broken"),
            "slow": send(app, "testjobs/slow"),
            "refusing": send(app, "testjobs/refusing"),
            "db": send(app, "testjobs/db"),
            "stubborn": send(app, "testjobs/stubborn", parameters={"seconds": 11}),
        }
        wait_for(lambda: _finished(history, list(ids.values())), 90, 0.2, "all runs to finish")
        runs = {name: history.run(rid) for name, rid in ids.items()}

        ok = runs["ok"]
        assert ok is not None and ok.status == "succeeded" and ok.attempt == 1
        assert ok.message == "hello tests"
        assert ok.worker is not None and ok.worker.startswith("w1@")
        assert ok.started_at is not None and ok.finished_at is not None
        assert ok.duration_ms is not None and ok.duration_ms >= 0
        assert ok.trigger == "manual"

        flaky = runs["flaky"]
        assert flaky is not None and flaky.status == "succeeded" and flaky.attempt == 2
        assert [a.status for a in flaky.attempts] == ["failed", "succeeded"]
        assert "first attempt always fails" in (flaky.attempts[0].error or "")

        broken = runs["broken"]
        assert broken is not None and broken.status == "failed" and broken.attempt == 3
        assert [a.status for a in broken.attempts] == ["failed"] * 3
        assert broken.error is not None and "ValueError: broken on attempt 3" in broken.error
        assert broken.message == "ValueError: broken on attempt 3"

        slow = runs["slow"]
        assert slow is not None and slow.status == "timed_out" and slow.attempt == 2
        assert [a.status for a in slow.attempts] == ["failed", "timed_out"]
        assert "timed out after 1s" in (slow.error or "")

        refusing = runs["refusing"]
        assert refusing is not None and refusing.status == "failed" and refusing.attempt == 1
        assert refusing.message == "nothing to do here" and len(refusing.attempts) == 1

        db = runs["db"]
        assert db is not None and db.status == "succeeded"
        assert db.data == {"rows": 1} and db.items_processed == 1
        marks = history.sql("SELECT run_id FROM worker_test_marks")
        assert marks == [(ids["db"],)]

        stubborn = runs["stubborn"]
        assert stubborn is not None and stubborn.status == "timed_out"
        assert "ignored cancellation" in (stubborn.error or "")

        # The worker survives a job that blocked its loop: a new run still succeeds.
        after = send(app, "testjobs/ok")
        wait_for(lambda: _finished(history, [after]), 30, 0.1, "a run after the stuck one")
        assert history.run(after).status == "succeeded"  # type: ignore[union-attr]

        # A redelivered message of a finished run does nothing. It is flagged the way
        # kombu flags every message it puts back (worker lost, visibility timeout).
        duplicate_kwargs = job_kwargs(
            run_id=ids["ok"],
            trigger="manual",
            scheduled_for=None,
            enqueued_at=datetime.now(UTC),
        )
        queue, payload = task_message(task_name("testjobs/ok"), duplicate_kwargs)
        envelope = json.loads(payload)
        envelope["headers"]["redelivered"] = True
        envelope["properties"]["delivery_info"]["redelivered"] = True
        redis_client = redis.Redis.from_url(redis_url)
        redis_client.lpush(queue, json.dumps(envelope))
        redis_client.close()
        marker = send(app, "testjobs/ok")
        wait_for(lambda: _finished(history, [marker]), 30, 0.1, "the marker run")
        worker.wait_output(f"run {ids['ok']} testjobs/ok attempt 1 not started", 30)
        again = history.run(ids["ok"])
        assert again is not None and len(again.attempts) == 1 and again.attempt == 1


def test_jobs_pool_opens_only_when_a_job_uses_it(setup: dict[str, Any]) -> None:
    app, history = setup["app"], setup["history"]

    def connections(pool: str) -> int:
        rows = history.sql(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s",
            f"systemprompt-worker {pool}",
        )
        return int(rows[0][0])

    worker = start_worker(setup["tmp"], setup["env"], concurrency=1)
    with running([worker]):
        first = send(app, "testjobs/ok")
        wait_for(lambda: _finished(history, [first]), 30, 0.1, "a run without the database")
        assert connections("history") >= 1
        assert connections("jobs") == 0  # no job asked for ctx.db_pool yet
        db = send(app, "testjobs/db")
        wait_for(lambda: _finished(history, [db]), 30, 0.1, "a run using ctx.db_pool")
        assert history.run(db).status == "succeeded"  # type: ignore[union-attr]
        assert connections("jobs") >= 1


def test_beat_style_messages_skips_and_overlap(setup: dict[str, Any], redis_url: str) -> None:
    """Raw pipelined messages (as the beat sends them) run; skip records and overlap skip."""
    history = setup["history"]
    worker = start_worker(setup["tmp"], setup["env"], concurrency=3)
    with running([worker]):
        base = datetime.now(UTC).replace(microsecond=0)

        def tick(key: str, at: datetime, **extra: Any) -> str:
            return _push_tick(redis_url, key, at, **extra)

        ran = tick("testjobs/ok", base)
        skipped = tick("testjobs/ok", base - timedelta(hours=1), skip_reason="missed by 1h")
        long_first = tick("testjobs/long", base, parameters={"seconds": 4})
        wait_for(
            lambda: (r := history.run(long_first)) is not None and r.status == "running",
            30,
            0.1,
            "the long run to start",
        )
        long_second = tick("testjobs/long", base + timedelta(seconds=1))
        wait_for(
            lambda: _finished(history, [ran, skipped, long_first, long_second]), 60, 0.2, "runs"
        )
        r = history.run(ran)
        assert r is not None and r.status == "succeeded" and r.trigger == "schedule"
        assert r.scheduled_for == base
        s = history.run(skipped)
        assert s is not None and s.status == "skipped" and s.message == "missed by 1h"
        assert s.attempts == ()
        first, second = history.run(long_first), history.run(long_second)
        assert first is not None and first.status == "succeeded"
        assert second is not None and second.status == "skipped"
        assert long_first in (second.message or "")


def test_three_workers_share_a_queue(setup: dict[str, Any]) -> None:
    app, history, tmp, env = setup["app"], setup["history"], setup["tmp"], setup["env"]
    workers = [start_worker(tmp, env, name=f"w{i}", concurrency=2) for i in (1, 2, 3)]
    with running(workers):
        ids = [send(app, "testjobs/noop") for _ in range(300)]
        wait_for(
            lambda: (
                history.sql("SELECT count(*) FROM job_runs WHERE status = 'succeeded'")[0][0] == 300
            ),
            120,
            0.2,
            "300 runs to succeed",
        )
        rows = history.sql("SELECT id::text, worker, attempt FROM job_runs")
        assert sorted(r[0] for r in rows) == sorted(ids)
        attempts = history.sql("SELECT run_id, count(*) FROM job_run_attempts GROUP BY run_id")
        assert len(attempts) == 300 and all(n == 1 for _, n in attempts)
        per_worker = Counter(r[1].split("@")[0] for r in rows)
        assert set(per_worker) == {"w1", "w2", "w3"}, per_worker
        assert min(per_worker.values()) >= 10, per_worker


def test_killed_worker_run_is_redelivered(setup: dict[str, Any]) -> None:
    app, history, tmp, env = setup["app"], setup["history"], setup["tmp"], setup["env"]
    victim = start_worker(tmp, env, name="victim", concurrency=1)
    with running([victim]):
        rid = send(app, "testjobs/long", parameters={"seconds": 5})
        wait_for(
            lambda: (r := history.run(rid)) is not None and r.status == "running",
            30,
            0.1,
            "the long run to start on the victim",
        )
        victim.kill()
    assert history.run(rid).status == "running"  # type: ignore[union-attr]
    rescuer = start_worker(tmp, env, name="rescuer", concurrency=1)
    with running([rescuer]):
        # Redelivery waits for the broker's visibility timeout (derived from the job
        # timeouts of this profile, about 35 s here).
        wait_for(lambda: _finished(history, [rid]), 120, 0.5, "the run to be redelivered")
        run = history.run(rid)
        assert run is not None and run.status == "succeeded"
        assert run.worker is not None and run.worker.startswith("rescuer@")
        assert run.message == "finished on attempt 1"
        rescuer.wait_output("taking over from a worker that died", 5)
        still_running = history.sql("SELECT count(*) FROM job_runs WHERE status = 'running'")
        assert still_running == [(0,)]


def test_flower_sees_runs(setup: dict[str, Any]) -> None:
    pytest.importorskip("flower")
    app, history, tmp, env = setup["app"], setup["history"], setup["tmp"], setup["env"]
    worker = start_worker(tmp, env, name="fw", concurrency=1)
    port = free_port_for_tests()
    flower = flower_proc(tmp, env, port, "--basic-auth=ops:s3cret")
    with running([worker, flower]):
        flower.wait_output("Visit me at", 60)
        auth = {"Authorization": "Basic " + base64.b64encode(b"ops:s3cret").decode()}

        def api(path: str) -> Any:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=auth)
            try:
                with urllib.request.urlopen(request, timeout=5) as resp:
                    return json.load(resp)
            except OSError:
                return None

        # Events sent before Flower subscribed are lost to it: wait until it sees the worker.
        wait_for(
            lambda: any(w.startswith("fw@") for w in api("/api/workers?refresh=1") or {}),
            60,
            0.5,
            "Flower to see the worker",
        )
        rid = send(app, "testjobs/ok")
        wait_for(lambda: _finished(history, [rid]), 30, 0.1, "the run")

        def task_seen() -> dict[str, Any] | None:
            found = (api("/api/tasks?taskname=jobs.testjobs.ok") or {}).get(rid)
            return found if found and found.get("state") == "SUCCESS" else None

        task = wait_for(task_seen, 60, 0.5, "Flower to report the task")
        assert task["name"] == "jobs.testjobs.ok"
        assert task["worker"].startswith("fw@")


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_other_celery_pools(setup: dict[str, Any], pool: str) -> None:
    app, history, tmp, env = setup["app"], setup["history"], setup["tmp"], setup["env"]
    worker = start_worker(tmp, env, name=pool, pool=pool, concurrency=2)
    with running([worker]):
        ids = [send(app, "testjobs/db"), send(app, "testjobs/flaky"), send(app, "testjobs/db")]
        wait_for(lambda: _finished(history, ids), 60, 0.1, f"runs on the {pool} pool")
        runs = [history.run(r) for r in ids]
        assert [r.status for r in runs if r] == ["succeeded"] * 3
        assert sorted(r.data["rows"] for r in (runs[0], runs[2]) if r) == [1, 2]


def test_sigterm_lets_the_running_job_finish(setup: dict[str, Any]) -> None:
    app, history, tmp, env = setup["app"], setup["history"], setup["tmp"], setup["env"]
    worker = start_worker(tmp, env, name="graceful", concurrency=1)
    with running([worker]):
        rid = send(app, "testjobs/long", parameters={"seconds": 3})
        wait_for(
            lambda: (r := history.run(rid)) is not None and r.status == "running",
            30,
            0.1,
            "the long run to start",
        )
        worker.popen.send_signal(signal.SIGTERM)  # the main process only: a warm shutdown
        assert worker.popen.wait(60) == 0
        run = history.run(rid)
        assert run is not None and run.status == "succeeded"


def test_pickle_messages_are_refused(setup: dict[str, Any], redis_url: str) -> None:
    import pickle

    import redis

    history, tmp, env = setup["history"], setup["tmp"], setup["env"]
    worker = start_worker(tmp, env, name="strict", concurrency=1)
    with running([worker]):
        rid = tick_run_id("testjobs/ok", datetime(2026, 1, 1, tzinfo=UTC))
        kwargs = job_kwargs(
            run_id=rid, trigger="schedule", scheduled_for=None, enqueued_at=datetime.now(UTC)
        )
        queue, payload = task_message(task_name("testjobs/ok"), kwargs, task_id=rid)
        envelope = json.loads(payload)
        envelope["content-type"] = "application/x-python-serialize"
        envelope["content-encoding"] = "binary"
        envelope["body"] = base64.b64encode(pickle.dumps(([], kwargs, {}))).decode()
        client = redis.Redis.from_url(redis_url)
        client.lpush(queue, json.dumps(envelope))
        worker.wait_output("application/x-python-serialize", 30)
        marker = send(setup["app"], "testjobs/ok")
        wait_for(lambda: _finished(history, [marker]), 30, 0.1, "a JSON run after the refusal")
        assert history.run(rid) is None
        client.close()


LONG = "{extension: testjobs, job: long, timeout: 8s, retry: {max_attempts: 1}}"
STUBBORN = "{extension: testjobs, job: stubborn, timeout: 1s, retry: {max_attempts: 1}}"


def _waited_for(history: History, first_id: str, second_id: str) -> None:
    """``second`` was sent while ``first`` was active and ran after it, as one attempt."""
    first, second = history.run(first_id), history.run(second_id)
    assert first is not None and first.status == RunStatus.SUCCEEDED
    assert second is not None and second.status == RunStatus.SUCCEEDED, second
    assert first.finished_at is not None and second.started_at is not None
    assert second.enqueued_at < first.finished_at <= second.started_at
    assert second.attempt == 1 and [a.status for a in second.attempts] == ["succeeded"]


def test_overlap_queue_runs_a_tick_after_the_active_run(
    tmp_path: Path, redis_url: str, database_url: str
) -> None:
    profile = _profile_with(LONG, LONG.replace("}}", "}, overlap: queue}"))
    with _stack(tmp_path, redis_url, database_url, profile) as stack:
        history = stack["history"]
        worker = start_worker(tmp_path, stack["env"], concurrency=3)
        with running([worker]):
            base = datetime.now(UTC).replace(microsecond=0)
            first = _push_tick(redis_url, "testjobs/long", base, parameters={"seconds": 4})
            wait_for(lambda: _is_running(history, first), 30, 0.1, "the first run to start")
            second = _push_tick(
                redis_url, "testjobs/long", base + timedelta(seconds=1), parameters={"seconds": 0}
            )
            wait_for(lambda: _finished(history, [first, second]), 60, 0.2, "both runs")
            _waited_for(history, first, second)


def test_manual_runs_wait_under_overlap_skip(setup: dict[str, Any], redis_url: str) -> None:
    """A tick is skipped while the job is active; a manual run waits for it instead."""
    history = setup["history"]
    worker = start_worker(setup["tmp"], setup["env"], concurrency=3)
    with running([worker]):
        base = datetime.now(UTC).replace(microsecond=0)
        first = _push_tick(redis_url, "testjobs/long", base, parameters={"seconds": 4})
        wait_for(lambda: _is_running(history, first), 30, 0.1, "the first run to start")
        manual = send(setup["app"], "testjobs/long", parameters={"seconds": 0})
        tick = _push_tick(redis_url, "testjobs/long", base + timedelta(seconds=1))
        wait_for(lambda: _finished(history, [first, manual, tick]), 60, 0.2, "the runs")
        skipped = history.run(tick)
        assert skipped is not None and skipped.status == RunStatus.SKIPPED
        assert first in (skipped.message or "")
        _waited_for(history, first, manual)


def test_a_job_ignoring_cancellation_gets_its_attempts_and_no_more(
    tmp_path: Path, redis_url: str, database_url: str
) -> None:
    """Each attempt is abandoned after timeout + grace and recorded; the retry runs once;
    the abandoned threads finishing later change nothing."""
    profile = _profile_with(STUBBORN, STUBBORN.replace("max_attempts: 1", "max_attempts: 2"))
    with _stack(tmp_path, redis_url, database_url, profile) as stack:
        history = stack["history"]
        worker = start_worker(tmp_path, stack["env"], concurrency=3)
        with running([worker]):
            rid = send(stack["app"], "testjobs/stubborn", parameters={"seconds": 14})
            wait_for(lambda: _finished(history, [rid]), 90, 0.2, "the stubborn run to finish")
            run = history.run(rid)
            assert run is not None and run.status == RunStatus.TIMED_OUT and run.attempt == 2
            assert [a.status for a in run.attempts] == ["failed", "timed_out"]
            assert "ignored cancellation" in (run.error or "")

            # Both blocked threads wake up later and report success: history refuses it.
            late = f"run {rid} testjobs/stubborn: history already had this run finished"
            wait_for(lambda: worker.output().count(late) == 2, 60, 0.2, "both late outcomes")
            log = worker.output()
            for n in (1, 2):
                assert log.count(f"run {rid} testjobs/stubborn attempt {n}/2 started") == 1
            assert "attempt 3/2" not in log
            after = history.run(rid)
            assert after is not None and after.status == RunStatus.TIMED_OUT
            assert [a.status for a in after.attempts] == ["failed", "timed_out"]


COUNTED = "{extension: testjobs, job: counted, timeout: 60s, retry: {max_attempts: 1}}"


def test_a_run_whose_end_is_not_recorded_keeps_the_overlap_lock(
    tmp_path: Path, redis_url: str, own_pg: Any
) -> None:
    """PostgreSQL goes down while a run is active: its end cannot be recorded and the
    task re-queues it. Until it comes back and is recorded, the job counts as active:
    its lock stays with it and a manual run waits instead of running alongside."""
    import redis

    from jobs_core.wire import Keys

    profile = WORKER_PROFILE + f"    - {COUNTED}\n"
    with _stack(tmp_path, redis_url, own_pg.url, profile) as stack:
        history, app = stack["history"], stack["app"]
        log = tmp_path / "counted.log"
        worker = start_worker(tmp_path, stack["env"], concurrency=2)
        client = redis.Redis.from_url(redis_url)
        try:
            with running([worker]):
                base = datetime.now(UTC).replace(microsecond=0)
                first = _push_tick(
                    redis_url,
                    "testjobs/counted",
                    base,
                    parameters={"log": str(log), "seconds": 2},
                )
                wait_for(lambda: log.exists() and first in log.read_text(), 30, 0.1, "a start")
                own_pg.stop()
                worker.wait_output(f"run {first} testjobs/counted: infrastructure error", 60)
                assert client.get(Keys.lock("testjobs/counted")) == first.encode()

                manual = send(app, "testjobs/counted", parameters={"log": str(log)})
                waits = f"jobs.testjobs.counted[{manual}] retry: Retry in"
                runs = f"run {manual} testjobs/counted attempt 1/1 started"
                wait_for(
                    lambda: waits in (out := worker.output()) or runs in out,
                    60,
                    0.1,
                    "the manual run to wait or run",
                )
                assert runs not in worker.output(), "ran while the first run was not recorded"

                own_pg.start()
                wait_for(lambda: _finished(history, [first, manual]), 120, 0.2, "both runs")
                one, two = history.run(first), history.run(manual)
                assert one is not None and one.status == RunStatus.SUCCEEDED
                assert two is not None and two.status == RunStatus.SUCCEEDED
                assert one.finished_at is not None and two.started_at is not None
                assert one.finished_at <= two.started_at
                # The first run ran once per delivery; the manual run only after its last.
                lines = [line.split()[1] for line in log.read_text().splitlines()]
                assert lines[-1] == manual and set(lines[:-1]) == {first}, lines
                assert client.get(Keys.lock("testjobs/counted")) is None
        finally:
            client.close()


# A job of 0.5 s has its lazy "running" record under way when it ends; the waits for
# that record and then for its end outlast this timeout + grace.
QUICK_COUNTED = "{extension: testjobs, job: counted, timeout: 1s, retry: {max_attempts: 1}}"


def test_a_postgresql_outage_is_not_taken_for_a_stuck_job(
    tmp_path: Path, redis_url: str, own_pg: Any
) -> None:
    """A job with a 1 s timeout runs while PostgreSQL is down for longer than its
    timeout + grace: the waits for history are infrastructure errors, not a stuck job.
    The run is re-queued (keeping its lock) until PostgreSQL is back, then recorded once,
    succeeded; it is never recorded timed out nor acknowledged with nothing recorded."""
    import time

    import redis

    from jobs_core.wire import Keys
    from worker.execution import stuck_after

    key = "testjobs/counted"
    profile = WORKER_PROFILE + f"    - {QUICK_COUNTED}\n"
    with _stack(tmp_path, redis_url, own_pg.url, profile) as stack:
        history = stack["history"]
        log = tmp_path / "counted.log"
        worker = start_worker(tmp_path, stack["env"], concurrency=1)
        client = redis.Redis.from_url(redis_url)
        try:
            with running([worker]):
                # A first run opens the worker's history pool while PostgreSQL is up.
                base = datetime.now(UTC).replace(microsecond=0)
                warm = _push_tick(redis_url, key, base, parameters={"log": str(log)})
                wait_for(lambda: _finished(history, [warm]), 60, 0.1, "the first run")

                own_pg.stop()
                down_at = time.monotonic()
                rid = _push_tick(
                    redis_url,
                    key,
                    base + timedelta(minutes=1),
                    parameters={"log": str(log), "seconds": 0.5},
                )
                wait_for(lambda: log.exists() and rid in log.read_text(), 60, 0.1, "a start")
                infra = f"run {rid} {key}: infrastructure error"
                worker.wait_output(infra, 120)
                assert client.get(Keys.lock(key)) == rid.encode()
                # A second delivery with the pool empty: its waits for the "running" record
                # and the end (5 s each) outlast the job's timeout + grace (8 s).
                wait_for(lambda: worker.output().count(infra) >= 2, 120, 0.2, "a second try")
                assert client.get(Keys.lock(key)) == rid.encode()
                assert time.monotonic() - down_at > stuck_after(1.0)
                assert "ignored cancellation" not in worker.output()
                own_pg.start()

                wait_for(lambda: _finished(history, [rid]), 120, 0.2, "the run recorded")
                run = history.run(rid)
                assert run is not None and run.status == RunStatus.SUCCEEDED, run
                attempts = history.sql(
                    "SELECT attempt, status FROM job_run_attempts WHERE run_id = %s", rid
                )
                assert attempts == [(1, "succeeded")], attempts
                # Never taken for a stuck job, even one whose timeout could not be recorded.
                out = worker.output()
                for stuck in ("ignored cancellation", "could not record the timeout", "timed out"):
                    assert stuck not in out, stuck
                wait_for(lambda: client.get(Keys.lock(key)) is None, 30, 0.1, "the lock freed")
                # Re-queued, not acknowledged: every delivery of the run ran the job.
                assert rid in log.read_text()
        finally:
            client.close()


def test_infrastructure_errors_are_counted_apart_from_other_retries(
    tmp_path: Path, redis_url: str, own_pg: Any
) -> None:
    """A run that waited or retried many times (Celery's retry count in the headers) is
    still put back when PostgreSQL fails it; only the run's own count of infrastructure
    errors, carried in its message, gives up at MAX_INFRA_RETRIES."""
    import redis

    from worker.tasks import MAX_INFRA_RETRIES

    key = "testjobs/counted"
    profile = WORKER_PROFILE + f"    - {COUNTED}\n"
    with _stack(tmp_path, redis_url, own_pg.url, profile) as stack:
        history = stack["history"]
        log = tmp_path / "counted.log"
        worker = start_worker(tmp_path, stack["env"], concurrency=1)
        client = redis.Redis.from_url(redis_url)
        try:
            with running([worker]):
                base = datetime.now(UTC).replace(microsecond=0)
                warm = _push_tick(redis_url, key, base, parameters={"log": str(log)})
                wait_for(lambda: _finished(history, [warm]), 60, 0.1, "the first run")
                own_pg.stop()

                # As if it had waited for its overlap lock MAX_INFRA_RETRIES times.
                waited = tick_run_id(key, base + timedelta(minutes=1))
                kwargs = job_kwargs(
                    run_id=waited,
                    trigger="schedule",
                    scheduled_for=base + timedelta(minutes=1),
                    enqueued_at=datetime.now(UTC),
                    parameters={"log": str(log)},
                )
                queue, payload = task_message(task_name(key), kwargs, task_id=waited)
                envelope = json.loads(payload)
                envelope["headers"]["retries"] = MAX_INFRA_RETRIES
                client.lpush(queue, json.dumps(envelope))
                worker.wait_output(f"run {waited} {key}: infrastructure error, re-queued", 90)
                assert f"run {waited} {key}: giving up" not in worker.output()

                # Its own count spent (another job: the first keeps its lock): given up.
                noop = "testjobs/noop"
                spent = _push_tick(
                    redis_url, noop, base + timedelta(minutes=2), infra_errors=MAX_INFRA_RETRIES
                )
                gives_up = f"giving up after {MAX_INFRA_RETRIES} infrastructure errors"
                worker.wait_output(f"run {spent} {noop}: {gives_up}", 90)
        finally:
            client.close()


def test_a_stalled_end_write_keeps_the_overlap_lock(
    tmp_path: Path, redis_url: str, database_url: str
) -> None:
    """The run's end write hangs (its table locked) past FINISH_WAIT: the attempt is
    cancelled and re-queued as an infrastructure error. The job ran, and history does
    not know its end: the run keeps the job's overlap lock until it comes back and is
    recorded, as when the write fails outright."""
    import psycopg
    import redis

    from jobs_core.wire import Keys

    key = "testjobs/counted"
    profile = WORKER_PROFILE + f"    - {COUNTED}\n"
    with _stack(tmp_path, redis_url, database_url, profile) as stack:
        history = stack["history"]
        log = tmp_path / "counted.log"
        worker = start_worker(tmp_path, stack["env"], concurrency=1)
        client = redis.Redis.from_url(redis_url)
        try:
            with running([worker]):
                base = datetime.now(UTC).replace(microsecond=0)
                warm = _push_tick(redis_url, key, base, parameters={"log": str(log)})
                wait_for(lambda: _finished(history, [warm]), 60, 0.1, "the first run")

                with psycopg.connect(database_url) as blocker:
                    blocker.execute("LOCK TABLE job_runs IN ACCESS EXCLUSIVE MODE")
                    rid = _push_tick(
                        redis_url, key, base + timedelta(minutes=1), parameters={"log": str(log)}
                    )
                    wait_for(lambda: log.exists() and rid in log.read_text(), 60, 0.1, "a start")
                    worker.wait_output(f"run {rid} {key}: infrastructure error", 90)
                    assert "into its finish" in worker.output()
                    assert client.get(Keys.lock(key)) == rid.encode()
                    blocker.rollback()

                wait_for(lambda: _finished(history, [rid]), 120, 0.2, "the run recorded")
                run = history.run(rid)
                assert run is not None and run.status == RunStatus.SUCCEEDED, run
                wait_for(lambda: client.get(Keys.lock(key)) is None, 60, 0.1, "the lock freed")
        finally:
            client.close()
