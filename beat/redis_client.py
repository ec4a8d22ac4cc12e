"""The beat's Redis client: a direct server, or the master Redis Sentinel names.

A Sentinel client asks the sentinels for the master on every new connection, so after a
failover the beat's reconnect (see :mod:`beat.service`) lands on the promoted replica;
a connection that finds a demoted master read-only is dropped with a ConnectionError.
"""

from __future__ import annotations

from typing import Any, cast

import redis
from redis.sentinel import Sentinel

from jobs_core.redis_url import RedisTarget


def connect(target: RedisTarget, **options: Any) -> redis.Redis:
    """A client of ``target``'s (master) server; ``options`` are redis-py's."""
    if target.sentinel is None:
        return redis.Redis.from_url(target.url, **options)
    # Sentinels get the same socket timeouts: a dead sentinel must not stall discovery.
    timeouts = {k: v for k, v in options.items() if k.startswith("socket_")}
    sentinels = Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinel.hosts),
        sentinel_kwargs={**target.sentinel_kwargs(), **timeouts},
        **target.server_kwargs(),
    )
    client = sentinels.master_for(  # type: ignore[no-untyped-call]
        target.sentinel.master_name, redis_class=redis.Redis, **options
    )
    return cast("redis.Redis", client)
