"""The per-process side of a worker: one event loop, one DB pool, one Redis client.

Celery runs task functions synchronously (prefork children, threads or solo). Every job
coroutine of a process runs on ONE long-lived event loop owned by a background thread,
so the PostgreSQL pool and the Redis client live as long as the process, whatever pool
type Celery uses. After a fork the child builds its own (the parent's loop thread does
not exist in the child).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from jobs_core.errors import ConfigError, NoDatabaseConfigured
from jobs_core.history import RunHistory
from jobs_core.history_memory import MemoryHistory
from jobs_core.history_pg import PostgresHistory
from jobs_core.redis_url import parse_redis_url
from jobs_core.urls import mask_url

from .cancel import CancelRequests
from .overlap import OverlapLock

log = logging.getLogger("worker.runtime")
#: Prefix of the ``application_name`` of the worker's PostgreSQL connections.
APPLICATION_NAME = "systemprompt-worker"
#: Seconds a history write waits for a PostgreSQL connection before it fails (an
#: infrastructure error: the task re-queues the run). Shorter than what the task grants
#: an attempt's history writes (SETUP_WAIT, FINISH_WAIT in worker.execution), so an
#: outage surfaces as an error of the attempt, never as a stuck job.
HISTORY_WAIT = 5.0
#: Seconds a job waits for a connection of the jobs' pool (``ctx.db_pool``).
JOBS_POOL_WAIT = 30.0
T = TypeVar("T")


class LoopThread:
    """An asyncio loop running forever in a daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def responsive(self, within: float = 1.0) -> bool:
        async def _noop() -> None:
            return None

        try:
            self.submit(_noop()).result(within)
            return True
        except concurrent.futures.TimeoutError:
            return False

    def stop(self, timeout: float = 5.0) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)


class WorkerRuntime:
    """Lazily built per-process resources; safe to share between Celery pool threads."""

    def __init__(
        self, database_url: str | None, redis_url: str | None, pool_max_size: int = 10
    ) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.pool_max_size = pool_max_size
        self._lock = threading.Lock()
        self._pid = -1
        self._loop: LoopThread | None = None
        self._pool: Any = None
        self._history_pool: Any = None
        self._history: RunHistory | None = None
        self._redis: Any = None
        self._gates: tuple[CancelRequests, OverlapLock] | None = None

    # -- lifecycle -------------------------------------------------------------------

    @property
    def loop(self) -> LoopThread:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._loop = LoopThread(f"jobs-loop-{self._pid}")
                self._pool = self._history_pool = self._history = self._redis = self._gates = None
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self.loop.submit(coro).result(timeout)

    def abandon_loop(self) -> None:
        """Give up a loop that a job blocked (it ignored cancellation): start afresh.

        The blocked thread stays behind as a daemon; its pool connections are lost with
        it, which is cheaper than killing the process with the other tasks on it.
        """
        with self._lock:
            log.error("event loop blocked by a job that ignores cancellation; starting a new one")
            self._loop = None
            self._pool = self._history_pool = self._history = self._redis = self._gates = None

    def close(self) -> None:
        with self._lock:
            loop, redis = self._loop, self._redis
            pools = [p for p in (self._pool, self._history_pool) if p is not None]
            self._loop = None
            self._pool = self._history_pool = self._history = self._redis = self._gates = None
        if loop is None or self._pid != os.getpid():
            return

        async def _close() -> None:
            for pool in pools:
                await pool.close()
            if redis is not None:
                await redis.aclose()

        try:
            loop.submit(_close()).result(10)
        except Exception:  # shutting down: nothing left to protect
            log.warning("error while closing worker resources", exc_info=True)
        loop.stop()

    # -- resources (call from the loop) ---------------------------------------------

    def db_pool(self) -> Any:
        """The process's pool for the jobs (``ctx.db_pool``).

        It opens itself when a job first asks it for a connection, so a worker whose
        jobs never use the database holds no connection for them.
        """
        if self.database_url is None:
            raise NoDatabaseConfigured(
                "no database is configured: set database_url in profile.yaml or DATABASE_URL"
            )
        if self._pool is None:
            self._pool = self._new_pool("jobs", JOBS_POOL_WAIT, lazy=True)
        return self._pool

    async def history(self) -> RunHistory:
        """The run history: PostgreSQL on a small pool of its own in autocommit mode,
        or, with no database configured, this process's memory.

        Every history call is one statement, so autocommit saves the BEGIN and COMMIT
        round trips of a transactional connection; the jobs' pool keeps psycopg's
        default transaction behaviour.
        """
        if self._history is None:
            if self.database_url is None:
                self._history = MemoryHistory()
            else:
                pool = self._new_pool("history", HISTORY_WAIT, autocommit=True)
                await pool.open(wait=True, timeout=HISTORY_WAIT)
                self._history_pool = pool
                self._history = PostgresHistory(pool)
        return self._history

    def _new_pool(
        self, name: str, wait: float, *, lazy: bool = False, **connect_kwargs: Any
    ) -> Any:
        from psycopg.conninfo import conninfo_to_dict

        url = self.database_url or ""
        if "application_name" not in conninfo_to_dict(url):
            # Tells the worker's connections apart in pg_stat_activity.
            connect_kwargs["application_name"] = f"{APPLICATION_NAME} {name}"
        return (_lazy_pool_class() if lazy else _pool_class())(
            url,
            min_size=1,
            max_size=self.pool_max_size,
            open=False,
            name=f"{APPLICATION_NAME} {name}",
            timeout=wait,
            reconnect_timeout=60,
            kwargs=connect_kwargs,
        )

    def redis(self) -> Any:
        if self._redis is None:
            from .redis_client import connect_async

            if not self.redis_url:
                raise ConfigError("no Redis URL: set redis_url in the profile or REDIS_URL")
            self._redis = connect_async(
                parse_redis_url(self.redis_url), health_check_interval=30, socket_keepalive=True
            )
        return self._redis

    def gates(self) -> tuple[CancelRequests, OverlapLock]:
        """The cancel requests and the overlap lock on :meth:`redis`, made once (the
        lock registers its scripts: a digest each, not to be redone every run)."""
        if self._gates is None:
            client = self.redis()
            self._gates = (CancelRequests(client), OverlapLock(client))
        return self._gates


def _pool_class() -> Any:
    from psycopg_pool import AsyncConnectionPool

    return AsyncConnectionPool


@functools.cache
def _lazy_pool_class() -> Any:
    from psycopg_pool import AsyncConnectionPool

    class LazyAsyncConnectionPool(AsyncConnectionPool):
        """An AsyncConnectionPool that opens on the first connection request.

        ``open()`` is idempotent (and serialised by the pool's lock), so concurrent first
        requests are safe; a pool closed on purpose stays closed.
        """

        _closed_on_purpose = False

        async def getconn(self, timeout: float | None = None) -> Any:
            if self.closed and not self._closed_on_purpose:
                await self.open()
                log.info("jobs database pool open (%s)", mask_url(str(self.conninfo)))
            return await super().getconn(timeout)

        async def close(self, timeout: float = 5.0) -> None:
            self._closed_on_purpose = True
            await super().close(timeout)

    return LazyAsyncConnectionPool
