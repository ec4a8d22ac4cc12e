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

Speed matters at thousands of ticks per second: inside the script the last-handled and
disabled look-ups are one HMGET / SMISMEMBER per chunk and the pushes one LPUSH per queue;
on the client every tick's arguments are RESP-encoded once when the tick is built (ahead
of its instant), so sending is a bytes join and one socket write. The claim TTL is
computed in the script from Redis' clock: ``tick + misfire_grace - now + margin``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import NoScriptError, ResponseError

from . import keys

SENT = 1
DUPLICATE = 0
DISABLED = 2
NOT_LEADER = -1

#: Ticks per EVALSHA: keeps each script run short (Redis is single-threaded) while one
#: write still carries the whole batch.
CHUNK = 500
#: Claims outlive the last instant any beat may still send a tick (scheduled + grace) by
#: this much, which covers clock skew between beat hosts.
CLAIM_MARGIN_MS = 30_000

_SCRIPT = """
local lease, token, disabled, last, prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local margin = tonumber(ARGV[6])
if token ~= '' and redis.call('GET', lease) ~= token then
  return {-1}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local jobs = {}
for i = 7, #ARGV, 5 do jobs[#jobs + 1] = ARGV[i] end
local prevs = redis.call('HMGET', last, unpack(jobs))
local off = redis.call('SMISMEMBER', disabled, unpack(jobs))
local prev, pushes, order, marks, out = {}, {}, {}, {}, {}
for n = 1, #jobs do
  local i = 7 + (n - 1) * 5
  local job, msarg = ARGV[i], ARGV[i + 1]
  local ms = tonumber(msarg)
  local p = prev[job]
  if p == nil then p = tonumber(prevs[n] or '0') or 0 end
  local status = 0
  if ms > p then
    if off[n] == 1 then
      status = 2
    else
      local ttl = ms + tonumber(ARGV[i + 2]) - now
      if ttl < 0 then ttl = 0 end
      if redis.call('SET', prefix .. job .. ':' .. msarg, '1', 'NX', 'PX', ttl + margin) then
        local list = ARGV[i + 3]
        local q = pushes[list]
        if not q then
          q = {}
          pushes[list] = q
          order[#order + 1] = list
        end
        q[#q + 1] = ARGV[i + 4]
        status = 1
      end
    end
    if status ~= 0 then
      prev[job] = ms
      marks[job] = msarg
    end
  end
  out[n] = status
end
for _, list in ipairs(order) do
  redis.call('LPUSH', list, unpack(pushes[list]))
end
local fields = {}
for job, ms in pairs(marks) do
  fields[#fields + 1] = job
  fields[#fields + 1] = ms
end
if #fields > 0 then redis.call('HSET', last, unpack(fields)) end
return out
"""


def _bulk(value: str | int) -> bytes:
    raw = str(value).encode()
    return b"$%d\r\n%s\r\n" % (len(raw), raw)


class OutTick:
    """One message to send for ``(job_key, epoch_ms)``; its RESP arguments pre-encoded."""

    __slots__ = ("epoch_ms", "grace_ms", "job_key", "list_key", "packed", "payload")

    def __init__(
        self, job_key: str, epoch_ms: int, grace_ms: int, list_key: str, payload: str
    ) -> None:
        self.job_key = job_key
        self.epoch_ms = epoch_ms
        self.grace_ms = grace_ms
        self.list_key = list_key
        self.payload = payload
        self.packed = b"".join(
            (_bulk(job_key), _bulk(epoch_ms), _bulk(grace_ms), _bulk(list_key), _bulk(payload))
        )

    def __repr__(self) -> str:
        return f"OutTick({self.job_key!r}, {self.epoch_ms})"


class NotLeader(Exception):
    """The fencing check failed: this beat no longer holds the lease."""


class TickSender:
    """Sends batches of ticks through the claim script."""

    def __init__(self, client: redis.Redis, *, lease_key: str = keys.LEASE) -> None:
        self.client = client
        self.lease_key = lease_key
        self.sha = str(client.script_load(_SCRIPT))

    def send(self, ticks: Sequence[OutTick], token: str | None) -> list[int]:
        """Claim and send ``ticks``; one status per tick (SENT, DUPLICATE or DISABLED).

        ``token`` is the lease token to fence with (None: no fencing, every beat that
        calls this is "leader", which the claims still make safe).
        Raises :class:`NotLeader` when fencing fails (nothing of that chunk is sent).
        """
        if not ticks:
            return []
        head = [self.lease_key, token or "", keys.DISABLED, keys.LAST, keys.TICK_PREFIX]
        head.append(str(CLAIM_MARGIN_MS))
        chunks = [ticks[i : i + CHUNK] for i in range(0, len(ticks), CHUNK)]
        try:
            replies = self._run(head, chunks)
        except NoScriptError:
            # Redis restarted (or SCRIPT FLUSH): load again and replay; replaying is
            # safe because every tick is claimed.
            self.sha = str(self.client.script_load(_SCRIPT))
            replies = self._run(head, chunks)
        statuses: list[int] = []
        for reply in replies:
            if len(reply) == 1 and int(reply[0]) == NOT_LEADER:
                raise NotLeader("the lease is held by another beat")
            statuses.extend(int(s) for s in reply)
        return statuses

    def _run(self, head: list[str], chunks: list[Sequence[OutTick]]) -> list[Any]:
        # redis-py would re-encode ~5 arguments per tick on every send; the ticks carry
        # their encoded arguments, so the whole batch is joined and written at once.
        fixed = b"".join(_bulk(a) for a in ("EVALSHA", self.sha, 0, *head))
        parts: list[bytes] = []
        for chunk in chunks:
            parts.append(b"*%d\r\n" % (3 + len(head) + 5 * len(chunk)))
            parts.append(fixed)
            parts.extend(t.packed for t in chunk)
        pool = self.client.connection_pool
        conn = pool.get_connection()
        replies: list[Any] = []
        error: ResponseError | None = None
        try:
            conn.send_packed_command([b"".join(parts)])
            for _ in chunks:
                try:
                    replies.append(conn.read_response())
                except ResponseError as exc:  # read the other replies, then raise
                    error = error or exc
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)
        if error is not None:
            raise error
        return replies
