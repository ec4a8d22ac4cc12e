"""Manual runs from the CLI: follow a run, or run one inline (enqueueing lives in
:mod:`control.actions`, shared with the dashboard)."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from control.actions import enqueue as enqueue
from control.context import Context
from jobs_core.history import Run, RunHistory
from jobs_core.registry import JobDefinition
from jobs_core.status import Action, RunStatus, Trigger

POLL_INTERVAL = 0.2


def follow(
    ctx: Context,
    run_ids: list[str],
    on_change: Callable[[Run], None],
    timeout: float | None = None,
) -> dict[str, Run]:
    """Poll history until every run finished; ``on_change`` sees each status change."""

    async def go(history: RunHistory) -> dict[str, Run]:
        seen: dict[str, tuple[str, int]] = {}
        done: dict[str, Run] = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(done) < len(run_ids):
            for rid in run_ids:
                if rid in done:
                    continue
                run = await history.get_run(rid, with_attempts=False)
                if run is None:
                    continue
                state = (run.status, run.attempt)
                if seen.get(rid) != state:
                    seen[rid] = state
                    on_change(run)
                if run.finished:
                    full = await history.get_run(rid)
                    done[rid] = full or run
            if deadline is not None and time.monotonic() > deadline:
                break
            if len(done) < len(run_ids):
                await asyncio.sleep(POLL_INTERVAL)
        return done

    return ctx.with_history("jobs run --wait", go)


def run_inline(
    ctx: Context,
    jd: JobDefinition,
    overrides: dict[str, Any],
    on_change: Callable[[str], None],
    *,
    triggered_by: str | None = None,
    reason: str | None = None,
) -> tuple[str, RunStatus | None, str | None]:
    """Run ``jd`` in this process with a real JobContext, retries included.

    Returns ``(run_id, final_status, message)``. History is recorded when a database is
    configured, exactly as a worker would (trigger ``manual``, worker ``cli@host``).
    """
    from worker.execution import TaskRequest, run_attempt
    from worker.runtime import WorkerRuntime

    profile = ctx.profile
    runtime = WorkerRuntime(profile.database_url, profile.redis_url, pool_max_size=4)
    run_id = str(uuid.uuid4())
    hostname = f"cli@{socket.gethostname()}"
    req = TaskRequest(
        run_id=run_id,
        trigger=Trigger.MANUAL,
        scheduled_for=None,
        enqueued_at=datetime.now(UTC),
        attempt=1,
        parameters=overrides,
        triggered_by=triggered_by,
        reason=reason,
    )
    try:
        while True:
            outcome = runtime.run(run_attempt(runtime, jd, req, hostname))
            if outcome.action is Action.REQUEUE:
                on_change("waiting: another run of this job is active (overlap)")
                time.sleep(outcome.retry_in or 1.0)
                continue
            if outcome.action is Action.RETRY:
                on_change(
                    f"attempt {req.attempt} failed: {outcome.message}; retrying in "
                    f"{outcome.retry_in or 0:.1f}s"
                )
                time.sleep(outcome.retry_in or 0)
                req = TaskRequest.from_kwargs(req.next_attempt_kwargs())
                continue
            return run_id, outcome.status, outcome.message
    finally:
        runtime.close()
