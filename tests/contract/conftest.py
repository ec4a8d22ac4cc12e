"""The ``history`` fixture: every contract test runs against each RunHistory implementation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from jobs_core.history import RunHistory
from jobs_core.history_memory import MemoryHistory

T = TypeVar("T")
InHistory = Callable[[Callable[[RunHistory], Awaitable[T]]], T]


@pytest.fixture(
    params=[
        "memory",
        pytest.param("postgres", marks=[pytest.mark.integration, pytest.mark.servers]),
    ],
)
def in_history(request: pytest.FixtureRequest) -> InHistory[Any]:
    """``in_history(body)`` runs ``await body(history)`` on one history for the whole test:
    a MemoryHistory, or a PostgresHistory on a fresh migrated database of the tests'
    private PostgreSQL server (autocommit, as the worker's history pool)."""
    if request.param == "memory":
        memory = MemoryHistory()

        def run_memory(body: Callable[[RunHistory], Awaitable[T]]) -> T:
            return asyncio.run(body(memory))  # type: ignore[arg-type]

        return run_memory

    database_url: str = request.getfixturevalue("database_url")

    def run_postgres(body: Callable[[RunHistory], Awaitable[T]]) -> T:
        from psycopg_pool import AsyncConnectionPool

        from jobs_core.history_pg import PostgresHistory

        async def go() -> T:
            kwargs = {"autocommit": True}
            async with AsyncConnectionPool(
                database_url, min_size=1, max_size=2, kwargs=kwargs
            ) as pool:
                return await body(PostgresHistory(pool))

        return asyncio.run(go())

    return run_postgres
