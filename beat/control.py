"""Runtime control and status, shared by the beat, the CLI and the dashboard.

``jobs disable NAME`` adds the job key to the ``sp:jobs:disabled`` set; the claim script
reads that set at every tick, so pausing and resuming take effect at the next tick of
the job without restarting or even waking the beat. Who paused it, when and why sit
beside the set (``sp:jobs:pause-notes``), written and cleared in the same transaction.
``leader_status`` reads the heartbeat the leader writes at every lease renewal;
``scheduled_runs`` the run counts the claim script keeps for jobs with ``max_runs``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import redis

from jobs_core.wire import Keys


@dataclass(frozen=True)
class Pause:
    """Why, by whom and when a job was paused."""

    note: str | None
    by: str | None
    at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "paused_note": self.note,
            "paused_by": self.by,
            "paused_at": self.at.isoformat() if self.at else None,
        }


def disable(
    client: redis.Redis,
    job_key: str,
    *,
    note: str | None = None,
    by: str | None = None,
    at: datetime | None = None,
) -> bool:
    """Pause ``job_key`` (an ``extension/job`` key); True if it was enabled before.

    The note, who and when (default: now) are kept until :func:`enable`; pausing a
    paused job again replaces them.
    """
    record = {"note": note, "by": by, "at": (at or datetime.now(UTC)).isoformat()}
    pipe = client.pipeline(transaction=True)
    pipe.sadd(Keys.DISABLED, job_key)
    pipe.hset(Keys.PAUSE_NOTES, job_key, json.dumps(record))
    added, _ = pipe.execute()
    return bool(added)


def enable(client: redis.Redis, job_key: str) -> bool:
    """Resume ``job_key`` (its pause note goes too); True if it was disabled before."""
    pipe = client.pipeline(transaction=True)
    pipe.srem(Keys.DISABLED, job_key)
    pipe.hdel(Keys.PAUSE_NOTES, job_key)
    removed, _ = pipe.execute()
    return bool(removed)


def _pause(raw: Any) -> Pause:
    try:
        data = json.loads(raw)
        at = datetime.fromisoformat(data["at"]) if data.get("at") else None
        return Pause(data.get("note"), data.get("by"), at)
    except (ValueError, TypeError, KeyError, AttributeError):
        return Pause(None, None, None)  # written by something else: paused, no details


def pauses(client: redis.Redis) -> dict[str, Pause]:
    """Every paused job with its note (jobs paused without one get an empty note)."""
    pipe = client.pipeline(transaction=True)
    pipe.smembers(Keys.DISABLED)
    pipe.hgetall(Keys.PAUSE_NOTES)
    members, notes = pipe.execute()
    by_key = {_text(k): v for k, v in cast("dict[Any, Any]", notes).items()}
    out: dict[str, Pause] = {}
    for member in members:
        key = _text(member)
        raw = by_key.get(key)
        out[key] = _pause(raw) if raw is not None else Pause(None, None, None)
    return out


def scheduled_runs(client: redis.Redis, job_keys: Iterable[str]) -> dict[str, int]:
    """Scheduled runs sent so far of each of ``job_keys`` (kept for jobs with
    ``max_runs`` only; 0 when none)."""
    keys = list(job_keys)
    if not keys:
        return {}
    values = cast("list[Any]", client.hmget(Keys.SCHEDULED_RUNS, keys))
    return {k: int(v) if v is not None else 0 for k, v in zip(keys, values, strict=True)}


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
