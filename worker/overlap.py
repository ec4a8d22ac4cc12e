"""Per-job Redis lock that implements the overlap policy.

The lock's value is the run id that holds it and it expires a little after the job's
hard time limit, so a worker that died never blocks its job for longer than that. A
redelivered message of the same run (its worker was killed) finds its own run id in
the lock and takes it over instead of waiting for the expiry.

Buffered ticks (``buffer_one``, ``buffer_all``) wait in turn: each waiting tick has a
place in the job's waiting set, ordered by its scheduled instant, and only the first
may take a free lock. One script checks and changes lock and set together, so two
workers (or a redelivered message) never see a half-made decision. ``buffer_one`` lets
a tick in only while the set is empty: at most one tick waits. A tick that stops
trying for :data:`WAITING_STALE_S` (its message was lost with its worker) loses its
place, so it cannot hold the others back for longer than that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jobs_core.wire import RELEASE_LOCK_LUA, Keys

from .cancel import CancelRequest

log = logging.getLogger("worker.overlap")

#: Pauses between the tries of a release that failed: a Sentinel failover takes a few
#: seconds, after which the client reaches the new master and the release goes through.
RELEASE_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)
#: Seconds after its latest try that a waiting tick loses its place (it tries every
#: second while it waits).
WAITING_STALE_S = 30.0

_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ''
end
return holder
"""

# The gates of a run that takes the lock directly, in one round trip: its cancel request,
# whether a backfill enqueued its tick too, then the lock, taken only when no cancel
# request stands (a cancelled run must not hold the job's lock, not even for a moment).
# KEYS: cancel request, backfilled mark, lock. ARGV: run id, lock TTL ms.
# Returns {cancel request or false, backfilled 0/1, holder ('' when taken or not tried)}.
_ADMIT = """
local request = redis.call('GET', KEYS[1])
local backfilled = redis.call('EXISTS', KEYS[2])
if request then
  return {request, backfilled, ''}
end
local holder = redis.call('GET', KEYS[3])
if (not holder) or holder == ARGV[1] then
  redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
  return {false, backfilled, ''}
end
return {false, backfilled, holder}
"""

# KEYS: lock, waiting set, waiting-seen hash. ARGV: run id, lock TTL ms, order (epoch
# ms of the tick), places (0: any number, 1: buffer_one), stale ms.
# Returns {state, holder}: state 'run' (the lock is taken), 'wait' (in the set),
# 'full' (not let in: another tick waits); holder: the active run or the first waiter.
_TAKE_TURN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me = ARGV[1]
local seen = redis.call('HGETALL', KEYS[3])
for i = 1, #seen, 2 do
  if seen[i] ~= me and now - tonumber(seen[i + 1]) > tonumber(ARGV[5]) then
    redis.call('ZREM', KEYS[2], seen[i])
    redis.call('HDEL', KEYS[3], seen[i])
  end
end
local holder = redis.call('GET', KEYS[1])
local first = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
if holder == me or ((not holder) and ((not first) or first == me)) then
  redis.call('SET', KEYS[1], me, 'PX', ARGV[2])
  redis.call('ZREM', KEYS[2], me)
  redis.call('HDEL', KEYS[3], me)
  return {'run', ''}
end
holder = holder or first
if not redis.call('ZSCORE', KEYS[2], me) then
  local places = tonumber(ARGV[4])
  if places > 0 and redis.call('ZCARD', KEYS[2]) >= places then
    return {'full', holder}
  end
  redis.call('ZADD', KEYS[2], ARGV[3], me)
end
redis.call('HSET', KEYS[3], me, now)
local keep = 2 * tonumber(ARGV[5])
redis.call('PEXPIRE', KEYS[2], keep)
redis.call('PEXPIRE', KEYS[3], keep)
return {'wait', holder}
"""


@dataclass(frozen=True)
class Turn:
    """What :meth:`OverlapLock.take_turn` found: ``holder`` None means the lock is taken
    for this run; else it waits (``full`` False) or was not let in (``full`` True)."""

    holder: str | None
    full: bool = False


@dataclass(frozen=True)
class Admission:
    """What :meth:`OverlapLock.admit` found: the run's cancel request (the lock was then
    not tried), whether a backfill enqueued its tick too, and the lock's holder (None:
    taken for this run, or not tried)."""

    cancel: CancelRequest | None
    backfilled: bool
    holder: str | None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class OverlapLock:
    def __init__(self, client: Any) -> None:
        self._client = client
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(RELEASE_LOCK_LUA)
        self._take_turn = client.register_script(_TAKE_TURN)
        self._admit = client.register_script(_ADMIT)

    async def admit(self, job_key: str, run_id: str, ttl_s: float) -> Admission:
        """:meth:`CancelRequests.before_start` and, when the run is not cancelled,
        :meth:`acquire`, in one round trip (most runs pay only this one before running)."""
        request, backfilled, holder = await self._admit(
            keys=[Keys.cancel(run_id), Keys.backfilled(run_id), Keys.lock(job_key)],
            args=[run_id, max(1, int(ttl_s * 1000))],
        )
        return Admission(
            CancelRequest.loads(request) if request is not None else None,
            bool(backfilled),
            _text(holder) or None,
        )

    async def acquire(self, job_key: str, run_id: str, ttl_s: float) -> str | None:
        """Take the lock for ``run_id``; returns None on success, else the holder's run id."""
        holder = await self._acquire(
            keys=[Keys.lock(job_key)], args=[run_id, max(1, int(ttl_s * 1000))]
        )
        return _text(holder) or None

    async def take_turn(
        self, job_key: str, run_id: str, ttl_s: float, *, order_ms: int, places: int
    ) -> Turn:
        """Take the lock if it is free and this tick is the first waiting, else wait in
        the job's waiting set (``places`` 0: unbounded) or be refused when it is full."""
        state, holder = await self._take_turn(
            keys=[Keys.lock(job_key), Keys.waiting(job_key), Keys.waiting_seen(job_key)],
            args=[run_id, max(1, int(ttl_s * 1000)), order_ms, places, int(WAITING_STALE_S * 1000)],
        )
        state = _text(state)
        if state == "run":
            return Turn(None)
        return Turn(_text(holder), full=state == "full")

    async def leave(self, job_key: str, run_id: str) -> None:
        """Give up this run's place among the waiting ticks (skipped or cancelled)."""
        pipe = self._client.pipeline(transaction=True)
        pipe.zrem(Keys.waiting(job_key), run_id)
        pipe.hdel(Keys.waiting_seen(job_key), run_id)
        await pipe.execute()

    async def release(self, job_key: str, run_id: str) -> None:
        await self._release(keys=[Keys.lock(job_key)], args=[run_id])


async def release_after_run(
    lock: OverlapLock, job_key: str, run_id: str, delays: Sequence[float] | None = None
) -> bool:
    """Release at the end of an attempt, retrying with backoff; never raises.

    The attempt's outcome is already recorded: failing here must not re-queue the
    run. When Redis never answers the lock is left to its TTL (logged).
    """
    for pause in (*(RELEASE_RETRY_DELAYS if delays is None else delays), None):
        try:
            await lock.release(job_key, run_id)
            return True
        except Exception as exc:
            if pause is None:
                log.error(
                    "run %s %s: overlap lock not released (%s: %s); it expires with its "
                    "TTL, and until then ticks of the job wait or are skipped",
                    run_id,
                    job_key,
                    type(exc).__name__,
                    exc,
                )
                return False
            await asyncio.sleep(pause)
    return False
