"""The beat's incremental health read (``HealthReader``) against a real PostgreSQL: after
any sequence of run writes through the real history, each read gives what reading every
job gives, runs committed late included; time-driven alerts still fire from the health
kept between reads."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs_core.alert_rounds import RoundEvaluator
from jobs_core.alerts import AlertKind, JobWatch
from jobs_core.cron import CronSchedule
from jobs_core.history import AttemptEnd, AttemptStart, QueuedRun
from jobs_core.history_pg import PostgresHistory
from jobs_core.job_health import HealthReader, fetch_job_health
from jobs_core.policy import AlertPolicy
from jobs_core.status import RunStatus, Trigger
from tests.hypothesis_budget import examples

pytestmark = [pytest.mark.integration, pytest.mark.servers]

JOBS = ("a/one", "a/two", "a/three")
T0 = datetime(2026, 5, 1, tzinfo=UTC)


class Lent:
    """Connections for :class:`PostgresHistory`: one connection lent for every block. In
    autocommit mode each statement commits at once; otherwise the writes stay in one
    open transaction until :meth:`commit` (a writer that commits late)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        yield self.conn

    async def commit(self) -> None:
        await self.conn.commit()


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def same_as_full(reader: HealthReader, conn: psycopg.Connection[Any]) -> None:
    got = reader.read(conn, list(JOBS))
    assert got == fetch_job_health(conn, list(JOBS))


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


_job = st.sampled_from(JOBS)
_run = st.integers(min_value=0, max_value=50)  # an index into the runs written so far
_end = st.sampled_from(
    [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.RETRYING]
)
_write = st.one_of(
    st.tuples(st.just("create"), _job, st.sampled_from([*RunStatus])),
    st.tuples(st.just("queue"), _job),
    st.tuples(st.just("start"), _run),
    st.tuples(st.just("start-new"), _job),
    st.tuples(st.just("finish"), _run, _end),
    st.tuples(st.just("settle"), _job, _end),
    st.tuples(st.just("lost"), _run, st.booleans()),
    st.tuples(st.just("cancel"), _run),
    st.tuples(st.just("withdraw"), _run),
)
#: A write, and whether it is made in a transaction that commits only after the next
#: read (with ``now()`` older than that read).
_step = st.tuples(_write, st.booleans())


class Writer:
    """Applies the steps through :class:`PostgresHistory`, remembering the runs."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, str, int]] = []  # run id, job, attempt of the last start
        self.minute = 0
        #: Runs the open late transaction wrote: another writer waits for its commit.
        self.locked: set[str] = set()

    def _start(self, run_id: str, job: str, attempt: int) -> AttemptStart:
        return AttemptStart(
            run_id=run_id,
            job_key=job,
            trigger=Trigger.MANUAL,
            attempt=attempt,
            max_attempts=3,
            worker="celery@w1",
            scheduled_for=None,
            # A lazily started run's enqueue instant, long before its row is written.
            enqueued_at=T0 + timedelta(minutes=len(self.runs)),
            parameters={},
        )

    async def apply(
        self, history: PostgresHistory, write: tuple[Any, ...], *, held: bool = False
    ) -> None:
        """Makes ``write``; ``held``: in the transaction that commits late."""
        written = len(self.runs)
        touched = await self._apply(history, write, held)
        if held:
            self.locked.update(rid for rid, _, _ in self.runs[written:])
            self.locked.update(touched)

    async def _apply(
        self, history: PostgresHistory, write: tuple[Any, ...], held: bool
    ) -> list[str]:
        kind = write[0]
        if kind == "create":
            self.minute += 1
            rid = await history.create_run(
                job_key=write[1],
                trigger=Trigger.SCHEDULE,
                scheduled_for=T0 + timedelta(minutes=self.minute),
                max_attempts=3,
                status=write[2],
            )
            self.runs.append((rid, write[1], 0))
        elif kind == "queue":
            rid = str(uuid.uuid4())
            await history.create_queued_runs([QueuedRun(rid, write[1], 3)], trigger=Trigger.MANUAL)
            self.runs.append((rid, write[1], 0))
        elif kind == "start-new":
            rid = str(uuid.uuid4())
            await history.start_attempt(self._start(rid, write[1], 1))
            self.runs.append((rid, write[1], 1))
        elif kind == "settle":
            rid = str(uuid.uuid4())
            end = AttemptEnd(write[2], 5, message="settled")
            await history.settle_attempt(self._start(rid, write[1], 1), T0, end)
            self.runs.append((rid, write[1], 1))
        elif self.runs:
            i = write[1] % len(self.runs)
            rid, job, attempt = self.runs[i]
            if rid in self.locked and not held:
                return []  # it would wait for the late transaction's commit: a deadlock
            if kind == "start":
                await history.start_attempt(self._start(rid, job, attempt + 1))
                self.runs[i] = (rid, job, attempt + 1)
            elif kind == "finish":
                await history.finish_attempt(rid, attempt, AttemptEnd(write[2], 7, error="e"))
            elif kind == "lost":
                await history.mark_lost(rid, attempt, "celery@w1", "gone", requeue=write[2])
            elif kind == "cancel":
                await history.cancel_run(rid, by="tests", message="stop")
            else:
                await history.withdraw_queued([rid])
            return [rid]
        return []


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(_step, min_size=1, max_size=25))
def test_incremental_reads_give_what_a_full_read_gives(
    database_url: str, conn: psycopg.Connection[Any], steps: list[tuple[tuple[Any, ...], bool]]
) -> None:
    """Whatever runs are written, started, finished, retried, lost, cancelled or
    withdrawn, and whatever commits late: after each write, the reader (never due for a
    full read by time) gives what reading every job gives."""
    url = database_url
    conn.execute("TRUNCATE job_run_attempts, job_runs")

    async def go() -> None:
        now = await psycopg.AsyncConnection.connect(url, autocommit=True)
        late = await psycopg.AsyncConnection.connect(url)
        try:
            history, held = PostgresHistory(Lent(now)), Lent(late)
            reader = HealthReader(clock=Clock())
            writer = Writer()
            same_as_full(reader, conn)
            pending = False
            for write, commits_late in steps:
                if commits_late and not pending:
                    await writer.apply(PostgresHistory(held), write, held=True)
                    pending = True
                    same_as_full(reader, conn)  # a read while the write is not visible
                    continue
                await writer.apply(history, write)
                same_as_full(reader, conn)
                if pending:
                    await held.commit()  # committed after reads newer than its now()
                    pending = False
                    writer.locked.clear()
                    same_as_full(reader, conn)
                assert not reader.was_full
        finally:
            await now.close()
            await late.close()

    asyncio.run(go())


def test_a_run_committed_late_with_an_older_now_is_read(
    database_url: str,
    conn: psycopg.Connection[Any],
) -> None:
    """A run inserted by a transaction that began before a read and committed after the
    next ones (its ``updated_at``, ``now()``, older than those reads) is read once it
    commits; so is a late update of a run."""
    url = database_url

    async def go() -> None:
        late = await psycopg.AsyncConnection.connect(url)
        soon = await psycopg.AsyncConnection.connect(url, autocommit=True)
        try:
            reader = HealthReader(clock=Clock())
            writer = Writer()
            await writer.apply(PostgresHistory(Lent(soon)), ("start-new", "a/two"))
            same_as_full(reader, conn)
            held = Lent(late)
            await writer.apply(
                PostgresHistory(held), ("settle", "a/one", RunStatus.FAILED), held=True
            )
            await writer.apply(PostgresHistory(held), ("finish", 0, RunStatus.SUCCEEDED), held=True)
            began = (await (await late.execute("SELECT now()")).fetchone() or [None])[0]
            same_as_full(reader, conn)
            # Another writer commits meanwhile: the late one's now() is older than it.
            await writer.apply(PostgresHistory(Lent(soon)), ("create", "a/three", RunStatus.FAILED))
            same_as_full(reader, conn)
            assert reader.read_jobs == 2  # a/three, and a/two (its run unfinished)
            await held.commit()
            newest = conn.execute("SELECT max(updated_at) FROM job_runs").fetchone()
            assert newest is not None and began < newest[0]
            health = reader.read(conn, list(JOBS))
            assert health == fetch_job_health(conn, list(JOBS))
            assert not reader.was_full
            assert health["a/one"].consecutive_failures == 1
            assert health["a/two"].running == () and health["a/two"].last_success_at
        finally:
            await late.close()
            await soon.close()

    asyncio.run(go())


def test_a_read_asks_only_for_the_jobs_whose_runs_changed(
    database_url: str,
    conn: psycopg.Connection[Any],
) -> None:
    """Nothing written: no job is read, every health object is kept; a new run: its job
    alone (and those with a run still unfinished)."""
    conn.execute(
        "INSERT INTO job_runs (id, job_key, trigger, status, enqueued_at, finished_at)"
        " SELECT gen_random_uuid(), j, 'manual', 'succeeded', now(), now()"
        " FROM unnest(%s::text[]) AS j",
        (list(JOBS),),
    )
    reader = HealthReader(clock=Clock())
    first = reader.read(conn, list(JOBS))
    assert reader.was_full and reader.read_jobs == len(JOBS)
    second = reader.read(conn, list(JOBS))
    assert not reader.was_full and reader.read_jobs == 0
    assert all(second[j] is first[j] for j in JOBS)
    conn.execute(
        "INSERT INTO job_runs (id, job_key, trigger, status) VALUES (%s, 'a/two', 'manual',"
        " 'running')",
        (str(uuid.uuid4()),),
    )
    third = reader.read(conn, list(JOBS))
    assert reader.read_jobs == 1 and third["a/two"].running
    assert third["a/one"] is first["a/one"]
    reader.read(conn, list(JOBS))
    assert reader.read_jobs == 1  # a/two's run is unfinished: it may change any time


def test_a_full_read_every_full_every_and_after_a_reset(
    database_url: str,
    conn: psycopg.Connection[Any],
) -> None:
    """A prune deletes finished runs, which no incremental read looks for: the full read
    due by time (or after a reset) sees it."""
    conn.execute(
        "INSERT INTO job_runs (id, job_key, trigger, status, enqueued_at, finished_at)"
        " VALUES (%s, 'a/one', 'manual', 'succeeded', now(), now())",
        (str(uuid.uuid4()),),
    )
    clock = Clock()
    reader = HealthReader(full_every=timedelta(minutes=5), clock=clock)
    assert reader.read(conn, list(JOBS))["a/one"].last_success_at is not None
    conn.execute("DELETE FROM job_runs")  # as a prune would, finished runs
    clock.now = 299.0
    assert reader.read(conn, list(JOBS))["a/one"].last_success_at is not None
    assert not reader.was_full
    clock.now = 300.0
    assert reader.read(conn, list(JOBS))["a/one"].last_success_at is None
    assert reader.was_full
    reader.read(conn, list(JOBS))
    assert not reader.was_full
    reader.reset()
    reader.read(conn, list(JOBS))
    assert reader.was_full
    reader.read(conn, [*JOBS, "a/new"])  # another job table
    assert reader.was_full


def test_without_the_inserted_index_every_read_is_full(
    database_url: str,
    conn: psycopg.Connection[Any],
) -> None:
    """Before migration 0006 (or after its build failed) there is nothing to find the new
    runs with but the whole table: every read is a full one, and right."""
    conn.execute("DROP INDEX job_runs_inserted")
    reader = HealthReader(clock=Clock())
    reader.read(conn, list(JOBS))
    conn.execute(
        "INSERT INTO job_runs (id, job_key, trigger, status, enqueued_at, finished_at)"
        " VALUES (%s, 'a/one', 'manual', 'failed', now(), now())",
        (str(uuid.uuid4()),),
    )
    same_as_full(reader, conn)
    assert reader.was_full and reader.read_jobs == len(JOBS)


def test_time_driven_alerts_fire_from_the_health_kept_between_reads(
    database_url: str,
    conn: psycopg.Connection[Any],
) -> None:
    """No run written between rounds: the reads keep every health object, and the rounds
    still find ``too_long`` (a run crossing its limit) and ``late`` (a success overdue)
    when their instant comes, as evaluating every job does."""
    started = datetime(2026, 5, 1, 10, 30, tzinfo=UTC)  # half-way to the next hour
    conn.execute(
        "INSERT INTO job_runs (id, job_key, trigger, status, enqueued_at, started_at,"
        " finished_at) VALUES (%s, 'a/one', 'manual', 'running', %s, %s, NULL),"
        " (%s, 'a/two', 'schedule', 'succeeded', %s, %s, %s)",
        (str(uuid.uuid4()), started, started, str(uuid.uuid4()), started, started, started),
    )
    hourly = CronSchedule("0 0 * * * *")
    watches = {
        "a/one": JobWatch("a/one", AlertPolicy(max_duration=60.0), None, True, started),
        "a/two": JobWatch("a/two", AlertPolicy(late_after=60.0), hourly, True, started),
    }
    reader = HealthReader(clock=Clock())
    evaluator = RoundEvaluator(full_every=timedelta(days=365))
    keys = list(watches)
    first = reader.read(conn, keys)
    assert evaluator.evaluate(watches, first, {}, started).active == {}
    kinds: dict[str, AlertKind] = {}
    for after in (timedelta(seconds=59), timedelta(seconds=61), timedelta(hours=3)):
        health = reader.read(conn, keys)
        assert not reader.was_full and reader.read_jobs <= 1  # a/one: still unfinished
        assert all(health[k] is first[k] for k in keys)
        result = evaluator.evaluate(watches, health, {}, started + after)
        kinds = {i.job: i.kind for i in result.active.values()}
        if after == timedelta(seconds=59):
            assert kinds == {}
        elif after == timedelta(seconds=61):
            assert kinds == {"a/one": AlertKind.TOO_LONG}
    assert kinds == {"a/one": AlertKind.TOO_LONG, "a/two": AlertKind.LATE}


def test_a_run_updated_while_unfinished_stays_a_hot_update(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    """The inserting transaction (migration 0005) is never updated, so its index leaves
    a run's updates that touch no indexed column HOT (a retry: status, attempt,
    updated_at), as before it."""
    rid = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO job_runs (id, job_key, trigger, status, attempt, worker)"
        " VALUES (%s, 'a/one', 'manual', 'running', 1, 'celery@w1')",
        (rid,),
    )

    async def retry() -> None:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
            end = AttemptEnd(RunStatus.RETRYING, 5, next_attempt_at=T0)
            assert await PostgresHistory(Lent(c)).finish_attempt(rid, 1, end)

    asyncio.run(retry())
    deadline = time.monotonic() + 60
    counts: tuple[Any, ...] | None = None
    while time.monotonic() < deadline:  # the statistics reach the view within a second
        conn.execute("SELECT pg_stat_clear_snapshot()")
        counts = conn.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'job_runs'"
        ).fetchone()
        if counts is not None and counts[0] >= 1:
            break
        time.sleep(0.1)
    assert counts == (1, 1)
