"""The worker's Redis channel (worker.screening.Channel) on a real Redis: one shared
blocking client per connection pool, rebuilt when kombu replaces the pool."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection

pytestmark = pytest.mark.servers


@pytest.fixture
def channel(redis_url: str) -> Iterator[Any]:
    with Connection(redis_url, transport="worker.screening:Transport") as conn:
        yield conn.default_channel


def test_blocking_client_is_shared_until_the_pool_changes(channel: Any) -> None:
    first = channel._create_client()
    assert channel._create_client() is first
    assert first.connection_pool is channel.pool
    with channel.conn_or_acquire() as client:
        assert client is first

    channel._disconnect_pools()  # what kombu does after a fork or a lost connection
    rebuilt = channel._create_client()
    assert rebuilt is not first
    assert rebuilt.connection_pool is channel.pool
    assert rebuilt.ping()


def test_the_consuming_client_is_never_the_shared_one(channel: Any) -> None:
    # The BRPOP client blocks on its connection: it must stay a client of its own.
    assert channel.client is not channel._create_client()
    assert channel.client.connection_pool is channel.async_pool


def test_publish_consume_and_ack_through_the_shared_client(channel: Any, redis_url: str) -> None:
    conn = channel.connection.client
    queue = conn.SimpleQueue("sp-channel-test")
    try:
        for i in range(5):
            queue.put({"n": i})
        got = []
        for _ in range(5):
            message = queue.get(timeout=10)
            got.append(message.payload["n"])
            message.ack()
        assert sorted(got) == list(range(5))
    finally:
        queue.close()
    plain = redis.Redis.from_url(redis_url)
    try:
        # Every ack went through: nothing is left in kombu's unacked index.
        assert plain.hlen("unacked") == 0
        assert plain.zcard("unacked_index") == 0
        assert plain.llen("sp-channel-test") == 0
    finally:
        plain.close()
