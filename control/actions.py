"""Operator actions on runs, shared by the CLI and the dashboard: enqueue manual and
rerun runs, backfill a range of ticks, cancel a run, find the run a rerun repeats."""

from __future__ import annotations

import asyncio
import getpass
import json
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from jobs_core.errors import ConfigError, ServiceUnavailable
from jobs_core.history import QueuedRun, Run, RunHistory
from jobs_core.registry import JobDefinition
from jobs_core.status import RunStatus, Trigger
from jobs_core.text import cut
from jobs_core.wire import (
    CANCEL_TTL_S,
    RELEASE_LOCK_LUA,
    Keys,
    job_kwargs,
    task_message,
    task_name,
    tick_run_id,
)

from .context import Context

#: `jobs backfill`: the most ticks one call enqueues unless --max says otherwise.
DEFAULT_MAX_TICKS = 1000
#: Seconds `jobs cancel` waits for a running job to stop after being asked to.
CANCEL_WAIT_S = 10.0
#: With --terminate: seconds the job gets to stop by itself before its process is killed.
TERMINATE_AFTER_S = 3.0
POLL_S = 0.2
#: Seconds added to the misfire grace when marking recent backfilled ticks.
BACKFILL_MARK_MARGIN_S = 3600


def operator() -> str:
    """Who runs this command, as history records it: ``user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class TooManyTicks(ConfigError):
    """A backfill range holds more ticks than allowed (a usage error: exit 2)."""


def ticks_between(jd: JobDefinition, start: datetime, end: datetime, most: int) -> list[datetime]:
    """The ticks of ``jd``'s schedule in ``[start, end)``; refuses more than ``most``."""
    if jd.cron is None:
        raise ConfigError(f"{jd.key} has no schedule: there are no ticks to backfill")
    if start >= end:
        raise ConfigError(f"--from {start.isoformat()} is not before --to {end.isoformat()}")
    now = datetime.now(UTC)
    if end > now:
        raise ConfigError(
            f"--to {end.isoformat()} is in the future: a backfill enqueues past ticks "
            "(the beat sends the others)"
        )
    found: list[datetime] = []
    when = jd.cron.next_after(start - timedelta(microseconds=1))
    while when < end:
        if len(found) == most:
            raise TooManyTicks(
                f"{jd.key}: [{start.isoformat()}, {end.isoformat()}) holds more than {most} "
                "ticks; narrow the range or raise --max"
            )
        found.append(when)
        when = jd.cron.next_after(when)
    return found


@dataclass(frozen=True)
class BackfillResult:
    job: str
    ticks: int
    enqueued: list[datetime]

    @property
    def present(self) -> int:
        return self.ticks - len(self.enqueued)

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "ticks": self.ticks,
            "enqueued": len(self.enqueued),
            "already_present": self.present,
            "enqueued_ticks": [t.isoformat() for t in self.enqueued],
        }


def backfill(ctx: Context, jd: JobDefinition, ticks: list[datetime]) -> BackfillResult:
    """Record a queued backfill run per tick that has no run yet, then send those.

    The rows go first, in one statement that skips every tick already present (the tick
    index covers schedule, catch-up and backfill runs), so two backfills of one range,
    or a backfill and the beat's catch-up, never run a tick twice. The run id is the
    tick's own (:func:`tick_run_id`), as the beat's, so a later message of the beat for
    the same instant lands on the same row and is refused once it has run. All or
    nothing: see :func:`send_or_withdraw`.
    """
    ctx.require_database("jobs backfill")
    ctx.redis()  # fail early, with the URL, if the broker is unreachable
    by = operator()
    ids = {tick_run_id(jd.key, t): t for t in ticks}

    async def record(history: RunHistory) -> list[str]:
        return await history.create_tick_runs(
            jd.key,
            list(ids.items()),
            trigger=Trigger.BACKFILL,
            max_attempts=jd.policy.retry.max_attempts,
            parameters=dict(jd.parameters),
            triggered_by=by,
        )

    created = ctx.with_history("jobs backfill", record)
    now = datetime.now(UTC)
    messages: list[tuple[str, str]] = []
    marks: list[tuple[str, int]] = []
    # Ticks the beat may still send (catch-up within the misfire grace) are marked, so
    # the worker claims their run before running either message.
    horizon = now - timedelta(seconds=jd.policy.misfire_grace + BACKFILL_MARK_MARGIN_S)
    for rid in created:
        if ids[rid] >= horizon:
            keep = (ids[rid] - horizon).total_seconds() + BACKFILL_MARK_MARGIN_S
            marks.append((Keys.backfilled(rid), max(1, int(keep))))
        kwargs = job_kwargs(
            run_id=rid,
            trigger=Trigger.BACKFILL,
            scheduled_for=ids[rid],
            enqueued_at=now,
            triggered_by=by,
        )
        messages.append(task_message(task_name(jd.key), kwargs, queue=jd.policy.queue, task_id=rid))
    send_or_withdraw(ctx, "jobs backfill", created, messages, marks)
    return BackfillResult(jd.key, len(ticks), sorted(ids[rid] for rid in created))


# ---------------------------------------------------------------- manual runs


def enqueue(
    ctx: Context,
    jobs: list[JobDefinition],
    overrides: dict[str, Any],
    *,
    triggered_by: str | None = None,
    reason: str | None = None,
    trigger: Trigger = Trigger.MANUAL,
    rerun_of: str | None = None,
) -> list[str]:
    """Record a queued run per job (when history is configured), then send them, all or
    none (:func:`send_or_withdraw`); returns the run ids."""
    ctx.redis()  # fail early, with the URL, if the broker is unreachable
    runs = [(jd, str(uuid.uuid4())) for jd in jobs]
    recorded: list[str] = []
    if ctx.profile.database_url:
        # One statement: a failure leaves no run recorded without its message.
        queued = [
            QueuedRun(run_id, jd.key, jd.policy.retry.max_attempts, {**jd.parameters, **overrides})
            for jd, run_id in runs
        ]

        async def record(history: RunHistory) -> list[str]:
            return await history.create_queued_runs(
                queued,
                trigger=trigger,
                triggered_by=triggered_by,
                reason=reason,
                rerun_of=rerun_of,
            )

        ctx.with_history("jobs run", record)
        recorded = [run_id for _, run_id in runs]
    now = datetime.now(UTC)
    messages = [
        task_message(
            task_name(jd.key),
            job_kwargs(
                run_id=run_id,
                trigger=trigger,
                scheduled_for=None,
                enqueued_at=now,
                parameters=overrides,
                triggered_by=triggered_by,
                reason=reason,
            ),
            queue=jd.policy.queue,
            task_id=run_id,
        )
        for jd, run_id in runs
    ]
    what = "jobs rerun" if trigger is Trigger.RERUN else "jobs run"
    send_or_withdraw(ctx, what, recorded, messages)
    return [run_id for _, run_id in runs]


# ---------------------------------------------------------------- sending


class NotEnqueued(ServiceUnavailable):
    """Redis failed while runs were being sent: nothing was enqueued (exit 2)."""


def send_or_withdraw(
    ctx: Context,
    what: str,
    recorded: list[str],
    messages: list[tuple[str, str]],
    marks: Sequence[tuple[str, int]] = (),
) -> None:
    """Send ``messages`` (``(queue, payload)``, and the ``(key, ttl)`` marks) in one
    MULTI/EXEC: Redis applies all of them or none.

    When Redis fails, the runs ``recorded`` for them are withdrawn (deleted while still
    queued: a run left queued with no message would show as waiting for ever, and a
    backfilled tick would count as present to the next backfill), and
    :class:`NotEnqueued` names Redis's URL, password masked. Should Redis have applied
    the send after all (its reply lost), each run still runs once: a withdrawn run is
    recorded again by the worker that claims it, and a run a worker already claimed is
    not withdrawn.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from beat.redis_client import connect
    from jobs_core.redis_url import parse_redis_url

    if not messages:
        return
    # A client of its own that never retries: a transaction whose reply was lost may
    # have been applied, and sending it again would send every message twice.
    client = connect(
        parse_redis_url(ctx.redis_url),
        socket_connect_timeout=5,
        socket_timeout=30,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        pipe = client.pipeline(transaction=True)
        for key, ttl in marks:
            pipe.set(key, "1", ex=ttl)
        for queue, payload in messages:
            pipe.lpush(queue, payload)
        pipe.execute()
    except redis.RedisError as exc:
        raise NotEnqueued(_not_enqueued(ctx, what, recorded, exc)) from None
    finally:
        client.close()


def _not_enqueued(ctx: Context, what: str, recorded: list[str], exc: BaseException) -> str:
    from jobs_core.urls import mask_secrets_in, mask_url

    url = ctx.redis_url
    lines = str(exc).strip().splitlines()
    reason = mask_secrets_in(lines[0] if lines else type(exc).__name__, url)
    failed = f"{what}: Redis at {mask_url(url)} failed while sending: {reason}"
    if not recorded:
        return f"{failed}; nothing was enqueued"
    n = len(recorded)

    async def withdraw(history: RunHistory) -> list[str]:
        return await history.withdraw_queued(recorded)

    try:
        gone = ctx.with_history(what, withdraw)
    except Exception as err:
        return (
            f"{failed}; nothing was enqueued, but the {_runs(n)} recorded for it could not "
            f"be withdrawn from the history ({cut(str(err), 200)}): they show as queued "
            "with no message; `jobs cancel` them"
        )
    if len(gone) < n:
        # Workers claimed some: the transaction was applied, its reply lost.
        return (
            f"{failed}; yet workers already took {_runs(n - len(gone))}, so the send went "
            "through: every run was enqueued (the withdrawn ones are recorded again when "
            "a worker takes them)"
        )
    return f"{failed}; nothing was enqueued (the {_runs(n)} recorded for it were withdrawn)"


def _runs(n: int) -> str:
    return f"{n} run{'' if n == 1 else 's'}"


# ---------------------------------------------------------------- cancel


@dataclass(frozen=True)
class CancelReport:
    exit_code: int  # 0 cancelled, 1 already finished, 2 unknown id
    text: str
    run: Run | None = None


def request_cancel(client: Any, run_id: str, by: str, *, terminate: bool = False) -> None:
    """Leave the cancel request the worker checks before an attempt and polls during it."""
    request = {"by": by, "terminate": terminate, "at": datetime.now(UTC).isoformat()}
    client.set(Keys.cancel(run_id), json.dumps(request), ex=CANCEL_TTL_S)


def _release_lock(client: Any, job_key: str, run_id: str) -> None:
    """Drop the job's overlap lock if the killed run held it (compare and delete)."""
    client.eval(RELEASE_LOCK_LUA, 1, Keys.lock(job_key), run_id)


def cancel(ctx: Context, run_id: str, *, terminate: bool, by: str | None = None) -> CancelReport:
    """Cancel ``run_id``: a queued run never starts, a running one is cancelled by its
    worker (and with ``terminate`` its process is killed if it does not stop). ``by``
    is who asked (default: this process's ``user@host``)."""
    ctx.require_database("jobs cancel")
    client = ctx.redis()
    by = by or operator()

    async def go(history: RunHistory) -> CancelReport:
        run = await history.get_run(run_id, with_attempts=False)
        if run is None:
            return CancelReport(2, f"no run with id {run_id!r}")
        if run.finished:
            return CancelReport(1, f"run {run.id} of {run.job_key} already {run.status}", run)
        request_cancel(client, run.id, by, terminate=terminate)
        if run.status is not RunStatus.RUNNING:
            done = await history.cancel_run(run.id, by=by, message=f"cancelled by {by}")
            if done.changed:
                if terminate:
                    # A first attempt shows as queued until it has run for a moment (lazy
                    # start), and a job that blocks its loop never shows running at all.
                    await asyncio.sleep(TERMINATE_AFTER_S)
                    _terminate(ctx, run.id)
                    _release_lock(client, run.job_key, run.id)
                    text = "cancelled; the process running it, if any, was terminated"
                    return CancelReport(0, f"run {run.id} of {run.job_key} {text}", run)
                return CancelReport(0, f"run {run.id} of {run.job_key} cancelled", run)
        # Running: its worker polls the request and cancels the job's coroutine.
        wait = TERMINATE_AFTER_S if terminate else CANCEL_WAIT_S
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            now = await history.get_run(run.id, with_attempts=False)
            if now is not None and now.finished:
                if now.status is RunStatus.CANCELLED:
                    return CancelReport(0, f"run {run.id} of {run.job_key} cancelled", now)
                return CancelReport(1, f"run {run.id} of {run.job_key} already {now.status}", now)
            await asyncio.sleep(POLL_S)
        if terminate:
            _terminate(ctx, run.id)
            _release_lock(client, run.job_key, run.id)
            message = f"cancelled by {by}; its process was terminated (it ignored cancellation)"
        else:
            message = (
                f"cancelled by {by}; the job had not stopped {wait:g}s later (it ignores "
                "cancellation: `jobs cancel --terminate` kills its process)"
            )
        done = await history.cancel_run(run.id, by=by, message=message)
        if not done.changed:
            return CancelReport(1, f"run {run.id} of {run.job_key} already {done.status}", run)
        return CancelReport(0, f"run {run.id} of {run.job_key} {message}", run)

    return ctx.with_history("jobs cancel", go)


def _terminate(ctx: Context, run_id: str) -> None:
    """Kill the worker process running ``run_id`` (its Celery task id), wherever it runs."""
    from worker.factory import create_app

    app, _, _ = create_app(ctx.profile, ctx.registry)
    try:
        app.control.revoke(run_id, terminate=True, signal="SIGKILL")
    finally:
        app.close()


# ---------------------------------------------------------------- rerun


def rerun_source(ctx: Context, run_id: str) -> tuple[Run, JobDefinition] | None:
    """The run to repeat and its job; None when there is no such run."""
    ctx.require_database("jobs rerun")

    async def fetch(history: RunHistory) -> Run | None:
        return await history.get_run(run_id, with_attempts=False)

    run = ctx.with_history("jobs rerun", fetch)
    if run is None:
        return None
    jd = ctx.registry.jobs.get(run.job_key)
    if jd is None:
        raise ConfigError(f"run {run.id} is of {run.job_key}, which the profile no longer has")
    return run, jd
