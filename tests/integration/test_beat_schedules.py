"""Beat processes with a job's schedule settings, against real Redis: start-time jitter
under two beats, ``max_runs`` across a beat restart, ``start_at``/``end_at`` windows.

Ticks are read from the queue lists (no worker). Schedules fire every second.
"""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
import redis

from beat import control
from beat.schedule import from_ms, jitter_offset_ms
from jobs_core.wire import Keys, decode
from tests.beat_fixtures import EXT, JOB, JOB2, QUEUE, TTL, BeatProcs, Msg, messages
from tests.procs import wait_for

pytestmark = pytest.mark.integration


def profile(path: Path, job_lines: str) -> Path:
    """The beat test extension; ``job_lines`` are the keys of every-second's entry."""
    body = "\n".join(f"      {line}" for line in job_lines.strip().splitlines())
    path.write_text(
        "extensions: [tests.beat_fixtures:BeatTestExtension]\n"
        "scheduler:\n"
        "  defaults:\n"
        "    misfire_grace: 30s\n"
        f"    queue: {QUEUE}\n"
        "  jobs:\n"
        f"    - extension: {EXT}\n"
        "      job: every-second\n"
        f"{body}\n"
    )
    return path


def now_ms() -> int:
    return int(time.time() * 1000)


def of(msgs: list[Msg], job: str) -> list[Msg]:
    return [m for m in msgs if m.job == job]


def ticks_after(client: redis.Redis, job: str, after_ms: int) -> int:
    return len([m for m in of(messages(client), job) if (m.scheduled_ms or 0) > after_ms])


def enqueued(client: redis.Redis) -> dict[tuple[str, int], int]:
    """``(job, scheduled ms) -> enqueued_at ms`` of every message on the queue."""
    out: dict[tuple[str, int], int] = {}
    for raw in client.lrange(QUEUE, 0, -1):
        headers, kwargs = decode(raw)  # type: ignore[arg-type]
        _, ext, name = headers["task"].split(".", 2)
        scheduled = datetime.fromisoformat(kwargs["scheduled_for"])
        at = datetime.fromisoformat(kwargs["enqueued_at"])
        out[(f"{ext}/{name}", round(scheduled.timestamp() * 1000))] = round(at.timestamp() * 1000)
    return out


def test_two_beats_with_jitter_send_each_tick_once_at_its_delayed_instant(
    redis_url: str, workdir: Path, procs: BeatProcs
) -> None:
    """Split brain (both beats skip the election) with a 700 ms jitter: the per-tick
    claims still send each tick once, and both beats delay a tick by the same offset."""
    path = profile(workdir / "profile.yaml", "jitter: 700ms")
    client = redis.Redis.from_url(redis_url)
    procs.start("a", path, redis_url, extra=("--assume-leader",))
    procs.start("b", path, redis_url, extra=("--assume-leader",))
    wait_for(lambda: all("beat starting" in procs.log(n) for n in "ab"), 60, what="both running")
    start = now_ms()
    wait_for(lambda: ticks_after(client, JOB, start + 8000) >= 1, 60, what="9 s of jittered ticks")
    msgs = messages(client)
    counts = Counter((m.job, m.scheduled_ms) for m in msgs)
    assert max(counts.values()) == 1, "a tick was enqueued twice"
    instants = sorted(m.scheduled_ms for m in of(msgs, JOB) if m.scheduled_ms)
    assert instants == list(range(instants[0], instants[-1] + 1000, 1000))  # none missing
    sent_at = enqueued(client)
    offsets = {t: jitter_offset_ms(JOB, t, 700, 1000) for t in instants}
    assert all(0 <= o < 700 for o in offsets.values())
    assert len(set(offsets.values())) > 1
    for t in instants:
        # Never before its delayed instant (a tick's scheduled_for stays the nominal one).
        assert sent_at[(JOB, t)] >= t + offsets[t], (t, offsets[t], sent_at[(JOB, t)] - t)
    # Both beats computed the same offset for the ticks they sent (or lost the claim of).
    fired = re.compile(
        r"event=fire job=" + re.escape(JOB) + r" scheduled_for=(\S+) .*jitter_ms=(\d+)"
    )
    seen = 0
    for name in "ab":
        for stamp, offset in fired.findall(procs.log(name)):
            ms = round(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
            assert int(offset) == jitter_offset_ms(JOB, ms, 700, 1000)
            seen += 1
    assert seen >= len(instants) - 2  # the rest: catch-up or not yet logged
    assert "already handled" in procs.log("a") + procs.log("b")
    # The job without jitter is untouched.
    assert all(
        sent_at[(JOB2, m.scheduled_ms or 0)] >= (m.scheduled_ms or 0) for m in of(msgs, JOB2)
    )


def test_max_runs_gives_exactly_that_many_runs_across_a_beat_restart(
    redis_url: str, workdir: Path, procs: BeatProcs
) -> None:
    path = profile(workdir / "profile.yaml", "max_runs: 3")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    procs.start("a", path, redis_url, lease_ttl=TTL)
    wait_for(lambda: client.hget(Keys.SCHEDULED_RUNS, JOB) == "1", 60, what="the first counted run")
    procs.kill("a")  # mid-way: one run counted (two if a tick slipped in)
    before = int(client.hget(Keys.SCHEDULED_RUNS, JOB) or 0)
    assert 1 <= before < 3
    procs.start("a2", path, redis_url, lease_ttl=TTL)
    wait_for(lambda: "max_runs reached" in procs.log("a2"), 60, what="the budget used up")
    # The job without a budget keeps ticking; the budgeted one sends nothing more.
    done = now_ms()
    wait_for(lambda: ticks_after(client, JOB2, done + 3000) >= 1, 60, what="3 s more of ticks")
    runs = [m for m in of(messages(client), JOB) if m.skip_reason is None]
    assert len(runs) == 3, runs
    assert len({m.scheduled_ms for m in runs}) == 3
    assert {m.trigger for m in runs} <= {"schedule", "catch-up"}
    assert control.scheduled_runs(client, [JOB, JOB2]) == {JOB: 3, JOB2: 0}
    assert "max_runs reached" not in procs.log("a")


def test_ticks_outside_start_at_and_end_at_are_not_sent(
    redis_url: str, workdir: Path, procs: BeatProcs
) -> None:
    path = profile(workdir / "profile.yaml", "enabled: false")
    client = redis.Redis.from_url(redis_url)
    procs.start("a", path, redis_url, lease_ttl=TTL)
    wait_for(lambda: ticks_after(client, JOB2, 0) >= 1, 60, what="the beat leading")
    start = (now_ms() // 1000 + 5) * 1000
    end = start + 2000
    iso = {
        name: from_ms(ms).isoformat().replace("+00:00", "Z")
        for name, ms in (("s", start), ("e", end))
    }
    profile(path, f'start_at: "{iso["s"]}"\nend_at: "{iso["e"]}"')
    procs.signal("a", signal.SIGHUP)
    wait_for(lambda: "profile reloaded" in procs.log("a"), 30, what="the reload")
    reloaded = now_ms()
    wait_for(lambda: ticks_after(client, JOB2, end + 2000) >= 1, 60, what="the window to pass")
    sent = sorted(m.scheduled_ms or 0 for m in of(messages(client), JOB))
    assert all(start <= t <= end for t in sent), (start, end, sent)  # both bounds inclusive
    # Every tick of the window after the reload went out, the end instant included
    # (the reload takes milliseconds; the window opens 4-5 s after it was written).
    assert set(sent) >= {t for t in range(start, end + 1, 1000) if t > reloaded}
