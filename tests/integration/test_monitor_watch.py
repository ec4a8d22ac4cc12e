"""Since when the beat's monitor expects each job to run (beat.monitor.watched_since),
on a real Redis: the stored instant survives rounds, pausing a job forgets it, and a
round with nothing to change writes nothing."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from beat.monitor import watched_since
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
    return int(client.info("commandstats").get("cmdstat_hsetnx", {}).get("calls", 0))


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
