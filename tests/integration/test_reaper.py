"""A whole worker node killed (kill -9 of its process group) during a run of an
``overlap: skip`` job, under a real beat: the run is marked lost within 30 s, its next
attempt runs on another worker, the job's ticks run again, the dead worker's own message
(delivered again after the visibility timeout) is refused, and nothing stays running.

Counted: ticks sent per instant (the beat's ``event=fire`` lines), executions per run
and attempt (the job appends one line per execution), runs per final state (history).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from jobs_core.liveness import HEARTBEAT_TTL_S, REAP_EVERY_S
from jobs_core.status import RunStatus
from jobs_core.wire import Keys, task_name
from tests.procs import Proc, running, service_env, start_worker, wait_for

from .test_sentinel import _executions, _fires
from .worker_support import History

pytestmark = pytest.mark.integration

JOB = "testjobs/counted"
PROFILE = """
extensions: [tests.worker_fixtures:WorkerTestExtension]
scheduler:
  defaults:
    retry: {{max_attempts: 2, backoff: 200ms, max_backoff: 1s, jitter: false}}
    timeout: 10s
    misfire_grace: 60s
  jobs:
    - extension: testjobs
      job: counted
      schedule: "*/2 * * * * *"
      overlap: skip
      parameters: {{log: "{log}", seconds: 4}}
"""


def test_a_killed_worker_node_loses_its_run_and_the_job_goes_on(
    tmp_path: Path, redis_url: str, database_url: str
) -> None:
    import redis

    runs_log = tmp_path / "runs.log"
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE.format(log=runs_log))
    env = service_env(
        REDIS_URL=redis_url, DATABASE_URL=database_url, SYSTEMPROMPT_PROFILE=str(profile)
    )
    history = History(database_url)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    started = time.monotonic()

    victim = start_worker(tmp_path, env, name="victim", concurrency=1)
    procs = [victim]
    with running(procs):
        assert client.exists(Keys.worker(next(iter(client.hgetall(Keys.WORKERS)))))
        beat = Proc([sys.executable, "-m", "beat", "--id", "solo"], env, tmp_path / "beat.log")
        procs.append(beat)

        def run_on_victim() -> str | None:
            rows = history.sql(
                "SELECT id::text FROM job_runs WHERE status = 'running' AND worker LIKE 'victim@%%'"
            )
            return rows[0][0] if rows else None

        lost_id = wait_for(run_on_victim, 90, 0.05, "a run to start on the victim")
        assert client.get(Keys.lock(JOB)) == lost_id
        victim.kill()  # the main process and its pool child, as when the host dies
        killed_at = time.monotonic()

        def left_running() -> bool:
            run = history.run(lost_id)
            return run is not None and run.status is not RunStatus.RUNNING

        wait_for(left_running, 60, 0.1, "the run to be declared lost")
        detected = time.monotonic() - killed_at
        run = history.run(lost_id)
        assert run is not None and run.status is RunStatus.RETRYING and run.attempt == 2, run
        assert run.message is not None and "lost: worker victim@" in run.message, run.message
        assert [(a.attempt, a.status) for a in run.attempts] == [(1, RunStatus.LOST)]
        # The run goes on: its lock is kept for its next attempt, its worker forgotten.
        assert client.get(Keys.lock(JOB)) == lost_id
        assert not any(h.startswith("victim@") for h in client.hgetall(Keys.WORKERS))

        rescuer = start_worker(tmp_path, env, name="rescuer", concurrency=2)
        procs.append(rescuer)

        def finished() -> bool:
            run = history.run(lost_id)
            return run is not None and run.finished

        wait_for(finished, 60, 0.2, "the next attempt to finish on the rescuer")
        done = history.run(lost_id)
        assert done is not None and done.status is RunStatus.SUCCEEDED, done
        assert [(a.attempt, a.status, (a.worker or "").split("@")[0]) for a in done.attempts] == [
            (1, RunStatus.LOST, "victim"),
            (2, RunStatus.SUCCEEDED, "rescuer"),
        ]
        assert done.finished_at is not None
        after = done.finished_at.timestamp()

        # The job is not blocked: a tick after the run finished is executed.
        wait_for(
            lambda: any(when > after for when, _, _ in _executions(runs_log)),
            60,
            0.2,
            "a tick after the lost run to execute",
        )
        # The victim's own message of attempt 1 comes back once the broker's visibility
        # timeout passes: refused by history (attempt 2 owns the run), or it finds a
        # tick holding the lock; either way it is not executed and changes nothing.
        handled = f"Task {task_name(JOB)}[{lost_id}] succeeded in"
        wait_for(
            lambda: rescuer.output().count(handled) >= 2,
            120,
            0.5,
            "the victim's message to be delivered again and dropped",
        )
        beat.stop()
        instants = {when for _, job, when, _, _ in _fires(beat) if job == JOB}

        def all_settled() -> bool:
            rows = history.sql(
                "SELECT count(*) FROM job_runs WHERE job_key = %s AND finished_at IS NOT NULL",
                JOB,
            )
            return int(rows[0][0]) >= len(instants)

        wait_for(all_settled, 60, 0.2, "every tick sent to settle")
    assert all(p.popen.returncode is not None for p in procs)

    # Ticks: exactly one per instant.
    fires = Counter(when for _, job, when, _, _ in _fires(beat) if job == JOB)
    assert fires and set(fires.values()) == {1}, fires
    # Executions: the lost run twice (attempt 1 on the victim, 2 on the rescuer), every
    # other instant at most once, on its first attempt.
    executions = _executions(runs_log)
    of_lost = sorted(attempt for _, rid, attempt in executions if rid == lost_id)
    assert of_lost == [1, 2], of_lost
    others = Counter(rid for _, rid, _ in executions if rid != lost_id)
    assert set(others.values()) <= {1}, others
    assert {a for _, rid, a in executions if rid != lost_id} <= {1}
    # History: one run per tick sent; all finished; only the instants executed succeeded.
    states = dict(
        history.sql("SELECT status, count(*) FROM job_runs WHERE job_key = %s GROUP BY status", JOB)
    )
    assert sum(states.values()) == len(fires), (states, len(fires))
    assert set(states) <= {"succeeded", "skipped"}, states
    assert states["succeeded"] == len(others) + 1, (states, len(others))
    assert history.sql("SELECT count(*) FROM job_runs WHERE status IN ('running', 'retrying')") == [
        (0,)
    ]
    again = history.run(lost_id)
    assert again is not None and (again.status, again.attempt) == (RunStatus.SUCCEEDED, 2)
    assert len(again.attempts) == 2
    beat_log = beat.output()
    assert f"run {lost_id} {JOB} lost: worker victim@" in beat_log
    print(
        f"\nworker node killed: run declared lost {detected:.1f} s after kill -9 "
        f"(heartbeat ttl {HEARTBEAT_TTL_S:g} s, reaper every {REAP_EVERY_S:g} s); "
        f"{len(fires)} ticks sent once each, {len(executions)} executions, final states "
        f"{states}; test took {time.monotonic() - started:.0f} s"
    )
    assert detected < 30, f"lost only {detected:.1f} s after the kill"
