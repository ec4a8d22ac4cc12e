"""The leading beat's reaper: the runs of dead workers are marked lost and re-queued
when their policy allows (keeping their job's overlap lock for the next attempt), else
finished with the lock released; the messages they held for a countdown (a retry's next
attempt) go back on their queue (timings and rules in :mod:`jobs_core.liveness`).

A thread of its own next to the monitor, every :data:`REAP_EVERY_S` whatever the alert
settings. Each round reads two small Redis hashes; PostgreSQL is asked only when a
worker is dead or restarted. Every step is guarded, so a round repeated by a second
leader (a lease handover) changes nothing: :meth:`RunHistory.mark_lost` refuses a run
that is no longer running that attempt on that worker, and the lock is touched and the
next attempt sent only after a mark that succeeded.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING

import redis

from jobs_core.history import RunHistory
from jobs_core.liveness import (
    KOMBU_BINDINGS,
    KOMBU_UNACKED,
    KOMBU_UNACKED_INDEX,
    LOCK_HANDOVER_S,
    REAP_EVERY_S,
    LostRun,
    Suspect,
    plan_lost,
    redelivery,
    suspects,
)
from jobs_core.policy import Overlap
from jobs_core.urls import mask_url
from jobs_core.wire import RELEASE_LOCK_LUA, Keys

from .chore import Chore

if TYPE_CHECKING:
    from .service import Beat

log = logging.getLogger("beat.reaper")

# Forget a dead worker (and the messages it held), unless it came back meanwhile.
_FORGET_DEAD = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[3])
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""
# Hand a message a dead worker held back to its queue, as kombu's restore does after the
# visibility timeout: only while the worker is still dead (KEYS[1]) and the message still
# unacknowledged as read (KEYS[2], tag ARGV[1], entry ARGV[2]); pushed where consumers
# pop first (KEYS[4], ARGV[3]).
_HAND_BACK = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('RPUSH', KEYS[4], ARGV[3])
return 1
"""
# Keep the lock of a re-queued run for its next attempt (same run id): re-set it when it
# is free or still the run's, at least for ARGV[2] ms.
_HAND_OVER = """
local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] then
  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  end
  return 1
end
return 0
"""
# Forget a restart once handled, unless the worker restarted again meanwhile.
_FORGET_RESTART = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


class Reaper(Chore):
    """Started by :func:`beat.observability.observed` when there is a database."""

    name = "beat-reaper"
    what = "dead-worker check"
    first_round_at_start = False

    def __init__(self, beat: Beat, every: float = REAP_EVERY_S) -> None:
        self.every = every
        super().__init__(beat, log)
        #: Next attempts marked in history but not yet sent (Redis failed in between).
        self._unsent: list[tuple[str, str, str]] = []

    def interval(self) -> float:
        return self.every

    def round(self) -> None:
        if self.beat.is_leader:
            asyncio.run(self.reap())

    # ------------------------------------------------------------------ one round

    async def reap(self) -> int:
        """One round; returns how many runs were marked lost."""
        client = self._redis()
        self._send_unsent(client)
        known: dict[str, str] = client.hgetall(Keys.WORKERS)  # type: ignore[assignment]
        restarted: dict[str, str] = client.hgetall(Keys.WORKERS_RESTARTED)  # type: ignore[assignment]
        names = sorted(known)
        beats = client.mget([Keys.worker(h) for h in names]) if names else []
        alive = {h: value is not None for h, value in zip(names, beats, strict=True)}
        todo = suspects(known, alive, restarted)
        if not todo:
            return 0
        url = self.beat.profile.database_url
        if not url:
            return 0
        from psycopg_pool import AsyncConnectionPool

        from jobs_core.history_pg import PostgresHistory

        pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=1,
            open=False,
            kwargs={
                "autocommit": True,
                "application_name": "systemprompt-beat reaper",
                "options": "-c statement_timeout=10000",
            },
        )
        try:
            await pool.open(wait=True, timeout=10)
        except Exception as exc:
            raise RuntimeError(f"history at {mask_url(url)}: {exc}") from None
        lost = 0
        async with pool:
            history = PostgresHistory(pool)
            for suspect in todo:
                if not self.beat.is_leader:
                    break
                lost += await self._reap_worker(client, history, suspect, restarted)
        return lost

    async def _reap_worker(
        self, client: redis.Redis, history: RunHistory, suspect: Suspect, restarted: dict[str, str]
    ) -> int:
        runs = await history.running_on(suspect.hostname, started_before=suspect.started_before)
        lost = 0
        for run in runs:
            if not self.beat.is_leader:
                return lost
            jd = self.beat.registry.jobs.get(run.job_key)
            if jd is None:
                plan = plan_lost(run, suspect, None)
            else:
                locks = jd.policy.overlap is not Overlap.ALLOW
                plan = plan_lost(run, suspect, jd.policy.queue, locks=locks)
            marked = await history.mark_lost(
                plan.run_id,
                plan.attempt,
                plan.worker,
                plan.message,
                requeue=plan.requeue is not None,
            )
            if marked:
                lost += 1
                self._settle(client, plan)
        # Every run of it is handled: forget the worker (or its restart).
        if suspect.dead:
            handed = hand_back(client, suspect.hostname)
            client.eval(
                _FORGET_DEAD,
                3,
                Keys.WORKERS,
                Keys.worker(suspect.hostname),
                Keys.held(suspect.hostname),
                suspect.hostname,
            )
            log.info(
                "worker %s is gone (no heartbeat); %d run(s) lost, %d held message(s) put back",
                suspect.hostname,
                lost,
                handed,
            )
        else:
            when = restarted.get(suspect.hostname, "")
            client.eval(_FORGET_RESTART, 1, Keys.WORKERS_RESTARTED, suspect.hostname, when)
            if lost:
                log.info(
                    "worker %s restarted; %d run(s) of its earlier life lost",
                    suspect.hostname,
                    lost,
                )
        return lost

    def _settle(self, client: redis.Redis, plan: LostRun) -> None:
        """After the mark: a finished run frees its job (compare-and-delete of the lock);
        a re-queued one keeps the lock for its next attempt, which is then sent."""
        if plan.requeue is None:
            freed = client.eval(RELEASE_LOCK_LUA, 1, Keys.lock(plan.job_key), plan.run_id)
            lock = "; overlap lock released" if freed else ""
        elif plan.locks:
            ttl_ms = int(LOCK_HANDOVER_S * 1000)
            kept = client.eval(_HAND_OVER, 1, Keys.lock(plan.job_key), plan.run_id, ttl_ms)
            lock = "; overlap lock kept for the next attempt" if kept else ""
        else:
            lock = ""
        log.warning("run %s %s %s%s", plan.run_id, plan.job_key, plan.message, lock)
        if plan.requeue is not None:
            queue, payload = plan.requeue
            self._unsent.append((plan.run_id, queue, payload))
            self._send_unsent(client)

    def _send_unsent(self, client: redis.Redis) -> None:
        while self._unsent:
            run_id, queue, payload = self._unsent[0]
            client.lpush(queue, payload)
            self._unsent.pop(0)
            log.info("run %s: next attempt sent to queue %s", run_id, queue)


def hand_back(client: redis.Redis, hostname: str) -> int:
    """Put the messages dead ``hostname`` held without having started them (retries and
    re-queues waiting for their countdown or a pool slot) back on their queues; returns
    how many. One left out (acknowledged meanwhile, the worker back, a priority queue)
    is not touched: the worker acks it, or kombu's visibility timeout restores it."""
    held: dict[str, str] = client.hgetall(Keys.held(hostname))  # type: ignore[assignment]
    handed = 0
    for tag, run_id in sorted(held.items()):
        raw: str | None = client.hget(KOMBU_UNACKED, tag)  # type: ignore[assignment]
        if raw is None:
            continue
        exchange = _exchange_of(raw)
        bindings = client.smembers(KOMBU_BINDINGS + exchange) if exchange else set()
        placed = redelivery(raw, bindings)  # type: ignore[arg-type]
        if placed is None:
            log.warning(
                "run %s: the message dead worker %s held is left to the visibility timeout",
                run_id,
                hostname,
            )
            continue
        queue, payload = placed
        keys = (Keys.worker(hostname), KOMBU_UNACKED, KOMBU_UNACKED_INDEX, queue)
        if client.eval(_HAND_BACK, 4, *keys, tag, raw, payload):
            handed += 1
            log.warning(
                "run %s: its message, held but not started by dead worker %s, put back on queue %s",
                run_id,
                hostname,
                queue,
            )
    return handed


def _exchange_of(raw: str) -> str:
    try:
        exchange = json.loads(raw)[1]
    except (ValueError, TypeError, IndexError, KeyError):
        return ""
    return exchange if isinstance(exchange, str) else ""


def reaper_for(beat: Beat) -> Reaper | None:
    """The beat's reaper, when there is a history to reap (a database)."""
    return Reaper(beat).start() if beat.profile.database_url else None
