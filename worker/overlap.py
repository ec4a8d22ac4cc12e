"""Per-job Redis lock that implements the overlap policy.

The lock's value is the run id that holds it and it expires a little after the job's
hard time limit, so a worker that died never blocks its job for longer than that. A
redelivered message of the same run (its worker was killed) finds its own run id in
the lock and takes it over instead of waiting for the expiry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from jobs_core.wire import RELEASE_LOCK_LUA, Keys

log = logging.getLogger("worker.overlap")

#: Pauses between the tries of a release that failed: a Sentinel failover takes a few
#: seconds, after which the client reaches the new master and the release goes through.
RELEASE_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)

_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ''
end
return holder
"""


class OverlapLock:
    def __init__(self, client: Any) -> None:
        self._client = client
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(RELEASE_LOCK_LUA)

    async def acquire(self, job_key: str, run_id: str, ttl_s: float) -> str | None:
        """Take the lock for ``run_id``; returns None on success, else the holder's run id."""
        holder = await self._acquire(
            keys=[Keys.lock(job_key)], args=[run_id, max(1, int(ttl_s * 1000))]
        )
        if isinstance(holder, bytes):
            holder = holder.decode()
        return holder or None

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
