"""Run history in memory: the same contract as PostgreSQL, for tests and embedding.

One process only, nothing persists. Every method completes without yielding to the
event loop, so each is atomic as the PostgreSQL statements are.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from .errors import DuplicateTick
from .history import (
    Attempt,
    AttemptEnd,
    AttemptStart,
    Cancelled,
    Claim,
    Cursor,
    QueuedRun,
    Run,
    RunFilter,
)
from .status import RunStatus, Trigger


def _now() -> datetime:
    return datetime.now(UTC)


def _canonical(run_id: str) -> str:
    return str(uuid.UUID(run_id))


@dataclass
class _Row:
    run: Run
    attempts: dict[int, Attempt] = field(default_factory=dict)


class MemoryHistory:
    """:class:`jobs_core.history.RunHistory` in a dict."""

    def __init__(self) -> None:
        self._rows: dict[str, _Row] = {}
        self._ticks: dict[tuple[str, datetime], str] = {}

    # -- writes ----------------------------------------------------------------------

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
        rid = _canonical(run_id) if run_id else str(uuid.uuid4())
        if rid in self._rows or self._tick_owner(job_key, trigger, scheduled_for) is not None:
            return rid
        now = _now()
        self._insert(
            Run(
                id=rid,
                job_key=job_key,
                trigger=trigger,
                status=status,
                scheduled_for=scheduled_for,
                enqueued_at=now,
                started_at=None,
                finished_at=now if status.is_terminal else None,
                attempt=0,
                max_attempts=max_attempts,
                duration_ms=None,
                message=message,
                error=None,
                worker=None,
                items_processed=None,
                items_failed=None,
                data={},
                parameters=dict(parameters or {}),
                next_attempt_at=None,
                triggered_by=triggered_by,
                reason=reason,
                rerun_of=_canonical(rerun_of) if rerun_of else None,
            )
        )
        return rid

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
        created: list[str] = []
        for run_id, scheduled_for in ticks:
            rid = _canonical(run_id)
            if rid in self._rows or self._tick_owner(job_key, trigger, scheduled_for):
                continue
            await self.create_run(
                job_key=job_key,
                trigger=trigger,
                max_attempts=max_attempts,
                parameters=parameters,
                scheduled_for=scheduled_for,
                run_id=rid,
                triggered_by=triggered_by,
                reason=reason,
            )
            created.append(rid)
        return created

    async def create_queued_runs(
        self,
        runs: Sequence[QueuedRun],
        *,
        trigger: Trigger,
        triggered_by: str | None = None,
        reason: str | None = None,
        rerun_of: str | None = None,
    ) -> list[str]:
        ids = [_canonical(r.run_id) for r in runs]  # a malformed id refuses them all
        created: list[str] = []
        for rid, queued in zip(ids, runs, strict=True):
            if rid in self._rows:
                continue
            await self.create_run(
                job_key=queued.job_key,
                trigger=trigger,
                max_attempts=queued.max_attempts,
                parameters=queued.parameters,
                run_id=rid,
                triggered_by=triggered_by,
                reason=reason,
                rerun_of=rerun_of,
            )
            created.append(rid)
        return created

    async def cancel_run(self, run_id: str, *, by: str, message: str) -> Cancelled:
        try:
            row = self._rows.get(_canonical(run_id))
        except ValueError:
            return Cancelled(False, None)
        if row is None:
            return Cancelled(False, None)
        if row.run.finished:
            return Cancelled(False, row.run.status)
        now = _now()
        started = row.run.started_at
        row.run = replace(
            row.run,
            status=RunStatus.CANCELLED,
            finished_at=now,
            next_attempt_at=None,
            cancelled_by=by,
            message=message,
            duration_ms=int((now - started).total_seconds() * 1000) if started else None,
        )
        return Cancelled(True, RunStatus.CANCELLED)

    async def withdraw_queued(self, run_ids: Sequence[str]) -> list[str]:
        gone: list[str] = []
        for run_id in run_ids:
            try:
                rid = _canonical(run_id)
            except ValueError:
                continue
            row = self._rows.get(rid)
            if row is None or row.run.status is not RunStatus.QUEUED or row.run.started_at:
                continue
            del self._rows[rid]
            if row.run.scheduled_for is not None and self._ticks.get(self._tick(row.run)) == rid:
                del self._ticks[self._tick(row.run)]
            gone.append(rid)
        return gone

    async def start_attempt(self, start: AttemptStart) -> Claim:
        rid = _canonical(start.run_id)
        now = _now()
        row = self._rows.get(rid)
        if row is None:
            self._insert(self._new_run(rid, start, RunStatus.RUNNING, now))
            return Claim(rid, True, RunStatus.RUNNING)
        previous = row.run.status
        if not self._claimable(row.run, start.attempt):
            return Claim(rid, False, previous)
        row.run = replace(
            row.run,
            status=RunStatus.RUNNING,
            started_at=now,
            attempt=start.attempt,
            max_attempts=start.max_attempts,
            worker=start.worker,
            next_attempt_at=None,
        )
        return Claim(rid, True, RunStatus.RUNNING, took_over=previous is RunStatus.RUNNING)

    async def finish_attempt(self, run_id: str, attempt: int, end: AttemptEnd) -> bool:
        row = self._rows.get(_canonical(run_id))
        if row is None or row.run.finished or row.run.attempt != attempt:
            return False
        now = _now()
        row.run = replace(
            row.run,
            status=end.status,
            duration_ms=end.duration_ms,
            message=end.message,
            error=end.error,
            items_processed=end.items_processed,
            items_failed=end.items_failed,
            data=dict(end.data) if end.data is not None else row.run.data,
            finished_at=now if end.closes_run else None,
            next_attempt_at=end.next_attempt_at,
            cancelled_by=end.cancelled_by,
        )
        self._record_attempt(row, attempt, end, now)
        return True

    async def settle_attempt(
        self, start: AttemptStart, started_at: datetime, end: AttemptEnd
    ) -> bool:
        rid = _canonical(start.run_id)
        now = _now()
        row = self._rows.get(rid)
        if row is None:
            row = self._insert(self._new_run(rid, start, end.status, started_at))
        elif not self._claimable(row.run, start.attempt):
            return False
        row.run = replace(
            row.run,
            status=end.status,
            started_at=started_at,
            finished_at=now if end.closes_run else None,
            attempt=start.attempt,
            max_attempts=start.max_attempts,
            worker=start.worker,
            parameters=dict(start.parameters),
            duration_ms=end.duration_ms,
            message=end.message,
            error=end.error,
            items_processed=end.items_processed,
            items_failed=end.items_failed,
            data=dict(end.data or {}),
            next_attempt_at=end.next_attempt_at,
            cancelled_by=end.cancelled_by,
        )
        self._record_attempt(row, start.attempt, end, now)
        return True

    async def mark_lost(
        self, run_id: str, attempt: int, worker: str, message: str, *, requeue: bool
    ) -> bool:
        try:
            row = self._rows.get(_canonical(run_id))
        except ValueError:
            return False
        if row is None:
            return False
        run = row.run
        if run.status is not RunStatus.RUNNING or run.attempt != attempt or run.worker != worker:
            return False
        now = _now()
        row.run = replace(
            run,
            status=RunStatus.RETRYING if requeue else RunStatus.LOST,
            attempt=attempt + 1 if requeue else attempt,
            message=message,
            error=None,
            finished_at=None if requeue else now,
            next_attempt_at=now if requeue else None,
        )
        row.attempts[attempt] = Attempt(
            attempt=attempt,
            status=RunStatus.LOST,
            started_at=run.started_at or now,
            finished_at=now,
            duration_ms=None,
            message=message,
            error=None,
            worker=worker,
        )
        return True

    async def prune(
        self,
        finished_before: datetime,
        *,
        batch: int = 5000,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        doomed = [
            rid
            for rid, row in self._rows.items()
            if row.run.finished
            and row.run.finished_at is not None
            and row.run.finished_at < finished_before
            and row.run.enqueued_at < finished_before
        ]
        for rid in doomed:
            run = self._rows.pop(rid).run
            if run.scheduled_for is not None and self._ticks.get(self._tick(run)) == rid:
                del self._ticks[self._tick(run)]
        if doomed and progress is not None:
            progress(len(doomed))
        return len(doomed)

    # -- reads -----------------------------------------------------------------------

    async def get_run(self, run_id: str, *, with_attempts: bool = True) -> Run | None:
        try:
            row = self._rows.get(_canonical(run_id))
        except ValueError:
            return None
        if row is None:
            return None
        if not with_attempts:
            return row.run
        return replace(row.run, attempts=tuple(row.attempts[n] for n in sorted(row.attempts)))

    async def history(self, job_key: str | None = None, *, limit: int = 20) -> list[Run]:
        runs, _ = await self.runs(RunFilter(job_key=job_key), limit=limit)
        return runs

    async def runs(
        self,
        filters: RunFilter,
        *,
        limit: int,
        after: Cursor | None = None,
        scan: int | None = None,
    ) -> tuple[list[Run], Cursor | None]:
        if scan is not None and scan < 1:
            raise ValueError(f"scan must be at least 1, got {scan}")
        f = filters
        # What no index answers in PostgreSQL (see history_queries.unindexed).
        trigger_unindexed = f.trigger is not None and f.job_key is not None
        bounded = scan is not None and (f.status is not None or trigger_unindexed)

        def indexed(run: Run) -> bool:
            return (
                (f.job_key is None or run.job_key == f.job_key)
                and (f.trigger is None or trigger_unindexed or run.trigger is f.trigger)
                and (f.since is None or run.enqueued_at >= f.since)
                and (f.until is None or run.enqueued_at < f.until)
                and (after is None or (run.enqueued_at, run.id) < (after.enqueued_at, after.id))
            )

        def others(run: Run) -> bool:
            return (f.status is None or run.status is f.status) and (
                not trigger_unindexed or run.trigger is f.trigger
            )

        candidates = self._newest_first([r.run for r in self._rows.values() if indexed(r.run)])
        looked_at = candidates[:scan] if bounded and scan is not None else candidates
        matching = [run for run in looked_at if others(run)]
        page = matching[:limit]
        if len(matching) > limit and page:
            return page, Cursor.after_run(page[-1])
        if len(candidates) > len(looked_at):
            return page, Cursor.after_run(looked_at[-1])
        return page, None

    async def last_runs(self, job_keys: Sequence[str]) -> dict[str, Run]:
        wanted = set(job_keys)
        out: dict[str, Run] = {}
        for run in self._newest_first([r.run for r in self._rows.values()]):
            if run.job_key in wanted:
                out.setdefault(run.job_key, run)
        return out

    async def last_statuses(self, job_keys: Sequence[str]) -> dict[str, tuple[RunStatus, datetime]]:
        return {
            key: (run.status, run.finished_at or run.started_at or run.enqueued_at)
            for key, run in (await self.last_runs(job_keys)).items()
        }

    async def running_on(self, worker: str, *, started_before: datetime | None = None) -> list[Run]:
        runs = [
            r.run
            for r in self._rows.values()
            if r.run.status is RunStatus.RUNNING
            and r.run.worker == worker
            and (
                started_before is None
                or (r.run.started_at is not None and r.run.started_at < started_before)
            )
        ]
        runs.sort(key=lambda r: r.id)
        runs.sort(key=lambda r: r.started_at or r.enqueued_at)
        return runs

    async def counts_since(self, job_key: str, since: datetime) -> dict[RunStatus, int]:
        return dict(
            Counter(
                r.run.status
                for r in self._rows.values()
                if r.run.job_key == job_key and r.run.enqueued_at >= since
            )
        )

    # -- internals -------------------------------------------------------------------

    @staticmethod
    def _claimable(run: Run, attempt: int) -> bool:
        return not run.finished and run.attempt <= attempt

    @staticmethod
    def _newest_first(runs: list[Run]) -> list[Run]:
        # PostgreSQL's order: enqueued_at DESC, id DESC (uuids compare as their text).
        runs.sort(key=lambda r: (r.enqueued_at, r.id), reverse=True)
        return runs

    def _tick_owner(
        self, job_key: str, trigger: Trigger, scheduled_for: datetime | None
    ) -> str | None:
        if not trigger.carries_tick or scheduled_for is None:
            return None
        return self._ticks.get((job_key, scheduled_for))

    @staticmethod
    def _tick(run: Run) -> tuple[str, datetime]:
        assert run.scheduled_for is not None
        return (run.job_key, run.scheduled_for)

    def _insert(self, run: Run) -> _Row:
        owner = self._tick_owner(run.job_key, run.trigger, run.scheduled_for)
        if owner is not None:
            raise DuplicateTick.of(run.job_key, run.scheduled_for)
        if run.trigger.carries_tick and run.scheduled_for is not None:
            self._ticks[self._tick(run)] = run.id
        row = self._rows[run.id] = _Row(run)
        return row

    @staticmethod
    def _new_run(rid: str, start: AttemptStart, status: RunStatus, started_at: datetime) -> Run:
        return Run(
            id=rid,
            job_key=start.job_key,
            trigger=start.trigger,
            status=status,
            scheduled_for=start.scheduled_for,
            enqueued_at=start.enqueued_at or _now(),
            started_at=started_at,
            finished_at=None,
            attempt=start.attempt,
            max_attempts=start.max_attempts,
            duration_ms=None,
            message=None,
            error=None,
            worker=start.worker,
            items_processed=None,
            items_failed=None,
            data={},
            parameters=dict(start.parameters),
            next_attempt_at=None,
            triggered_by=start.triggered_by,
            reason=start.reason,
        )

    @staticmethod
    def _record_attempt(row: _Row, attempt: int, end: AttemptEnd, now: datetime) -> None:
        earlier = row.attempts.get(attempt)
        row.attempts[attempt] = Attempt(
            attempt=attempt,
            status=end.attempt_status,
            started_at=earlier.started_at if earlier else (row.run.started_at or now),
            finished_at=now,
            duration_ms=end.duration_ms,
            message=end.message,
            error=end.error,
            worker=row.run.worker,
        )
