"""Ticks to Celery messages (via :mod:`jobs_core.wire`, the shared wire format)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from jobs_core.status import Trigger
from jobs_core.wire import (
    TickTemplate,
    job_kwargs,
    task_message,
    task_name,
    tick_run_id,
    tick_run_id_ms,
    tick_template,
)

from .schedule import from_ms
from .ticks import OutTick

if TYPE_CHECKING:
    from jobs_core.registry import JobDefinition

_BOOTSTRAP_NS = uuid.UUID("2d0f4c64-7d51-4b8e-9a43-5b1f3f1f2c10")


class TickBuilder:
    """Builds the on-time ticks of the job table, as the claim script's arguments.

    The run id (also the Celery task id) is the tick's deterministic id, so whatever
    delivers this tick again lands on the same run-history row. What does not change from
    one tick of a job to the next (its template, its task name) is kept per job
    definition: the beat builds thousands of ticks a second, and a reload brings new
    definitions, so nothing goes stale.
    """

    def __init__(self, beat_id: str | None = None) -> None:
        #: Recorded as each run's ``triggered_by``: part of the template, not of a tick.
        self.beat_id = beat_id
        self._jobs: dict[str, tuple[JobDefinition, TickTemplate | None, str]] = {}
        #: Templates by (queue, parameters): after a reload, 100,000 jobs on the default
        #: queue without parameters make one template, not 100,000.
        self._templates: dict[tuple[str, str], TickTemplate | None] = {}

    def rebase(
        self, jobs: Mapping[str, JobDefinition], unchanged: Collection[str] | None = None
    ) -> set[str]:
        """A reload brought the definitions ``jobs``: keep what was kept for each job
        whose ticks stay the same (:func:`tick_shape`; ``unchanged``: the keys of those
        jobs, when compared already), drop the rest.

        Returns the keys kept: a tick built for one of them before the reload is still
        the tick to send.
        """
        kept: dict[str, tuple[JobDefinition, TickTemplate | None, str]] = {}
        for key, (old, template, task) in self._jobs.items():
            new = jobs.get(key)
            if new is None:
                continue
            same = key in unchanged if unchanged is not None else tick_shape(new) == tick_shape(old)
            if same:
                kept[key] = (new, template, task)
        self._jobs = kept
        return set(kept)

    def tick(self, job: JobDefinition, due_ms: int, scheduled_iso: str) -> OutTick:
        """The tick ``(job, due_ms)``; ``scheduled_iso`` is ``due_ms`` in ISO 8601,
        computed once per instant by the caller."""
        key = job.key
        cached = self._jobs.get(key)
        if cached is None or cached[0] is not job:
            parameters = json.dumps(dict(job.parameters), sort_keys=True)
            shape = (job.policy.queue, parameters)
            if shape in self._templates:
                template = self._templates[shape]
            else:
                template = self._templates[shape] = tick_template(
                    job.policy.queue, Trigger.SCHEDULE, parameters, self.beat_id
                )
            cached = self._jobs[key] = (job, template, task_name(key))
        _, template, task = cached
        if template is None:
            return _stamped_at_send(job, due_ms, self.beat_id)
        return OutTick.templated(
            key,
            due_ms,
            template,
            task,
            tick_run_id_ms(key, due_ms),
            scheduled_iso,
            job.policy.max_runs,
        )


def tick_shape(job: JobDefinition) -> tuple[object, ...]:
    """What a job's on-time tick is made of besides its key and instant (see
    :meth:`TickBuilder.tick`): two definitions of one job with the same shape send
    byte-identical ticks."""
    return (job.policy.queue, dict(job.parameters), job.policy.max_runs)


def _stamped_at_send(job: JobDefinition, due_ms: int, triggered_by: str | None) -> OutTick:
    """The on-time tick of a job without a template (its parameters hold ``@@``): a
    whole message, built ahead like the others, whose ``enqueued_at`` the claim script
    fills in with the send time."""
    marker = uuid.uuid4().hex  # cannot collide with anything in the message
    list_key, text = tick_message(
        job, due_ms, Trigger.SCHEDULE, enqueued_at=marker, triggered_by=triggered_by
    )
    head, found, tail = text.partition(marker)
    if not found or marker in tail:
        raise ValueError(f"enqueued_at not found once in the message of {job.key}")
    return OutTick.stamped(
        job.key, due_ms, list_key, head + tail, len(head.encode()), job.policy.max_runs
    )


def record_out(
    job: JobDefinition,
    due_ms: int,
    trigger: Trigger,
    enqueued_at: datetime,
    *,
    skip_reason: str | None = None,
    triggered_by: str | None = None,
) -> OutTick:
    """A catch-up tick or a skip record, as a whole message. A run (not a skip record)
    counts against the job's ``max_runs``."""
    list_key, payload = tick_message(
        job, due_ms, trigger, enqueued_at, skip_reason=skip_reason, triggered_by=triggered_by
    )
    budget = job.policy.max_runs if skip_reason is None else None
    return OutTick.full(job.key, due_ms, list_key, payload, budget)


def tick_message(
    job: JobDefinition,
    due_ms: int,
    trigger: Trigger,
    enqueued_at: datetime | str,
    *,
    skip_reason: str | None = None,
    triggered_by: str | None = None,
) -> tuple[str, str]:
    """``(list_key, payload)`` of the run of tick ``(job, due_ms)``; ``enqueued_at`` as
    a string is put in the message as it is."""
    scheduled = from_ms(due_ms)
    run_id = tick_run_id(job.key, scheduled)
    kwargs = job_kwargs(
        run_id=run_id,
        trigger=trigger,
        scheduled_for=scheduled,
        enqueued_at=scheduled if isinstance(enqueued_at, str) else enqueued_at,
        parameters=dict(job.parameters),
        triggered_by=triggered_by,
    )
    if isinstance(enqueued_at, str):
        kwargs["enqueued_at"] = enqueued_at
    if skip_reason is not None:
        kwargs["skip_reason"] = skip_reason
    return task_message(task_name(job.key), kwargs, queue=job.policy.queue, task_id=run_id)


def bootstrap_message(
    job: JobDefinition, session: str, enqueued_at: datetime, triggered_by: str | None = None
) -> tuple[str, str]:
    """The bootstrap run of ``job`` for one deployment session (deterministic id)."""
    run_id = str(uuid.uuid5(_BOOTSTRAP_NS, f"{session}:{job.key}"))
    kwargs = job_kwargs(
        run_id=run_id,
        trigger=Trigger.BOOTSTRAP,
        scheduled_for=None,
        enqueued_at=enqueued_at,
        parameters=dict(job.parameters),
        triggered_by=triggered_by,
    )
    return task_message(task_name(job.key), kwargs, queue=job.policy.queue, task_id=run_id)
