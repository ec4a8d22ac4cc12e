"""The health of every job from run history, in one query (what the leading beat's
alerts and per-job metrics are computed from), or of the jobs whose runs changed since
the last read (:class:`HealthReader`). The statement is
:data:`jobs_core.history_queries.JOB_HEALTH`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from .alert_rounds import FULL_EVERY
from .alerts import MAX_RUN_IDS, JobHealth
from .history_queries import (
    HEALTH_RECENT_RUNS,
    HEALTH_STATE,
    INSERTED_INDEX_READY,
    INSERTED_SINCE,
    JOB_HEALTH,
)

__all__ = ["HEALTH_RECENT_RUNS", "HealthReader", "fetch_job_health", "health_from_row"]


def health_from_row(row: Sequence[Any]) -> JobHealth:
    """One row of :data:`~jobs_core.history_queries.JOB_HEALTH` as a :class:`JobHealth`."""
    (
        job,
        success_ref,
        _success_enqueued,
        failure_at,
        failures,
        ids,
        running_ids,
        running_since,
        finished_id,
        finished_status,
        recent_failure_at,
    ) = row
    return JobHealth(
        job=job,
        last_success_at=success_ref,
        # No failure since the latest success: the latest failure is one of the recent
        # runs, or further back than the query looks (see JOB_HEALTH).
        last_failure_at=failure_at if failure_at is not None else recent_failure_at,
        consecutive_failures=int(failures or 0),
        failing_run_ids=tuple(ids or ()),
        running=tuple(zip(running_ids or (), running_since or (), strict=True)),
        last_finished=(finished_id, finished_status) if finished_id is not None else None,
    )


def fetch_job_health(conn: Any, keys: Sequence[str]) -> dict[str, JobHealth]:
    """The health of each job of ``keys`` (a psycopg connection; one statement)."""
    return {row[0]: health_from_row(row) for row in _health_rows(conn, keys)}


class HealthReader:
    """:func:`fetch_job_health` round after round, reading only the jobs whose runs
    changed since the last read; a job whose row is the one it had last time gets the
    very :class:`JobHealth` object it had, so that an unchanged history is one identity
    test away (:mod:`jobs_core.alert_rounds`), and building 100,000 of them every round
    is saved.

    Each read runs in one REPEATABLE READ transaction, so its statements share one
    snapshot ``S``; it keeps ``S``'s xmin and the jobs with an unfinished run in ``S``.
    The next read (snapshot ``S'``) reads again only the jobs that have a run inserted by
    a transaction from that xmin on, or had an unfinished run in ``S``. That is every job
    whose rows differ between ``S`` and ``S'``, prunes aside:

    - a run visible in ``S'`` and not in ``S``: its inserting transaction was not
      visible to ``S``, so its id is at least ``S``'s xmin (every transaction below it
      had ended, and the committed ones are visible), whenever it committed; a run
      inserted early and committed late is no exception, as with a timestamp it would be
      (``now()`` is the transaction's start);
    - a run visible in both with other values: some update committed in between, and
      every update of a run requires it to be unfinished (the history's statements), so
      the version ``S`` saw, the one the first such update replaced, was unfinished;
    - a run visible in ``S`` only: withdrawn while queued, so unfinished in ``S``; or
      pruned (finished long ago), which the next full read sees.

    A full read comes first, then at least every :data:`~jobs_core.alert_rounds.FULL_EVERY`
    (what catches a prune), after :meth:`reset` (the monitor calls it on a reloaded job
    table, a leadership change and a failed round), when the keys change, and always
    while ``job_runs_inserted`` (migration 0006) is not there to answer.
    """

    def __init__(
        self, full_every: timedelta = FULL_EVERY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.full_every = full_every.total_seconds()
        self._clock = clock
        self._last: dict[str, tuple[tuple[Any, ...], JobHealth]] = {}
        self._out: dict[str, JobHealth] = {}
        self._keys: tuple[list[str], str] = ([], "{}")
        #: The xmin of the last read's snapshot (xid8 as text), and the jobs that had an
        #: unfinished run in it; None: the next read is a full one.
        self._since: str | None = None
        self._unfinished: list[str] = []
        self._full_at = 0.0
        #: Jobs whose row changed (or is new) in the last read.
        self.changed = 0
        #: Jobs the last read asked PostgreSQL for, and whether it was a full read.
        self.read_jobs = 0
        self.was_full = False

    def reset(self) -> None:
        """Forget every job: the next read is a full one."""
        self._last, self._out, self._since, self._unfinished = {}, {}, None, []

    def read(self, conn: Any, keys: Sequence[str]) -> dict[str, JobHealth]:
        """The health of each job of ``keys`` (``conn``: a psycopg connection in
        autocommit mode), as :func:`fetch_job_health` gives it."""
        listed = list(keys)
        same_keys = listed == self._keys[0]
        if not same_keys:
            # Sent as one array literal, made once per job table: psycopg adapts a list
            # element by element in Python (most of the round's CPU once the rest is
            # incremental).
            self._keys = (listed, array_literal(listed))
        now = self._clock()
        full = self._since is None or not same_keys or now - self._full_at >= self.full_every
        with conn.transaction():
            # One snapshot for every statement of the read (see the class); read only, so
            # it never fails to serialise.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            ready = bool(conn.execute(INSERTED_INDEX_READY).fetchone()[0])
            full = full or not ready
            since, unfinished = conn.execute(HEALTH_STATE).fetchone()
            if full:
                rows = _health_query(conn, listed, self._keys[1])
            else:
                wanted = set(self._unfinished)
                wanted.update(r[0] for r in conn.execute(INSERTED_SINCE, {"since": self._since}))
                known = self._out.keys()
                asked = [k for k in wanted if k in known]
                rows = _health_query(conn, asked, array_literal(asked))
        if not ready:
            since = None  # nothing to answer the next read's question: a full one again
        if full:
            last: dict[str, tuple[tuple[Any, ...], JobHealth]] = self._last
            kept: dict[str, tuple[tuple[Any, ...], JobHealth]] = {}
            out: dict[str, JobHealth] = {}
            self._full_at = now
        else:
            last = kept = self._last
            # A new dict: the one handed out last time may still be read (the metrics).
            out = dict(self._out)
        changed = 0
        for row in rows:
            row = tuple(row)
            job = row[0]
            before = last.get(job)
            if before is None or before[0] != row:
                before = (row, health_from_row(row))
                changed += 1
            kept[job] = before
            out[job] = before[1]
        self._last, self._out, self.changed = kept, out, changed
        self._since, self._unfinished = since, unfinished or []
        self.read_jobs, self.was_full = len(rows), full
        return out


def array_literal(values: Sequence[str]) -> str:
    """``values`` as a PostgreSQL array literal (every element quoted)."""
    quoted = (v.replace("\\", "\\\\").replace('"', '\\"') for v in values)
    return "{" + ",".join(f'"{v}"' for v in quoted) + "}"


def _health_rows(conn: Any, keys: Sequence[str]) -> list[Sequence[Any]]:
    """The rows of JOB_HEALTH for ``keys``, in a transaction of their own."""
    with conn.transaction():
        return _health_query(conn, keys)


def _health_query(
    conn: Any, keys: Sequence[str], literal: str | None = None
) -> list[Sequence[Any]]:
    """The rows of JOB_HEALTH for ``keys`` (``literal``: the same as an array literal),
    in the caller's transaction."""
    if not keys:
        return []
    # The planner cannot know that each lateral stops after a few rows, so its cost
    # estimate of the whole statement passes jit_above_cost for a few hundred jobs;
    # compiling it then takes longer than running it (45 ms against 40 ms).
    conn.execute("SET LOCAL jit = off")
    cur = conn.execute(
        JOB_HEALTH, {"keys": list(keys) if literal is None else literal, "max_ids": MAX_RUN_IDS}
    )
    rows: list[Sequence[Any]] = cur.fetchall()
    return rows
