"""Screening of incoming messages: what the worker cannot accept is dead-lettered, not run.

A message can fail at three depths, each hooked where it fails:

- the Redis transport: kombu parses the raw list item as JSON and builds its message
  before Celery sees anything, and an exception there stops the worker ("Unrecoverable
  error"; kombu has no hook for it). :class:`Channel` screens every ``BRPOP`` reply
  through a redis-py response callback and keeps a bad item instead of passing it on;
- Celery's consumer: an unknown task name, a body that does not decode, a message with
  no task header: :class:`Consumer` overrides the handlers that would log a traceback
  and drop the message;
- the job task's strategy (run in the consumer, before a request exists): content type
  other than JSON, headers Celery would choke on, and run-message validation
  (:class:`jobs_core.wire.RunMessage`).

Every refused message is acknowledged after it is kept, so it is never redelivered; one
that could not be kept (Redis failing) stays unacknowledged and comes back after the
visibility timeout.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.strategy import default as default_strategy
from kombu.exceptions import ContentDisallowed
from kombu.transport import redis as kombu_redis
from kombu.utils import encoding as kombu_encoding
from kombu.utils import json as kombu_json

from jobs_core.errors import InvalidMessage
from jobs_core.text import cut, quoted
from jobs_core.wire import DeadLetter, RunMessage, check_task_headers

from .dead_letter import record

log = logging.getLogger("worker.screening")
# What kombu's Redis transport applies to a popped item, in that order.
_bytes_to_str: Callable[[Any], str] = kombu_encoding.bytes_to_str
_loads: Callable[[str], Any] = kombu_json.loads


def envelope_problem(channel: Any, item: bytes | str) -> str | None:
    """Why kombu could not turn ``item`` into a message (None when it can)."""
    try:
        payload = _loads(_bytes_to_str(item))
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        return f"not JSON: {cut(str(exc), 80)}"
    if not isinstance(payload, dict):
        return f"not a message envelope: a JSON {type(payload).__name__}, not an object"
    headers = payload.get("headers")
    if headers is not None and not isinstance(headers, dict):
        return "headers: not a JSON object"
    try:
        message = channel.Message(payload, channel=channel)
        delivery = message.delivery_info
        delivery["exchange"], delivery["routing_key"]  # what kombu reads next
    except Exception as exc:
        return f"not a message envelope: {type(exc).__name__} {cut(str(exc), 80)}"
    if not isinstance(message.delivery_tag, str | int):
        return f"delivery_tag {quoted(message.delivery_tag, 80)} is not a string"
    task = message.headers.get("task")
    if task is not None and not isinstance(task, str):
        return f"headers.task: {quoted(task, 80)} is not a string"
    return None


class Channel(kombu_redis.Channel):
    """kombu's Redis channel, with every popped item screened before kombu parses it.

    It also keeps one blocking client per connection pool: kombu builds a new redis-py
    client for every ack, event and publish (``conn_or_acquire``), and building one
    (its callbacks table, its pool-instantiation event) cost a worker's consumer about a
    tenth of its CPU per run. A client holds no connection of its own (each command takes
    one from the pool), so sharing it is what redis-py intends; it is rebuilt when kombu
    replaces the pool (after a connection error or a Sentinel failover).
    """

    _blocking_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if not asynchronous:
            pool = self.pool
            client = self._blocking_client
            if client is None or client.connection_pool is not pool:
                client = super()._create_client(False)  # type: ignore[no-untyped-call]
                self._blocking_client = client
            return client
        client = super()._create_client(True)  # type: ignore[no-untyped-call]
        client.set_response_callback("BRPOP", self._screen_brpop)  # the client that BRPOPs
        return client

    def _screen_brpop(self, response: Any, **_: Any) -> tuple[Any, Any] | None:
        if not response:
            return None
        dest, item = response
        problem = envelope_problem(self, item)
        if problem is None:
            return dest, item
        queue = _bytes_to_str(dest).rsplit(self.sep, 1)[0]
        letter = DeadLetter.of(item, reason=problem, queue=queue, worker=socket.gethostname())
        with self.conn_or_acquire() as client:
            record(client, letter)
        # kombu reads None as an empty poll and issues the next BRPOP.
        return None


class Transport(kombu_redis.Transport):
    Channel = Channel


class _SentinelQoS(kombu_redis.QoS):
    """kombu's QoS, for a channel whose broker connection may be gone.

    After a failover kombu 5.7 closes the channel and Celery later acknowledges or
    rejects the runs that were in flight on it; each of those rebuilds the Sentinel pool
    from the closed connection and fails with AttributeError, which Celery treats as
    unrecoverable: the worker stops consuming. Here they are left alone instead: the
    messages stay in Redis's unacked index and the periodic restore hands them out again
    after the visibility timeout, as for a killed worker (a finished run is then not run
    again).
    """

    def _gone(self, what: str, count: int = 1) -> bool:
        connection = self.channel.connection
        if connection is not None and connection.client is not None:
            return False
        log.warning(
            "broker connection lost: %d message(s) left to the visibility-timeout restore"
            " instead of %s",
            count,
            what,
        )
        return True

    def restore_unacked(self, client: Any = None) -> None:
        if client is None and self._gone("restored now", len(self._delivered)):
            self._delivered.clear()
            return
        super().restore_unacked(client)  # type: ignore[no-untyped-call]

    def ack(self, delivery_tag: Any) -> None:
        if not self._gone("acknowledged"):
            super().ack(delivery_tag)  # type: ignore[no-untyped-call]

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        if not self._gone("rejected"):
            super().reject(delivery_tag, requeue)  # type: ignore[no-untyped-call]


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel (master looked up through the sentinels), screened."""

    QoS = _SentinelQoS


class SentinelTransport(kombu_redis.SentinelTransport):
    """For ``sentinel://`` broker URLs: ``broker_transport`` names the transport class,
    so the URL's scheme alone no longer picks kombu's Sentinel transport."""

    Channel = SentinelChannel


def dead_letter(message: Any, reason: str, hostname: str | None, connection_errors: Any) -> None:
    """Keep a message Celery delivered, then acknowledge it."""
    raw = getattr(message, "_raw", None)
    if raw is None:  # not a virtual-transport message: keep what kombu decoded
        raw = {"headers": message.headers, "properties": message.properties, "body": None}
    text = json.dumps(raw, default=str, separators=(",", ":"))
    queue = (message.delivery_info or {}).get("routing_key")
    letter = DeadLetter.of(text, reason=reason, queue=queue, worker=hostname)
    with message.channel.conn_or_acquire() as client:
        kept = record(client, letter)
    if kept:
        message.ack_log_error(log, connection_errors)


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's consumer, dead-lettering what it would log with a traceback and drop."""

    def _dead_letter(self, message: Any, reason: str) -> None:
        dead_letter(message, reason, self.hostname, self.connection_errors)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        self._dead_letter(message, "not a task message: no task name in its headers or body")

    def on_unknown_task(self, body: Any, message: Any, exc: BaseException) -> None:
        name = (message.headers or {}).get("task")
        self._dead_letter(message, f"unknown task {quoted(name, 120)}: no job of this worker")

    def on_invalid_task(self, body: Any, message: Any, exc: BaseException) -> None:
        self._dead_letter(message, f"invalid task message: {cut(str(exc))}")

    def on_decode_error(self, message: Any, exc: BaseException) -> None:
        self._dead_letter(message, _decode_reason(message, exc))


def _decode_reason(message: Any, exc: BaseException) -> str:
    if isinstance(exc, ContentDisallowed):
        return f"content type {quoted(message.content_type, 80)} refused: JSON only"
    return f"body does not decode as {quoted(message.content_type, 80)}: {cut(str(exc))}"


def message_problem(message: Any, body: Any) -> str | None:
    """Why a message of a job task must not run (None when it may)."""
    if body is not None:
        return "a Celery protocol 1 message; job tasks take protocol 2"
    try:
        check_task_headers(message.headers)
    except InvalidMessage as exc:
        return exc.reason
    try:
        decoded = message.decode()
    except Exception as exc:
        return _decode_reason(message, exc)
    try:
        RunMessage.from_body(decoded)
    except InvalidMessage as exc:
        return exc.reason
    return None


def strategy(task: Any, app: Any, consumer: Any, **kwargs: Any) -> Any:
    """Celery's default strategy for a job task, behind the run-message checks."""
    handle = default_strategy(task, app, consumer, **kwargs)
    hostname = consumer.hostname
    connection_errors = consumer.connection_errors

    def task_message_handler(
        message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kw: Any
    ) -> Any:
        problem = message_problem(message, body)
        if problem is not None:
            name = quoted((message.headers or {}).get("task"), 120)
            dead_letter(message, f"{name}: {problem}", hostname, connection_errors)
            return None
        return handle(message, body, ack, reject, callbacks, **kw)

    return task_message_handler
