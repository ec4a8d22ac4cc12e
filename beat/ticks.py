"""Claim-and-send: the Lua script that makes every tick go out at most once.

For each tick of a batch, atomically inside Redis:

1. if the job is in the disabled set: do not send; remember the tick as handled (so
   re-enabling does not trigger a catch-up of the paused period);
2. if the tick is not newer than the job's last handled tick (``sp:beat:last``): drop it,
   another beat already went past it;
3. ``SET sp:tick:<job>:<epoch ms> NX PX <ttl>``; only when the claim is new, ``LPUSH`` the
   Celery message onto its queue list and record the tick as the job's last.

Step 3 is what makes two beats that both believe they lead (a paused leader, a network
partition, a test's ``--assume-leader``) unable to send one tick twice; step 2 is a
second guard that keeps working should Redis evict claim keys under memory pressure.
A whole batch is one EVALSHA (large batches are cut into chunks pipelined in one round
trip), so hundreds of ticks due at one instant cost one network exchange. Because every
tick is claimed, replaying a batch after an ambiguous network failure is harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import NoScriptError, ResponseError

from . import keys

SENT = 1
DUPLICATE = 0
DISABLED = 2
NOT_LEADER = -1

#: Ticks per EVALSHA: keeps each script run short (Redis is single-threaded) while a
#: pipeline still carries the whole batch in one round trip.
CHUNK = 500

_SCRIPT = """
local lease, token, disabled, last, prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if token ~= '' and redis.call('GET', lease) ~= token then
  return {-1}
end
local out = {}
for i = 6, #ARGV, 5 do
  local job, ms, ttl = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local status = 0
  local prev = tonumber(redis.call('HGET', last, job) or '0')
  if tonumber(ms) > prev then
    if redis.call('SISMEMBER', disabled, job) == 1 then
      status = 2
      redis.call('HSET', last, job, ms)
    elseif redis.call('SET', prefix .. job .. ':' .. ms, '1', 'NX', 'PX', ttl) then
      redis.call('LPUSH', ARGV[i + 3], ARGV[i + 4])
      redis.call('HSET', last, job, ms)
      status = 1
    end
  end
  out[#out + 1] = status
end
return out
"""


@dataclass(frozen=True, slots=True)
class OutTick:
    """One message to send for ``(job_key, epoch_ms)``, claimed for ``claim_ttl_ms``."""

    job_key: str
    epoch_ms: int
    claim_ttl_ms: int
    list_key: str
    payload: str


class NotLeader(Exception):
    """The fencing check failed: this beat no longer holds the lease."""


class TickSender:
    """Sends batches of ticks through the claim script."""

    def __init__(self, client: redis.Redis, *, lease_key: str = keys.LEASE) -> None:
        self.client = client
        self.lease_key = lease_key
        self.sha = client.script_load(_SCRIPT)

    def send(self, ticks: Sequence[OutTick], token: str | None) -> list[int]:
        """Claim and send ``ticks``; one status per tick (SENT, DUPLICATE or DISABLED).

        ``token`` is the lease token to fence with (None: no fencing, every beat that
        calls this is "leader", which the claims still make safe).
        Raises :class:`NotLeader` when fencing fails (nothing of that chunk is sent).
        """
        if not ticks:
            return []
        head = [self.lease_key, token or "", keys.DISABLED, keys.LAST, keys.TICK_PREFIX]
        chunks = [ticks[i : i + CHUNK] for i in range(0, len(ticks), CHUNK)]
        try:
            replies = self._run(head, chunks)
        except NoScriptError:
            # Redis restarted (or SCRIPT FLUSH): load again and replay; replaying is
            # safe because every tick is claimed.
            self.sha = self.client.script_load(_SCRIPT)
            replies = self._run(head, chunks)
        statuses: list[int] = []
        lost = False
        for reply in replies:
            if reply and int(reply[0]) == NOT_LEADER and len(reply) == 1:
                lost = True
                break
            statuses.extend(int(s) for s in reply)
        if lost:
            raise NotLeader("the lease is held by another beat")
        return statuses

    def _run(self, head: list[str], chunks: list[Sequence[OutTick]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for chunk in chunks:
            args: list[Any] = list(head)
            for t in chunk:
                args += [t.job_key, t.epoch_ms, t.claim_ttl_ms, t.list_key, t.payload]
            pipe.evalsha(self.sha, 0, *args)
        replies = pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, NoScriptError):
                raise reply
            if isinstance(reply, ResponseError):
                raise reply
        return replies
