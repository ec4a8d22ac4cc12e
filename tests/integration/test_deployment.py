"""compose.yaml's topology as plain processes: migrate, two beats, three workers, Flower.

Every process runs the command its compose service runs (``systemprompt infra db
migrate``, ``systemprompt infra beat``, ``systemprompt infra worker ...``, ``celery -A
worker.app flower`` with ``FLOWER_BASIC_AUTH``), configured by the same environment
variables only. Checks: one beat leads, Flower's API sees the three workers and the runs,
and a per-second job runs once per tick (no tick twice, none missing), spread over the
workers.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cli.embedded import PostgresServer
from tests.procs import (
    VENV_BIN,
    Proc,
    flower_proc,
    free_port_for_tests,
    running,
    service_env,
    wait_for,
)

from .worker_support import History

pytestmark = pytest.mark.integration

FLOWER_AUTH = "ops:deploy-s3cret"
PATTERN = r"Task jobs\.testjobs\.slow\[([0-9a-f-]+)\] received"
JOB = "testjobs/slow"
WORKERS = ("w1", "w2", "w3")
PROFILE = """
extensions: [tests.worker_fixtures:WorkerTestExtension]
scheduler:
  defaults:
    retry: {max_attempts: 2, backoff: 100ms, max_backoff: 1s, jitter: false}
    timeout: 10s
    misfire_grace: 10s
  jobs:
    # Fired every second, runs 2.5 s: three runs at once, one per worker slot.
    - extension: testjobs
      job: slow
      schedule: "* * * * * *"
      overlap: allow
      parameters: {seconds: 2.5}
"""


@pytest.fixture
def fresh_database(pg_server: PostgresServer) -> Iterator[str]:
    """An empty database: the migrate step of the deployment creates the schema."""
    import psycopg

    name = f"deploy_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield pg_server.url_for(name)
    with psycopg.connect(pg_server.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _systemprompt(*args: str) -> list[str]:
    return [str(VENV_BIN / "systemprompt"), *args]


def test_compose_topology_as_processes(tmp_path: Path, redis_url: str, fresh_database: str) -> None:
    import subprocess

    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE)
    env = service_env(
        REDIS_URL=redis_url, DATABASE_URL=fresh_database, SYSTEMPROMPT_PROFILE=str(profile)
    )

    # migrate: one-shot, exits 0, the others start after it.
    migrate = subprocess.run(
        _systemprompt("infra", "db", "migrate"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert "applied" in migrate.stdout

    port = free_port_for_tests()
    procs: list[Proc] = []
    with running(procs):
        for name in WORKERS:
            args = ["infra", "worker", "--concurrency=1", f"--hostname={name}@%h"]
            procs.append(Proc(_systemprompt(*args), env, tmp_path / f"worker-{name}.log"))
        for name in ("beat-a", "beat-b"):
            beat = Proc(_systemprompt("infra", "beat", "--id", name), env, tmp_path / f"{name}.log")
            procs.append(beat)
        flower_env = {**env, "FLOWER_BASIC_AUTH": FLOWER_AUTH}
        flower = flower_proc(tmp_path, flower_env, port)
        procs.append(flower)
        workers, beats = procs[:3], procs[3:5]
        for w in workers:
            w.wait_output("ready.", 60)
        flower.wait_output("Visit me at", 60)

        # Exactly one beat leads; the other waits.
        wait_for(
            lambda: sum("became leader" in b.output() for b in beats) >= 1, 30, 0.1, "a leader"
        )

        auth = {"Authorization": "Basic " + base64.b64encode(FLOWER_AUTH.encode()).decode()}

        def api(path: str, headers: dict[str, str] = auth) -> Any:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=5) as resp:
                    return json.load(resp)
            except OSError:
                return None

        def flower_workers() -> set[str] | None:
            seen = {w.split("@")[0] for w in api("/api/workers?refresh=1") or {}}
            return seen if seen >= set(WORKERS) else None

        wait_for(flower_workers, 60, 0.5, "Flower to see the three workers")
        # The API is closed without the credentials.
        assert api("/api/workers", headers={}) is None

        history = History(fresh_database)
        # Count from a tick after every worker is consuming, for a few seconds.
        start = datetime.now().astimezone()

        def schedule_runs() -> list[Any]:
            return [
                r
                for r in history.runs(JOB)
                if r.trigger == "schedule" and r.scheduled_for and r.scheduled_for > start
            ]

        def enough() -> bool:
            runs = schedule_runs()
            return len([r for r in runs if r.finished]) >= 8

        wait_for(enough, 30, 0.25, "8 scheduled runs to finish")

        def flower_saw_runs() -> bool:
            tasks = api(f"/api/tasks?taskname=jobs.{JOB.replace('/', '.')}") or {}
            return sum(t.get("state") == "SUCCESS" for t in tasks.values()) >= 5

        wait_for(flower_saw_runs, 30, 0.5, "Flower to report the runs")
        # Delivery: no message of this job was received twice by the workers (read now:
        # stopping the processes below re-queues the runs they were in the middle of).
        received: Counter[str] = Counter()
        for w in workers:
            received.update(re.findall(PATTERN, w.output()))
        leaders = [b for b in beats if "became leader" in b.output()]
        fired = [b for b in beats if "event=fire" in b.output()]
        every = schedule_runs()

    instants = sorted(r.scheduled_for for r in every)
    # One run per tick, and no tick missing in between (workers take ticks in order).
    assert len(set(instants)) == len(instants)
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(instants)}
    assert gaps == {1.0}, gaps
    runs = [r for r in every if r.finished]
    assert all(r.status == "succeeded" and r.attempt == 1 for r in runs)
    # Spread: a 2.5 s run every second keeps three single-slot workers busy, so all
    # three share the ticks. (A job much shorter than a second would not spread: Redis
    # hands each message to the worker that has waited longest on the queue.)
    by_worker = Counter(r.worker.split("@")[0] for r in runs if r.worker)
    assert set(by_worker) == set(WORKERS), by_worker
    assert received and max(received.values()) == 1, received.most_common(3)
    # Exactly one beat sent ticks (the other never led: nothing failed over).
    assert len(leaders) == 1, [b.log_path.name for b in leaders]
    assert fired == leaders
