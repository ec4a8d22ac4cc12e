"""Since when the beat's monitor expects each job to run (beat.monitor.watched_since),
on a real Redis: the stored instant survives rounds, pausing a job forgets it, and a
round with nothing to change writes nothing. And the monitor's rounds on a real Redis
and PostgreSQL: only what changed is evaluated again, and everything again after a
reload or a new leadership."""

from __future__ import annotations

import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import redis

from beat.incidents import active_incidents
from beat.monitor import Monitor, watched_since
from beat.service import Beat
from jobs_core.profile import load_profile
from jobs_core.registry import build_registry
from jobs_core.wire import Keys
from tests.beat_fixtures import EXT
from tests.procs import write_profile

A, B = f"{EXT}/every-second", f"{EXT}/also-every-second"
PROFILE = (
    "extensions: [tests.beat_fixtures:BeatTestExtension]\n"
    "scheduler:\n"
    "  jobs:\n"
    f"    - {{extension: {EXT}, job: every-second, schedule: '* * * * * *'}}\n"
    f"    - {{extension: {EXT}, job: also-every-second, schedule: '* * * * * *'}}\n"
)


def _ours(since: dict[str, datetime]) -> dict[str, datetime]:
    return {k: v for k, v in since.items() if k in (A, B)}


def _writes(client: redis.Redis) -> int:
    return _calls(client, "hsetnx")


def _calls(client: redis.Redis, command: str) -> int:
    return int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_watched_since_keeps_first_sight_forgets_paused_jobs_and_writes_only_changes(
    redis_url: str,
) -> None:
    path = write_profile(Path(tempfile.mkdtemp(prefix="sp-watch-")) / "profile.yaml", PROFILE)
    registry = build_registry(load_profile(str(path)))
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    t0 = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
    try:
        client.hset(Keys.ALERT_WATCH, "gone/job", "1")  # not in the job table: ignored
        first = watched_since(client, registry, set(), t0)
        scheduled = [jd.key for jd in registry if jd.enabled and jd.cron is not None]
        assert first == dict.fromkeys(scheduled, t0)  # built-in jobs too, not "gone/job"

        later = t0 + timedelta(minutes=5)
        before = _writes(client)
        assert watched_since(client, registry, set(), later) == first
        assert _writes(client) == before  # nothing new to watch: no write

        # Paused: forgotten (a paused job is not late), and B keeps its first sight.
        assert _ours(watched_since(client, registry, {A}, later)) == {B: t0}
        assert client.hget(Keys.ALERT_WATCH, A) is None
        # Resumed: watched from the round that sees it again.
        again = later + timedelta(seconds=15)
        assert _ours(watched_since(client, registry, set(), again)) == {A: again, B: t0}

        # What another leader stored is what counts (a new leader does not restart it).
        client.hdel(Keys.ALERT_WATCH, A)
        theirs = again - timedelta(seconds=3)
        client.hset(Keys.ALERT_WATCH, A, str(int(theirs.timestamp() * 1000)))
        assert watched_since(client, registry, set(), again)[A] == theirs
    finally:
        client.delete(Keys.ALERT_WATCH)
        client.close()


@pytest.mark.integration
def test_monitor_rounds_evaluate_what_changed_and_everything_after_reload_or_election(
    redis_url: str, database_url: str
) -> None:
    path = write_profile(
        Path(tempfile.mkdtemp(prefix="sp-rounds-")) / "profile.yaml",
        PROFILE.replace(
            "schedule: '* * * * * *'}",
            "schedule: '* * * * * *', alerts: {late_after: 1d, consecutive_failures: 1}}",
        )
        + f"database_url: {database_url}\n",
    )
    beat = Beat(str(path), redis_url=redis_url, beat_id="rounds", assume_leader=True)
    beat._connect()
    beat._try_acquire()
    monitor = Monitor(beat, None)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    ev = monitor._evaluator
    jobs = len(beat.registry.jobs)
    try:
        monitor.check(beat.profile)
        assert (ev.was_full, ev.evaluated) == (True, jobs)
        monitor.check(beat.profile)
        assert (ev.was_full, ev.evaluated) == (False, 0)

        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO job_runs (id, job_key, trigger, status, finished_at)"
                " VALUES (%s, %s, 'manual', 'failed', now())",
                (str(uuid.uuid4()), A),
            )
        monitor.check(beat.profile)
        assert (ev.was_full, ev.evaluated) == (False, 1)
        assert set(active_incidents(client)) == {f"{A}|failing"}
        hsets = _calls(client, "hset")
        monitor.check(beat.profile)
        assert _calls(client, "hset") == hsets  # an unchanged incident is not written again

        # Lost from Redis (another process, a round not stored): found and stored again.
        client.delete(Keys.ALERTS)
        monitor.check(beat.profile)
        assert ev.evaluated == 1 and set(active_incidents(client)) == {f"{A}|failing"}

        # Paused: a new watch for that job only.
        client.sadd(Keys.DISABLED, B)
        monitor.check(beat.profile)
        assert (ev.was_full, ev.evaluated) == (False, 1)
        # Watched afresh (its first sight lost from Redis): late counts from now on.
        client.hdel(Keys.ALERT_WATCH, A)
        monitor.check(beat.profile)
        assert (ev.was_full, ev.evaluated) == (False, 1)

        beat.registry = build_registry(load_profile(str(path)))  # what a reload swaps in
        monitor.check(beat.profile)
        assert (ev.was_full, ev.evaluated) == (True, jobs)

        beat._leader_since += 1  # leadership lost and won again between two rounds
        monitor.check(beat.profile)
        assert ev.was_full
        monitor.check(beat.profile)
        assert not ev.was_full

        beat._leader = False
        monitor.check(beat.profile)
        beat._leader = True
        monitor.check(beat.profile)
        assert ev.was_full
        assert set(active_incidents(client)) == {f"{A}|failing"}
    finally:
        monitor._disconnect()
        beat.stop()
        beat._shutdown()
        client.close()
