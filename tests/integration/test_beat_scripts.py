"""The beat's Redis scripts (lease, claim-and-send) and control helpers, on a real Redis."""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from beat import control, service
from beat.build import TickBuilder
from beat.lease import Lease, Renewal
from beat.schedule import from_ms
from beat.service import Beat
from beat.ticks import DISABLED, DUPLICATE, SENT, NotLeader, OutTick, TickSender
from jobs_core.profile import load_profile
from jobs_core.registry import build_registry
from jobs_core.status import Trigger
from jobs_core.wire import Keys, decode, task_name, tick_run_id, tick_template
from tests.beat_fixtures import EXT, QUEUE, beat_profile, messages
from tests.procs import wait_for, write_profile

pytestmark = [pytest.mark.integration, pytest.mark.servers]


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url, decode_responses=True)
    yield c
    c.close()


def tick(job: str, ms: int, payload: str = "p") -> OutTick:
    return OutTick.full(job, ms, "q", f"{payload}:{job}:{ms}")


def test_lease_is_exclusive_renewable_and_fenced(client: redis.Redis) -> None:
    a, b = Lease(client, 2.0), Lease(client, 2.0)
    assert a.acquire({"beat_id": "a"})
    assert not b.acquire({"beat_id": "b"})
    assert a.renew({"beat_id": "a"}) is Renewal.EXTENDED and b.renew() is Renewal.LOST
    assert a.acquire()  # re-acquiring one's own lease extends it
    assert 1000 < client.pttl(Keys.LEASE) <= 2000
    assert not b.release()  # fencing: b cannot drop a's lease
    assert client.get(Keys.LEASE) == a.token
    assert a.release()
    assert b.acquire() and a.renew() is Renewal.LOST


def test_a_renewal_takes_a_lapsed_lease_again_unless_another_beat_holds_it(
    client: redis.Redis,
) -> None:
    a, b = Lease(client, 0.3), Lease(client, 0.3)
    assert a.acquire({"beat_id": "a"})
    wait_for(lambda: not client.exists(Keys.LEASE), 10, what="the lease to expire")
    assert a.renew({"beat_id": "a", "round": 2}) is Renewal.RETAKEN  # no one held it
    assert client.get(Keys.LEASE) == a.token and 0 < client.pttl(Keys.LEASE) <= 300
    assert client.hget(Keys.LEADER, "round") == "2"  # the heartbeat written with it
    assert not b.acquire() and b.renew() is Renewal.LOST  # a holds it again, fenced
    assert a.renew() is Renewal.EXTENDED
    wait_for(lambda: not client.exists(Keys.LEASE), 10, what="the lease to expire again")
    assert b.acquire()  # another beat was first this time: a steps down
    assert a.renew() is Renewal.LOST and client.get(Keys.LEASE) == b.token


def test_leader_status_reads_the_heartbeat(client: redis.Redis) -> None:
    assert control.leader_status(client) is None
    lease = Lease(client, 2.0)
    now = time.time()
    beat = {"beat_id": "x", "host": "h", "pid": 42, "since": "s", "heartbeat": "t"}
    assert lease.acquire({**beat, "heartbeat_ms": int(now * 1000), "lease_ttl_ms": 2000})
    status = control.leader_status(client)
    assert status is not None
    assert status["beat_id"] == "x" and status["pid"] == 42 and status["alive"]
    assert status["lease_ttl_s"] == 2.0 and "token_tail" not in status
    lease.release()
    assert control.leader_status(client) is None


def test_claims_send_each_tick_once_and_respect_disable(client: redis.Redis) -> None:
    sender = TickSender(client)
    batch = [tick("e/a", 1000), tick("e/b", 1000)]
    assert sender.send(batch, None) == [SENT, SENT]
    # A second "leader" replaying the same batch sends nothing.
    assert TickSender(client).send(batch, None) == [DUPLICATE, DUPLICATE]
    assert client.llen("q") == 2
    # Nor does a tick older than the last handled one, nor the same tick twice in a batch.
    assert sender.send([tick("e/a", 1000), tick("e/a", 500)], None) == [DUPLICATE, DUPLICATE]
    assert sender.send([tick("e/c", 700), tick("e/c", 700)], None) == [SENT, DUPLICATE]
    control.disable(client, "e/a")
    assert control.is_disabled(client, "e/a")
    assert sender.send([tick("e/a", 2000), tick("e/b", 2000)], None) == [DISABLED, SENT]
    assert control.last_sent(client, "e/a") == datetime.fromtimestamp(2, tz=UTC)
    control.enable(client, "e/a")
    assert control.disabled_jobs(client) == set()
    assert sender.send([tick("e/a", 3000)], None) == [SENT]
    assert client.llen("q") == 5
    # The claim needs no key per tick: nothing but the queue and the last-handled hash.
    assert set(client.keys("*")) == {"q", Keys.LAST}


def test_each_tick_is_compared_with_its_own_jobs_last_handled_tick(client: redis.Redis) -> None:
    """One chunk of jobs whose last handled ticks differ, some with several ticks: the
    script converts each distinct last-handled value once and shares it between jobs,
    and marks a job with its latest sent tick."""
    sender = TickSender(client)
    client.hset(Keys.LAST, mapping={"e/a": 1000, "e/b": 3000, "e/c": 1000, "e/e": 999})
    batch = [tick("e/a", 2000), tick("e/b", 2000), tick("e/c", 2000), tick("e/d", 2000)]
    batch += [tick("e/a", 2500), tick("e/b", 3500), tick("e/a", 2200), tick("e/e", 1000)]
    assert sender.send(batch, None) == [SENT, DUPLICATE, SENT, SENT, SENT, SENT, DUPLICATE, SENT]
    last = {"e/a": "2500", "e/b": "3500", "e/c": "2000", "e/d": "2000", "e/e": "1000"}
    assert client.hgetall(Keys.LAST) == last
    sent = ["e/a:2000", "e/c:2000", "e/d:2000", "e/a:2500", "e/b:3500", "e/e:1000"]
    assert client.lrange("q", 0, -1)[::-1] == [f"p:{s}" for s in sent]

    # On-time ticks of one instant (a template group): a job already past the instant,
    # one behind it, one never handled; a paused job elsewhere changes nothing.
    control.disable(client, "e/other")
    tpl = tick_template("jobs", Trigger.SCHEDULE, "{}")
    assert tpl is not None
    ms, iso = 3000, from_ms(3000).isoformat()
    on_time = [
        OutTick.templated(job, ms, tpl, task_name(job), tick_run_id(job, from_ms(ms)), iso)
        for job in ("e/a", "e/b", "e/new")
    ]
    assert sender.send(on_time, None) == [SENT, DUPLICATE, SENT]
    assert [decode(raw)[0]["task"] for raw in client.lrange("jobs", 0, -1)[::-1]] == [
        task_name("e/a"),
        task_name("e/new"),
    ]
    assert client.hmget(Keys.LAST, ["e/a", "e/b", "e/new"]) == ["3000", "3500", "3000"]


def test_two_senders_racing_on_one_batch_send_each_tick_once(redis_url: str) -> None:
    """Two beats that both believe they lead, sending the same ticks at the same time."""
    batches = [[tick(f"e/j{i}", ms) for i in range(800)] for ms in (1000, 2000, 3000)]
    results: list[list[int]] = []
    go = threading.Barrier(2)

    def run() -> None:
        c = redis.Redis.from_url(redis_url)
        sender = TickSender(c)
        go.wait(5)
        mine: list[int] = []
        for batch in batches:
            mine += sender.send(batch, None)
        results.append(mine)
        c.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 2
    assert all(a + b == SENT for a, b in zip(*results, strict=True))
    c = redis.Redis.from_url(redis_url, decode_responses=True)
    pushed = c.lrange("q", 0, -1)
    c.close()
    assert len(pushed) == len(set(pushed)) == 3 * 800


def test_templated_ticks_render_the_full_message(client: redis.Redis) -> None:
    """The script splices a tick's values into the shared template exactly like Python."""
    sender = TickSender(client)
    ms = 1_700_000_000_000
    scheduled = from_ms(ms)
    out = []
    for params, jobs in (({}, ("e/w", "e/x")), ({"batch": 50, "note": "a\tb"}, ("e/y",))):
        template = tick_template("jobs", "schedule", json.dumps(params, sort_keys=True))
        assert template is not None
        for job in jobs:
            out.append((template, job, tick_run_id(job, scheduled)))
    ticks = [
        OutTick.templated(job, ms, tpl, task_name(job), run_id, scheduled.isoformat())
        for tpl, job, run_id in out
    ]
    ticks.insert(2, tick("e/z", ms))  # a whole message between two groups
    assert sender.send(ticks, None) == [SENT] * 4
    assert sender.send(ticks, None) == [DUPLICATE] * 4
    pushed = client.lrange("jobs", 0, -1)[::-1]
    for raw, (tpl, job, run_id) in zip(pushed, out, strict=True):
        enqueued = decode(raw)[1]["enqueued_at"]
        assert raw == tpl.render(task_name(job), run_id, scheduled.isoformat(), enqueued)
    assert client.lrange("q", 0, -1) == ["p:e/z:1700000000000"]


def test_fencing_refuses_a_send_without_the_lease(client: redis.Redis) -> None:
    sender = TickSender(client)
    lease = Lease(client, 5.0)
    assert lease.acquire()
    assert sender.send([tick("e/a", 1000)], lease.token) == [SENT]
    with pytest.raises(NotLeader):
        sender.send([tick("e/a", 2000)], "not-the-token")
    assert client.llen("q") == 1


def test_large_batches_are_chunked_and_all_sent(client: redis.Redis) -> None:
    sender = TickSender(client)
    batch = [tick(f"e/j{i}", 1000) for i in range(1234)]
    calls: list[int] = []
    # The caller hears after each chunk (three here): its chance to renew the lease, on
    # another connection, while the rest of the batch goes through.
    lease = Lease(client, 2.0)
    assert lease.acquire()
    statuses = sender.send_prepared(
        sender.prepare(batch), lease.token, lambda: calls.append(int(lease.renew().held))
    )
    assert statuses == [SENT] * 1234 and calls == [1, 1, 1]
    assert lease.release()
    assert client.llen("q") == 1234
    client.script_flush()  # a restarted Redis forgets scripts: reloaded transparently
    assert sender.send([tick("e/j0", 2000)], None) == [SENT]


class _Exploding:
    def next_after(self, dt: datetime) -> datetime:
        raise RuntimeError("boom")


def test_one_broken_schedule_does_not_stop_the_others(redis_url: str) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="sp-beat-"))
    profile = write_profile(workdir / "profile.yaml", beat_profile())
    beat = Beat(str(profile), redis_url=redis_url, beat_id="inproc", lease_ttl=2.0)
    bad = f"{EXT}/also-every-second"
    beat.registry.jobs[bad] = dataclasses.replace(
        beat.registry.jobs[bad],
        cron=_Exploding(),  # type: ignore[arg-type]
    )
    thread = threading.Thread(target=beat.run, daemon=True)
    thread.start()
    client = redis.Redis.from_url(redis_url)
    try:
        wait_for(
            lambda: len([m for m in messages(client) if m.job == f"{EXT}/every-second"]) >= 2,
            6,
            what="the healthy job to fire twice",
        )
        assert beat.is_leader
        assert not [m for m in messages(client) if m.job == bad]
    finally:
        beat.stop()
        thread.join(10)
        client.close()
    assert not thread.is_alive()


def test_a_leader_whose_lease_lapsed_takes_it_again_and_keeps_its_schedule(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The lease expired under the leader (a pause) and no other beat took it: its next
    renewal, or a send the fencing refused, takes it again; the leader stays leader with
    the schedule it had. Only a lease another beat holds makes it step down."""
    workdir = Path(tempfile.mkdtemp(prefix="sp-beat-"))
    path = write_profile(workdir / "profile.yaml", _two_job_profile("* * * * * *"))
    beat = Beat(str(path), redis_url=redis_url, beat_id="inproc", lease_ttl=30.0)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    caplog.set_level(logging.INFO, logger="beat")

    def retaken() -> int:
        return len([r for r in caplog.records if r.getMessage().startswith("lease had expired")])

    try:
        beat._connect()
        beat._try_acquire()
        assert beat.is_leader and beat._lease is not None
        token, head = beat._lease.token, beat._core.head()
        assert head is not None

        client.delete(Keys.LEASE)  # expired: no one holds it
        beat._renew()
        assert beat.is_leader and client.get(Keys.LEASE) == token and retaken() == 1
        assert beat._core.head() == head  # the schedule was kept, not rebuilt

        # Lapsed again before a send: the fencing refuses it, the lease is taken again
        # and the instant goes out once.
        client.delete(Keys.LEASE)
        wait_for(lambda: time.time() * 1000 >= head[0], 3, what="the instant")
        beat._send_due()
        assert beat.is_leader and client.get(Keys.LEASE) == token and retaken() == 2
        sent = [m for m in messages(client) if m.scheduled_ms == head[0]]
        assert sorted(m.job for m in sent) == sorted(head[1])

        client.set(Keys.LEASE, "another-beat")  # another beat leads now: step down
        beat._renew()
        assert not beat.is_leader and client.get(Keys.LEASE) == "another-beat"
    finally:
        beat._shutdown()
        client.close()


def test_a_tick_without_template_is_stamped_with_its_send_time(client: redis.Redis) -> None:
    """Parameters holding '@@' rule out the shared template: the whole message is built
    ahead, yet its enqueued_at is the send time, not the scheduled instant."""
    workdir = Path(tempfile.mkdtemp(prefix="sp-beat-"))
    registry = build_registry(
        load_profile(str(write_profile(workdir / "profile.yaml", beat_profile())))
    )
    plain = registry.jobs[f"{EXT}/every-second"]
    odd = dataclasses.replace(
        registry.jobs[f"{EXT}/also-every-second"], parameters={"note": "a@@b", "n": 1}
    )
    ms = 1_700_000_000_000  # built for an instant long past, sent now
    builder = TickBuilder()
    iso = from_ms(ms).isoformat()
    ticks = [builder.tick(plain, ms, iso), builder.tick(odd, ms, iso)]
    assert ticks[0].template is not None and ticks[1].template is None
    sender = TickSender(client)
    batch = sender.prepare(ticks)
    before = datetime.now(UTC)
    assert sender.send_prepared(batch, None) == [SENT, SENT]
    after = datetime.now(UTC)
    by_job = {m.job: m for m in messages(client)}
    assert set(by_job) == {plain.key, odd.key}
    for raw in client.lrange(QUEUE, 0, -1):
        headers, kwargs = decode(raw)
        assert kwargs["scheduled_for"] == iso
        assert before <= datetime.fromisoformat(kwargs["enqueued_at"]) <= after
        if headers["task"] == task_name(odd.key):
            assert kwargs["parameters"] == {"note": "a@@b", "n": 1}
            assert kwargs["run_id"] == headers["id"] == tick_run_id(odd.key, from_ms(ms))


def test_max_runs_are_counted_in_the_claim_and_stop_the_sends(client: redis.Redis) -> None:
    from beat.ticks import EXHAUSTED, SENT_LAST

    sender = TickSender(client)
    job, free = f"{EXT}/budgeted", f"{EXT}/free"
    tpl = tick_template("q", Trigger.SCHEDULE, "{}")
    assert tpl is not None

    def on_time(key: str, ms: int, budget: int | None) -> OutTick:
        run_id = tick_run_id(key, from_ms(ms))
        iso = from_ms(ms).isoformat()
        return OutTick.templated(key, ms, tpl, task_name(key), run_id, iso, budget)

    assert sender.send([on_time(job, 1000, 3), on_time(free, 1000, None)], None) == [SENT, SENT]
    assert sender.all_accepted
    # A catch-up run (a whole message) counts too; a skip record does not.
    catch = OutTick.full(job, 2000, "q", "catch-up", 3)
    skip = OutTick.full(job, 2500, "q", "skip record")
    assert sender.send([catch, skip], None) == [SENT, SENT]
    assert client.hget(Keys.SCHEDULED_RUNS, job) == "2"
    # Replaying a batch (ambiguous network failure) counts nothing twice.
    assert sender.send([catch], None) == [DUPLICATE]
    assert sender.send([on_time(job, 3000, 3), on_time(free, 3000, None)], None) == [
        SENT_LAST,
        SENT,
    ]
    assert not sender.all_accepted
    assert sender.send([on_time(job, 4000, 3), OutTick.full(job, 5000, "q", "c", 3)], None) == [
        EXHAUSTED,
        EXHAUSTED,
    ]
    assert control.scheduled_runs(client, [job, free]) == {job: 3, free: 0}
    assert not client.hexists(Keys.SCHEDULED_RUNS, free)  # jobs without a budget: no count
    assert client.hget(Keys.LAST, job) == "5000"  # refused ticks are handled: no catch-up
    # Exactly three runs of the budgeted job went out (the skip record is not a run).
    pushed = client.lrange("q", 0, -1)[::-1]
    runs = [p for p in pushed if p == "catch-up" or (p[0] == "{" and task_name(job) in p)]
    assert len(runs) == 3 and "skip record" in pushed
    # A disabled job's ticks are not runs either.
    client.hdel(Keys.SCHEDULED_RUNS, job)
    control.disable(client, job)
    assert sender.send([on_time(job, 6000, 1)], None) == [DISABLED]
    assert control.scheduled_runs(client, [job]) == {job: 0}


def test_pause_notes_live_beside_the_disabled_set(client: redis.Redis) -> None:
    at = datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert control.disable(client, "a/b", note="migrating", by="ana@host", at=at)
    assert control.is_disabled(client, "a/b")
    assert control.pauses(client) == {"a/b": control.Pause("migrating", "ana@host", at)}
    # Pausing again replaces the note; the set is unchanged.
    assert not control.disable(client, "a/b", note="still migrating", by="bo@host", at=at)
    assert control.pauses(client)["a/b"].note == "still migrating"
    # A pause from an older version (set only) shows without details.
    client.sadd(Keys.DISABLED, "c/d")
    assert control.pauses(client)["c/d"] == control.Pause(None, None, None)
    assert control.enable(client, "a/b")
    assert not client.hexists(Keys.PAUSE_NOTES, "a/b") and "a/b" not in control.pauses(client)
    assert not control.enable(client, "a/b")


def _two_job_profile(every: str, parameters: str = "{}") -> str:
    return (
        "extensions: [tests.beat_fixtures:BeatTestExtension]\n"
        "scheduler:\n"
        f"  defaults: {{misfire_grace: 30s, queue: {QUEUE}}}\n"
        "  jobs:\n"
        f"    - {{extension: {EXT}, job: every-second, schedule: '{every}'}}\n"
        f"    - {{extension: {EXT}, job: also-every-second, schedule: '{every}',"
        f" parameters: {parameters}}}\n"
    )


def test_a_reload_keeps_the_next_instants_batch_of_unchanged_jobs(redis_url: str) -> None:
    """The batch of the next instant is built ahead; a reload keeps the ticks of the jobs
    it leaves unchanged (at 100,000 jobs, building them again takes seconds), builds the
    changed ones anew, and the instant then goes out once per job, as reloaded."""
    workdir = Path(tempfile.mkdtemp(prefix="sp-beat-"))
    path = write_profile(workdir / "profile.yaml", _two_job_profile("*/2 * * * * *"))
    beat = Beat(str(path), redis_url=redis_url, beat_id="inproc", lease_ttl=30.0)
    client = redis.Redis.from_url(redis_url)
    plain, changed = f"{EXT}/every-second", f"{EXT}/also-every-second"
    try:
        beat._connect()
        beat._try_acquire()
        assert beat.is_leader
        # Send the first instant: the next one is then two seconds away, time for the
        # steps below (a reload included) even on a busy machine.
        first = beat._core.head()
        assert first is not None
        wait_for(lambda: time.time() * 1000 >= first[0], 3, what="the first instant")
        beat._send_due()
        head = beat._core.head()
        assert head is not None and head[0] / 1000 - time.time() > 1.0
        due = head[0]
        beat._prebuild()
        assert beat._ready is not None and beat._ready.due_ms == due
        before = dict(beat._prebuilt)
        write_profile(path, _two_job_profile("*/2 * * * * *", "{n: 1}"))
        beat._reload("test")
        beat._prebuild()
        assert beat._ready is not None and beat._ready.due_ms == due
        assert beat._prebuilt[plain] is before[plain]  # carried over, not built again
        assert beat._prebuilt[changed] is not before[changed]
        wait_for(lambda: time.time() * 1000 >= due, 3, what="the instant")
        beat._send_due()
        sent = [m for m in messages(client) if m.scheduled_ms == due]
        assert sorted(m.job for m in sent) == sorted([plain, changed])
        params = {
            headers["task"]: kwargs["parameters"]
            for headers, kwargs in map(decode, client.lrange(QUEUE, 0, -1))
            if kwargs["scheduled_for"] == from_ms(due).isoformat()
        }
        assert params == {task_name(plain): {}, task_name(changed): {"n": 1}}
        # The next instant is scheduled for both (nothing lost by the swap).
        nxt = beat._core.head()
        assert (
            nxt is not None and nxt[0] == due + 2000 and sorted(nxt[1]) == sorted([plain, changed])
        )
    finally:
        beat._shutdown()
        client.close()


@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG])
def test_a_big_instant_logs_one_summary_line_and_its_fire_lines_at_debug(
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    level: int,
) -> None:
    """Past FIRE_LINES_MAX runs in a second, the fire lines go to DEBUG and one INFO line
    says how many went out and how late; up to it, each run has its INFO line."""
    workdir = Path(tempfile.mkdtemp(prefix="sp-beat-"))
    path = write_profile(workdir / "profile.yaml", _two_job_profile("* * * * * *"))
    beat = Beat(str(path), redis_url=redis_url, beat_id="inproc", lease_ttl=30.0)
    caplog.set_level(level, logger="beat")

    def send_next() -> list[logging.LogRecord]:
        caplog.clear()
        head = beat._core.head()
        assert head is not None
        wait_for(lambda: time.time() * 1000 >= head[0], 3, what="the instant")
        beat._send_due()
        return [r for r in caplog.records if r.name == "beat"]

    try:
        beat._connect()
        beat._try_acquire()
        # Exactly the budget: a send draws on it once (drawn twice, 4 > 2, the lines
        # would go to DEBUG).
        monkeypatch.setattr(service, "FIRE_LINES_MAX", 2)
        small = send_next()  # two runs: a line each, as before
        assert [r.levelno for r in small if r.getMessage() == "fire"] == [logging.INFO] * 2
        assert not [r for r in small if r.getMessage() == "ticks sent"]
        # The same through a batch built ahead (the beat's usual path).
        beat._prebuild()
        assert beat._ready is not None
        ahead = send_next()
        assert [r.levelno for r in ahead if r.getMessage() == "fire"] == [logging.INFO] * 2
        assert not [r for r in ahead if r.getMessage() == "ticks sent"]
        monkeypatch.setattr(service, "FIRE_LINES_MAX", 1)
        big = send_next()
        fires = [r for r in big if r.getMessage() == "fire"]
        assert [r.levelno for r in fires] == ([logging.DEBUG] * 2 if level == logging.DEBUG else [])
        (summary,) = [r for r in big if r.getMessage() == "ticks sent"]
        assert summary.levelno == logging.INFO
        fields = summary.fields  # type: ignore[attr-defined]
        assert fields["sent"] == 2 and fields["fire_lines"] == "debug"
        assert 0 <= fields["lag_ms"] < 5000
        assert fields["scheduled_for"].endswith(".000Z") and "scheduled_until" not in fields
    finally:
        beat._shutdown()


def test_the_next_instants_batch_is_built_in_slices_and_sent_whole(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building ahead returns to the loop between slices (at 100,000 jobs the whole batch
    takes longer than the lease); the slices add up to the whole instant, sent once."""
    workdir = Path(tempfile.mkdtemp(prefix="sp-beat-"))
    path = write_profile(workdir / "profile.yaml", _two_job_profile("*/2 * * * * *"))
    beat = Beat(str(path), redis_url=redis_url, beat_id="inproc", lease_ttl=30.0)
    client = redis.Redis.from_url(redis_url)
    monkeypatch.setattr(service, "PREBUILD_SLICE_S", 0.0)
    monkeypatch.setattr(service, "PREBUILD_STEP", 1)
    try:
        beat._connect()
        beat._try_acquire()
        first = beat._core.head()
        assert first is not None
        wait_for(lambda: time.time() * 1000 >= first[0], 3, what="the first instant")
        beat._send_due()
        head = beat._core.head()
        assert head is not None and len(head[1]) == 2
        due = head[0]
        beat._prebuild()  # one tick per slice: half of the batch
        assert beat._ready is None and beat._building is not None
        assert len(beat._building.built) == 1
        beat._prebuild()
        assert beat._ready is not None and beat._ready.due_ms == due and beat._building is None
        wait_for(lambda: time.time() * 1000 >= due, 3, what="the instant")
        beat._send_due()
        sent = sorted(m.job for m in messages(client) if m.scheduled_ms == due)
        assert sent == sorted(head[1])
    finally:
        beat._shutdown()
        client.close()
