"""Leader lease: one beat of many sends ticks; the others wait to take over.

``SET sp:beat:lease <token> NX PX <ttl>`` elects; renewal and release are Lua scripts
that first check the token (fencing), so a beat that lost the lease while paused can
neither extend nor delete the new leader's lease. The same scripts write the leader
heartbeat hash read by :func:`beat.control.leader_status`.

A renewal that finds the lease expired with no one holding it (the leader was paused,
or its renewal came late on a busy machine) takes it again in the same script, as an
election would: the leader keeps its schedule instead of stepping down and rebuilding
it. It steps down only when another beat holds the lease.

The lease only decides *who* sends; duplicates are prevented independently by the
per-tick claims in :mod:`beat.ticks`, so a lapse or a split brain costs no correctness.
"""

from __future__ import annotations

import secrets
from enum import StrEnum
from typing import Any

import redis

from jobs_core.wire import Keys

from .limits import LEASE_TTL_RANGE as LEASE_TTL_RANGE

# Returns 1: extended (it was ours), 2: taken (it was free), 0: another beat holds it.
_ACQUIRE_OR_RENEW = """
local cur = redis.call('GET', KEYS[1])
local got = 1
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
elseif not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  got = 2
else
  return 0
end
if #ARGV > 3 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 4))
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return got
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if redis.call('HGET', KEYS[2], 'token_tail') == ARGV[2] then
    redis.call('DEL', KEYS[2])
  end
  return 1
end
return 0
"""


class Renewal(StrEnum):
    """What :meth:`Lease.renew` found."""

    EXTENDED = "extended"  # the lease was this beat's: extended
    RETAKEN = "retaken"  # it had expired and no one held it: this beat holds it again
    LOST = "lost"  # another beat holds it

    @property
    def held(self) -> bool:
        return self is not Renewal.LOST


class Lease:
    """The leader lease of one beat process (one random token per process)."""

    def __init__(self, client: redis.Redis, ttl: float, *, key: str = Keys.LEASE) -> None:
        if ttl <= 0:
            raise ValueError("lease ttl must be > 0")
        self.client = client
        self.ttl = ttl
        self.key = key
        self.token = secrets.token_hex(16)
        self._acquire = client.register_script(_ACQUIRE_OR_RENEW)
        self._release = client.register_script(_RELEASE)

    @property
    def ttl_ms(self) -> int:
        return max(1, int(self.ttl * 1000))

    def _call(self, heartbeat: dict[str, Any] | None) -> int:
        args: list[Any] = [self.token, self.ttl_ms, self.ttl_ms * 3]
        if heartbeat:
            # The tail of the token tells release() whether the heartbeat hash is ours
            # without publishing the whole fencing token.
            fields = {**heartbeat, "token_tail": self.token[-8:]}
            for name, value in fields.items():
                args += [name, str(value)]
        return int(self._acquire(keys=[self.key, Keys.LEADER], args=args))

    def acquire(self, heartbeat: dict[str, Any] | None = None) -> bool:
        """Take the lease if free (or extend it if already ours)."""
        return self._call(heartbeat) != 0

    def renew(self, heartbeat: dict[str, Any] | None = None) -> Renewal:
        """Extend the lease, or take it again if it expired and no one else took it;
        :attr:`Renewal.LOST` when another beat holds it.

        Taking a lapsed lease again is safe: every tick is claimed in Redis
        (:mod:`beat.ticks`), so ticks another beat sent while it held the lease in
        between are not sent again, and each send is fenced by the lease token.
        """
        return {0: Renewal.LOST, 1: Renewal.EXTENDED, 2: Renewal.RETAKEN}[self._call(heartbeat)]

    def release(self) -> bool:
        """Give the lease up so a follower takes over at once (only if still ours)."""
        return bool(self._release(keys=[self.key, Keys.LEADER], args=[self.token, self.token[-8:]]))
