"""The beat process: election, the tick loop, catch-up, reload, outages and shutdown.

One thread does everything, in a loop that sleeps on a :class:`threading.Event` exactly
until the earliest of: the next due instant, the next lease renewal / election attempt,
the next profile-file check. Signals (SIGTERM/SIGINT stop, SIGHUP reload) and
:meth:`Beat.stop` set the event, so they act at once. A single thread keeps the state
simple: the lease is renewed between batches, and a batch of 10 000 ticks takes a few
tens of milliseconds, far below the renewal margin (a third of the TTL).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from jobs_core.errors import ConfigError
from jobs_core.profile import DEFAULT_PROFILE_FILE, PROFILE_ENV, load_profile
from jobs_core.registry import JobDefinition, JobRegistry, build_registry
from jobs_core.status import Trigger
from jobs_core.urls import check_redis_url, mask_url
from jobs_core.wire import DEFAULT_REDIS_URL, Keys

from .build import TickBuilder, bootstrap_message, record_out
from .collector import IdleCollector
from .lease import Lease
from .logs import event
from .schedule import CatchUp, DueHeap, catch_up, from_ms, iso, next_ms
from .ticks import DISABLED, DUPLICATE, SENT, NotLeader, OutTick, Prepared, TickSender

#: How often the profile file's mtime is looked at.
PROFILE_CHECK_S = 1.0
#: Catch-up records at most this many skipped ticks one by one per job, then summarises.
SKIP_CAP = 100
#: Messages are built ahead for the next instant, but not so close to it that building
#: would delay the send (building stops this long before the instant).
PREBUILD_GUARD_S = 0.002
#: ... and not at once after a send either: the moment ticks land is when workers (and
#: Redis) need the CPU, so building the next batch waits this long after a send, unless
#: the next instant is closer than PREBUILD_LEAD_S.
PREBUILD_QUIET_S = 0.05
PREBUILD_LEAD_S = 0.25
#: The loop wakes this long before an instant whose batch is ready (see _warm_up).
WARM_UP_S = 0.002

_REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, ConnectionError, OSError)


def resolve_profile_path(path: str | None) -> str | None:
    """The file the profile comes from, as :func:`load_profile` would pick it."""
    if path:
        return path
    env = os.environ.get(PROFILE_ENV)
    if env:
        return env
    if Path(DEFAULT_PROFILE_FILE).is_file():
        return DEFAULT_PROFILE_FILE
    return None


def _stamp(path: str | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _now_ms(now: float) -> int:
    return int(now * 1000)


@dataclass
class _Pending:
    """Bookkeeping of one message of a batch, for logging after the send."""

    job_key: str
    due_ms: int
    trigger: Trigger
    kind: str  # "fire" | "skip" | "summary"


@dataclass(frozen=True)
class _Ready:
    """The encoded batch of instant ``due_ms``, valid while its heap bucket is unchanged."""

    due_ms: int
    bucket: list[str]
    size: int
    batch: Prepared


class Beat:
    """One beat process. :meth:`run` blocks until :meth:`stop` (or a signal)."""

    def __init__(
        self,
        profile_path: str | None = None,
        *,
        redis_url: str | None = None,
        beat_id: str | None = None,
        lease_ttl: float = 5.0,
        assume_leader: bool = False,
    ) -> None:
        if lease_ttl <= 0:
            raise ConfigError(f"lease ttl must be > 0 seconds, got {lease_ttl}")
        self.profile_path = resolve_profile_path(profile_path)
        profile = load_profile(self.profile_path)  # a ProfileError stops the start
        self.registry: JobRegistry = build_registry(profile)
        self.redis_url = check_redis_url(redis_url or profile.redis_url or DEFAULT_REDIS_URL)
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.beat_id = beat_id or f"beat-{self.host}-{self.pid}"
        self.lease_ttl = lease_ttl
        self.assume_leader = assume_leader
        self.renew_every = lease_ttl / 3
        self.poll_every = min(max(lease_ttl / 10, 0.05), 0.5)
        self.session_ttl_ms = int(lease_ttl * 3000)

        self._wake = threading.Event()
        self._stopping = False
        self._reload_requested = False
        self._profile_stamp = _stamp(self.profile_path)
        self._next_profile_check = 0.0

        self._client: redis.Redis | None = None
        self._lease: Lease | None = None
        self._sender: TickSender | None = None
        self._leader = False
        self._leader_since = 0.0
        self._next_renew = 0.0
        self._next_acquire = 0.0
        self._next_session_touch = 0.0
        self._session = uuid.uuid4().hex  # our candidate; replaced by the live one
        self._bootstrapped_session: str | None = None
        self._redis_down_since: float | None = None

        self._heap = DueHeap()
        self._local_last: dict[str, int] = {}
        self._prebuilt_for: int | None = None
        self._prebuilt: dict[str, OutTick] = {}
        self._ready: _Ready | None = None
        self._builder = TickBuilder()
        self._quiet_until = 0.0
        self._collector = IdleCollector()

    # ------------------------------------------------------------------ control

    def stop(self) -> None:
        """Ask the loop to finish: the lease is released before :meth:`run` returns."""
        self._stopping = True
        self._wake.set()

    def request_reload(self) -> None:
        self._reload_requested = True
        self._wake.set()

    @property
    def is_leader(self) -> bool:
        return self._leader

    # ------------------------------------------------------------------ main loop

    def run(self) -> None:
        event(
            logging.INFO,
            "beat starting",
            beat_id=self.beat_id,
            redis=mask_url(self.redis_url),
            profile=self.profile_path or "<defaults>",
            jobs=len(self.registry.scheduled()),
            lease_ttl_s=self.lease_ttl,
        )
        backoff = 0.1
        try:
            with self._collector:
                while not self._stopping:
                    try:
                        self._connect()
                        self._cycle()
                        backoff = 0.1
                    except _REDIS_ERRORS as exc:
                        self._on_redis_error(exc)
                        self._sleep(backoff * random.uniform(0.5, 1.0))
                        backoff = min(backoff * 2, 2.0)
        finally:
            self._shutdown()

    def _connect(self) -> None:
        if self._client is not None:
            return
        client = redis.Redis.from_url(
            self.redis_url,
            decode_responses=True,
            socket_timeout=max(5.0, self.lease_ttl),
            socket_connect_timeout=2.0,
            # We retry ourselves, with backoff, and re-run the election afterwards.
            retry=Retry(NoBackoff(), 0),
        )
        try:
            client.ping()
            self._lease = Lease(client, self.lease_ttl)
            self._sender = TickSender(client)
        except BaseException:
            client.close()
            raise
        self._client = client
        if self._redis_down_since is not None:
            down = time.time() - self._redis_down_since
            event(logging.WARNING, "redis reconnected", down_s=round(down, 3))
            self._redis_down_since = None
        self._next_acquire = 0.0
        self._next_session_touch = 0.0

    def _on_redis_error(self, exc: BaseException) -> None:
        if self._redis_down_since is None:
            self._redis_down_since = time.time()
            event(
                logging.ERROR,
                "redis unavailable; reconnecting with backoff",
                error=f"{type(exc).__name__}: {exc}",
                redis=mask_url(self.redis_url),
            )
        if self._leader:
            self._lose_leadership("redis connection lost")
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
        self._client = None
        self._lease = None
        self._sender = None

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and not self._stopping:
            self._wake.wait(seconds)
        self._wake.clear()

    def _cycle(self) -> None:
        if self._leader:
            # Ticks first: the housekeeping below (lease renewal, session, profile
            # check) can wait a few milliseconds, the instant cannot.
            self._send_due()
        now = time.time()
        if self._reload_requested:
            self._reload_requested = False
            self._reload("SIGHUP")
        elif now >= self._next_profile_check:
            self._next_profile_check = now + PROFILE_CHECK_S
            stamp = _stamp(self.profile_path)
            if stamp != self._profile_stamp:
                self._profile_stamp = stamp
                self._reload("profile file changed")
        if now >= self._next_session_touch:
            self._touch_session()
            self._next_session_touch = now + self.renew_every
        if self._leader:
            if now >= self._next_renew:
                self._renew()
        elif now >= self._next_acquire:
            self._try_acquire()
        if self._leader:
            self._send_due()
            self._prebuild()
        wake_at = min(self._next_profile_check, self._next_session_touch)
        if self._leader:
            wake_at = min(wake_at, self._next_renew)
            due = self._heap.next_due()
            if due is not None:
                ready = self._ready is not None and self._ready.due_ms == due
                wake_at = min(wake_at, due / 1000 - (WARM_UP_S if ready else 0.0))
                # (Too close to the instant to build ahead: it is built when sent.)
                if self._prebuilt_for != due and time.time() < due / 1000 - PREBUILD_GUARD_S:
                    wake_at = min(wake_at, self._prebuild_at(due))
        else:
            wake_at = min(wake_at, self._next_acquire)
        self._collector.idle(wake_at - time.time())
        self._sleep(wake_at - time.time())

    # ------------------------------------------------------------------ leadership

    def _heartbeat(self) -> dict[str, Any]:
        now = time.time()
        return {
            "beat_id": self.beat_id,
            "host": self.host,
            "pid": self.pid,
            "since": datetime.fromtimestamp(self._leader_since or now, UTC).isoformat(),
            "heartbeat": datetime.fromtimestamp(now, UTC).isoformat(),
            "heartbeat_ms": _now_ms(now),
            "lease_ttl_ms": int(self.lease_ttl * 1000),
            "jobs": len(self._heap),
        }

    def _try_acquire(self) -> None:
        assert self._lease is not None
        started = time.time()
        self._next_acquire = started + self.poll_every
        if self.assume_leader:
            won = True
        else:
            self._leader_since = started
            won = self._lease.acquire(self._heartbeat())
        if won:
            self._leader = True
            self._leader_since = started
            self._next_renew = started + self.renew_every
            event(logging.INFO, "became leader", beat_id=self.beat_id, session=self._session)
            self._on_elected()

    def _renew(self) -> None:
        assert self._lease is not None
        started = time.time()
        if self.assume_leader or self._lease.renew(self._heartbeat()):
            self._next_renew = started + self.renew_every
            return
        self._lose_leadership("lease lost to another beat")

    def _lose_leadership(self, reason: str) -> None:
        self._leader = False
        self._heap = DueHeap()
        self._clear_prebuilt()
        self._next_acquire = time.time() + self.poll_every
        event(logging.WARNING, "leadership lost", beat_id=self.beat_id, reason=reason)

    def _token(self) -> str | None:
        if self.assume_leader or self._lease is None:
            return None
        return self._lease.token

    def _touch_session(self) -> None:
        assert self._client is not None
        live = self._client.eval(
            _TOUCH_SESSION, 1, Keys.SESSION, self._session, self.session_ttl_ms
        )
        self._session = str(live)

    def _on_elected(self) -> None:
        self._touch_session()
        if self.registry.scheduler_enabled:
            self._bootstrap()
        self._schedule_all(catch_up_missed=True)

    def _bootstrap(self) -> None:
        """Enqueue the bootstrap jobs once per deployment session (see the package doc)."""
        assert self._client is not None
        if not self.registry.bootstrap or self._bootstrapped_session == self._session:
            return
        now = datetime.now(UTC)
        args: list[Any] = [self._token() or "", self._session]
        for key in self.registry.bootstrap:
            job = self.registry.jobs.get(key)
            if job is None:
                continue
            args += list(bootstrap_message(job, self._session, now))
        result = int(self._client.eval(_BOOTSTRAP, 2, Keys.LEASE, Keys.BOOTSTRAPPED, *args))
        if result == -1:
            self._lose_leadership("lease lost before bootstrap")
            return
        self._bootstrapped_session = self._session
        if result == 1:
            event(
                logging.INFO,
                "bootstrap jobs enqueued",
                jobs=",".join(self.registry.bootstrap),
                session=self._session,
            )

    # ------------------------------------------------------------------ scheduling

    def _scheduled_jobs(self, registry: JobRegistry) -> list[JobDefinition]:
        if not registry.scheduler_enabled:
            return []
        return [j for j in registry if j.cron is not None and j.enabled]

    def _first_due(self, job: JobDefinition, after_ms: int) -> int | None:
        """Next instant of ``job`` after ``after_ms``; None (logged) if its schedule fails."""
        assert job.cron is not None
        try:
            return next_ms(job.cron, after_ms)
        except Exception as exc:
            # One broken schedule must not take the beat (and every other job) down.
            event(
                logging.ERROR,
                "schedule failed; job dropped until the next reload",
                job=job.key,
                error=f"{type(exc).__name__}: {exc}",
            )
            return None

    def _schedule_all(self, *, catch_up_missed: bool) -> None:
        """Rebuild the heap for every job; catch up what no beat sent while we did not lead."""
        assert self._client is not None
        self._heap = DueHeap()
        self._clear_prebuilt()
        jobs = self._scheduled_jobs(self.registry)
        now = time.time()
        now_ms = _now_ms(now)
        remote: dict[str, int] = {}
        if catch_up_missed and jobs:
            for i in range(0, len(jobs), 1000):
                part = [j.key for j in jobs[i : i + 1000]]
                values = self._client.hmget(Keys.LAST, part)
                remote.update({k: int(v) for k, v in zip(part, values, strict=True) if v})
        out: list[OutTick] = []
        meta: list[_Pending] = []
        cu_cache: dict[tuple[Any, int, float], CatchUp] = {}
        for job in jobs:
            last = max(remote.get(job.key, 0), self._local_last.get(job.key, 0))
            if catch_up_missed and last:
                try:
                    self._add_catch_up(job, last, now_ms, out, meta, cu_cache)
                except Exception as exc:
                    event(
                        logging.ERROR,
                        "catch-up failed; job dropped until the next reload",
                        job=job.key,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                    continue
            due = self._first_due(job, now_ms)
            if due is not None:
                self._heap.push(job.key, due)
        if out:
            self._send(out, meta)

    def _add_catch_up(
        self,
        job: JobDefinition,
        last_ms: int,
        now_ms: int,
        out: list[OutTick],
        meta: list[_Pending],
        cache: dict[tuple[Any, int, float], CatchUp] | None = None,
    ) -> None:
        """Append the messages recording/firing the ticks of ``job`` in ``(last, now]``."""
        assert job.cron is not None
        grace = job.policy.misfire_grace
        # Jobs sharing a schedule and a last tick share the arithmetic (thousands of
        # per-second jobs after a stall must not each walk the cron engine).
        memo = (job.cron, last_ms, grace)
        cu = cache.get(memo) if cache is not None else None
        if cu is None:
            cu = catch_up(job.cron, last_ms, now_ms, grace, skip_cap=SKIP_CAP)
            if cache is not None:
                cache[memo] = cu
        if cu.empty:
            return
        enqueued = from_ms(now_ms)

        def add(due_ms: int, trigger: Trigger, kind: str, reason: str | None) -> None:
            out.append(record_out(job, due_ms, trigger, enqueued, skip_reason=reason))
            meta.append(_Pending(job.key, due_ms, trigger, kind))

        if cu.dropped and cu.dropped_last_ms is not None and cu.dropped_first_ms is not None:
            more = "at least " if cu.dropped >= 10_000 else ""
            reason = (
                f"missed while no beat was running: {more}{cu.dropped} older ticks from "
                f"{iso(cu.dropped_first_ms)} to {iso(cu.dropped_last_ms)} were dropped "
                f"(beyond misfire_grace {grace:g}s; only the newest {SKIP_CAP} are "
                "recorded one by one)"
            )
            event(
                logging.WARNING,
                "missed ticks dropped",
                job=job.key,
                count=f"{more}{cu.dropped}",
                first=iso(cu.dropped_first_ms),
                last=iso(cu.dropped_last_ms),
            )
            add(cu.dropped_last_ms, Trigger.CATCH_UP, "summary", reason)
        for due_ms in cu.skipped:
            late = (now_ms - due_ms) / 1000
            reason = (
                f"missed while no beat was running: {late:.1f}s late, beyond "
                f"misfire_grace {grace:g}s"
            )
            add(due_ms, Trigger.CATCH_UP, "skip", reason)
        if cu.fire_ms is not None:
            if cu.coalesced:
                event(
                    logging.INFO,
                    "missed ticks coalesced",
                    job=job.key,
                    count=cu.coalesced,
                    into=iso(cu.fire_ms),
                )
            add(cu.fire_ms, Trigger.CATCH_UP, "fire", None)

    def _send_due(self) -> None:
        prepared, head = self._ready, self._heap.peek()
        if prepared is not None and head is not None and head[0] == prepared.due_ms:
            self._warm_up(prepared.due_ms / 1000)
        now = time.time()
        now_ms = _now_ms(now)
        if (
            prepared is not None
            and head is not None
            and head[0] == prepared.due_ms <= now_ms < prepared.due_ms + 1000
            and head[1] is prepared.bucket
            and len(prepared.bucket) == prepared.size
        ):
            # The usual case: the batch of the earliest instant was encoded ahead and
            # its bucket has not changed since. Send first, book-keep after, so the lag
            # is the claim script's alone. (Woken less than a second late, no job can
            # have a second tick due: cron's finest period is one second. Another
            # instant that is due too goes out on the next pass of the loop.)
            self._heap.pop_first()
            self._clear_prebuilt()
            due_ms, bucket = prepared.due_ms, prepared.bucket
            try:
                self._send_prepared(
                    prepared.batch,
                    lambda: [_Pending(k, due_ms, Trigger.SCHEDULE, "fire") for k in bucket],
                )
            finally:
                self._schedule_next(due_ms, bucket)
                self._quiet_until = time.time() + PREBUILD_QUIET_S
            return
        due = self._heap.pop_due(now_ms)
        if not due:
            return
        prebuilt = self._prebuilt
        out: list[OutTick] = []
        meta: list[_Pending] = []
        jobs = self.registry.jobs
        next_cache: dict[tuple[str | None, int], int] = {}
        stall_cache: dict[tuple[Any, int, float], CatchUp] = {}
        iso_of: dict[int, str] = {}
        for due_ms, key in due:
            job = jobs.get(key)
            if job is None or job.cron is None:
                continue
            nxt = self._next_cached(job, due_ms, next_cache)
            if nxt is None:
                continue
            if nxt <= now_ms:
                # More than one tick of this job is due: the process stalled (suspend,
                # swap, a long outage). Coalesce like a missed tick instead of firing a
                # burst of stale ticks.
                self._add_catch_up(job, due_ms - 1, now_ms, out, meta, stall_cache)
                nxt = self._next_cached(job, now_ms, next_cache)
                if nxt is not None:
                    self._heap.push(key, nxt)
                continue
            ready = prebuilt.get(key) if self._prebuilt_for == due_ms else None
            if ready is None:
                scheduled_iso = iso_of.get(due_ms)
                if scheduled_iso is None:
                    scheduled_iso = iso_of[due_ms] = from_ms(due_ms).isoformat()
                ready = self._out_tick(job, due_ms, scheduled_iso)
            out.append(ready)
            meta.append(_Pending(key, due_ms, Trigger.SCHEDULE, "fire"))
            self._heap.push(key, nxt)
        self._clear_prebuilt()
        if out:
            self._send(out, meta)

    def _warm_up(self, instant: float) -> None:
        """Woken WARM_UP_S before a prepared instant: wake Redis, then wait it out.

        After a second of idling, Redis and this process are cold (on a VM, idle vCPUs
        sleep): the first round trip takes about twice as long as the next. One PING
        just before the instant takes that cost off the send, and the last stretch is
        slept with ``time.sleep``, which oversleeps less than a timed event wait.
        """
        left = instant - time.time()
        if not 0 < left <= WARM_UP_S * 2 or self._client is None:
            return
        self._client.ping()
        left = instant - time.time()
        if left > 0:
            time.sleep(left)

    def _schedule_next(self, due_ms: int, sent: list[str]) -> None:
        """Push the next instant of each job whose tick of ``due_ms`` was just sent."""
        jobs = self.registry.jobs
        next_cache: dict[tuple[str | None, int], int] = {}
        for key in sent:
            job = jobs.get(key)
            if job is None or job.cron is None:
                continue
            nxt = self._next_cached(job, due_ms, next_cache)
            if nxt is not None:
                self._heap.push(key, nxt)

    def _next_cached(
        self, job: JobDefinition, after_ms: int, cache: dict[tuple[str | None, int], int]
    ) -> int | None:
        """:meth:`_first_due`, shared by the jobs of one schedule within one batch.

        Keyed by the expression text (its hash is cached by str), not by the
        CronSchedule: jobs sharing a schedule share one next_after per instant.
        """
        key = (job.schedule, after_ms)
        nxt = cache.get(key)
        if nxt is None:
            nxt = self._first_due(job, after_ms)
            if nxt is not None:
                cache[key] = nxt
        return nxt

    def _send(self, out: list[OutTick], meta: list[_Pending]) -> None:
        assert self._sender is not None
        self._send_prepared(self._sender.prepare(out), lambda: meta)

    def _send_prepared(self, batch: Prepared, meta: Callable[[], list[_Pending]]) -> None:
        """Send ``batch``; ``meta`` (built after the send) describes its ticks in order."""
        assert self._sender is not None
        try:
            statuses = self._sender.send_prepared(batch, self._token())
        except NotLeader:
            self._lose_leadership("lease lost (fencing check refused the send)")
            return
        done = time.time() * 1000
        info = logging.getLogger("beat").isEnabledFor(logging.INFO)
        debug = logging.getLogger("beat").isEnabledFor(logging.DEBUG)
        local_last = self._local_last
        for m, status in zip(meta(), statuses, strict=True):
            if status in (SENT, DISABLED) and m.due_ms > local_last.get(m.job_key, 0):
                local_last[m.job_key] = m.due_ms
            if status == SENT:
                if not info:
                    continue
                lag = round(done - m.due_ms, 1)
                if m.kind == "fire":
                    event(
                        logging.INFO,
                        "fire",
                        job=m.job_key,
                        scheduled_for=iso(m.due_ms),
                        lag_ms=lag,
                        trigger=m.trigger,
                    )
                else:
                    event(
                        logging.INFO,
                        "skip recorded",
                        job=m.job_key,
                        scheduled_for=iso(m.due_ms),
                        kind=m.kind,
                    )
            elif status == DUPLICATE:
                event(
                    logging.INFO,
                    "tick already handled by another beat",
                    job=m.job_key,
                    scheduled_for=iso(m.due_ms),
                )
            elif status == DISABLED and debug:
                event(
                    logging.DEBUG,
                    "tick not sent: job disabled",
                    job=m.job_key,
                    scheduled_for=iso(m.due_ms),
                )

    def _out_tick(self, job: JobDefinition, due_ms: int, scheduled_iso: str) -> OutTick:
        return self._builder.tick(job, due_ms, scheduled_iso)

    def _clear_prebuilt(self) -> None:
        self._prebuilt_for = None
        self._prebuilt = {}
        self._ready = None

    def _prebuild_at(self, due_ms: int) -> float:
        """When to build the batch of instant ``due_ms``."""
        return min(self._quiet_until, due_ms / 1000 - PREBUILD_LEAD_S)

    def _prebuild(self) -> None:
        """Build and encode the batch of the next instant now, so sending it is one write.

        Their ``enqueued_at`` is filled in by the claim script when they are sent. When
        time runs out (or a message fails to build), the ticks built so far are kept and
        the rest is built at send time.
        """
        head = self._heap.peek()
        if head is None:
            return
        due_ms, keys_due = head
        if self._prebuilt_for == due_ms:
            return
        now = time.time()
        deadline = due_ms / 1000 - PREBUILD_GUARD_S
        if now >= deadline or now < self._prebuild_at(due_ms):
            return
        jobs = self.registry.jobs
        scheduled_iso = from_ms(due_ms).isoformat()
        built: dict[str, OutTick] = {}
        for i, key in enumerate(keys_due):
            if i % 128 == 0 and time.time() >= deadline:
                break  # the rest is built at send time
            job = jobs.get(key)
            if job is None:
                continue
            try:
                built[key] = self._out_tick(job, due_ms, scheduled_iso)
            except Exception as exc:
                event(logging.ERROR, "message build failed", job=key, error=str(exc))
        self._prebuilt_for = due_ms
        self._prebuilt = built
        if len(built) == len(keys_due) and time.time() < deadline:
            assert self._sender is not None
            batch = self._sender.prepare([built[k] for k in keys_due])
            self._ready = _Ready(due_ms, keys_due, len(keys_due), batch)

    # ------------------------------------------------------------------ reload

    def _reload(self, reason: str) -> None:
        try:
            profile = load_profile(self.profile_path)
            registry = build_registry(profile)
        except Exception as exc:
            event(
                logging.ERROR,
                "profile reload refused; the previous job table keeps running",
                reason=reason,
                error=str(exc).replace("\n", " "),
            )
            return
        new_url = profile.redis_url
        if new_url and new_url != self.redis_url:
            event(logging.WARNING, "redis_url changed in the profile; restart the beat to use it")
        old = self.registry
        self.registry = registry
        self._builder = TickBuilder()  # drops what it kept for the old definitions
        changed = 0
        if self._leader:
            changed = self._reschedule(old, registry)
        event(
            logging.INFO,
            "profile reloaded",
            reason=reason,
            jobs=len(self._scheduled_jobs(registry)),
            changed=changed,
        )

    def _reschedule(self, old: JobRegistry, new: JobRegistry) -> int:
        """Keep the due instants of unchanged jobs; new or changed ones start from now."""
        kept: dict[str, int] = {}
        for due_ms, key in self._heap.entries():
            kept[key] = due_ms
        heap = DueHeap()
        now_ms = _now_ms(time.time())
        changed = 0
        for job in self._scheduled_jobs(new):
            before = old.jobs.get(job.key)
            due: int | None
            if (
                before is not None
                and job.key in kept
                and before.cron == job.cron
                and before.enabled
            ):
                due = kept[job.key]
            else:
                changed += 1
                due = self._first_due(job, now_ms)
            if due is not None:
                heap.push(job.key, due)
        self._heap = heap
        self._clear_prebuilt()
        return changed

    # ------------------------------------------------------------------ shutdown

    def _shutdown(self) -> None:
        if self._leader and self._lease is not None and not self.assume_leader:
            try:
                self._lease.release()
                event(logging.INFO, "lease released", beat_id=self.beat_id)
            except Exception as exc:
                event(logging.WARNING, "lease release failed", error=str(exc))
        self._leader = False
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
        self._client = None
        event(logging.INFO, "beat stopped", beat_id=self.beat_id)


_TOUCH_SESSION = """
local cur = redis.call('GET', KEYS[1])
if cur then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return cur
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""

_BOOTSTRAP = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
if redis.call('GET', KEYS[2]) == ARGV[2] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2])
for i = 3, #ARGV, 2 do
  redis.call('LPUSH', ARGV[i], ARGV[i + 1])
end
return 1
"""


def run_beat(
    profile_path: str | None = None,
    *,
    redis_url: str | None = None,
    beat_id: str | None = None,
    lease_ttl: float = 5.0,
    stop_event: threading.Event | None = None,
    assume_leader: bool = False,
) -> None:
    """Run a beat until SIGTERM/SIGINT (main thread) or until ``stop_event`` is set.

    Raises :class:`jobs_core.errors.ProfileError` (a ``ConfigError``) when the profile
    is invalid at start. Signal handlers are installed only when called from the main
    thread, and restored on return.
    """
    beat = Beat(
        profile_path,
        redis_url=redis_url,
        beat_id=beat_id,
        lease_ttl=lease_ttl,
        assume_leader=assume_leader,
    )
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def on_stop(signum: int, frame: FrameType | None) -> None:
            beat.stop()

        def on_hup(signum: int, frame: FrameType | None) -> None:
            beat.request_reload()

        for sig, handler in ((signal.SIGTERM, on_stop), (signal.SIGINT, on_stop)):
            previous[sig] = signal.signal(sig, handler)
        if hasattr(signal, "SIGHUP"):
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hup)
    if stop_event is not None:
        # Bridge the caller's event to ours so setting it wakes the loop at once.
        def watch() -> None:
            stop_event.wait()
            beat.stop()

        threading.Thread(target=watch, name="beat-stop-watch", daemon=True).start()
    try:
        beat.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
