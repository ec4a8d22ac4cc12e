"""Helpers for tests that run real worker processes against the test servers."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobs_core.context import Trigger
from jobs_core.history import Run, RunHistory
from jobs_core.history_pg import PostgresHistory
from jobs_core.profile import load_profile
from jobs_core.registry import JobRegistry, build_registry
from jobs_core.wire import job_kwargs, task_name

WORKER_PROFILE = """
extensions: [tests.worker_fixtures:WorkerTestExtension]
scheduler:
  defaults:
    retry: {max_attempts: 3, backoff: 100ms, max_backoff: 1s, jitter: false}
    timeout: 20s
  jobs:
    - {extension: testjobs, job: slow, timeout: 1s, retry: {max_attempts: 2}}
    - {extension: testjobs, job: stubborn, timeout: 1s, retry: {max_attempts: 1}}
    - {extension: testjobs, job: long, timeout: 8s, retry: {max_attempts: 1}}
"""


def registry_for(profile_path: Path, redis_url: str, database_url: str) -> JobRegistry:
    env = {"REDIS_URL": redis_url, "DATABASE_URL": database_url}
    return build_registry(load_profile(profile_path, env=env))


class History:
    """Synchronous access to the run history of one test database."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def _call(self, fn: Any) -> Any:
        from psycopg_pool import AsyncConnectionPool

        async def go() -> Any:
            async with AsyncConnectionPool(self.database_url, min_size=1, max_size=2) as pool:
                history: RunHistory = PostgresHistory(pool)
                return await fn(history)

        return asyncio.run(go())

    def run(self, run_id: str) -> Run | None:
        return self._call(lambda s: s.get_run(run_id))  # type: ignore[no-any-return]

    def runs(self, job_key: str | None = None, limit: int = 1000) -> list[Run]:
        return self._call(lambda s: s.history(job_key, limit=limit))  # type: ignore[no-any-return]

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.database_url) as conn:
            return conn.execute(query, args).fetchall()


def send(app: Any, job_key: str, *, parameters: dict[str, Any] | None = None) -> str:
    """Enqueue a manual run of ``job_key`` with Celery's own producer; returns the run id."""
    run_id = str(uuid.uuid4())
    kwargs = job_kwargs(
        run_id=run_id,
        trigger=Trigger.MANUAL.value,
        scheduled_for=None,
        enqueued_at=datetime.now(UTC),
        parameters=parameters,
    )
    app.send_task(task_name(job_key), kwargs=kwargs, task_id=run_id)
    return run_id
