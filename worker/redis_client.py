"""The worker's own Redis clients (overlap locks): a direct server, or the master Redis
Sentinel names, followed across failovers (each new connection asks the sentinels).

The broker connection is kombu's, configured in :mod:`worker.config`.
"""

from __future__ import annotations

from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import Sentinel

from jobs_core.redis_url import RedisTarget


def _sentinel_kwargs(target: RedisTarget, options: dict[str, Any]) -> dict[str, Any]:
    # Sentinels get the same socket timeouts: a dead sentinel must not stall discovery.
    timeouts = {k: v for k, v in options.items() if k.startswith("socket_")}
    return {**target.sentinel_kwargs(), **timeouts}


def connect(target: RedisTarget, **options: Any) -> redis.Redis:
    """A blocking client of ``target``'s (master) server; ``options`` are redis-py's."""
    if target.sentinel is None:
        return redis.Redis.from_url(target.url, **options)
    sentinels = Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinel.hosts),
        sentinel_kwargs=_sentinel_kwargs(target, options),
        **target.server_kwargs(),
    )
    client = sentinels.master_for(  # type: ignore[no-untyped-call]
        target.sentinel.master_name, redis_class=redis.Redis, **options
    )
    return cast("redis.Redis", client)


def connect_async(target: RedisTarget, **options: Any) -> aioredis.Redis:
    """An asyncio client of ``target``'s (master) server."""
    if target.sentinel is None:
        return aioredis.Redis.from_url(target.url, **options)
    sentinels = AsyncSentinel(  # type: ignore[no-untyped-call]
        list(target.sentinel.hosts),
        sentinel_kwargs=_sentinel_kwargs(target, options),
        **target.server_kwargs(),
    )
    name = target.sentinel.master_name
    client = sentinels.master_for(name, redis_class=aioredis.Redis, **options)
    return cast("aioredis.Redis", client)
