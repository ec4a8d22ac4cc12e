"""``systemprompt``: the operator's command line (and the composition root).

Importing this module has no process-wide effect and stays light (click and the
project's small modules): each command imports what it needs (the profile's models,
the job table, redis-py, psycopg) when it runs. :func:`entry`, the console script,
turns the cyclic collector off before any of that is imported (see there).
"""

from __future__ import annotations

import atexit
import functools
import gc
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar
from zoneinfo import ZoneInfo

import click

from beat.limits import LEASE_TTL_RANGE
from control.context import Context
from jobs_core.errors import ConfigError, JobsError
from jobs_core.gcpause import gc_paused
from jobs_core.status import RunStatus, Trigger
from jobs_core.text import cut, quoted

from . import render
from .params import Duration, Instant

#: `jobs run --wait --timeout`: a week is already more patience than a terminal has.
MAX_WAIT = 7 * 86400.0

if TYPE_CHECKING:
    from concurrent.futures import Future

    from beat.control import Pause
    from jobs_core.cron import CronSchedule
    from jobs_core.history import Run, RunHistory
    from jobs_core.registry import JobDefinition, JobRegistry

pass_ctx = click.make_pass_decorator(Context)
P = ParamSpec("P")
R = TypeVar("R")


def _long_running(fn: Callable[P, R]) -> Callable[P, R]:
    """A command that may run for long: the cyclic collector back on (:func:`entry`
    turned it off)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        # What is alive now (modules, the job table) stays alive: never scanned again.
        gc.freeze()
        gc.enable()
        return fn(*args, **kwargs)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--profile",
    "profile_path",
    metavar="PATH",
    help="profile.yaml to use (default: $SYSTEMPROMPT_PROFILE, else ./profile.yaml).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.pass_context
def cli(click_ctx: click.Context, profile_path: str | None, debug: bool) -> None:
    """Distributed cron jobs for Python extensions: beat, workers and run history."""
    click_ctx.obj = Context(profile_path=profile_path, debug=debug)
    click_ctx.call_on_close(click_ctx.obj.close)


@cli.group()
def infra() -> None:
    """Run and operate the scheduler, the workers and the database."""


@infra.group()
def jobs() -> None:
    """List, run and inspect jobs."""


# ---------------------------------------------------------------- jobs list


def _next_run(jd: JobDefinition, now: datetime, remaining: int | None) -> datetime | None:
    """The next tick the beat will send (within start_at/end_at and max_runs)."""
    if jd.cron is None or remaining == 0:
        return None
    policy = jd.policy
    after = now
    if policy.start_at is not None and policy.start_at > now:
        after = policy.start_at - timedelta(microseconds=1)
    nxt = jd.cron.next_after(after)
    if policy.end_at is not None and nxt > policy.end_at:
        return None
    return nxt


class _NextRuns:
    """:func:`_next_run` at one ``now``, computed once per shared schedule: jobs without
    a start/end window and not used up share their schedule's next instant (at 100,000
    jobs on one expression, one computation instead of 100,000)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._memo: dict[tuple[CronSchedule | None, int | None], datetime | None] = {}

    def get(self, jd: JobDefinition, left: int | None) -> datetime | None:
        policy = jd.policy
        if policy.start_at is not None or policy.end_at is not None:
            return _next_run(jd, self.now, left)
        memo = (jd.cron, left if left == 0 else None)
        if memo not in self._memo:
            self._memo[memo] = _next_run(jd, self.now, left)
        return self._memo[memo]


def _paused(ctx: Context) -> dict[str, Pause]:
    from beat.control import pauses

    return pauses(ctx.redis())


def _remaining(ctx: Context, jobs: list[JobDefinition]) -> dict[str, int]:
    """Scheduled runs left of the jobs with ``max_runs``."""
    from beat.control import scheduled_runs

    budgets = {jd.key: jd.policy.max_runs for jd in jobs if jd.policy.max_runs}
    counts = scheduled_runs(ctx.redis(), budgets)
    return {key: max(0, budget - counts[key]) for key, budget in budgets.items()}


def _job_json(
    jd: JobDefinition, paused: dict[str, Pause], nxt: datetime | None, remaining: int | None
) -> dict[str, Any]:
    out = jd.to_json()
    out["enabled"] = jd.enabled and jd.key not in paused
    out["enabled_in_profile"] = jd.enabled
    out["paused"] = jd.key in paused
    pause = paused.get(jd.key)
    out.update(
        pause.to_json() if pause else {"paused_note": None, "paused_by": None, "paused_at": None}
    )
    out["remaining_runs"] = remaining
    out["next_run_at"] = nxt.isoformat() if nxt and out["enabled"] else None
    return out


def _state(jd: JobDefinition, paused: dict[str, Pause], remaining: int | None) -> str:
    if jd.key in paused:
        return "paused"
    if not jd.enabled:
        return "disabled"
    return "finished" if remaining == 0 else "enabled"


def _pause_text(pause: Pause) -> str:
    when = render.when(pause.at) if pause.at else "?"
    note = f'"{render.one_line(pause.note, 200)}"' if pause.note else "no note"
    return f"{note} by {pause.by or '?'} at {when}"


@jobs.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_ctx
def list_jobs(ctx: Context, as_json: bool) -> None:
    """Every job with its effective schedule, state, queue, next and last run."""
    from concurrent.futures import ThreadPoolExecutor

    registry = ctx.registry
    with ThreadPoolExecutor(max_workers=1) as background:
        # The last runs of 100,000 jobs take PostgreSQL about as long as the rest takes
        # here: the query runs while this thread reads Redis and makes the table.
        last_runs: Future[dict[str, tuple[RunStatus, datetime]]] | None = None
        if ctx.profile.database_url:
            keys = list(registry.jobs)

            async def fetch(history: RunHistory) -> dict[str, tuple[RunStatus, datetime]]:
                return await history.last_statuses(keys)

            last_runs = background.submit(ctx.with_history, "jobs list", fetch)
        paused = _paused(ctx)
        remaining = _remaining(ctx, list(registry))
        now = datetime.now(UTC)
        if as_json:
            last = last_runs.result() if last_runs else {}
            click.echo(render.dumps(_list_json(registry, paused, remaining, last, now)))
            return
        table = _list_table(registry, paused, remaining, now)
        last = last_runs.result() if last_runs else {}
    click.echo(table.text([run[0] if (run := last.get(key)) else "-" for key in table.keys]))


LIST_HEADERS = ("JOB", "SCHEDULE", "TIMEZONE", "STATE", "QUEUE", "NEXT RUN", "LAST", "DESCRIPTION")


@dataclass
class _JobTable:
    """``jobs list``'s table but its LAST column, which comes in later."""

    keys: list[str]
    before_last: list[list[str]]
    after_last: list[list[str]]
    notes: list[str]

    def text(self, last: list[str]) -> str:
        columns = [*self.before_last, last, *self.after_last]
        out = [render.columns_table(LIST_HEADERS, columns)]
        if self.notes:
            out += ["\npaused:", "\n".join(self.notes)]
        out.append(f"\n{len(self.keys)} jobs; next runs in each job's time zone")
        return "\n".join(out)


def _list_table(
    registry: JobRegistry, paused: dict[str, Pause], remaining: dict[str, int], now: datetime
) -> _JobTable:
    # 100,000 jobs share a few schedules, zones, sources and policies: each text is made
    # once per distinct value (memo dicts), each column is one list, and the table is
    # formatted in one pass (render.columns_table); no per-job objects.
    next_of = _NextRuns(now)
    shown: dict[tuple[datetime, str], str] = {}
    schedule_text: dict[tuple[str | None, str | None], str] = {}
    zone_text: dict[tuple[str, str], str] = {}
    job_col: list[str] = []
    schedule_col: list[str] = []
    zone_col: list[str] = []
    state_col: list[str] = []
    queue_col: list[str] = []
    next_col: list[str] = []
    description_col: list[str] = []
    notes: list[str] = []
    with gc_paused():
        for key, jd in registry.jobs.items():
            left = remaining.get(key)
            nxt = next_of.get(jd, left)
            pause = paused.get(key)
            next_text = "-"
            if nxt is not None and jd.enabled and pause is None:
                zone = jd.timezone
                next_text = shown.get((nxt, zone), "")
                if not next_text:
                    next_text = shown[(nxt, zone)] = render.when(nxt, ZoneInfo(zone))
            sources = jd.sources
            source = sources.get("schedule")
            text = schedule_text.get((jd.schedule, source))
            if text is None:
                text = schedule_text[(jd.schedule, source)] = (
                    f"{jd.schedule} ({jd.schedule_source})" if jd.schedule else "manual only"
                )
            zone_key = (jd.timezone, sources.get("timezone", "built-in"))
            zone_shown = zone_text.get(zone_key)
            if zone_shown is None:
                zone_shown = zone_text[zone_key] = f"{zone_key[0]} ({zone_key[1]})"
            job_col.append(key)
            schedule_col.append(text)
            zone_col.append(zone_shown)
            if pause is not None:
                state_col.append("paused")
                notes.append(f"  {key}: {_pause_text(pause)}")
            else:
                state_col.append(_state(jd, paused, left))
            queue_col.append(jd.policy.queue)
            next_col.append(next_text)
            description_col.append(jd.description)
    before = [job_col, schedule_col, zone_col, state_col, queue_col, next_col]
    return _JobTable(job_col, before, [description_col], notes)


def _list_json(
    registry: JobRegistry,
    paused: dict[str, Pause],
    remaining: dict[str, int],
    last: dict[str, tuple[RunStatus, datetime]],
    now: datetime,
) -> list[dict[str, Any]]:
    next_of = _NextRuns(now)
    items: list[dict[str, Any]] = []
    for jd in registry:
        left = remaining.get(jd.key)
        nxt = next_of.get(jd, left)
        item = _job_json(jd, paused, nxt, left)
        run = last.get(jd.key)
        item["last_status"] = run[0] if run else None
        item["last_run_at"] = run[1].isoformat() if run else None
        items.append(item)
    return items


# ---------------------------------------------------------------- jobs run


def _parse_params(values: tuple[str, ...]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{quoted(item)} is not KEY=VALUE", param_hint="-p")
        params[key.strip()] = value
    return params


def _select(
    ctx: Context, names: tuple[str, ...], run_all: bool, tag: str | None
) -> list[JobDefinition]:
    chosen = sum(bool(x) for x in (names, run_all, tag))
    if chosen != 1:
        raise click.UsageError("name the jobs to run, or use --all, or --tag TAG (one of them)")
    registry = ctx.registry
    if run_all:
        return list(registry)
    if tag:
        return registry.with_tag(tag)
    return [registry.resolve(name) for name in names]


def _describe_change(run: Run) -> str:
    text = f"{run.job_key} {run.id[:8]}: {run.status}"
    if run.status in (RunStatus.RUNNING, RunStatus.RETRYING) or run.attempt > 1:
        text += f" (attempt {run.attempt}/{run.max_attempts})"
    if run.worker and run.status is RunStatus.RUNNING:
        text += f" on {run.worker}"
    if run.finished and run.message:
        text += f": {render.one_line(run.message, 200)}"
    return text


@jobs.command("run")
@click.argument("names", nargs=-1)
@click.option("--all", "run_all", is_flag=True, help="Run every job.")
@click.option("--tag", help="Run every job with this tag.")
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a job parameter (repeatable).",
)
@click.option("--wait", is_flag=True, help="Follow the runs; exit 1 when one fails.")
@click.option("--inline", is_flag=True, help="Run here, without a worker; exit 1 on failure.")
@click.option(
    "--timeout",
    type=Duration(0.001, MAX_WAIT),
    default=None,
    help="With --wait: give up after SECONDS (or 30s, 10m, 2h).",
)
@click.option("--reason", help="Why: recorded with the run (history, status).")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
@pass_ctx
@_long_running
def run_jobs(
    ctx: Context,
    names: tuple[str, ...],
    run_all: bool,
    tag: str | None,
    params: tuple[str, ...],
    wait: bool,
    inline: bool,
    timeout: float | None,
    reason: str | None,
    as_json: bool,
) -> None:
    """Run jobs now (trigger: manual). NAME is extension/job or a unique job name."""
    from control.actions import operator
    from jobs_core.wire import MAX_REASON

    from .runs import enqueue, run_inline

    if reason is not None and len(reason) > MAX_REASON:
        raise click.BadParameter(f"at most {MAX_REASON} characters", param_hint="--reason")
    by = operator()
    if wait and inline:
        raise click.UsageError("--wait and --inline exclude each other")
    overrides = _parse_params(params)
    selected = _select(ctx, names, run_all, tag)
    progress = (lambda msg: click.echo(msg, err=True)) if as_json else click.echo

    if inline:
        results = []
        for jd in selected:
            progress(f"{jd.key}: running inline")
            run_id, final, message = run_inline(
                ctx, jd, overrides, progress, triggered_by=by, reason=reason
            )
            progress(f"{jd.key}: {final}" + (f": {message}" if message else ""))
            results.append({"id": run_id, "job": jd.key, "status": final, "message": message})
        if as_json:
            click.echo(render.dumps(results))
        sys.exit(0 if all(r["status"] is RunStatus.SUCCEEDED for r in results) else 1)

    if wait:
        ctx.require_database("jobs run --wait")
    run_ids = enqueue(ctx, selected, overrides, triggered_by=by, reason=reason)
    for jd, rid in zip(selected, run_ids, strict=True):
        progress(f"{jd.key}: queued run {rid} on queue {jd.policy.queue}")
    if not wait:
        if as_json:
            click.echo(
                render.dumps(
                    [
                        {"id": r, "job": j.key, "status": RunStatus.QUEUED}
                        for j, r in zip(selected, run_ids, strict=True)
                    ]
                )
            )
        return
    _follow_and_exit(ctx, run_ids, progress, timeout, as_json)


def _follow_and_exit(
    ctx: Context,
    run_ids: list[str],
    progress: Any,
    timeout: float | None,
    as_json: bool,
) -> NoReturn:
    from .runs import follow

    done = follow(ctx, run_ids, lambda run: progress(_describe_change(run)), timeout)
    if as_json:
        click.echo(render.dumps([done[r].to_json() for r in run_ids if r in done]))
    if len(done) < len(run_ids):
        click.echo(f"error: gave up waiting after {timeout}s", err=True)
        sys.exit(1)
    sys.exit(0 if all(done[r].status is RunStatus.SUCCEEDED for r in run_ids) else 1)


# ---------------------------------------------------------------- run control


@jobs.command("backfill")
@click.argument("name")
@click.option("--from", "start", type=Instant(), required=True, help="First instant (ISO 8601).")
@click.option("--to", "end", type=Instant(), required=True, help="End instant, excluded.")
@click.option(
    "--max",
    "most",
    type=click.IntRange(1, 1_000_000),
    default=1000,
    show_default=True,
    help="Refuse (exit 2) a range holding more ticks than this.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@pass_ctx
def backfill_cmd(
    ctx: Context, name: str, start: datetime, end: datetime, most: int, as_json: bool
) -> None:
    """Enqueue one run per tick of NAME's schedule in [--from, --to) (trigger: backfill).

    A tick that already has a run (scheduled, caught up or backfilled) is not enqueued
    again, so running the same backfill twice adds nothing.
    """
    from control.actions import backfill, ticks_between

    jd = ctx.job(name)
    result = backfill(ctx, jd, ticks_between(jd, start, end, most))
    if as_json:
        click.echo(render.dumps(result.to_json()))
        return
    click.echo(
        f"{jd.key}: {result.ticks} ticks in [{start.isoformat()}, {end.isoformat()}): "
        f"{len(result.enqueued)} enqueued, {result.present} already present"
    )


@jobs.command("cancel")
@click.argument("run_id")
@click.option(
    "--terminate",
    is_flag=True,
    help="Kill the worker process running it if the job does not stop when cancelled.",
)
@pass_ctx
def cancel_cmd(ctx: Context, run_id: str, terminate: bool) -> None:
    """Cancel a run: queued, it never starts; running, its coroutine is cancelled.

    Exit 0 cancelled, 1 already finished, 2 no such run.
    """
    from control.actions import cancel

    report = cancel(ctx, run_id.strip().lower(), terminate=terminate)
    click.echo(report.text, err=report.exit_code == 2)
    sys.exit(report.exit_code)


@jobs.command("rerun")
@click.argument("run_id")
@click.option("--reason", help="Why: recorded with the new run.")
@click.option("--wait", is_flag=True, help="Follow the new run; exit 1 when it fails.")
@click.option("--json", "as_json", is_flag=True, help="Print the new run as JSON.")
@pass_ctx
@_long_running
def rerun_cmd(ctx: Context, run_id: str, reason: str | None, wait: bool, as_json: bool) -> None:
    """Run a run again with the same parameters (trigger: rerun; history links the two)."""
    from control.actions import operator, rerun_source

    from .runs import enqueue

    found = rerun_source(ctx, run_id.strip().lower())
    if found is None:
        _fail(f"no run with id {run_id!r}", 2)
    source, jd = found
    progress = (lambda msg: click.echo(msg, err=True)) if as_json else click.echo
    (new_id,) = enqueue(
        ctx,
        [jd],
        dict(source.parameters),
        triggered_by=operator(),
        reason=reason,
        trigger=Trigger.RERUN,
        rerun_of=source.id,
    )
    progress(f"{jd.key}: queued run {new_id} (rerun of {source.id}) on queue {jd.policy.queue}")
    if wait:
        _follow_and_exit(ctx, [new_id], progress, None, as_json)
    if as_json:
        click.echo(render.dumps({"id": new_id, "job": jd.key, "rerun_of": source.id}))


# ---------------------------------------------------------------- status / history


def _policy_lines(jd: JobDefinition, remaining: int | None) -> list[tuple[str, str]]:
    src = jd.sources
    retry = jd.policy.retry
    policy = jd.policy
    zone = ZoneInfo(jd.timezone)
    bounds = "-"
    if policy.start_at or policy.end_at:
        start = render.when(policy.start_at, zone) if policy.start_at else "any time"
        end = render.when(policy.end_at, zone) if policy.end_at else "no end"
        bounds = (
            f"{start} .. {end}  ({src.get('start_at') if policy.start_at else src.get('end_at')})"
        )
    runs = "no limit"
    if policy.max_runs:
        runs = f"{policy.max_runs} scheduled runs, {remaining} left  ({src.get('max_runs')})"
        if remaining == 0:
            runs += ": no longer scheduled"
    jitter = "-"
    if policy.jitter:
        jitter = f"up to {render.seconds(policy.jitter)} after each tick  ({src.get('jitter')})"
    return [
        ("schedule", f"{jd.schedule or 'manual only'}  ({jd.schedule_source})"),
        ("timezone", f"{jd.timezone}  ({src.get('timezone', 'built-in')})"),
        ("jitter", jitter),
        ("window", bounds),
        ("max runs", runs),
        (
            "retry",
            f"max {retry.max_attempts} attempts, backoff {render.seconds(retry.backoff)} "
            f"capped at {render.seconds(retry.max_backoff)}"
            f"{', jitter' if retry.jitter else ''}  ({src.get('retry')})",
        ),
        ("timeout", f"{render.seconds(jd.policy.timeout)}  ({src.get('timeout')})"),
        ("overlap", f"{jd.policy.overlap.value}  ({src.get('overlap')})"),
        (
            "misfire grace",
            f"{render.seconds(jd.policy.misfire_grace)}  ({src.get('misfire_grace')})",
        ),
        ("queue", f"{jd.policy.queue}  ({src.get('queue')})"),
        ("tags", ", ".join(jd.tags) or "-"),
        ("parameters", ", ".join(f"{k}={v}" for k, v in jd.parameters.items()) or "-"),
    ]


@jobs.command("status")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def status(ctx: Context, name: str, as_json: bool) -> None:
    """A job's definition, next fire times, beat leader and recent runs."""
    from beat.control import leader_status
    from jobs_core.dst import preview

    jd = ctx.job(name)
    client = ctx.redis()
    paused = _paused(ctx)
    remaining = _remaining(ctx, [jd]).get(jd.key)
    leader = leader_status(client)
    now = datetime.now(UTC)
    upcoming: list[datetime] = []
    cursor: datetime | None = now
    while len(upcoming) < 5 and cursor is not None:
        left = None if remaining is None else remaining - len(upcoming)
        cursor = _next_run(jd, cursor, left)
        if cursor is not None:
            upcoming.append(cursor)
    dst = preview(jd.cron, now) if jd.cron is not None else None

    async def fetch(history: RunHistory) -> tuple[Run | None, dict[RunStatus, int]]:
        recent = await history.history(jd.key, limit=1)
        last = await history.get_run(recent[0].id) if recent else None
        return last, await history.counts_since(jd.key, now - timedelta(hours=24))

    last: Run | None = None
    counts: dict[RunStatus, int] = {}
    if ctx.profile.database_url:
        last, counts = ctx.with_history("jobs status", fetch)
    if as_json:
        click.echo(
            render.dumps(
                {
                    "job": _job_json(jd, paused, upcoming[0] if upcoming else None, remaining),
                    "next_runs": [t.isoformat() for t in upcoming],
                    "dst": dst.to_json() if dst else None,
                    "beat": leader,
                    "last_run": last.to_json() if last else None,
                    "counts_24h": counts,
                }
            )
        )
        return
    state = _state(jd, paused, remaining)
    pause = paused.get(jd.key)
    if pause is not None:
        state = f"paused at runtime: {_pause_text(pause)}"
    elif state == "finished":
        state = "finished: max_runs used up, no longer scheduled"
    click.echo(f"{jd.key}: {jd.description}")
    lines = [("state", state), *_policy_lines(jd, remaining)]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        click.echo(f"  {key.ljust(width)}  {value}")
    click.echo("\nnext runs:")
    if not upcoming:
        click.echo("  - (no schedule)" if jd.cron is None else "  - (none: outside its window)")
    for t in upcoming:
        local = render.when(t, jd.cron.tz if jd.cron else None)
        click.echo(f"  {local}   {render.when(t.astimezone(UTC))}")
    if jd.cron is not None:
        click.echo("\nnext DST change:")
        click.echo(f"  {dst.describe() if dst else f'none in {jd.timezone} within a year'}")
    click.echo("\nbeat:")
    if leader is None:
        click.echo(
            "  no beat leader seen: ticks are not being sent (start `systemprompt infra beat`)"
        )
    else:
        alive = "alive" if leader.get("alive") else "NOT alive (heartbeat stale)"
        click.echo(
            f"  leader {leader.get('beat_id')} on {leader.get('host')} pid {leader.get('pid')}: "
            f"{alive}, last heartbeat {leader.get('heartbeat_age_s')} s ago"
        )
    click.echo("\nlast run:")
    if last is None:
        click.echo("  - (none)")
    else:
        for key, value in [
            ("id", last.id),
            ("trigger", last.trigger),
            ("status", last.status),
            ("attempt", f"{last.attempt}/{last.max_attempts}"),
            ("scheduled for", render.when(last.scheduled_for, jd.cron.tz if jd.cron else None)),
            ("started", render.when(last.started_at)),
            ("finished", render.when(last.finished_at)),
            ("duration", render.ms(last.duration_ms)),
            ("worker", last.worker or "-"),
            ("triggered by", last.triggered_by or "-"),
            ("reason", render.one_line(last.reason, 200) or "-"),
            *([("rerun of", last.rerun_of)] if last.rerun_of else []),
            *([("cancelled by", last.cancelled_by)] if last.cancelled_by else []),
            ("message", render.one_line(last.message, 200) or "-"),
        ]:
            click.echo(f"  {key.ljust(13)}  {value}")
        if last.error:
            click.echo("  error:")
            for line in last.error.strip().splitlines()[-6:]:
                click.echo(f"    {line}")
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"
    click.echo(f"\nlast 24 h: {summary}")


jobs.add_command(status, "show")


@jobs.command("history")
@click.argument("name", required=False)
@click.option("--all", "every_job", is_flag=True, help="Runs of every job.")
@click.option("--status", type=click.Choice([s.value for s in RunStatus]), help="Only this status.")
@click.option("--trigger", type=click.Choice([t.value for t in Trigger]), help="Only this trigger.")
@click.option("--since", type=Instant(), help="Enqueued at or after this instant (ISO 8601).")
@click.option("--until", type=Instant(), help="Enqueued before this instant (ISO 8601).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def history(
    ctx: Context,
    name: str | None,
    every_job: bool,
    status: str | None,
    trigger: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    as_json: bool,
) -> None:
    """Recent runs of a job (or of every job with --all), newest first."""
    from jobs_core.history import RunFilter

    if (name is None) == (not every_job):
        raise click.UsageError("name a job, or use --all (one of them)")
    jd = ctx.job(name) if name is not None else None
    filters = RunFilter(
        job_key=jd.key if jd else None,
        status=RunStatus(status) if status else None,
        trigger=Trigger(trigger) if trigger else None,
        since=since,
        until=until,
    )

    async def fetch(store: RunHistory) -> list[Run]:
        runs, _ = await store.runs(filters, limit=limit)
        return runs

    runs = ctx.with_history("jobs history", fetch)
    if as_json:
        click.echo(render.dumps([r.to_json() for r in runs]))
        return
    if not runs:
        click.echo(f"{jd.key if jd else 'all jobs'}: no runs match")
        return
    tz = jd.cron.tz if jd and jd.cron else None
    rows = [
        [
            r.id[:8],
            *([] if jd else [r.job_key]),
            r.trigger,
            r.status,
            f"{r.attempt}/{r.max_attempts}",
            render.when(r.scheduled_for, tz) if r.scheduled_for else "-",
            render.when(r.started_at, tz) if r.started_at else "-",
            render.ms(r.duration_ms),
            r.worker or "-",
            r.triggered_by or "-",
            render.one_line(r.message or r.error),
        ]
        for r in runs
    ]
    headers = [
        "RUN",
        *([] if jd else ["JOB"]),
        "TRIGGER",
        "STATUS",
        "TRY",
        "SCHEDULED",
        "STARTED",
        "TOOK",
        "WORKER",
        "BY",
        "MESSAGE",
    ]
    click.echo(render.table(headers, rows))


@jobs.command("health")
@click.option("--json", "as_json", is_flag=True, help="Print the active alerts as a JSON list.")
@pass_ctx
def health(ctx: Context, as_json: bool) -> None:
    """Every active alert (late, failing, too_long, skipped); exit 1 while any is active.

    The leading beat evaluates the alerts of every job (scheduler.defaults.alerts and
    each job's alerts) from the run history; this reads what it found.
    """
    from beat.incidents import active_incidents

    ctx.registry  # noqa: B018 - a broken profile is a configuration error (exit 2)
    incidents = sorted(active_incidents(ctx.redis()).values(), key=lambda i: (i.job, i.kind))
    if as_json:
        click.echo(render.dumps([i.to_json() for i in incidents]))
    elif not incidents:
        click.echo("healthy: no active alerts")
    else:
        rows = [
            [i.job, i.kind.value, render.when(i.since), ", ".join(i.run_ids) or "-", i.message]
            for i in incidents
        ]
        click.echo(render.table(["JOB", "ALERT", "SINCE", "RUNS", "MESSAGE"], rows))
    sys.exit(1 if incidents else 0)


@jobs.command("disable")
@click.argument("name")
@click.option("--note", metavar="TEXT", help="Why: shown by status, list and the dashboard.")
@pass_ctx
def disable(ctx: Context, name: str, note: str | None) -> None:
    """Pause a job: the beat stops sending its ticks from the next tick on."""
    import getpass
    import socket

    from beat.control import disable as pause

    jd = ctx.job(name)
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    changed = pause(ctx.redis(), jd.key, note=note or None, by=who)
    click.echo(
        f"{jd.key}: {'paused' if changed else 'already paused (note updated)'}; no ticks are "
        "sent until `jobs enable` (manual runs still work)"
    )


@jobs.command("enable")
@click.argument("name")
@pass_ctx
def enable(ctx: Context, name: str) -> None:
    """Resume a paused job from its next tick on."""
    from beat.control import enable as resume

    jd = ctx.job(name)
    changed = resume(ctx.redis(), jd.key)
    note = "" if jd.enabled else " (note: the profile disables it: `enabled: false`)"
    click.echo(f"{jd.key}: {'resumed' if changed else 'was not paused'}{note}")


@jobs.command("dead-letters")
@click.option("--purge", is_flag=True, help="Empty the list; print how many entries it held.")
@click.option("--json", "as_json", is_flag=True, help="Print the full entries as JSON.")
@pass_ctx
def dead_letters(ctx: Context, purge: bool, as_json: bool) -> None:
    """Messages the workers refused (not JSON, unknown task, invalid run message...),
    newest first. They were never run."""
    from worker.dead_letter import entries
    from worker.dead_letter import purge as empty

    client = ctx.redis()
    if purge:
        count = empty(client)
        click.echo(render.dumps({"purged": count}) if as_json else f"purged {count} dead letters")
        return
    kept = entries(client)
    if as_json:
        click.echo(render.dumps([letter.to_json() for letter in kept]))
        return
    if not kept:
        click.echo("no dead letters")
        return
    rows = [
        [
            render.when(letter.at),
            letter.queue or "-",
            render.one_line(letter.reason, 100),
            letter.preview(60),
        ]
        for letter in kept
    ]
    click.echo(render.table(["TIME", "QUEUE", "REASON", "MESSAGE"], rows))
    click.echo(f"\n{len(kept)} dead letters; `--json` shows them whole, `--purge` empties the list")


# ---------------------------------------------------------------- processes

LOG_FORMAT_HELP = "Log lines as text or JSON objects (default: the profile's log_format)."
METRICS_PORT_HELP = (
    "Serve /metrics, /healthz and /readyz on this port (default: the profile's "
    "scheduler.metrics; off when unset)."
)


@infra.command("beat")
@click.option("--id", "beat_id", help="Name of this beat in logs and status.")
@click.option(
    "--lease-ttl",
    type=Duration(*LEASE_TTL_RANGE),
    default=5.0,
    show_default=True,
    help="Leader lease TTL in seconds (1 to 3600): the failover time.",
)
@click.option("--log-level", default="INFO", show_default=True)
@click.option("--log-format", type=click.Choice(["text", "json"]), help=LOG_FORMAT_HELP)
@click.option("--metrics-port", type=click.IntRange(1, 65535), help=METRICS_PORT_HELP)
@pass_ctx
@_long_running
def beat_cmd(
    ctx: Context,
    beat_id: str | None,
    lease_ttl: float,
    log_level: str,
    log_format: str | None,
    metrics_port: int | None,
) -> None:
    """Run a beat (run two or more for high availability)."""
    from beat import logs, run_beat
    from jobs_core.profile import LogFormat

    logs.setup(log_level, LogFormat(log_format or ctx.profile.log_format))
    ctx.registry  # noqa: B018 - validate the profile and extensions before starting
    run_beat(
        ctx.profile_path,
        redis_url=ctx.profile.redis_url,
        beat_id=beat_id,
        lease_ttl=lease_ttl,
        metrics_port=metrics_port,
    )


@infra.command(
    "worker",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.option("--log-format", type=click.Choice(["text", "json"]), help=LOG_FORMAT_HELP)
@click.option("--metrics-port", type=click.IntRange(1, 65535), help=METRICS_PORT_HELP)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@pass_ctx
def worker_cmd(
    ctx: Context,
    log_format: str | None,
    metrics_port: int | None,
    celery_args: tuple[str, ...],
) -> None:
    """Run a Celery worker; options go to `celery worker` (-c, -P, -Q, -n, -l, ...).

    Without -Q it consumes every queue that a job of the profile uses.
    """
    from worker.observability import LOG_FORMAT_ENV, METRICS_PORT_ENV

    registry = ctx.registry  # fail here, with a clear message, not inside Celery
    ctx.check_redis_login()  # Celery would retry a wrong password forever, loudly
    args = list(celery_args)
    if not any(a in ("-Q", "--queues") or a.startswith(("--queues=", "-Q")) for a in args):
        queues = sorted({jd.policy.queue for jd in registry} or {"jobs"})
        args += ["-Q", ",".join(queues)]
    if not any(a in ("-l", "--loglevel") or a.startswith("--loglevel=") for a in args):
        args += ["--loglevel", "INFO"]
    env = dict(os.environ)
    if ctx.profile_path:
        env["SYSTEMPROMPT_PROFILE"] = os.path.abspath(ctx.profile_path)
    for key in ("redis_url", "database_url"):
        value = getattr(ctx.profile, key)
        if value:
            env[key.upper()] = value
    if metrics_port is not None:
        env[METRICS_PORT_ENV] = str(metrics_port)
    if log_format is not None:
        env[LOG_FORMAT_ENV] = log_format
    argv = [sys.executable, "-m", "celery", "-A", "worker.app", "worker", *args]
    sys.stdout.flush()
    os.execvpe(argv[0], argv, env)


@infra.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8585, show_default=True, type=click.IntRange(1, 65535))
@pass_ctx
@_long_running
def ui_cmd(ctx: Context, host: str, port: int) -> None:
    """Serve the web dashboard: jobs, next runs, history and run control.

    Needs SYSTEMPROMPT_UI_USER and SYSTEMPROMPT_UI_PASSWORD (or the profile's ui:
    section); it never serves pages without authentication.
    """
    from ui.server import serve

    serve(ctx, host, port)


@infra.group()
def db() -> None:
    """Database schema."""


@db.command("migrate")
@pass_ctx
def migrate_cmd(ctx: Context) -> None:
    """Create or upgrade the run-history tables and the extensions' tables (idempotent)."""
    from jobs_core.schema import migrate
    from jobs_core.urls import mask_url

    url = ctx.require_database("db migrate")
    applied = migrate(url, ctx.registry.extensions)
    where = mask_url(url)
    if applied:
        click.echo(f"applied {len(applied)} migrations to {where}:")
        for mid in applied:
            click.echo(f"  {mid}")
    else:
        click.echo(f"{where} is up to date")


@infra.command("up")
@click.option("--no-flower", is_flag=True, help="Do not start Flower even when installed.")
@click.option("--no-ui", is_flag=True, help="Do not start the web dashboard.")
@click.option(
    "--concurrency",
    default=2,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Worker processes.",
)
@pass_ctx
@_long_running
def up(ctx: Context, no_flower: bool, no_ui: bool, concurrency: int) -> None:
    """Run everything locally: private Redis and PostgreSQL (unless configured),
    migrations, one beat, one worker, Flower and the web dashboard. Ctrl-C stops it all.

    Without dashboard credentials configured, a local password is generated (kept in
    .systemprompt/ui-password) and printed with the dashboard's URL.
    """
    from .stack import run_stack

    sys.exit(run_stack(ctx, flower=not no_flower, concurrency=concurrency, ui=not no_ui))


# ---------------------------------------------------------------- entry point


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _print_traceback() -> None:
    import traceback

    traceback.print_exc()


def main(argv: list[str] | None = None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="systemprompt", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.ClickException as exc:
        if debug:
            _print_traceback()
        # Click quotes the offending argument (`No such command '<100 KB>'`) in full.
        setattr(exc, "message", cut(exc.message))  # noqa: B010 - typed Final, settable
        exc.show()
        sys.exit(2)
    except ConfigError as exc:
        if debug:
            _print_traceback()
        _fail(str(exc), 2)
    except JobsError as exc:
        if debug:
            _print_traceback()
        _fail(str(exc), 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as exc:
        if debug:
            _print_traceback()
            sys.exit(1)
        _fail(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)", 1)


def entry() -> NoReturn:
    """The ``systemprompt`` command: :func:`main` with the cyclic collector off, then out
    without the interpreter's tear-down.

    The collector: a command such as ``jobs status`` is a process of a fraction of a
    second that creates several hundred thousand objects (the modules it imports, the
    extensions' jobs) and frees almost none; the collector would run ~130 times meanwhile,
    ~10% of the command's CPU time, to find nothing. It is turned off here, before the
    commands import the heavy libraries, and only here: importing this module (a test or
    a benchmark running :func:`main` in-process, an embedding program) changes nothing
    for the process. The commands that may run for long (beat, ui, up, a job run here or
    waited for) turn it back on first (``_long_running``). Memory is still freed by
    reference counting.

    The exit: tearing down frees every object one by one: after ``jobs list`` over
    100,000 jobs that took ~0.1 to 0.4 s (and tens of milliseconds after any command)
    between the last line and the exit, to give back memory the exit gives back anyway.
    What a normal exit does that matters still happens: the ``atexit`` functions run
    (logging flushes its handlers there) and the output is flushed; with another thread
    still running, or when flushing fails (a closed pipe), the exit is the normal one,
    which joins the thread or reports the error as usual. (:func:`main` itself returns or
    raises as before.)
    """
    gc.disable()
    try:
        main()
        code: str | int | None = 0
    except SystemExit as exc:
        code = exc.code
    if not isinstance(code, int) or threading.active_count() > 1:
        sys.exit(code)
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":
    entry()
