"""Runtime control and status, shared by the beat and the CLI.

``jobs disable NAME`` adds the job key to the ``sp:jobs:disabled`` set; the claim script
reads that set at every tick, so pausing and resuming take effect at the next tick of
the job without restarting or even waking the beat. ``leader_status`` reads the
heartbeat the leader writes at every lease renewal.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, cast

import redis

from jobs_core.wire import Keys


def disable(client: redis.Redis, job_key: str) -> bool:
    """Pause ``job_key`` (an ``extension/job`` key); True if it was enabled before."""
    return bool(client.sadd(Keys.DISABLED, job_key))


def enable(client: redis.Redis, job_key: str) -> bool:
    """Resume ``job_key``; True if it was disabled before."""
    return bool(client.srem(Keys.DISABLED, job_key))


def is_disabled(client: redis.Redis, job_key: str) -> bool:
    return bool(client.sismember(Keys.DISABLED, job_key))


def disabled_jobs(client: redis.Redis) -> set[str]:
    members = client.smembers(Keys.DISABLED)
    return {m.decode() if isinstance(m, bytes) else m for m in members}


def last_sent(client: redis.Redis, job_key: str) -> datetime | None:
    """The scheduled instant of the last tick the beats handled for ``job_key``."""
    raw = client.hget(Keys.LAST, job_key)
    if raw is None:
        return None
    return datetime.fromtimestamp(int(raw) / 1000, UTC)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def leader_status(client: redis.Redis) -> dict[str, Any] | None:
    """The current leader, or None when no beat has led within three lease TTLs.

    Keys: ``beat_id``, ``host``, ``pid`` (int), ``since`` and ``heartbeat`` (ISO 8601),
    ``heartbeat_age_s`` (float), ``lease_ttl_s`` (float), ``lease_held`` (bool: the lease
    key exists right now) and ``alive`` (heartbeat younger than two lease TTLs and the
    lease held).
    """
    raw = cast("dict[Any, Any]", client.hgetall(Keys.LEADER))
    if not raw:
        return None
    data = {_text(k): _text(v) for k, v in raw.items()}
    data.pop("token_tail", None)
    out: dict[str, Any] = dict(data)
    try:
        out["pid"] = int(data.get("pid", "0"))
        ttl_s = int(data.get("lease_ttl_ms", "0")) / 1000
        beat_ms = int(data.get("heartbeat_ms", "0"))
    except ValueError:
        return out
    out.pop("lease_ttl_ms", None)
    out.pop("heartbeat_ms", None)
    out["lease_ttl_s"] = ttl_s
    age = max(0.0, time.time() - beat_ms / 1000)
    out["heartbeat_age_s"] = round(age, 3)
    out["lease_held"] = bool(client.exists(Keys.LEASE))
    out["alive"] = bool(out["lease_held"] and age < 2 * ttl_s)
    return out
