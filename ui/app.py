"""The dashboard's ASGI application: routes, page assembly and actions.

Reads the same profile, Redis and history as the CLI (through a :class:`Context`);
actions go through the same code as ``jobs run`` and ``jobs disable|enable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from control.context import Context
from jobs_core.alerts import Incident
from jobs_core.durations import human_ms
from jobs_core.errors import JobsError
from jobs_core.history import Cursor, Run, RunFilter
from jobs_core.registry import JobDefinition, JobRegistry
from jobs_core.status import RunStatus, Trigger

from . import views
from .auth import BasicAuth, Csrf, User
from .cluster import Action, Cluster
from .queries import Queries, Recent
from .settings import UiSettings

HERE = Path(__file__).parent
HISTORY_PAGE = 50
#: Runs a job page filtered by status (or trigger) looks at, at most: no index answers
#: those filters, and a job that never failed would otherwise have every one of its
#: runs read to show "no failed runs" (seconds at millions of runs). The page says so
#: and links to the older runs.
HISTORY_SCAN = 5_000
#: Jobs per overview page: a page of every job of a big installation, polled every few
#: seconds, would cost the server and the browser for rows nobody reads.
JOBS_PAGE = 100
LEDGER_SIZE = 20
#: Active alerts listed in the overview's banner; the rest are counted (and the
#: ``alerting`` filter lists every job with one).
ALERTS_LISTED = 20
WORKER_PING_EVERY = 10.0
T = TypeVar("T")


@dataclass
class Deps:
    ctx: Context
    settings: UiSettings
    registry: JobRegistry
    cluster: Cluster
    csrf: Csrf
    env: jinja2.Environment
    queries: Queries | None = None


@dataclass(frozen=True)
class JobRow:
    jd: JobDefinition
    url: str
    state: str
    words: str
    next_at: datetime | None
    next_iso: str
    next_local: str
    next_relative: str
    stats: views.Stats
    median: str
    alerts: list[Incident]


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _deps(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


def _user(request: Request) -> User:
    user: User = request.scope["user"]
    return user


def _render(request: Request, name: str, code: int = 200, **values: Any) -> HTMLResponse:
    deps = _deps(request)
    user = _user(request)
    html = deps.env.get_template(name).render(
        request=request,
        user=user,
        csrf_token=deps.csrf.token(user.name),
        flower_url=deps.settings.flower_url,
        **values,
    )
    return HTMLResponse(html, code)


def _job_url(jd: JobDefinition) -> str:
    return f"/jobs/{jd.extension}/{jd.name}"


def _job(deps: Deps, request: Request) -> JobDefinition:
    key = f"{request.path_params['extension']}/{request.path_params['job']}"
    jd = deps.registry.jobs.get(key)
    if jd is None:
        raise HttpError(404, f"no job {key} in this profile")
    return jd


def _parse_time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise HttpError(400, f"{name}: {value!r} is not an ISO 8601 date or time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _enum(kind: type[T], value: str | None, name: str) -> T | None:
    if not value:
        return None
    try:
        return kind(value)  # type: ignore[call-arg]
    except ValueError:
        allowed = ", ".join(str(v) for v in kind)  # type: ignore[attr-defined]
        raise HttpError(400, f"{name}: {value!r} is not one of {allowed}") from None


async def _blocking(fn: Callable[[], T]) -> T:
    return await run_in_threadpool(fn)


# ---------------------------------------------------------------- pages


async def overview(request: Request) -> Response:
    deps = _deps(request)
    q = request.query_params
    tag, extension, state, text = q.get("tag"), q.get("extension"), q.get("state"), q.get("q")
    alerting = q.get("alerting") == "1"
    paused, leader, actions, incidents = await _blocking(
        lambda: (
            deps.cluster.paused(),
            deps.cluster.leader(),
            deps.cluster.actions(limit=8),
            deps.cluster.incidents(),
        )
    )
    shown: list[tuple[JobDefinition, str]] = []
    for jd in deps.registry:
        jstate = views.job_state(jd, paused)
        if alerting and jd.key not in incidents:
            continue
        if tag and tag not in jd.tags:
            continue
        if extension and jd.extension != extension:
            continue
        if state and jstate != state:
            continue
        if text and text.lower() not in f"{jd.key} {jd.description}".lower():
            continue
        shown.append((jd, jstate))
    matching = len(shown)
    pages = max(1, -(-matching // JOBS_PAGE))
    try:
        page = min(max(1, int(q.get("page") or 1)), pages)
    except ValueError:
        raise HttpError(400, f"page: {q.get('page')!r} is not a number") from None
    shown = shown[(page - 1) * JOBS_PAGE : page * JOBS_PAGE]
    recent: dict[str, Recent] = {}
    if deps.queries is not None:
        recent = await deps.queries.recent([jd.key for jd, _ in shown], views.RECENT_RUNS)
    now = datetime.now(UTC)
    rows = []
    for jd, jstate in shown:
        nxt = jd.cron.next_after(now) if jd.cron is not None and jstate == "enabled" else None
        stats = views.stats(recent.get(jd.key))
        rows.append(
            JobRow(
                jd,
                _job_url(jd),
                jstate,
                views.schedule_words(jd.schedule),
                nxt,
                nxt.isoformat() if nxt else "",
                views.when(nxt, jd.cron.tz if jd.cron else None),
                views.relative(nxt, now),
                stats,
                human_ms(stats.median_ms),
                incidents.get(jd.key, []),
            )
        )
    registry = deps.registry
    firing = [i for job_incidents in incidents.values() for i in job_incidents]
    return _render(
        request,
        "overview.html",
        rows=rows,
        total=len(registry),
        matching=matching,
        page=page,
        pages=pages,
        first_index=(page - 1) * JOBS_PAGE + 1,
        page_links={
            n: "?" + urlencode({**{k: v for k, v in q.items() if k != "page"}, "page": n})
            for n in (page - 1, page + 1)
            if 1 <= n <= pages
        },
        leader=leader,
        workers=deps.cluster.workers,
        actions=actions,
        scheduler_enabled=registry.scheduler_enabled,
        timezone=registry.timezone,
        tags=views.tags_of(registry),
        extensions=sorted({jd.extension for jd in registry}),
        states=views.State.ALL,
        filters={
            "tag": tag,
            "extension": extension,
            "state": state,
            "q": text,
            "alerting": alerting,
        },
        alerts=[
            (i, _job_url(known) if (known := registry.jobs.get(i.job)) else None)
            for i in firing[:ALERTS_LISTED]
        ],
        alert_count=len(firing),
        alerting_jobs=len(incidents),
        history=deps.queries is not None,
        now=now,
    )


async def job_page(request: Request) -> Response:
    deps = _deps(request)
    jd = _job(deps, request)
    q = request.query_params
    filters = RunFilter(
        job_key=jd.key,
        status=_enum(RunStatus, q.get("status"), "status"),
        trigger=_enum(Trigger, q.get("trigger"), "trigger"),
        since=_parse_time(q.get("since"), "since"),
        until=_parse_time(q.get("until"), "until"),
    )
    after = Cursor.decode(q["after"]) if q.get("after") else None
    paused, last_tick, actions, incidents = await _blocking(
        lambda: (
            deps.cluster.paused(),
            deps.cluster.last_tick(jd.key),
            deps.cluster.actions(jd.key, limit=10),
            deps.cluster.incidents(),
        )
    )
    state = views.job_state(jd, paused)
    runs: list[Any] = []
    ticks: list[Any] = []
    next_cursor = None
    if deps.queries is not None:
        runs, next_cursor = await deps.queries.history(
            filters, limit=HISTORY_PAGE, after=after, scan=HISTORY_SCAN
        )
        ticks = await deps.queries.ticks(jd.key, LEDGER_SIZE)
    now = datetime.now(UTC)
    tz = jd.cron.tz if jd.cron else None
    chart = [
        [r.enqueued_at.timestamp(), r.duration_ms / 1000 if r.duration_ms is not None else None]
        for r in reversed(runs)
    ]
    newest = runs[: views.RECENT_RUNS][::-1]
    older = None
    if next_cursor is not None:
        params = dict(q)
        params["after"] = next_cursor.encode()
        older = params
    return _render(
        request,
        "job.html",
        jd=jd,
        state=state,
        pause=paused.get(jd.key),
        alerts=incidents.get(jd.key, []),
        words=views.schedule_words(jd.schedule),
        tz=tz,
        policies=views.policies(jd),
        upcoming=views.next_runs(jd, now) if state == "enabled" else [],
        upcoming_paused=views.next_runs(jd, now) if state != "enabled" else [],
        last_tick=views.when(last_tick, tz) if last_tick else None,
        ticks=ticks,
        runs=runs,
        chart=chart,
        spark=views.sparkline([r.status for r in newest], [r.duration_ms for r in newest]),
        older=older,
        scan=HISTORY_SCAN,
        first_page=after is None,
        filters={k: q.get(k) or "" for k in ("status", "trigger", "since", "until")},
        statuses=[s.value for s in RunStatus],
        triggers=[t.value for t in Trigger],
        actions=actions,
        params_text="\n".join(f"{k}={v}" for k, v in jd.parameters.items()),
        history=deps.queries is not None,
        now=now,
    )


async def run_page(request: Request) -> Response:
    deps = _deps(request)
    if deps.queries is None:
        raise HttpError(404, "no run history: no database is configured")
    run = await deps.queries.get_run(request.path_params["run_id"])
    if run is None:
        raise HttpError(404, f"no run {request.path_params['run_id']}")
    jd = deps.registry.jobs.get(run.job_key)
    tz = jd.cron.tz if jd and jd.cron else None
    return _render(
        request,
        "run.html",
        run=run,
        jd=jd,
        tz=tz,
        data_json=json.dumps(run.data, indent=2, sort_keys=True, default=str),
        params_json=json.dumps(run.parameters, indent=2, sort_keys=True, default=str),
    )


async def healthz(request: Request) -> Response:
    deps = _deps(request)
    checks: dict[str, str] = {}
    try:
        await _blocking(deps.cluster.client.ping)
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = type(exc).__name__
    if deps.queries is not None:
        try:
            async with deps.queries.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = type(exc).__name__
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"ok": ok, **checks}, 200 if ok else 503)


# ---------------------------------------------------------------- actions


async def _action_form(request: Request) -> tuple[Deps, User, JobDefinition, dict[str, str]]:
    """Common checks of every action: a user who may act, a valid CSRF token, a job."""
    deps = _deps(request)
    user = _user(request)
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    if not deps.csrf.valid(user.name, values.get("csrf_token")):
        raise HttpError(403, "invalid or missing CSRF token: reload the page and try again")
    if not user.can_act:
        raise HttpError(403, f"{user.name} is a read-only user")
    return deps, user, _job(deps, request), values


def _confirm(
    request: Request, jd: JobDefinition, what: str, values: dict[str, str]
) -> Response | None:
    """Without ``confirmed=1`` (pages without JavaScript), ask on a page of its own."""
    if values.get("confirmed") == "1":
        return None
    kept = {k: v for k, v in values.items() if k not in ("csrf_token", "confirmed")}
    return _render(request, "confirm.html", jd=jd, what=what, action=request.url.path, values=kept)


async def run_now(request: Request) -> Response:
    deps, user, jd, values = await _action_form(request)
    try:
        overrides = views.parse_params(values.get("params", ""))
    except ValueError as exc:
        raise HttpError(400, f"parameters: {exc}") from None
    asked = _confirm(request, jd, f"Run {jd.key} now", values)
    if asked is not None:
        return asked
    from control.actions import enqueue

    [run_id] = await run_in_threadpool(
        lambda: enqueue(deps.ctx, [jd], overrides, triggered_by=_dashboard_user(user))
    )
    detail = json.dumps(overrides, sort_keys=True) if overrides else None
    await _blocking(
        lambda: deps.cluster.record(
            Action(datetime.now(UTC), user.name, "run", jd.key, run_id, detail)
        )
    )
    return RedirectResponse(f"/runs/{run_id}", 303)


async def pause(request: Request) -> Response:
    deps, user, jd, values = await _action_form(request)
    asked = _confirm(request, jd, f"Pause {jd.key} (no ticks until resumed)", values)
    if asked is not None:
        return asked
    from beat.control import disable

    note = values.get("note", "").strip() or None
    await _blocking(lambda: disable(deps.cluster.client, jd.key, note=note, by=user.name))
    await _blocking(
        lambda: deps.cluster.record(
            Action(datetime.now(UTC), user.name, "pause", jd.key, detail=note)
        )
    )
    return RedirectResponse(_job_url(jd), 303)


async def resume(request: Request) -> Response:
    deps, user, jd, values = await _action_form(request)
    asked = _confirm(request, jd, f"Resume {jd.key}", values)
    if asked is not None:
        return asked
    from beat.control import enable

    await _blocking(lambda: enable(deps.cluster.client, jd.key))
    await _blocking(
        lambda: deps.cluster.record(Action(datetime.now(UTC), user.name, "resume", jd.key))
    )
    return RedirectResponse(_job_url(jd), 303)


async def _run_action_form(request: Request) -> tuple[Deps, User, Run, dict[str, str]]:
    """The checks of an action on a run: a user who may act, a valid CSRF token, a run."""
    deps = _deps(request)
    user = _user(request)
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    if not deps.csrf.valid(user.name, values.get("csrf_token")):
        raise HttpError(403, "invalid or missing CSRF token: reload the page and try again")
    if not user.can_act:
        raise HttpError(403, f"{user.name} is a read-only user")
    if deps.queries is None:
        raise HttpError(404, "no run history: no database is configured")
    run = await deps.queries.get_run(request.path_params["run_id"])
    if run is None:
        raise HttpError(404, f"no run {request.path_params['run_id']}")
    return deps, user, run, values


def _dashboard_user(user: User) -> str:
    return f"{user.name} (dashboard)"


async def cancel_run(request: Request) -> Response:
    deps, user, run, _ = await _run_action_form(request)
    if run.finished:
        raise HttpError(409, f"run {run.id} already {run.status}")
    from control.actions import cancel

    report = await run_in_threadpool(
        lambda: cancel(deps.ctx, run.id, terminate=False, by=_dashboard_user(user))
    )
    if report.exit_code != 0:
        raise HttpError(409, report.text)
    await _blocking(
        lambda: deps.cluster.record(
            Action(datetime.now(UTC), user.name, "cancel", run.job_key, run.id)
        )
    )
    return RedirectResponse(f"/runs/{run.id}", 303)


async def rerun(request: Request) -> Response:
    deps, user, run, _ = await _run_action_form(request)
    jd = deps.registry.jobs.get(run.job_key)
    if jd is None:
        raise HttpError(404, f"{run.job_key} is not in the profile any more")
    from control.actions import enqueue

    [run_id] = await run_in_threadpool(
        lambda: enqueue(
            deps.ctx,
            [jd],
            dict(run.parameters),
            triggered_by=_dashboard_user(user),
            trigger=Trigger.RERUN,
            rerun_of=run.id,
        )
    )
    await _blocking(
        lambda: deps.cluster.record(
            Action(datetime.now(UTC), user.name, "rerun", jd.key, run_id, f"of {run.id}")
        )
    )
    return RedirectResponse(f"/runs/{run_id}", 303)


# ---------------------------------------------------------------- errors, assembly


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HttpError)
    return _render(request, "error.html", exc.status, status=exc.status, message=exc.message)


async def _jobs_error(request: Request, exc: Exception) -> Response:
    # Redis or PostgreSQL unreachable during an action: one clear line, no traceback.
    return _render(request, "error.html", 503, status=503, message=str(exc))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value printed is escaped unless it is Markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["job_url"] = _job_url
    env.globals["ms"] = human_ms
    env.globals["when"] = views.when
    env.globals["relative"] = views.relative
    return env


def _ping_workers(deps: Deps, stop: threading.Event) -> None:
    from worker.factory import create_app

    celery_app, _, _ = create_app(deps.ctx.profile, deps.registry)
    try:
        while not stop.is_set():
            deps.cluster.refresh_workers(celery_app)
            stop.wait(WORKER_PING_EVERY)
    finally:
        celery_app.close()


def create_app(ctx: Context, settings: UiSettings, *, ping_workers: bool = True) -> Starlette:
    """The dashboard for the profile of ``ctx``; checks Redis (and PostgreSQL) at start."""
    deps = Deps(
        ctx=ctx,
        settings=settings,
        registry=ctx.registry,
        cluster=Cluster(ctx.redis()),
        csrf=Csrf(),
        env=_environment(),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = threading.Event()
        pinger = None
        pool = None
        if ctx.profile.database_url:
            from psycopg_pool import AsyncConnectionPool

            pool = AsyncConnectionPool(
                ctx.profile.database_url,
                min_size=1,
                max_size=4,
                open=False,
                kwargs={"application_name": "systemprompt-ui"},
            )
            await pool.open(wait=True, timeout=10)
            deps.queries = Queries(pool)
        if ping_workers:
            pinger = threading.Thread(target=_ping_workers, args=(deps, stop), daemon=True)
            pinger.start()
        try:
            yield
        finally:
            stop.set()
            if pinger is not None:
                await asyncio.to_thread(pinger.join, 5)
            if pool is not None:
                await pool.close()

    routes = [
        Route("/", overview),
        Route("/healthz", healthz),
        Route("/jobs/{extension}/{job}", job_page),
        Route("/jobs/{extension}/{job}/run", run_now, methods=["POST"]),
        Route("/jobs/{extension}/{job}/pause", pause, methods=["POST"]),
        Route("/jobs/{extension}/{job}/resume", resume, methods=["POST"]),
        Route("/runs/{run_id}", run_page),
        Route("/runs/{run_id}/cancel", cancel_run, methods=["POST"]),
        Route("/runs/{run_id}/rerun", rerun, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(BasicAuth, settings=settings)],
        exception_handlers={HttpError: _http_error, JobsError: _jobs_error},
    )
    app.state.deps = deps
    return app
