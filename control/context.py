"""What every operator action needs, built lazily: profile, job table, Redis, run history.

The CLI and the dashboard each hold one. Connection failures become
:class:`ServiceUnavailable` naming the URL with its password masked, which the CLI prints
as one line with exit code 2.
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from jobs_core.errors import ServiceUnavailable, UnknownJob
from jobs_core.redis_url import parse_redis_url
from jobs_core.urls import check_database_url, check_redis_url, mask_url

# The profile's models (pydantic, PyYAML), the job table, the run history and the
# clients are imported where they are first needed: the CLI imports this module for
# every command, `--help` included (see cli.main).
if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from jobs_core.history import RunHistory
    from jobs_core.profile import Profile
    from jobs_core.registry import JobDefinition, JobRegistry

T = TypeVar("T")
STATE_DIR = Path(".systemprompt")
STACK_FILE = STATE_DIR / "stack.json"


def embedded_stack_urls() -> dict[str, str]:
    """URLs of a running ``infra up`` stack started from this directory, if any."""
    try:
        info = json.loads(STACK_FILE.read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {k: v for k, v in info.items() if k in ("redis_url", "database_url") and v}


def check_urls(profile: Profile, env: dict[str, str]) -> None:
    """Refuse a malformed redis_url / database_url before anything connects."""
    if profile.redis_url:
        check_redis_url(profile.redis_url, "REDIS_URL" if env.get("REDIS_URL") else "redis_url")
    if profile.database_url:
        setting = "DATABASE_URL" if env.get("DATABASE_URL") else "database_url"
        check_database_url(profile.database_url, setting)


def _keep_out_of_collections() -> None:
    """Exempt what is alive now (the job table above all) from the cyclic collector.

    A CLI command keeps its job table until the process ends, the dashboard for its
    life; the collections that follow (importing redis-py and psycopg alone triggers
    several) would walk its 100,000 jobs each time, to free nothing: ~0.25 s of a
    ``jobs status``. Objects are still freed when no longer referenced; only a cycle
    among them dropped later would not be.
    """
    gc.freeze()


class _OneConnection:
    """One open connection lent as ``psycopg_pool`` lends its connections (the
    :class:`~jobs_core.history_pg.Connections` of :class:`PostgresHistory`): to one
    block at a time, its transaction committed at the end of the block, rolled back
    when the block raises."""

    def __init__(self, conn: AsyncConnection[Any]) -> None:
        import asyncio

        self._conn = conn
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        # Not `async with conn`: that would also close it (a connection of no pool).
        async with self._lock:
            try:
                yield self._conn
            except BaseException:
                # As psycopg does: the block's error is the one to report.
                with suppress(Exception):
                    await self._conn.rollback()
                raise
            await self._conn.commit()


@dataclass
class Context:
    profile_path: str | None = None
    debug: bool = False
    _profile: Profile | None = field(default=None, repr=False)
    _registry: JobRegistry | None = field(default=None, repr=False)
    _redis: Any = field(default=None, repr=False)

    @property
    def profile(self) -> Profile:
        if self._profile is None:
            from jobs_core.profile import load_profile

            env = dict(os.environ)
            # With nothing configured, talk to the `infra up` stack of this directory.
            for key, url in embedded_stack_urls().items():
                env.setdefault(key.upper(), url)
            profile = load_profile(self.profile_path, env=env)
            check_urls(profile, env)
            self._profile = profile
        return self._profile

    @property
    def registry(self) -> JobRegistry:
        if self._registry is None:
            from jobs_core.registry import build_registry

            self._registry = build_registry(self.profile)
            _keep_out_of_collections()
        return self._registry

    def job(self, name: str) -> JobDefinition:
        """One job by key or unique name (:meth:`JobRegistry.resolve`).

        Every job of the profile is checked as for :attr:`registry` (a broken job
        anywhere is an error here too), but only the named one is built; an unknown
        name builds the whole table for the error's closest known jobs.
        """
        if self._registry is not None:
            return self._registry.resolve(name)
        from jobs_core.registry import build_registry

        try:
            found = build_registry(self.profile, only=name).resolve(name)
        except UnknownJob:
            return self.registry.resolve(name)
        _keep_out_of_collections()
        return found

    @property
    def redis_url(self) -> str:
        from jobs_core.wire import DEFAULT_REDIS_URL

        return self.profile.redis_url or DEFAULT_REDIS_URL

    def redis(self) -> Any:
        """A connected redis-py client (checked with PING)."""
        if self._redis is None:
            import redis

            from beat.redis_client import connect

            # Sentinels get the same timeout, so an unreachable one fails fast too.
            client = connect(
                parse_redis_url(self.redis_url), socket_connect_timeout=5, socket_timeout=30
            )
            try:
                client.ping()
            except redis.RedisError as exc:
                raise ServiceUnavailable.at(
                    "Redis", self.redis_url, exc, "set redis_url in the profile or REDIS_URL"
                ) from None
            self._redis = client
        return self._redis

    def check_redis_login(self) -> None:
        """Refuse a wrong Redis password or user now, in one line; an unreachable Redis
        passes (a worker waits for its broker, e.g. while compose starts it)."""
        import redis
        from redis.exceptions import AuthorizationError, NoPermissionError

        from beat.redis_client import connect

        client = connect(parse_redis_url(self.redis_url), socket_connect_timeout=5)
        try:
            client.ping()
        except (redis.AuthenticationError, AuthorizationError, NoPermissionError) as exc:
            raise ServiceUnavailable.at(
                "Redis", self.redis_url, exc, "check the user and password of REDIS_URL"
            ) from None
        except redis.ResponseError as exc:
            if not str(exc).startswith(("WRONGPASS", "NOAUTH", "NOPERM")):
                raise
            raise ServiceUnavailable.at(
                "Redis", self.redis_url, exc, "check the user and password of REDIS_URL"
            ) from None
        except redis.RedisError:
            pass
        finally:
            client.close()

    def require_database(self, why: str) -> str:
        url = self.profile.database_url
        if not url:
            raise ServiceUnavailable(
                f"{why} needs the run history, but no database is configured: set "
                "database_url in the profile or DATABASE_URL"
            )
        return url

    def with_history(self, why: str, fn: Callable[[RunHistory], Awaitable[T]]) -> T:
        """Run ``fn(history)`` on one short-lived connection; connection errors name the
        URL.

        One connection, not a pool: a command's queries run one after another, and a
        second connection (a PostgreSQL backend started and authenticated) is a good part
        of what a quick command like ``jobs status`` costs.
        """
        import asyncio

        url = self.require_database(why)

        async def go() -> T:
            import psycopg

            from jobs_core.history_pg import PostgresHistory

            try:
                conn = await psycopg.AsyncConnection.connect(url, connect_timeout=5)
            except psycopg.OperationalError as exc:
                raise ServiceUnavailable.at(
                    "PostgreSQL", url, exc, "set database_url in the profile or DATABASE_URL"
                ) from None
            try:
                return await fn(PostgresHistory(_OneConnection(conn)))
            except psycopg.errors.UndefinedTable:
                raise ServiceUnavailable(
                    f"the database at {mask_url(url)} has no job history tables: run "
                    "`systemprompt infra db migrate` first"
                ) from None
            finally:
                await conn.close()

        return asyncio.run(go())

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
            self._redis = None
