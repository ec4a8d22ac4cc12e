"""Ticks to Celery messages (via :mod:`worker.messages`, the shared wire format)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from jobs_core.store import tick_run_id
from worker.messages import job_kwargs, task_message, tick_template
from worker.naming import task_name

from .schedule import from_ms

if TYPE_CHECKING:
    from jobs_core.registry import JobDefinition

_BOOTSTRAP_NS = uuid.UUID("2d0f4c64-7d51-4b8e-9a43-5b1f3f1f2c10")


def tick_message(
    job: JobDefinition,
    due_ms: int,
    trigger: str,
    enqueued_at: datetime,
    *,
    skip_reason: str | None = None,
) -> tuple[str, str]:
    """``(list_key, payload)`` of the run of tick ``(job, due_ms)``.

    The run id (also the Celery task id) is the tick's deterministic id, so whatever
    delivers this tick again lands on the same run-history row.
    """
    scheduled = from_ms(due_ms)
    run_id = tick_run_id(job.key, scheduled)
    if skip_reason is None:
        # The common case, once per tick: fill the job's pre-rendered message.
        template = tick_template(
            task_name(job.key),
            job.policy.queue,
            trigger,
            json.dumps(dict(job.parameters), sort_keys=True),
        )
        return template.queue, template.render(
            run_id, scheduled.isoformat(), enqueued_at.isoformat()
        )
    kwargs = job_kwargs(
        run_id=run_id,
        trigger=trigger,
        scheduled_for=scheduled,
        enqueued_at=enqueued_at,
        parameters=dict(job.parameters),
    )
    kwargs["skip_reason"] = skip_reason
    return task_message(task_name(job.key), kwargs, queue=job.policy.queue, task_id=run_id)


def bootstrap_message(job: JobDefinition, session: str, enqueued_at: datetime) -> tuple[str, str]:
    """The bootstrap run of ``job`` for one deployment session (deterministic id)."""
    run_id = str(uuid.uuid5(_BOOTSTRAP_NS, f"{session}:{job.key}"))
    kwargs = job_kwargs(
        run_id=run_id,
        trigger="bootstrap",
        scheduled_for=None,
        enqueued_at=enqueued_at,
        parameters=dict(job.parameters),
    )
    return task_message(task_name(job.key), kwargs, queue=job.policy.queue, task_id=run_id)
