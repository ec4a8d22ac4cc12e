"""The active alert incidents in Redis (``Keys.ALERTS``), shared by the beat and the CLI."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any, cast

import redis

from jobs_core.alerts import Incident
from jobs_core.wire import Keys

log = logging.getLogger("beat.alerts")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def active_incidents(client: redis.Redis) -> dict[str, Incident]:
    """Every incident firing now, by key; an unreadable entry is logged and left out."""
    raw = cast("dict[Any, Any]", client.hgetall(Keys.ALERTS))
    out: dict[str, Incident] = {}
    for key, value in raw.items():
        try:
            out[_text(key)] = Incident.from_json(json.loads(_text(value)))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("unreadable alert entry %s in %s: %s", _text(key), Keys.ALERTS, exc)
    return out


def store_incidents(
    client: redis.Redis,
    active: Mapping[str, Incident],
    resolved: Iterable[str],
    stored: Mapping[str, Incident] | None = None,
) -> None:
    """Write ``active`` and drop ``resolved`` in one transaction. ``stored``: what the
    hash holds already (as :func:`active_incidents` read it); those incidents are not
    written again (thousands of unchanged ones every round otherwise)."""
    pipe = client.pipeline(transaction=True)
    gone = [key for key in resolved if key not in active]
    if gone:
        pipe.hdel(Keys.ALERTS, *gone)
    if stored is not None:
        active = {k: i for k, i in active.items() if stored.get(k) != i}
    if active:
        pipe.hset(
            Keys.ALERTS,
            mapping={k: json.dumps(i.to_json(), sort_keys=True) for k, i in active.items()},
        )
    pipe.execute()
