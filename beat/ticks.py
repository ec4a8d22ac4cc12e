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
disabled look-ups are one HMGET / SMISMEMBER per chunk and the pushes one LPUSH per queue.
On-time ticks do not carry their message: the beat stores one message template per
(queue, parameters) in ``sp:beat:templates`` and a tick is one tab-separated argument
(job, instant, grace, template id, task name, run id, scheduled instant) from which the
script renders the message; a missing template (Redis restarted) makes the script refuse
the chunk before any side effect, and the client registers the templates and replays
it. Catch-up ticks and skip records carry their whole message. On the client every
tick's argument is RESP-encoded once when the tick is built (ahead of its instant), so
sending is a bytes join and one socket write. The claim TTL is computed in the script
from Redis' clock: ``tick + misfire_grace - now + margin``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import redis
from redis.exceptions import NoScriptError, ResponseError

from worker.messages import TickTemplate

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
MISSING_TEMPLATE = b"T"
#: Arguments per tick after the fixed head (see the script).
TICK_ARGS = 1

_SCRIPT = """
local lease, token, disabled, last, prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local margin, tplkey, enq = tonumber(ARGV[6]), ARGV[7], ARGV[8]
local FIRST = 9
if token ~= '' and redis.call('GET', lease) ~= token then
  return 'L'
end
-- One argument per tick, its fields separated by tabs (none of them can hold one):
-- Redis pays per argument, far more than a few string.find calls cost here.
local find, sub = string.find, string.sub
local jobs, msargs, graces, ids, xa, xb, xc = {}, {}, {}, {}, {}, {}, {}
for i = FIRST, #ARGV do
  local s, n = ARGV[i], i - FIRST + 1
  local p1 = find(s, '\t', 1, true)
  local p2 = find(s, '\t', p1 + 1, true)
  local p3 = find(s, '\t', p2 + 1, true)
  local p4 = find(s, '\t', p3 + 1, true)
  local p5 = find(s, '\t', p4 + 1, true)
  local p6 = find(s, '\t', p5 + 1, true)
  jobs[n], msargs[n] = sub(s, 1, p1 - 1), sub(s, p1 + 1, p2 - 1)
  graces[n], ids[n] = sub(s, p2 + 1, p3 - 1), sub(s, p3 + 1, p4 - 1)
  xa[n], xb[n], xc[n] = sub(s, p4 + 1, p5 - 1), sub(s, p5 + 1, p6 - 1), sub(s, p6 + 1)
end
-- Templates first, before any side effect: a missing one (Redis restarted) makes the
-- whole chunk a no-op that the client replays after registering them again.
local codes = {TASK = 1, RUN_ID = 2, SCHEDULED = 3, ENQUEUED = 4}
local tpls = {}
for n = 1, #ids do
  local id = ids[n]
  if id ~= '' and not tpls[id] then
    local raw = redis.call('HGET', tplkey, id)
    if not raw then return 'T' end
    local nl = find(raw, '\\n', 1, true)
    local text = sub(raw, nl + 1)
    local parts, kinds, pos = {}, {}, 1
    while true do
      local at = find(text, '@@', pos, true)
      local piece = sub(text, pos, at and at - 1 or -1)
      local k = #parts + 1
      if k % 2 == 1 then
        parts[k], kinds[k] = piece, 0
      else
        parts[k], kinds[k] = '', codes[piece]
      end
      if not at then break end
      pos = at + 2
    end
    tpls[id] = {queue = sub(raw, 1, nl - 1), parts = parts, kinds = kinds}
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prevs = redis.call('HMGET', last, unpack(jobs))
local off = redis.call('SMISMEMBER', disabled, unpack(jobs))
local prev, pushes, order, marks, out, buf = {}, {}, {}, {}, {}, {}
for n = 1, #jobs do
  local job, msarg = jobs[n], msargs[n]
  local ms = tonumber(msarg)
  local p = prev[job]
  if p == nil then p = tonumber(prevs[n] or '0') or 0 end
  local status = 0
  if ms > p then
    if off[n] == 1 then
      status = 2
    else
      local ttl = ms + tonumber(graces[n]) - now
      if ttl < 0 then ttl = 0 end
      if redis.call('SET', prefix .. job .. ':' .. msarg, '1', 'NX', 'PX', ttl + margin) then
        local list, payload
        local id = ids[n]
        if id == '' then
          list, payload = xa[n], xb[n]
        else
          local tp = tpls[id]
          local vals = {xa[n], xb[n], xc[n], enq}
          local parts, kinds = tp.parts, tp.kinds
          for k = 1, #parts do
            local kind = kinds[k]
            if kind == 0 then buf[k] = parts[k] else buf[k] = vals[kind] end
          end
          list, payload = tp.queue, table.concat(buf, '', 1, #parts)
        end
        local q = pushes[list]
        if not q then
          q = {}
          pushes[list] = q
          order[#order + 1] = list
        end
        q[#q + 1] = payload
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
-- One digit per tick in a single string: parsing a 1,000-element array reply costs
-- the client more than the whole claim-and-push did.
return table.concat(out)
"""


def _bulk(value: str | int) -> bytes:
    raw = str(value).encode()
    return b"$%d\r\n%s\r\n" % (len(raw), raw)


class OutTick:
    """One message to send for ``(job_key, epoch_ms)``; its RESP arguments pre-encoded.

    Either a whole payload (:meth:`full`: catch-up and skip records) or, for the ticks
    sent every second, a shared :class:`~worker.messages.TickTemplate` plus the values
    the script fills in (:meth:`templated`).
    """

    __slots__ = ("epoch_ms", "grace_ms", "job_key", "packed", "template")

    def __init__(
        self,
        job_key: str,
        epoch_ms: int,
        grace_ms: int,
        template: TickTemplate | None,
        args: tuple[str, str, str],
    ) -> None:
        self.job_key = job_key
        self.epoch_ms = epoch_ms
        self.grace_ms = grace_ms
        self.template = template
        tpl_id = template.id if template is not None else ""
        fields = (job_key, str(epoch_ms), str(grace_ms), tpl_id, *args)
        self.packed = _bulk("\t".join(fields))

    @classmethod
    def full(
        cls, job_key: str, epoch_ms: int, grace_ms: int, list_key: str, payload: str
    ) -> OutTick:
        return cls(job_key, epoch_ms, grace_ms, None, (list_key, payload, ""))

    @classmethod
    def templated(
        cls,
        job_key: str,
        epoch_ms: int,
        grace_ms: int,
        template: TickTemplate,
        task: str,
        run_id: str,
        scheduled_iso: str,
    ) -> OutTick:
        return cls(job_key, epoch_ms, grace_ms, template, (task, run_id, scheduled_iso))

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
        self._registered: set[str] = set()

    def send(self, ticks: Sequence[OutTick], token: str | None) -> list[int]:
        """Claim and send ``ticks``; one status per tick (SENT, DUPLICATE or DISABLED).

        ``token`` is the lease token to fence with (None: no fencing, every beat that
        calls this is "leader", which the claims still make safe).
        Raises :class:`NotLeader` when fencing fails (nothing of that chunk is sent).
        """
        if not ticks:
            return []
        self._register(ticks)
        head = [self.lease_key, token or "", keys.DISABLED, keys.LAST, keys.TICK_PREFIX]
        head += [str(CLAIM_MARGIN_MS), keys.TEMPLATES, datetime.now(UTC).isoformat()]
        chunks = [ticks[i : i + CHUNK] for i in range(0, len(ticks), CHUNK)]
        try:
            replies = self._run(head, chunks)
        except NoScriptError:
            # Redis restarted (or SCRIPT FLUSH): load again and replay; replaying is
            # safe because every tick is claimed.
            self.sha = str(self.client.script_load(_SCRIPT))
            replies = self._run(head, chunks)
        missing = [i for i, r in enumerate(replies) if _digits(r) == MISSING_TEMPLATE]
        if missing:
            # Redis lost the templates (restart without persistence, FLUSHALL); the
            # script refused those chunks before doing anything, so replay them.
            self._registered.clear()
            self._register(ticks)
            again = self._run(head, [chunks[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        statuses: list[int] = []
        for reply in replies:
            digits = _digits(reply)
            if digits == b"L":
                raise NotLeader("the lease is held by another beat")
            if digits == MISSING_TEMPLATE:
                raise redis.ResponseError("tick templates vanished twice in a row")
            statuses.extend(d - 48 for d in digits)  # b"0" is 48
        return statuses

    def _register(self, ticks: Sequence[OutTick]) -> None:
        new: dict[str, str] = {}
        for tick in ticks:
            tpl = tick.template
            if tpl is not None and tpl.id not in self._registered:
                new[tpl.id] = f"{tpl.queue}\n{tpl.text}"
        if new:
            self.client.hset(keys.TEMPLATES, mapping=new)
            self._registered.update(new)

    def _run(self, head: list[str], chunks: list[Sequence[OutTick]]) -> list[Any]:
        # redis-py would re-encode ~7 arguments per tick on every send; the ticks carry
        # their encoded arguments, so the whole batch is joined and written at once.
        fixed = b"".join(_bulk(a) for a in ("EVALSHA", self.sha, 0, *head))
        parts: list[bytes] = []
        for chunk in chunks:
            parts.append(b"*%d\r\n" % (3 + len(head) + TICK_ARGS * len(chunk)))
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


def _digits(reply: Any) -> bytes:
    return reply.encode() if isinstance(reply, str) else bytes(reply)
