"""The worker's heartbeat: a thread of the main process keeps ``sp:workers:<hostname>``
alive (see :mod:`jobs_core.liveness` for the timings and what the beat does with it), and
publishes beside it the messages this worker holds for their countdown (``sp:held:``),
which the beat hands back to the queue if this worker dies.

Started on Celery's ``worker_init``, before the worker consumes anything, so no run of
this process can start without a heartbeat; stopped on ``worker_shutdown``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from datetime import datetime
from typing import Any

from celery import signals

from jobs_core.liveness import HEARTBEAT_EVERY_S, HEARTBEAT_TTL_S, Heartbeat
from jobs_core.redis_url import parse_redis_url
from jobs_core.urls import mask_url
from jobs_core.wire import Keys

log = logging.getLogger("worker.heartbeat")

# Announce the worker: returns 1 when its name was already known (an earlier life of it
# may have left runs behind).
_ANNOUNCE = """
local known = redis.call('HEXISTS', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return known
"""


def held_messages() -> dict[str, str]:
    """``delivery tag -> task id`` of the requests this process holds without having
    started them: waiting for their ETA or countdown (retries, re-queues), or for a pool
    slot once it passed.

    Read from the consumer's state by the heartbeat thread: a copy that the consumer
    changes meanwhile is simply taken again at the next beat.
    """
    from celery.worker import state

    try:
        active = set(state.active_requests)
        waiting = [r for r in tuple(state.reserved_requests) if r not in active]
        # Celery 5.5 keeps ETA requests apart; before, they were reserved ones.
        waiting += tuple(getattr(state, "scheduled_requests", ()))
    except RuntimeError:  # changed size during the copy
        return {}
    out: dict[str, str] = {}
    for request in waiting:
        message = getattr(request, "message", None)
        tag = getattr(message, "delivery_tag", None)
        if isinstance(tag, str) and request.id:
            out[tag] = str(request.id)
    return out


def database_now(database_url: str) -> datetime | None:
    """PostgreSQL's clock, the one run history stamps ``started_at`` with."""
    import psycopg

    try:
        with psycopg.connect(database_url, connect_timeout=5, autocommit=True) as conn:
            row = conn.execute("SELECT now()").fetchone()
    except Exception as exc:
        log.warning(
            "heartbeat: no boot instant from %s (%s): runs an earlier life of this worker "
            "left running are found only once its heartbeat has expired",
            mask_url(database_url),
            type(exc).__name__,
        )
        return None
    return row[0] if row else None


class WorkerHeartbeat:
    """Publishes one worker's heartbeat until :meth:`stop`."""

    def __init__(self, hostname: str, redis_url: str, database_url: str | None) -> None:
        self.hostname = hostname
        self.redis_url = redis_url
        self.database_url = database_url
        self._stop = threading.Event()
        self._client: Any = None
        self._failing = False
        self._value = ""
        #: What :data:`Keys.held` says now (None: not written yet).
        self._held: dict[str, str] | None = None
        self._thread = threading.Thread(target=self._run, name="worker-heartbeat", daemon=True)

    def start(self) -> WorkerHeartbeat:
        from .redis_client import connect

        boot = database_now(self.database_url) if self.database_url else None
        self._value = Heartbeat(self.hostname, os.getpid(), boot).dumps()
        self._client = connect(
            parse_redis_url(self.redis_url), socket_timeout=2, socket_connect_timeout=2
        )
        try:
            known = self._client.eval(
                _ANNOUNCE, 2, Keys.WORKERS, Keys.worker(self.hostname), *self._args()
            )
            if known and boot is not None:
                # The beat marks lost what the earlier life left running (started before
                # ``boot``); the runs of this life start after it.
                self._client.hset(Keys.WORKERS_RESTARTED, self.hostname, boot.isoformat())
        except Exception as exc:
            self._warn(exc)
        self._thread.start()
        log.info(
            "heartbeat %s every %gs (ttl %gs)",
            Keys.worker(self.hostname),
            HEARTBEAT_EVERY_S,
            HEARTBEAT_TTL_S,
        )
        return self

    def _args(self) -> tuple[str, str, int]:
        return self.hostname, self._value, int(HEARTBEAT_TTL_S * 1000)

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_EVERY_S):
            self.beat()

    def beat(self) -> None:
        held: dict[str, str] | None
        try:
            held = held_messages()
        except Exception:  # never let it stop the heartbeat: keep what was published
            log.warning("heartbeat: could not list the held messages", exc_info=True)
            held = self._held
        try:
            # One transaction: the held messages are never seen half rewritten.
            pipe = self._client.pipeline(transaction=held != self._held)
            pipe.set(Keys.worker(self.hostname), self._value, px=int(HEARTBEAT_TTL_S * 1000))
            pipe.hset(Keys.WORKERS, self.hostname, self._value)
            if held is not None and held != self._held:
                pipe.delete(Keys.held(self.hostname))
                if held:
                    pipe.hset(Keys.held(self.hostname), mapping=held)
            pipe.execute()
        except Exception as exc:
            self._held = None  # written again at the next beat
            self._warn(exc)
            return
        self._held = held
        if self._failing:
            log.warning("heartbeat %s renewed again", Keys.worker(self.hostname))
            self._failing = False

    def _warn(self, exc: BaseException) -> None:
        if not self._failing:  # once per stretch of failures, not every few seconds
            log.warning(
                "heartbeat %s not renewed (%s: %s): after %gs the beat declares this worker dead",
                Keys.worker(self.hostname),
                type(exc).__name__,
                exc,
                HEARTBEAT_TTL_S,
            )
            self._failing = True

    def stop(self) -> None:
        """Stop beating and drop the key: the beat then checks at once that no run was
        left running (a cold shutdown), and forgets the worker."""
        self._stop.set()
        self._thread.join(5)
        if self._client is not None:
            with contextlib.suppress(Exception):
                # The held messages stay listed: a warm shutdown puts them back on their
                # queues itself (the beat then finds them acknowledged and leaves them),
                # a cold one may not (the beat puts them back).
                self._client.delete(Keys.worker(self.hostname))
            with contextlib.suppress(Exception):
                self._client.close()


def install(redis_url: str, database_url: str | None) -> None:
    """Connect the heartbeat to the worker's start and shutdown (``celery worker`` only)."""
    current: list[WorkerHeartbeat] = []

    def on_init(sender: Any = None, **_: Any) -> None:
        hostname = getattr(sender, "hostname", None)
        if not hostname:
            log.warning("heartbeat: the worker has no hostname; not published")
            return
        try:
            current.append(WorkerHeartbeat(hostname, redis_url, database_url).start())
        except Exception:
            log.exception("heartbeat: could not start; this worker's runs are not watched")

    def on_shutdown(**_: Any) -> None:
        while current:
            current.pop().stop()

    signals.worker_init.connect(on_init, weak=False)
    signals.worker_shutdown.connect(on_shutdown, weak=False)
