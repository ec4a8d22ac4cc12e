"""The beat process around the scheduling core: election, the loop, sending, signals.

Every scheduling decision (what is due, catch-up, coalescing, reload) is
:class:`beat.core.Scheduler`'s; this module does the I/O and the latency tuning (batches
built and encoded ahead, sent at the instant). One thread does everything, sleeping on
an event until the next instant, lease renewal or profile check; signals set the event.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from beat.fire_log import FireLineBudget
from jobs_core.errors import ConfigError
from jobs_core.profile import DEFAULT_PROFILE_FILE, PROFILE_ENV, Profile, load_profile
from jobs_core.redis_url import parse_redis_url
from jobs_core.registry import JobDefinition, JobRegistry, build_registry
from jobs_core.status import Trigger
from jobs_core.urls import check_redis_url, mask_url
from jobs_core.wire import DEFAULT_REDIS_URL, Keys

from .build import TickBuilder, bootstrap_message, record_out, tick_shape
from .collector import IdleCollector
from .control import scheduled_runs
from .core import DROP_COUNT_CAP, Entry, Failure, Kind, Plan, Scheduler, Send, entries
from .lease import Lease, Renewal
from .logs import event
from .observe import NULL_OBSERVER, BeatObserver
from .redis_client import connect
from .schedule import from_ms, iso
from .ticks import (
    DISABLED,
    DUPLICATE,
    EXHAUSTED,
    SENT,
    SENT_LAST,
    NotLeader,
    OutTick,
    Prepared,
    TickSender,
)

#: How often the profile file's mtime is looked at.
PROFILE_CHECK_S = 1.0
#: Messages are built ahead for the next instant, but not so close to it that building
#: would delay the send (building stops this long before the instant).
PREBUILD_GUARD_S = 0.002
#: ... and not at once after a send either: the moment ticks land is when workers (and
#: Redis) need the CPU, so building the next batch waits this long after a send, unless
#: the next instant is closer than PREBUILD_LEAD_S.
PREBUILD_QUIET_S = 0.05
PREBUILD_LEAD_S = 0.25
#: ... in slices of this long, the loop turning (lease renewal, jittered ticks) between.
PREBUILD_SLICE_S = 0.1
#: (The clock is read every this many ticks.)
PREBUILD_STEP = 128
#: The loop wakes this long before an instant whose batch is ready (see _warm_up).
WARM_UP_S = 0.002
#: A reload built in the background is swapped in only when the next instant is at
#: least twice the last swap's duration away (or this long at least) ...
RELOAD_ROOM_S = 0.05
#: ... unless it has waited this long (a table with an instant every second never has
#: room; a reload must still happen).
RELOAD_MAX_WAIT_S = 5.0
#: Jittered ticks due this close after a send go out together with the next ones.
JITTER_BATCH_MS = 10
#: Python's thread switch interval while a batch is sent (see Beat._claim).
SEND_SWITCH_INTERVAL_S = 0.0002
#: At most this many ``fire`` lines a second at INFO; a send past it logs one INFO summary
#: line and its fire lines at DEBUG (beat/fire_log.py): formatting 100,000 lines takes
#: the loop ~10 s, past the lease TTL, whether they come as one send or as a jittered
#: instant's many small ones.
FIRE_LINES_MAX = 1000

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


@dataclass(frozen=True)
class _Loaded:
    """A reloaded profile and what was derived from it away from the loop."""

    reason: str
    profile: Profile
    registry: JobRegistry
    #: Every job the beat would schedule (before leaving out used-up ones).
    jobs: list[Entry]
    #: Jobs whose on-time ticks the reload leaves byte for byte as they were.
    unchanged: frozenset[str]
    at: float  # when it was ready


@dataclass(slots=True)
class _Building:
    """The batch of instant ``due_ms`` being built ahead, slice by slice: valid while its
    heap bucket is the same list; ``done`` of its keys are through."""

    due_ms: int
    bucket: list[str]
    reuse: dict[str, OutTick]
    built: dict[str, OutTick] = field(default_factory=dict)
    done: int = 0


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
        self.profile = profile
        self.registry: JobRegistry = build_registry(profile)
        self.redis_url = check_redis_url(redis_url or profile.redis_url or DEFAULT_REDIS_URL)
        self.redis_target = parse_redis_url(self.redis_url)
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
        #: The reload being built in the background, and the one ready to swap in.
        self._loading: threading.Thread | None = None
        self._loaded: _Loaded | None = None
        self._swap_took_s = 0.0
        self._profile_stamp = _stamp(self.profile_path)
        self._next_profile_check = 0.0

        self._client: redis.Redis | None = None
        self._lease: Lease | None = None
        self._sender: TickSender | None = None
        self._leader = False
        self._standing_by = False  # logged once per stretch as a follower
        self._leader_since = 0.0
        self._next_renew = 0.0
        self._next_acquire = 0.0
        self._next_session_touch = 0.0
        self._session = uuid.uuid4().hex  # our candidate; replaced by the live one
        self._bootstrapped_session: str | None = None
        self._redis_down_since: float | None = None
        self._fire_budget = FireLineBudget()

        self._core = Scheduler()
        self._prebuilt_for: int | None = None
        self._prebuilt: dict[str, OutTick] = {}
        self._ready: _Ready | None = None
        #: After a reload: the ticks built ahead for instant ``[0]`` of the jobs whose
        #: ticks it left unchanged, reused when that instant's batch is built again.
        self._carried: tuple[int | None, dict[str, OutTick]] = (None, {})
        self._building: _Building | None = None
        self._builder = TickBuilder(self.beat_id)
        self._quiet_until = 0.0
        self._collector = IdleCollector()
        #: When the next instant is due (epoch seconds; None while not leading), for
        #: the chores' threads to keep their rounds clear of it (see beat.chore).
        self.next_instant_at: float | None = None
        self._jitter_batch_at_ms = 0
        #: Hears about elections, renewals and sent ticks (metrics); no-op by default.
        self.observer: BeatObserver = NULL_OBSERVER
        #: Jobs whose max_runs are used up (from Redis's counts): not scheduled.
        self._exhausted: set[str] = set()

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

    @property
    def leader_since(self) -> float:
        """When this beat last became leader (epoch seconds; 0 before the first time)."""
        return self._leader_since

    @property
    def reloading(self) -> bool:
        """A reloaded profile is being built in the background."""
        return self._loading is not None

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
                    self.observer.loop_turned()
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
        client = connect(
            self.redis_target,
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
        self.observer.redis_state(True)
        if self._redis_down_since is not None:
            down = time.time() - self._redis_down_since
            event(logging.WARNING, "redis reconnected", down_s=round(down, 3))
            self._redis_down_since = None
        self._next_acquire = 0.0
        self._next_session_touch = 0.0

    def _on_redis_error(self, exc: BaseException) -> None:
        self.observer.redis_state(False)
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
        if self._leader and now >= self._next_renew:
            # Before anything else: a long send (100,000 ticks on a busy machine) may
            # have used up most of the lease.
            self._renew()
        if self._loading is None and self._loaded is None:
            # One reload at a time; a signal or an edit meanwhile is picked up after.
            if self._reload_requested:
                self._reload_requested = False
                self._start_loading("SIGHUP")
            elif now >= self._next_profile_check:
                self._next_profile_check = now + PROFILE_CHECK_S
                stamp = _stamp(self.profile_path)
                if stamp != self._profile_stamp:
                    self._profile_stamp = stamp
                    self._start_loading("profile file changed")
        loaded = self._loaded
        if loaded is not None and self._room_to_swap(now, loaded):
            self._loaded = None
            self._swap(loaded)
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
            due = self._core.next_due()
            head = self._core.head()
            if due is not None and (head is None or due < head[0]):
                # A jittered tick: those due within JITTER_BATCH_MS of the last send
                # wait for each other (100,000 jobs spread over 30 s would otherwise
                # wake the loop, and send, every few ticks). Never before their time,
                # nor past a plain instant.
                due = max(due, self._jitter_batch_at_ms)
                if head is not None:
                    due = min(due, head[0])
            if due is not None:
                ready = self._ready is not None and self._ready.due_ms == due
                wake_at = min(wake_at, due / 1000 - (WARM_UP_S if ready else 0.0))
            if head is not None:
                # Batches are built ahead for the plain jobs' instants only (jittered
                # ticks are few per instant and built when sent).
                due = head[0]
                # (Too close to the instant to build ahead: it is built when sent.)
                if self._prebuilt_for != due and time.time() < due / 1000 - PREBUILD_GUARD_S:
                    wake_at = min(wake_at, self._prebuild_at(due))
        else:
            wake_at = min(wake_at, self._next_acquire)
        # The time to spare is the time to the next instant: the other wake-ups
        # (renewal, profile check) can wait for a collection, a send cannot.
        due = self._core.next_due() if self._leader else None
        self.next_instant_at = None if due is None else due / 1000
        now = time.time()
        self._collector.idle(
            (due / 1000 - now - PREBUILD_LEAD_S) if due is not None else wake_at - now
        )
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
            "jobs": len(self._core),
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
            self._standing_by = False
            event(logging.INFO, "became leader", beat_id=self.beat_id, session=self._session)
            self.observer.elected()
            self._on_elected()
        elif not self._standing_by:
            self._standing_by = True
            event(logging.INFO, "standing by: another beat leads", beat_id=self.beat_id)

    def _renew(self) -> None:
        assert self._lease is not None
        if self.assume_leader or self._renewed():
            return
        self._lose_leadership("lease lost to another beat")

    def _renewed(self) -> bool:
        """Renew the lease (taking it again if it lapsed with no one else holding it);
        False when another beat holds it."""
        assert self._lease is not None
        started = time.time()
        renewal = self._lease.renew(self._heartbeat())
        self.observer.renewed(renewal.held)
        if not renewal.held:
            return False
        self._next_renew = started + self.renew_every
        if renewal is Renewal.RETAKEN:
            event(
                logging.WARNING,
                "lease had expired with no other leader: taken again",
                beat_id=self.beat_id,
            )
        return True

    def _keep_lease(self) -> None:
        """Renew the lease if due, from inside a long piece of work (a send of 100,000
        ticks, building the schedule) that would otherwise outlast it on a busy machine.
        A refusal is left for the loop's next renewal to act on: stepping down here
        would pull the table from under the work."""
        if self.assume_leader or self._lease is None or time.time() < self._next_renew:
            return
        self._renewed()

    def _lose_leadership(self, reason: str) -> None:
        self._leader = False
        self.observer.lost()
        self._core.clear()
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
        self._start_schedule()

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
            args += list(bootstrap_message(job, self._session, now, self.beat_id))
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

    def _start_schedule(self) -> None:
        """Hand the job table and the last handled ticks to the core; send its catch-up."""
        assert self._client is not None
        self._clear_prebuilt()
        self._exhausted = self._used_up(self.registry)
        jobs = entries(self.registry, self._exhausted)
        remote: dict[str, int] = {}
        for i in range(0, len(jobs), 1000):
            part = [j.key for j in jobs[i : i + 1000]]
            values = self._client.hmget(Keys.LAST, part)
            remote.update({k: int(v) for k, v in zip(part, values, strict=True) if v})
            self._keep_lease()
        now_ms = _now_ms(time.time())
        plan = self._core.start(jobs, now_ms, remote, self._keep_lease)
        self._keep_lease()
        self._send_plan(plan, now_ms)

    def _used_up(self, registry: JobRegistry) -> set[str]:
        """Jobs of ``registry`` whose ``max_runs`` the scheduled runs have reached."""
        assert self._client is not None
        budgets = {j.key: j.policy.max_runs for j in registry if j.policy.max_runs}
        counts = scheduled_runs(self._client, budgets)
        return {key for key, budget in budgets.items() if counts[key] >= budget}

    def _send_due(self) -> None:
        prepared, head = self._ready, self._core.head()
        if prepared is not None and head is not None and head[0] == prepared.due_ms:
            self._warm_up(prepared.due_ms / 1000)
        now_ms = _now_ms(time.time())
        if prepared is not None:
            head = self._core.on_time(now_ms)
            if (
                head is not None
                and head[0] == prepared.due_ms
                and head[1] is prepared.bucket
                and len(prepared.bucket) == prepared.size
            ):
                # The usual case: the batch of the earliest instant was encoded ahead
                # and its bucket has not changed since. Send first, book-keep after, so
                # the lag is the claim script's alone. (Another instant that is due too
                # goes out on the next pass of the loop.)
                due_ms, bucket = self._core.pop_head()
                self._clear_prebuilt()
                try:
                    self._send_instant(prepared.batch, due_ms, bucket)
                finally:
                    self._log_failures(self._core.advance(due_ms, bucket))
                    self._quiet_until = time.time() + PREBUILD_QUIET_S
                return
        self._send_plan(self._core.take(now_ms), now_ms)
        self._jitter_batch_at_ms = now_ms + JITTER_BATCH_MS

    def _send_plan(self, plan: Plan, now_ms: int) -> None:
        """Build and send the messages of ``plan`` (decided at ``now_ms``)."""
        if not plan.sends and not plan.failures:
            return  # nothing was due: what is built ahead stays
        self._log_failures(plan.failures)
        prebuilt, prebuilt_for = self._prebuilt, self._prebuilt_for
        work = self._building
        if prebuilt_for is None and work is not None:
            # Building ahead was under way when the instant came: use what is built.
            prebuilt, prebuilt_for = work.built, work.due_ms
        head = self._core.head()
        if head is None or head[0] != prebuilt_for:
            # What was built ahead is used here (its instant was taken) or stale; when
            # only jittered ticks went out, the next instant's batch stays ready.
            self._clear_prebuilt()
        jobs = self.registry.jobs
        enqueued = from_ms(now_ms)
        iso_of: dict[int, str] = {}
        out: list[OutTick] = []
        meta: list[Send] = []
        for send in plan.sends:
            job = jobs.get(send.job_key)
            if job is None:
                continue
            if send.trigger is Trigger.SCHEDULE:
                ready = prebuilt.get(send.job_key) if prebuilt_for == send.due_ms else None
                if ready is None:
                    scheduled_iso = iso_of.get(send.due_ms)
                    if scheduled_iso is None:
                        scheduled_iso = iso_of[send.due_ms] = from_ms(send.due_ms).isoformat()
                    ready = self._out_tick(job, send.due_ms, scheduled_iso)
                out.append(ready)
            else:
                self._log_catch_up(send)
                out.append(
                    record_out(
                        job,
                        send.due_ms,
                        send.trigger,
                        enqueued,
                        skip_reason=send.skip_reason,
                        triggered_by=self.beat_id,
                    )
                )
            meta.append(send)
        if out:
            self._send(out, meta)

    def _log_catch_up(self, send: Send) -> None:
        if send.kind is Kind.FIRE and send.count:
            event(
                logging.INFO,
                "missed ticks coalesced",
                job=send.job_key,
                count=send.count,
                into=iso(send.due_ms),
            )
        elif send.kind is Kind.SUMMARY and send.first_ms is not None:
            more = "at least " if send.count >= DROP_COUNT_CAP else ""
            event(
                logging.WARNING,
                "missed ticks dropped",
                job=send.job_key,
                count=f"{more}{send.count}",
                first=iso(send.first_ms),
                last=iso(send.due_ms),
            )

    def _log_failures(self, failures: list[Failure]) -> None:
        for failure in failures:
            # One broken schedule must not take the beat (and every other job) down.
            event(
                logging.ERROR,
                f"{failure.during} failed; job dropped until the next reload",
                job=failure.job_key,
                error=failure.error,
            )

    def _warm_up(self, instant: float) -> None:
        """Woken WARM_UP_S before a prepared instant: wake Redis, then wait it out.

        After a second of idling, Redis and this process are cold (on a VM, idle vCPUs
        sleep): the first round trip takes about twice as long as the next. One round
        trip just before the instant takes that cost off the send: the lease renewal,
        so the send starts with a whole lease ahead (sending 100,000 ticks on a busy
        machine takes seconds, during which nothing renews it). The last stretch is
        slept with ``time.sleep``, which oversleeps less than a timed event wait.
        """
        left = instant - time.time()
        if not 0 < left <= WARM_UP_S * 2 or self._client is None:
            return
        if self.assume_leader:
            self._client.ping()
        else:
            self._renew()
            if not self._leader:
                return
        left = instant - time.time()
        if left > 0:
            time.sleep(left)

    def _send(self, out: list[OutTick], meta: list[Send]) -> None:
        assert self._sender is not None
        statuses = self._claim(self._sender.prepare(out))
        if statuses is not None:
            self.observer.ticks(meta, statuses, time.time() * 1000)
            self._after_send(statuses, meta)

    def _send_instant(self, batch: Prepared, due_ms: int, bucket: list[str]) -> None:
        """Send the prepared on-time batch of instant ``due_ms``."""
        statuses = self._claim(batch)
        if statuses is None:
            return
        self.observer.instant(due_ms, bucket, statuses, time.time() * 1000)
        assert self._sender is not None
        level = self._fire_level(len(bucket))
        if self._sender.all_accepted and not logging.getLogger("beat").isEnabledFor(level):
            # No fire line to log, every tick accepted: no per-tick work.
            self._core.handled_instant(due_ms, bucket)
            if level == logging.DEBUG:
                _log_summary(statuses, due_ms, due_ms, time.time() * 1000 - due_ms)
            return
        self._after_send(
            statuses, [Send(k, due_ms, Trigger.SCHEDULE, Kind.FIRE) for k in bucket], level
        )

    def _claim(self, batch: Prepared) -> list[int] | None:
        """Send ``batch``: one status per tick, or None when the lease turned out lost."""
        assert self._sender is not None
        # While it waits for Redis, the other threads (the reload being built, the
        # monitor) take the GIL; at each of the send's ~200 replies this thread would
        # wait up to the switch interval (5 ms) to get it back.
        interval = sys.getswitchinterval()
        sys.setswitchinterval(SEND_SWITCH_INTERVAL_S)
        try:
            try:
                return self._sender.send_prepared(batch, self._token(), self._keep_lease)
            except NotLeader:
                # The lease expired under the send (a pause): when no other beat took
                # it, take it again and send again (claimed ticks come back duplicate).
                if self._lease is None or not self._renewed():
                    raise
                return self._sender.send_prepared(batch, self._token(), self._keep_lease)
        except NotLeader:
            self._lose_leadership("lease lost (fencing check refused the send)")
            return None
        finally:
            sys.setswitchinterval(interval)

    def _after_send(
        self, statuses: list[int], meta: list[Send], fire_level: int | None = None
    ) -> None:
        """Log what was sent and tell the core which ticks Redis accepted.

        ``fire_level``: the level already drawn from the budget for this send, if any.
        """
        done = time.time() * 1000
        if fire_level is None:
            fire_level = self._fire_level(statuses.count(SENT) + statuses.count(SENT_LAST))
        info = logging.getLogger("beat").isEnabledFor(logging.INFO)
        debug = logging.getLogger("beat").isEnabledFor(logging.DEBUG)
        fire_lines = logging.getLogger("beat").isEnabledFor(fire_level)
        handled: list[tuple[str, int]] = []
        first = last = None
        worst = 0.0
        for m, status in zip(meta, statuses, strict=True):
            if status != DUPLICATE:
                handled.append((m.job_key, m.due_ms))
            if status in (EXHAUSTED, SENT_LAST):
                self._used_up_now(m.job_key, sent=status == SENT_LAST)
            if status in (SENT, SENT_LAST):
                # A jittered tick is due at its instant plus its offset: lag from there.
                lag = round(done - m.due_ms - m.jitter_ms, 1)
                if fire_level == logging.DEBUG and m.kind is Kind.FIRE:
                    first = m.due_ms if first is None else min(first, m.due_ms)
                    last = m.due_ms if last is None else max(last, m.due_ms)
                    worst = max(worst, lag)
                if m.kind is Kind.FIRE:
                    if not fire_lines:
                        continue
                    extra = {"jitter_ms": m.jitter_ms} if m.jitter_ms else {}
                    event(
                        fire_level,
                        "fire",
                        job=m.job_key,
                        scheduled_for=iso(m.due_ms),
                        lag_ms=lag,
                        trigger=m.trigger,
                        **extra,
                    )
                elif info:
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
        self._core.handled(handled)
        if first is not None and last is not None:
            _log_summary(statuses, first, last, worst)

    def _fire_level(self, runs: int) -> int:
        """The level of the ``fire`` lines of a send of ``runs`` runs, now."""
        return self._fire_budget.level(runs, time.time(), FIRE_LINES_MAX)

    def _used_up_now(self, job_key: str, *, sent: bool) -> None:
        """The claim script says ``job_key`` has used up its ``max_runs``."""
        if job_key in self._exhausted:
            return
        self._exhausted.add(job_key)
        self._core.drop(job_key)
        job = self.registry.jobs.get(job_key)
        event(
            logging.INFO,
            "max_runs reached; the job is no longer scheduled",
            job=job_key,
            max_runs=job.policy.max_runs if job else None,
            last_run_sent=sent,
        )

    def _out_tick(self, job: JobDefinition, due_ms: int, scheduled_iso: str) -> OutTick:
        return self._builder.tick(job, due_ms, scheduled_iso)

    def _clear_prebuilt(self) -> None:
        self._prebuilt_for = None
        self._prebuilt = {}
        self._ready = None
        self._carried = (None, {})
        self._building = None

    def _prebuild_at(self, due_ms: int) -> float:
        """When to build the batch of instant ``due_ms``."""
        return min(self._quiet_until, due_ms / 1000 - PREBUILD_LEAD_S)

    def _prebuild(self) -> None:
        """Build and encode the batch of the next instant ahead, so sending it is one write.

        Their ``enqueued_at`` is filled in by the claim script when they are sent. The
        work goes in slices of :data:`PREBUILD_SLICE_S`, the loop turning in between
        (100,000 ticks take seconds on a busy machine: longer than the lease). When
        time runs out (or a message fails to build), the ticks built so far are kept and
        the rest is built at send time.
        """
        head = self._core.head()
        if head is None:
            return
        due_ms, keys_due = head
        if self._prebuilt_for == due_ms:
            return
        now = time.time()
        deadline = due_ms / 1000 - PREBUILD_GUARD_S
        if now >= deadline or now < self._prebuild_at(due_ms):
            return
        work = self._building
        if work is None or work.due_ms != due_ms or work.bucket is not keys_due:
            carried_for, carried = self._carried
            self._carried = (None, {})
            reuse = carried if carried_for == due_ms else {}
            work = self._building = _Building(due_ms, keys_due, reuse)
        jobs = self.registry.jobs
        scheduled_iso = from_ms(due_ms).isoformat()
        built, reuse = work.built, work.reuse
        stop = min(deadline, now + PREBUILD_SLICE_S)
        i = first = work.done
        while i < len(keys_due):
            if i % PREBUILD_STEP == 0 and i > first and time.time() >= stop:
                break
            key = keys_due[i]
            i += 1
            tick = reuse.get(key)
            if tick is not None:
                built[key] = tick
                continue
            job = jobs.get(key)
            if job is None:
                continue
            try:
                built[key] = self._out_tick(job, due_ms, scheduled_iso)
            except Exception as exc:
                event(logging.ERROR, "message build failed", job=key, error=str(exc))
        work.done = i
        if i < len(keys_due) and time.time() < deadline:
            return  # the next turn of the loop goes on from here
        self._building = None
        self._prebuilt_for = due_ms
        self._prebuilt = built  # the rest, if any, is built at send time
        if len(built) == len(keys_due) and time.time() < deadline:
            assert self._sender is not None
            batch = self._sender.prepare([built[k] for k in keys_due])
            self._ready = _Ready(due_ms, keys_due, len(keys_due), batch)

    # ------------------------------------------------------------------ reload

    def _reload(self, reason: str) -> None:
        """Reload the profile now, on the calling thread (the loop builds it in the
        background instead: :meth:`_start_loading`)."""
        loaded = self._load(reason, self.registry)
        if loaded is not None:
            self._swap(loaded)

    def _start_loading(self, reason: str) -> None:
        """Build the reloaded job table in a thread: at 100,000 jobs that takes seconds,
        which the loop spends renewing its lease and sending instants meanwhile."""
        previous = self.registry

        def load() -> None:
            try:
                self._loaded = self._load(reason, previous)
            finally:
                self._loading = None
                self._wake.set()

        self._loading = threading.Thread(target=load, name="beat-reload", daemon=True)
        self._loading.start()

    def _load(self, reason: str, previous: JobRegistry) -> _Loaded | None:
        """The profile read again and everything derived from it that does not touch
        the loop's state; None (logged) when the profile is refused."""
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
            return None
        before = previous.jobs
        unchanged = frozenset(
            key
            for key, job in registry.jobs.items()
            if (old := before.get(key)) is not None and tick_shape(old) == tick_shape(job)
        )
        return _Loaded(reason, profile, registry, entries(registry), unchanged, time.time())

    def _room_to_swap(self, now: float, loaded: _Loaded) -> bool:
        """Swap a built reload in only when it cannot delay the next instant."""
        due = self._core.next_due() if self._leader else None
        if due is None or now - loaded.at >= RELOAD_MAX_WAIT_S:
            return True
        return due / 1000 - now >= max(RELOAD_ROOM_S, 2 * self._swap_took_s)

    def _swap(self, loaded: _Loaded) -> None:
        """Put a reloaded job table in place; the next instant's batch is built again
        from what was built ahead for the jobs the reload left unchanged."""
        started = time.monotonic()
        profile, registry = loaded.profile, loaded.registry
        self.profile = profile
        new_url = profile.redis_url
        if new_url and new_url != self.redis_url:
            event(logging.WARNING, "redis_url changed in the profile; restart the beat to use it")
        self.registry = registry
        # What was built for the old definitions stays for the jobs whose ticks the
        # reload leaves as they were (at 100,000 jobs, rebuilding the next instant's
        # batch takes seconds); the rest is dropped.
        unchanged = self._builder.rebase(registry.jobs, loaded.unchanged)
        prebuilt_for, prebuilt = self._prebuilt_for, self._prebuilt
        changed = 0
        if self._leader and self._client is not None:
            # A changed max_runs may give a used-up job runs again (or take them away).
            self._exhausted = self._used_up(registry)
        exhausted = self._exhausted
        jobs = [j for j in loaded.jobs if j.key not in exhausted] if exhausted else loaded.jobs
        if self._leader:
            changed, failures = self._core.reload(jobs, _now_ms(time.time()))
            self._clear_prebuilt()
            # A carried tick is only used for the instant it was built for, and the
            # core keeps an unchanged job's next instant: the same tick, the same claim.
            self._carried = (
                prebuilt_for,
                {k: t for k, t in prebuilt.items() if k in unchanged},
            )
            self._log_failures(failures)
        self._swap_took_s = time.monotonic() - started
        event(
            logging.INFO,
            "profile reloaded",
            reason=loaded.reason,
            jobs=len(jobs),
            changed=changed,
        )

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


def _log_summary(statuses: list[int], first_ms: int, last_ms: int, lag_ms: float) -> None:
    """The INFO line of a send whose ``fire`` lines went to DEBUG: what an operator
    reads per tick on a small beat (how many went out, how late), per send."""
    fields: dict[str, Any] = {
        "sent": statuses.count(SENT) + statuses.count(SENT_LAST),
        "scheduled_for": iso(first_ms),
    }
    if last_ms != first_ms:
        fields["scheduled_until"] = iso(last_ms)
    fields["lag_ms"] = round(lag_ms, 1)  # of the last tick: the whole send's lag
    for name, code in (("disabled", DISABLED), ("duplicate", DUPLICATE), ("used_up", EXHAUSTED)):
        if n := statuses.count(code):
            fields[name] = n
    fields["fire_lines"] = "debug"
    event(logging.INFO, "ticks sent", **fields)


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
    metrics_port: int | None = None,
) -> None:
    """Run a beat until SIGTERM/SIGINT (main thread) or until ``stop_event`` is set.

    Raises :class:`jobs_core.errors.ProfileError` (a ``ConfigError``) when the profile
    is invalid at start. Signal handlers are installed only when called from the main
    thread, and restored on return. ``metrics_port`` (else the profile's
    ``scheduler.metrics.beat_port``) serves /metrics, /healthz and /readyz.
    """
    beat = Beat(
        profile_path,
        redis_url=redis_url,
        beat_id=beat_id,
        lease_ttl=lease_ttl,
        assume_leader=assume_leader,
    )
    port = metrics_port or beat.profile.scheduler.metrics.beat_port
    watching: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if port is not None or beat.profile.database_url:
        # Imported only when used: prometheus_client and the monitor take ~0.1 s to load.
        from .observability import observed

        watching = observed(beat, port)
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
        with watching:
            beat.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
