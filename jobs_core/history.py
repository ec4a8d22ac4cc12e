"""Run history: its records and the :class:`RunHistory` interface every store implements.

A run is one execution request (a scheduled or catch-up tick, a manual or bootstrap run).
It moves ``queued -> running -> succeeded | failed | timed_out | skipped`` with
``retrying`` between attempts, and every attempt also gets a record of its own. A tick has
a deterministic run id (:func:`jobs_core.wire.tick_run_id`) and at most one run per
``(job, scheduled_for)``, so a redelivered message lands on the same run and a finished
tick is never run again. Implementations: :mod:`jobs_core.history_pg` (PostgreSQL) and
:mod:`jobs_core.history_memory` (in memory, for tests and embedding).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from .status import TERMINAL, RunStatus, Trigger


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class Attempt:
    attempt: int
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    message: str | None
    error: str | None
    worker: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "status": self.status,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_ms": self.duration_ms,
            "message": self.message,
            "error": self.error,
            "worker": self.worker,
        }


@dataclass(frozen=True)
class Run:
    """One run (JSON names follow the CLI contract)."""

    id: str
    job_key: str
    trigger: Trigger
    status: RunStatus
    scheduled_for: datetime | None
    enqueued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempt: int
    max_attempts: int
    duration_ms: int | None
    message: str | None
    error: str | None
    worker: str | None
    items_processed: int | None
    items_failed: int | None
    data: dict[str, Any]
    parameters: dict[str, Any]
    next_attempt_at: datetime | None
    triggered_by: str | None = None
    reason: str | None = None
    rerun_of: str | None = None
    cancelled_by: str | None = None
    attempts: tuple[Attempt, ...] = field(default=())

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "job": self.job_key,
            "trigger": self.trigger,
            "status": self.status,
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "scheduled_for": _iso(self.scheduled_for),
            "enqueued_at": _iso(self.enqueued_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_ms": self.duration_ms,
            "message": self.message,
            "error": self.error,
            "worker": self.worker,
            "items_processed": self.items_processed,
            "items_failed": self.items_failed,
            "data": self.data,
            "parameters": self.parameters,
            "next_attempt_at": _iso(self.next_attempt_at),
            "triggered_by": self.triggered_by,
            "reason": self.reason,
            "rerun_of": self.rerun_of,
            "cancelled_by": self.cancelled_by,
        }
        if self.attempts:
            out["attempts"] = [a.to_json() for a in self.attempts]
        return out


@dataclass(frozen=True)
class QueuedRun:
    """One run of :meth:`RunHistory.create_queued_runs` (a manual run, a rerun)."""

    run_id: str
    job_key: str
    max_attempts: int
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AttemptStart:
    """Who runs which attempt of which run: what a claim writes."""

    run_id: str
    job_key: str
    trigger: Trigger
    attempt: int
    max_attempts: int
    worker: str
    scheduled_for: datetime | None
    enqueued_at: datetime | None
    parameters: dict[str, Any]
    triggered_by: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class AttemptEnd:
    """What one attempt came to.

    ``status`` is the run's new status: ``retrying`` keeps the run open
    (``next_attempt_at`` says when it runs again), a terminal status closes it.
    """

    status: RunStatus
    duration_ms: int | None
    message: str | None = None
    error: str | None = None
    items_processed: int | None = None
    items_failed: int | None = None
    data: dict[str, Any] | None = None
    next_attempt_at: datetime | None = None
    cancelled_by: str | None = None

    @property
    def closes_run(self) -> bool:
        return self.status.is_terminal

    @property
    def attempt_status(self) -> RunStatus:
        """The attempt's own status: an attempt that will be retried failed."""
        return RunStatus.FAILED if self.status is RunStatus.RETRYING else self.status


@dataclass(frozen=True)
class Claim:
    """Answer to :meth:`RunHistory.start_attempt`."""

    run_id: str
    started: bool  # False: the run is already finished (or a newer attempt owns it)
    status: RunStatus | None  # the run's status now (None: no such run)
    took_over: bool = False  # the run was running: its previous worker died


@dataclass(frozen=True)
class RunFilter:
    """Which runs :meth:`RunHistory.runs` returns; None means any."""

    job_key: str | None = None
    status: RunStatus | None = None
    trigger: Trigger | None = None
    since: datetime | None = None  # enqueued at or after
    until: datetime | None = None  # enqueued before


@dataclass(frozen=True)
class Cursor:
    """Keyset paging: the runs after (older than) the run enqueued at ``enqueued_at``
    with id ``id``, in the newest-first order of :meth:`RunHistory.runs`."""

    enqueued_at: datetime
    id: str

    def encode(self) -> str:
        return f"{self.enqueued_at.isoformat()}_{self.id}"

    @classmethod
    def decode(cls, text: str) -> Cursor | None:
        when, sep, rid = text.rpartition("_")
        try:
            return cls(datetime.fromisoformat(when), str(uuid.UUID(rid))) if sep else None
        except ValueError:
            return None

    @classmethod
    def after_run(cls, run: Run) -> Cursor:
        return cls(run.enqueued_at, run.id)


@dataclass(frozen=True)
class Cancelled:
    """Answer to :meth:`RunHistory.cancel_run`."""

    changed: bool  # True: the run was unfinished and is cancelled now
    status: RunStatus | None  # its status now (None: no such run)


class RunHistory(Protocol):
    """Where runs are recorded. Every method is one atomic step."""

    async def create_run(
        self,
        *,
        job_key: str,
        trigger: Trigger,
        max_attempts: int,
        parameters: dict[str, Any] | None = None,
        scheduled_for: datetime | None = None,
        run_id: str | None = None,
        status: RunStatus = RunStatus.QUEUED,
        message: str | None = None,
        triggered_by: str | None = None,
        reason: str | None = None,
        rerun_of: str | None = None,
    ) -> str:
        """Record a run (manual, bootstrap or skipped tick); returns its id.

        When the id or the tick already has a run, nothing changes (a tick happens once).
        """
        ...

    async def create_tick_runs(
        self,
        job_key: str,
        ticks: Sequence[tuple[str, datetime]],
        *,
        trigger: Trigger,
        max_attempts: int,
        parameters: dict[str, Any],
        triggered_by: str | None = None,
        reason: str | None = None,
    ) -> list[str]:
        """Record a queued run per ``(run_id, scheduled_for)`` in one atomic step and
        return the ids recorded now: a tick that already has a run (any trigger that
        carries a tick) or an id already taken is left as it is."""
        ...

    async def create_queued_runs(
        self,
        runs: Sequence[QueuedRun],
        *,
        trigger: Trigger,
        triggered_by: str | None = None,
        reason: str | None = None,
        rerun_of: str | None = None,
    ) -> list[str]:
        """Record ``runs`` queued, without a tick, all in one atomic step (all or none);
        returns the ids recorded now (an id already taken is left as it is). A malformed
        run id is a ValueError, and nothing is recorded."""
        ...

    async def cancel_run(self, run_id: str, *, by: str, message: str) -> Cancelled:
        """Mark an unfinished run cancelled (by ``by``); a finished run is left as it is."""
        ...

    async def withdraw_queued(self, run_ids: Sequence[str]) -> list[str]:
        """Delete the runs among ``run_ids`` that are still ``queued`` and never started
        (recorded, but their message could not be sent); returns the ids deleted.

        A run a worker has claimed meanwhile is left alone. A tick so withdrawn is free
        again (a later backfill records it anew); a message that was sent after all
        records its run again when a worker takes it (claims are upserts).
        """
        ...

    async def start_attempt(self, start: AttemptStart) -> Claim:
        """Mark the attempt running (recording the run first for a fresh tick).

        Refused when the run already finished or a later attempt claimed it: that is a
        redelivered message, and running it would run the tick twice.
        """
        ...

    async def finish_attempt(self, run_id: str, attempt: int, end: AttemptEnd) -> bool:
        """Record the end of an attempt that :meth:`start_attempt` claimed.

        Refused (False) when the run has finished meanwhile (a stuck attempt recorded as
        timed out, then finishing after all) or another attempt claimed it.
        """
        ...

    async def settle_attempt(
        self, start: AttemptStart, started_at: datetime, end: AttemptEnd
    ) -> bool:
        """Claim and finish an attempt in one step (an attempt that was never marked
        running). Same refusal as :meth:`start_attempt`, and then it returns False."""
        ...

    async def mark_lost(
        self, run_id: str, attempt: int, worker: str, message: str, *, requeue: bool
    ) -> bool:
        """Record that ``attempt`` of a run died with its worker (``lost``).

        Only while the run is still ``running`` that attempt on that ``worker``: a run
        that finished or was taken over meanwhile is left alone (False). With
        ``requeue`` the run stays open for the next attempt: ``retrying``, its attempt
        counter already on the next one, so the dead worker's own message, delivered
        again later, is refused as older; without, the run is finished as ``lost``.
        The attempt's record says ``lost`` either way.
        """
        ...

    async def running_on(self, worker: str, *, started_before: datetime | None = None) -> list[Run]:
        """Runs ``running`` on ``worker`` (a Celery hostname), oldest started first; with
        ``started_before`` only those started before that instant (the store's clock)."""
        ...

    async def get_run(self, run_id: str, *, with_attempts: bool = True) -> Run | None: ...

    async def history(self, job_key: str | None = None, *, limit: int = 20) -> list[Run]:
        """Runs, newest enqueued first."""
        ...

    async def runs(
        self,
        filters: RunFilter,
        *,
        limit: int,
        after: Cursor | None = None,
        scan: int | None = None,
    ) -> tuple[list[Run], Cursor | None]:
        """One page of the runs that match, newest enqueued first (ties: higher id
        first), and the cursor of the next page (None: this is the last).

        ``scan`` bounds the work of a page filtered by status (or, for one job, by
        trigger), which no index answers: of the runs that match the other filters,
        only the ``scan`` newest after the cursor are looked at. The page then holds
        the matching ones among those, possibly fewer than ``limit`` or none, and the
        cursor continues after the last one looked at while older runs are left."""
        ...

    async def last_runs(self, job_keys: Sequence[str]) -> dict[str, Run]:
        """The most recently enqueued run of each job that has one."""
        ...

    async def last_statuses(self, job_keys: Sequence[str]) -> dict[str, tuple[RunStatus, datetime]]:
        """Of the runs :meth:`last_runs` gives, only the status and when the run last
        changed (finished, else started, else enqueued): what a table of 100,000 jobs
        shows, without reading and decoding whole runs."""
        ...

    async def counts_since(self, job_key: str, since: datetime) -> dict[RunStatus, int]:
        """How many runs of the job were enqueued since ``since``, per status."""
        ...

    async def prune(
        self,
        finished_before: datetime,
        *,
        batch: int = 5000,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Delete finished runs enqueued and finished before ``finished_before``, in
        batches of about ``batch`` runs (``progress`` hears the running total after each
        batch that deleted some); returns how many."""
        ...
