"""Claim-and-send: the Lua script that makes every tick go out at most once.

For each tick of a batch, atomically inside Redis: a tick not newer than the job's last
handled tick (``sp:beat:last``) is dropped (another beat, or a replay, went past it); a
paused job's tick is not sent but marked handled (resuming does not catch the pause up);
a tick past the job's ``max_runs`` budget (``sp:beat:runs``) likewise; any other tick is
pushed onto its queue, marked handled and, with a budget, counted.

Main rule: the claim is the compare-and-set of the job's last handled tick inside one
script, so two beats that both believe they lead cannot both send a tick, nor an older
tick after a newer one; replaying a batch after an ambiguous network failure is harmless.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from redis.exceptions import NoScriptError, ResponseError

from jobs_core.status import Trigger
from jobs_core.wire import ENQUEUED, RUN_ID, SCHEDULED, TASK, Keys, TickTemplate

SENT = 1
DUPLICATE = 0
DISABLED = 2
#: Not sent: the job's ``max_runs`` were used up already.
EXHAUSTED = 3
#: Sent, and it was the job's last run under its ``max_runs``.
SENT_LAST = 4

#: Ticks per EVALSHA: keeps each script run short (Redis is single-threaded, and a
#: chunk's messages become visible when its script ends) while one write still carries
#: the whole batch.
CHUNK = 500
MISSING_TEMPLATE = b"T"
#: A tick run id is a UUID in its canonical form; the script cuts it off by length.
RUN_ID_LEN = 36
_GROUP = "\x01"
_FULL = "\x02"
_STAMPED = "\x03"
_BUDGET = "\x04"
_CODES = {TASK: 1, RUN_ID: 2, SCHEDULED: 3, ENQUEUED: 4}


def _render_expression() -> tuple[str, str]:
    """A Lua concatenation of the tick template's layout, unrolled.

    Every template has the same markers in the same order (only the queue and the
    parameters differ; parameters holding ``@@`` get no template), so the script can
    splice a tick's run id and task name with one concatenation instead of a loop over
    the pieces; templates of another layout (none today) take the loop.
    """
    probe = TickTemplate("q", Trigger.SCHEDULE, "{}")
    shape = [_CODES[m] for m in probe.markers() if _CODES[m] in (1, 2)]
    names = {1: "task", 2: "rid"}
    expr = ["c[1]"]
    for i, code in enumerate(shape, start=2):
        expr += [names[code], f"c[{i}]"]
    return ",".join(map(str, shape)), " .. ".join(expr)


_SHAPE, _EXPR = _render_expression()

# Redis pays per argument and per redis.call, and thousands of ticks can share an
# instant: the last-handled and disabled look-ups are one HMGET / SMISMEMBER per chunk,
# the pushes one LPUSH per queue, the bookkeeping one HSET. On-time ticks do not carry
# their message: one template per (queue, parameters) lives in sp:beat:templates, a chunk
# carries a group argument per (instant, template) and then one short argument per tick
# (run id, job key, task name), and the script fills the group's instants in once. A
# missing template (Redis restarted) refuses the chunk before any side effect; the client
# registers the templates and replays it. Catch-up ticks, skip records and ticks that
# cannot use a template carry their whole message. No key per tick: the last-handled
# hash guards the same thing and lives in the same Redis.
# Per tick, Lua makes strings (the parts of its argument, its ~770-byte message), and the
# Lua of Redis 7.0.15 hashes every byte of each new string: the message is the largest
# part of the script's cost (bench/claim_script.py --callgrind counts it); the rest is
# kept to table look-ups, with no number converted to or from text per on-time tick.

_SCRIPT = (
    """
local lease, token, disabled, last = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local tplkey, enq, runs = ARGV[5], ARGV[6], ARGV[7]
local FIRST = 8
if token ~= '' and redis.call('GET', lease) ~= token then
  return 'L'
end
local find, sub, byte, concat = string.find, string.sub, string.byte, table.concat
local codes = {TASK = 1, RUN_ID = 2, SCHEDULED = 3, ENQUEUED = 4}

-- "<queue>\\n<text with @@MARKERS@@>" -> {queue, parts = text, code, text, ..., text}
local function load(id)
  local raw = redis.call('HGET', tplkey, id)
  if not raw then return nil end
  local nl = find(raw, '\\n', 1, true)
  local text, parts, pos = sub(raw, nl + 1), {}, 1
  while true do
    local at = find(text, '@@', pos, true)
    if not at then
      parts[#parts + 1] = sub(text, pos)
      break
    end
    local close = find(text, '@@', at + 2, true)
    parts[#parts + 1] = sub(text, pos, at - 1)
    parts[#parts + 1] = codes[sub(text, at + 2, close - 1)]
    pos = close + 2
  end
  return {queue = sub(raw, 1, nl - 1), parts = parts}
end

-- The template with this group's instants filled in: constants c[1..m+1] around the m
-- places where a tick's task name (1) or run id (2) goes.
local function group(tp, iso)
  local c, kinds, cur = {}, {}, {}
  local parts = tp.parts
  for k = 1, #parts do
    local v = parts[k]
    if k % 2 == 1 then
      cur[#cur + 1] = v
    elseif v == 3 then
      cur[#cur + 1] = iso
    elseif v == 4 then
      cur[#cur + 1] = enq
    else
      c[#c + 1] = concat(cur)
      cur = {}
      kinds[#kinds + 1] = v
    end
  end
  c[#c + 1] = concat(cur)
  return {queue = tp.queue, c = c, kinds = kinds, fast = concat(kinds, ',') == '@@SHAPE@@'}
end

-- A tick's message from a group whose layout is not the usual one (the usual one is
-- spliced inline, in the claim loop).
local function render(g, task, rid)
  local c = g.c
  local buf, kinds = {c[1]}, g.kinds
  for k = 1, #kinds do
    if kinds[k] == 1 then buf[2 * k] = task else buf[2 * k] = rid end
    buf[2 * k + 1] = c[k + 1]
  end
  return concat(buf)
end

-- Pass 1, no side effects: parse, and load the templates, so a missing one (Redis
-- restarted) makes the whole chunk a no-op that the client replays.
local tpls, jobs, msargs, mss, grps, xa, xb = {}, {}, {}, {}, {}, {}, {}
local g, gmsarg, gms = nil, nil, nil
local n = 0
-- budgets[k]: max_runs of tick k, for ticks that carry one ("\4<max>\t<tick>")
local budgets, budgeted = {}, false
for i = FIRST, #ARGV do
  local s = ARGV[i]
  local b = byte(s, 1)
  if b == 4 then
    local p = find(s, '\t', 2, true)
    budgets[n + 1] = tonumber(sub(s, 2, p - 1))
    budgeted = true
    s = sub(s, p + 1)
    b = byte(s, 1)
  end
  if b > 4 then
    -- An on-time tick of the current group (it starts with its run id): the common
    -- case, tested first.
    n = n + 1
    local p = find(s, '\\t', @@RIDLEN@@ + 2, true)
    xa[n], jobs[n], xb[n] = sub(s, 1, @@RIDLEN@@), sub(s, @@RIDLEN@@ + 1, p - 1), sub(s, p + 1)
    msargs[n], mss[n], grps[n] = gmsarg, gms, g
  elseif b == 1 then
    local p1 = find(s, '\\t', 2, true)
    local p2 = find(s, '\\t', p1 + 1, true)
    local id = sub(s, p1 + 1, p2 - 1)
    local tp = tpls[id]
    if not tp then
      tp = load(id)
      if not tp then return 'T' end
      tpls[id] = tp
    end
    gmsarg = sub(s, 2, p1 - 1)
    gms = tonumber(gmsarg)
    g = group(tp, sub(s, p2 + 1))
  elseif b == 2 then
    n = n + 1
    local p1 = find(s, '\\t', 2, true)
    local p2 = find(s, '\\t', p1 + 1, true)
    local p3 = find(s, '\\t', p2 + 1, true)
    jobs[n], msargs[n] = sub(s, 2, p1 - 1), sub(s, p1 + 1, p2 - 1)
    mss[n], grps[n] = tonumber(msargs[n]), false
    xa[n], xb[n] = sub(s, p2 + 1, p3 - 1), sub(s, p3 + 1)
  else
    -- b == 3: a whole message whose enqueued_at goes in at byte offset `at` (the send time).
    n = n + 1
    local p1 = find(s, '\\t', 2, true)
    local p2 = find(s, '\\t', p1 + 1, true)
    local p3 = find(s, '\\t', p2 + 1, true)
    local p4 = find(s, '\\t', p3 + 1, true)
    jobs[n], msargs[n] = sub(s, 2, p1 - 1), sub(s, p1 + 1, p2 - 1)
    mss[n], grps[n] = tonumber(msargs[n]), false
    local at = p4 + tonumber(sub(s, p3 + 1, p4 - 1))
    xa[n], xb[n] = sub(s, p2 + 1, p3 - 1), sub(s, p4 + 1, at) .. enq .. sub(s, at + 1)
  end
end
if n == 0 then return '' end

local prevs = redis.call('HMGET', last, unpack(jobs))
-- Paused jobs are rare: an empty set (SCARD is O(1)) spares converting the chunk's job
-- keys once more for SMISMEMBER.
local off = false
if redis.call('SCARD', disabled) > 0 then
  off = redis.call('SMISMEMBER', disabled, unpack(jobs))
end
local counts, counted = {}, {}
if budgeted then
  local names = {}
  for k in pairs(budgets) do names[#names + 1] = jobs[k] end
  local got = redis.call('HMGET', runs, unpack(names))
  for k = 1, #names do counts[names[k]] = tonumber(got[k] or '0') or 0 end
end
-- tonumber of each distinct last-handled value once: the jobs of an instant mostly share
-- it, and converting 13 digits to a number is a strtod each time.
local nums = {}
-- fields: the HSET arguments (job, tick), appended in tick order: a job marked twice in
-- one chunk is marked with its later tick, as HSET applies its pairs in order.
-- out: one status digit per tick, as strings (a number would be formatted at the end).
local prev, pushes, sizes, order, fields, nf, out = {}, {}, {}, {}, {}, 0, {}
for k = 1, n do
  local job, ms = jobs[k], mss[k]
  local p = prev[job]
  if p == nil then
    local raw = prevs[k]
    if raw then
      p = nums[raw]
      if p == nil then
        p = tonumber(raw) or 0
        nums[raw] = p
      end
    else
      p = 0
    end
  end
  local status = '0'
  local budget = budgeted and budgets[k]
  if ms > p then
    if off and off[k] == 1 then
      status = '2'
    elseif budget and counts[job] >= budget then
      status = '3'
    else
      local gk = grps[k]
      local list, payload
      if gk then
        list = gk.queue
        if gk.fast then
          local c, task, rid = gk.c, xb[k], xa[k]
          payload = @@EXPR@@
        else
          payload = render(gk, xb[k], xa[k])
        end
      else
        list, payload = xa[k], xb[k]
      end
      local q = pushes[list]
      if not q then
        q = {}
        pushes[list], sizes[list] = q, 0
        order[#order + 1] = list
      end
      local size = sizes[list] + 1
      q[size], sizes[list] = payload, size
      status = '1'
      if budget then
        local c = counts[job] + 1
        counts[job], counted[job] = c, c
        if c >= budget then status = '4' end
      end
    end
    prev[job] = ms
    fields[nf + 1], fields[nf + 2] = job, msargs[k]
    nf = nf + 2
  end
  out[k] = status
end
for _, list in ipairs(order) do
  redis.call('LPUSH', list, unpack(pushes[list]))
end
if nf > 0 then redis.call('HSET', last, unpack(fields)) end
if budgeted then
  local cs = {}
  for job, c in pairs(counted) do
    cs[#cs + 1] = job
    cs[#cs + 1] = c
  end
  if #cs > 0 then redis.call('HSET', runs, unpack(cs)) end
end
-- One digit per tick in a single string: parsing a 1,000-element array reply costs
-- the client more than the whole claim-and-push did.
return concat(out)
""".replace("@@SHAPE@@", _SHAPE)
    .replace("@@EXPR@@", _EXPR)
    .replace("@@RIDLEN@@", str(RUN_ID_LEN))
)


def _bulk(value: str | int) -> bytes:
    raw = str(value).encode()
    return b"$%d\r\n%s\r\n" % (len(raw), raw)


class OutTick:
    """One message to send for ``(job_key, epoch_ms)``, its script argument pre-encoded.

    Either a whole payload (:meth:`full`: catch-up and skip records) or, for the ticks
    sent every second, a shared :class:`~jobs_core.wire.TickTemplate` plus the values
    the script splices in (:meth:`templated`).
    """

    __slots__ = ("epoch_ms", "job_key", "packed", "scheduled_iso", "template")

    def __init__(
        self,
        job_key: str,
        epoch_ms: int,
        packed: bytes,
        template: TickTemplate | None = None,
        scheduled_iso: str = "",
    ) -> None:
        self.job_key = job_key
        self.epoch_ms = epoch_ms
        self.packed = packed
        self.template = template
        self.scheduled_iso = scheduled_iso

    @classmethod
    def full(
        cls, job_key: str, epoch_ms: int, list_key: str, payload: str, budget: int | None = None
    ) -> OutTick:
        """A whole message (``budget``: the job's ``max_runs``, for a run it counts)."""
        text = _FULL + "\t".join((job_key, str(epoch_ms), list_key, payload))
        return cls(job_key, epoch_ms, _bulk(_budgeted(text, budget)))

    @classmethod
    def stamped(
        cls,
        job_key: str,
        epoch_ms: int,
        list_key: str,
        payload: str,
        enqueued_at: int,
        budget: int | None = None,
    ) -> OutTick:
        """A whole message that gets the send time as its ``enqueued_at``: the script
        inserts it at byte offset ``enqueued_at`` of ``payload``."""
        fields = (job_key, str(epoch_ms), list_key, str(enqueued_at), payload)
        return cls(job_key, epoch_ms, _bulk(_budgeted(_STAMPED + "\t".join(fields), budget)))

    @classmethod
    def templated(
        cls,
        job_key: str,
        epoch_ms: int,
        template: TickTemplate,
        task: str,
        run_id: str,
        scheduled_iso: str,
        budget: int | None = None,
    ) -> OutTick:
        if len(run_id) != RUN_ID_LEN:
            raise ValueError(f"a tick run id has {RUN_ID_LEN} characters, got {run_id!r}")
        packed = _bulk(_budgeted(f"{run_id}{job_key}\t{task}", budget))
        return cls(job_key, epoch_ms, packed, template, scheduled_iso)

    def __repr__(self) -> str:
        return f"OutTick({self.job_key!r}, {self.epoch_ms})"


def _budgeted(arg: str, budget: int | None) -> str:
    return arg if budget is None else f"{_BUDGET}{budget}\t{arg}"


@dataclass(frozen=True)
class Prepared:
    """A batch encoded for the script: per chunk, its argument count and RESP bytes."""

    ticks: Sequence[OutTick]
    chunks: list[tuple[int, bytes]]


class NotLeader(Exception):
    """The fencing check failed: this beat no longer holds the lease."""


class TickSender:
    """Sends batches of ticks through the claim script."""

    def __init__(self, client: redis.Redis, *, lease_key: str = Keys.LEASE) -> None:
        self.client = client
        self.lease_key = lease_key
        self.sha = str(client.script_load(_SCRIPT))
        self._registered: set[str] = set()
        #: After a send: every tick was SENT or DISABLED (nothing for the caller to
        #: look at tick by tick).
        self.all_accepted = True

    def send(self, ticks: Sequence[OutTick], token: str | None) -> list[int]:
        """Claim and send ``ticks``; one status per tick (SENT, DUPLICATE or DISABLED).

        ``token`` is the lease token to fence with (None: no fencing, every beat that
        calls this is "leader", which the claims still make safe).
        Raises :class:`NotLeader` when fencing fails (nothing of that chunk is sent).
        """
        return self.send_prepared(self.prepare(ticks), token)

    def prepare(self, ticks: Sequence[OutTick]) -> Prepared:
        """Encode ``ticks`` (and store their templates in Redis), ready to send."""
        self._register(ticks)
        chunks: list[tuple[int, bytes]] = []
        for start in range(0, len(ticks), CHUNK):
            parts: list[bytes] = []
            group: tuple[int, str] | None = None
            for tick in ticks[start : start + CHUNK]:
                tpl = tick.template
                if tpl is not None and group != (tick.epoch_ms, tpl.id):
                    group = (tick.epoch_ms, tpl.id)
                    parts.append(_bulk(f"{_GROUP}{tick.epoch_ms}\t{tpl.id}\t{tick.scheduled_iso}"))
                parts.append(tick.packed)
            chunks.append((len(parts), b"".join(parts)))
        return Prepared(ticks, chunks)

    def send_prepared(
        self,
        batch: Prepared,
        token: str | None,
        between: Callable[[], object] | None = None,
    ) -> list[int]:
        """:meth:`send` of a batch encoded by :meth:`prepare`. ``between`` is called
        after each chunk's reply (the caller's chance to renew its lease, on another
        connection, while a long batch goes through)."""
        if not batch.ticks:
            return []
        head = [self.lease_key, token or "", Keys.DISABLED, Keys.LAST, Keys.TEMPLATES]
        head += (datetime.now(UTC).isoformat(), Keys.SCHEDULED_RUNS)
        try:
            replies = self._run(head, batch.chunks, between)
        except NoScriptError:
            # Redis restarted (or SCRIPT FLUSH): load again and replay; replaying is
            # safe because every tick is claimed.
            self.sha = str(self.client.script_load(_SCRIPT))
            replies = self._run(head, batch.chunks, between)
        missing = [i for i, r in enumerate(replies) if _digits(r) == MISSING_TEMPLATE]
        if missing:
            # Redis lost the templates (restart without persistence, FLUSHALL); the
            # script refused those chunks before doing anything, so replay them.
            self._registered.clear()
            self._register(batch.ticks)
            again = self._run(head, [batch.chunks[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        statuses: list[int] = []
        accepted = True
        for reply in replies:
            digits = _digits(reply)
            if digits == b"L":
                raise NotLeader("the lease is held by another beat")
            if digits == MISSING_TEMPLATE:
                raise redis.ResponseError("tick templates vanished twice in a row")
            statuses.extend(d - 48 for d in digits)  # b"0" is 48
            if digits.translate(None, b"12"):  # a DUPLICATE, EXHAUSTED or SENT_LAST
                accepted = False
        self.all_accepted = accepted
        return statuses

    def _register(self, ticks: Sequence[OutTick]) -> None:
        new: dict[Any, str] = {}  # redis-py types mapping keys as a wide union
        for tick in ticks:
            tpl = tick.template
            if tpl is not None and tpl.id not in self._registered:
                new[tpl.id] = f"{tpl.queue}\n{tpl.text}"
        if new:
            self.client.hset(Keys.TEMPLATES, mapping=new)
            self._registered.update(new)

    def _run(
        self,
        head: list[str],
        chunks: list[tuple[int, bytes]],
        between: Callable[[], object] | None = None,
    ) -> list[Any]:
        # redis-py would re-encode every argument on every send; the chunks are encoded
        # already, so the whole batch is joined and written at once.
        args: tuple[str | int, ...] = ("EVALSHA", self.sha, 0, *head)
        fixed = b"".join(_bulk(a) for a in args)
        parts: list[bytes] = []
        for nargs, body in chunks:
            parts += (b"*%d\r\n" % (3 + len(head) + nargs), fixed, body)
        pool = self.client.connection_pool
        conn: Any = pool.get_connection()  # redis-py leaves Connection untyped
        replies: list[Any] = []
        error: ResponseError | None = None
        try:
            conn.send_packed_command([b"".join(parts)])
            for _ in chunks:
                try:
                    replies.append(conn.read_response())
                except ResponseError as exc:  # read the other replies, then raise
                    error = error or exc
                if between is not None:
                    between()
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
