"""The web dashboard as operators use it: a real `systemprompt infra ui` process over real
Redis, PostgreSQL and a worker, with real runs in history; then a real headless browser."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cli.embedded import PostgresServer, RedisServer
from jobs_core.history import RunHistory
from jobs_core.history_pg import PostgresHistory
from jobs_core.status import RunStatus, Trigger
from tests.procs import (
    REPO,
    VENV_BIN,
    Proc,
    free_port_for_tests,
    missing_tool,
    service_env,
    start_worker,
    wait_for,
)

from .test_cli import CLI_PROFILE
from .worker_support import History

pytestmark = pytest.mark.integration

ADMIN = ("admin", "s3cret-admin")
VIEWER = ("viewer", "s3cret-viewer")
SCRIPT = "<script>alert(1)</script>"
FLOWER = "http://flower.example:5555"

UI_PROFILE = CLI_PROFILE + "    - {extension: maintenance, job: prune-history, enabled: false}\n"


@dataclass
class Stack:
    base: str
    env: dict[str, str]
    history: History
    database_url: str
    redis_url: str
    tmp: Path
    ok_run: str
    broken_run: str

    def request(
        self,
        path: str,
        *,
        auth: tuple[str, str] | None = ADMIN,
        data: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], str]:
        """(status, headers, body) of one request; redirects are not followed."""
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.base + path, data=body)
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(req, timeout=30) as resp:
                return resp.status, _lower(resp.headers), resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, _lower(err.headers), err.read().decode()

    def page(self, path: str, auth: tuple[str, str] = ADMIN) -> str:
        status, _, body = self.request(path, auth=auth)
        assert status == 200, f"{path}: {status}\n{body[:500]}"
        return body

    def csrf(self, path: str, auth: tuple[str, str] = ADMIN) -> str:
        match = re.search(r'name="csrf-token" content="([0-9a-f]+)"', self.page(path, auth))
        assert match, f"no CSRF token on {path}"
        return match.group(1)


def _lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "systemprompt"), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _seed(database_url: str) -> None:
    """A skipped tick (as the worker records one) and 60 runs of other/ok for paging."""
    from psycopg_pool import AsyncConnectionPool

    async def go() -> None:
        async with AsyncConnectionPool(database_url, min_size=1, max_size=2) as pool:
            store: RunHistory = PostgresHistory(pool)
            await store.create_run(
                job_key="testjobs/ok",
                trigger=Trigger.SCHEDULE,
                max_attempts=1,
                scheduled_for=datetime(2024, 3, 31, 1, 0, tzinfo=UTC),
                status=RunStatus.SKIPPED,
                message="overlap: skip (run 1234 still active)",
            )
            start = datetime.now(UTC) - timedelta(days=3)
            for i in range(60):
                await store.create_run(
                    job_key="other/ok",
                    trigger=Trigger.SCHEDULE,
                    max_attempts=1,
                    scheduled_for=start + timedelta(minutes=i),
                )

    asyncio.run(go())


@pytest.fixture(scope="module")
def stack(
    redis_server: RedisServer, pg_server: PostgresServer, migrated_template: str
) -> Iterator[Stack]:
    import psycopg
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    name = f"ui_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {migrated_template}")
    database_url = pg_server.url_for(name)
    tmp = Path(tempfile.mkdtemp(prefix="sp-test-ui-"))
    profile = tmp / "profile.yaml"
    profile.write_text(UI_PROFILE)
    env = service_env(
        REDIS_URL=redis_server.url,
        DATABASE_URL=database_url,
        SYSTEMPROMPT_PROFILE=str(profile),
    )
    procs: list[Proc] = []
    try:
        procs.append(start_worker(tmp, env, name="ui", concurrency=2))
        ok = _cli(
            env, "infra", "jobs", "run", "testjobs/ok", "-p", f"who={SCRIPT}", "--wait", "--json"
        )
        assert ok.returncode == 0, ok.stderr
        broken = _cli(env, "infra", "jobs", "run", "testjobs/broken", "--wait", "--json")
        assert broken.returncode == 1, broken.stderr
        _seed(database_url)
        port = free_port_for_tests()
        ui_env = dict(
            env,
            SYSTEMPROMPT_UI_USER=ADMIN[0],
            SYSTEMPROMPT_UI_PASSWORD=ADMIN[1],
            SYSTEMPROMPT_UI_READONLY_USER=VIEWER[0],
            SYSTEMPROMPT_UI_READONLY_PASSWORD=VIEWER[1],
            SYSTEMPROMPT_FLOWER_URL=FLOWER,
        )
        ui = Proc(
            [str(VENV_BIN / "systemprompt"), "infra", "ui", "--port", str(port)],
            ui_env,
            tmp / "ui.log",
        )
        procs.append(ui)
        ui.wait_output("Uvicorn running", 60)
        yield Stack(
            base=f"http://127.0.0.1:{port}",
            env=env,
            history=History(database_url),
            database_url=database_url,
            redis_url=redis_server.url,
            tmp=tmp,
            ok_run=json.loads(ok.stdout)[0]["id"],
            broken_run=json.loads(broken.stdout)[0]["id"],
        )
    finally:
        for proc in reversed(procs):
            proc.stop()
        with psycopg.connect(pg_server.url_for("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- authentication


def test_every_page_needs_authentication_but_healthz(stack: Stack) -> None:
    status, _, body = stack.request("/healthz", auth=None)
    assert status == 200 and json.loads(body) == {"ok": True, "redis": "ok", "database": "ok"}
    paths = ["/", "/jobs/testjobs/ok", f"/runs/{stack.ok_run}", "/static/app.css", "/nope"]
    for path in paths:
        status, headers, _ = stack.request(path, auth=None)
        assert status == 401, path
        assert headers["www-authenticate"].startswith("Basic realm=")
        assert stack.request(path, auth=(ADMIN[0], "wrong"))[0] == 401, path
        assert stack.request(path, auth=(VIEWER[0], ADMIN[1]))[0] == 401, path
    assert stack.request("/", auth=VIEWER)[0] == 200
    status, headers, _ = stack.request("/static/vendor/htmx.min.js")
    assert status == 200 and "javascript" in headers["content-type"]


def test_ui_refuses_to_start_without_credentials(stack: Stack) -> None:
    result = _cli(stack.env, "infra", "ui", "--port", str(free_port_for_tests()), timeout=60)
    assert result.returncode == 2
    assert "SYSTEMPROMPT_UI_USER" in result.stderr and "Traceback" not in result.stderr
    half = dict(stack.env, SYSTEMPROMPT_UI_USER="admin")
    result = _cli(half, "infra", "ui", timeout=60)
    assert result.returncode == 2 and "SYSTEMPROMPT_UI_PASSWORD" in result.stderr


# ---------------------------------------------------------------- pages


def test_overview_lists_jobs_states_schedules_and_last_runs(stack: Stack) -> None:
    page = stack.page("/")
    for key in ("testjobs/ok", "testjobs/broken", "other/ok", "maintenance/cleanup"):
        assert f'data-job="{key}"' in page
    cleanup = _row(page, "maintenance/cleanup")
    assert "0 */30 * * * *" in cleanup and "Every 30 minutes" in cleanup
    assert "Europe/London" in cleanup and "data-countdown" in cleanup
    assert "st-disabled" in _row(page, "maintenance/prune-history")
    ok = _row(page, "testjobs/ok")  # its last run is the skipped tick, which no rate counts
    assert "badge s-skipped" in ok and '<rect class="s-succeeded"' in ok and "100%" in ok
    broken = _row(page, "testjobs/broken")
    assert "s-failed" in broken and "0%" in broken
    assert "No beat leader seen" in page
    # Workers are pinged in the background: the page shows them once they answered.
    wait_for(lambda: "ui@" in stack.page("/"), 60, 0.5, "the worker on the overview")
    assert 'hx-trigger="every 5s"' in page  # live without reload ...
    assert "<noscript>" not in page  # ... and nothing hidden from pages without JS


def test_overview_filters(stack: Stack) -> None:
    fast = stack.page("/?tag=fast")
    assert 'data-job="testjobs/ok"' in fast and 'data-job="testjobs/broken"' not in fast
    other = stack.page("/?extension=other")
    assert _jobs(other) == ["other/ok"]
    disabled = stack.page("/?state=disabled")
    assert _jobs(disabled) == ["maintenance/prune-history"]
    assert _jobs(stack.page("/?q=always+raises")) == ["testjobs/broken"]


def test_job_page_policies_next_runs_ledger_and_history(stack: Stack) -> None:
    page = stack.page("/jobs/maintenance/cleanup")
    assert "Every 30 minutes" in page and "Europe/London" in page
    assert re.search(r"<th>retry: attempts</th><td>2</td><td[^>]*>profile defaults", page)
    assert re.search(r"<th>overlap</th><td>skip</td><td[^>]*>built-in", page)
    assert page.count("<tr", page.index("Next runs")) >= 10
    ledger = stack.page("/jobs/testjobs/ok")
    assert "overlap: skip (run 1234 still active)" in ledger and "s-skipped" in ledger
    broken = stack.page("/jobs/testjobs/broken")
    assert f"/runs/{stack.broken_run}" in broken and "broken on attempt 2" in broken
    assert "No runs match these filters" in stack.page("/jobs/testjobs/broken?status=succeeded")
    assert f"/runs/{stack.broken_run}" in stack.page("/jobs/testjobs/broken?status=failed")
    assert stack.request("/jobs/testjobs/ok?status=nonsense")[0] == 400
    assert stack.request("/jobs/testjobs/nope")[0] == 404


def test_history_is_paged(stack: Stack) -> None:
    first = _history(stack.page("/jobs/other/ok"))
    ids = set(re.findall(r'<td><a href="/runs/([0-9a-f-]{36})">', first))
    assert len(ids) == 50
    older = re.search(r'href="(/jobs/other/ok\?[^"]+)" rel="next"', first)
    assert older, "no link to the older runs"
    second = _history(stack.page(older.group(1).replace("&amp;", "&")))
    more = set(re.findall(r'<td><a href="/runs/([0-9a-f-]{36})">', second))
    assert len(more) == 10 and not ids & more
    assert 'rel="next"' not in second


def test_a_filtered_page_looks_at_a_bounded_number_of_runs(stack: Stack) -> None:
    """A status filter no index answers: the page reads at most HISTORY_SCAN runs, says
    so when none of them matched, and links on to the older runs."""
    import psycopg

    from ui.app import HISTORY_SCAN

    job = "maintenance/prune-history"
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        failed = conn.execute(
            "INSERT INTO job_runs (id, job_key, trigger, status, enqueued_at, finished_at)"
            " VALUES (gen_random_uuid(), %s, 'manual', 'failed', now() - interval '2 hours',"
            " now() - interval '2 hours') RETURNING id::text",
            (job,),
        ).fetchone()
        conn.execute(
            "INSERT INTO job_runs (id, job_key, trigger, status, enqueued_at, finished_at)"
            " SELECT gen_random_uuid(), %s, 'manual', 'succeeded',"
            " now() - interval '1 hour' + n * interval '1 ms', now()"
            " FROM generate_series(1, %s) AS n",
            (job, HISTORY_SCAN),
        )
    assert failed is not None
    first = _history(stack.page(f"/jobs/{job}?status=failed"))
    assert f"No runs match these filters among the {HISTORY_SCAN:,} runs looked at" in first
    older = re.search(r'href="(/jobs/maintenance/prune-history\?[^"]+)" rel="next"', first)
    assert older, "no link to the older runs"
    second = _history(stack.page(older.group(1).replace("&amp;", "&")))
    assert f"/runs/{failed[0]}" in second and 'rel="next"' not in second


def test_run_page_shows_attempts_errors_parameters_and_flower(stack: Stack) -> None:
    page = stack.page(f"/runs/{stack.broken_run}")
    assert "s-failed" in page and "2 of 2" in page
    assert "broken on attempt 1" in page and "broken on attempt 2" in page
    assert "ValueError" in page
    assert f'href="{FLOWER}/task/{stack.broken_run}"' in page
    assert "hx-trigger" not in page  # finished: no more polling
    assert stack.request(f"/runs/{uuid.uuid4()}")[0] == 404
    assert stack.request("/runs/not-a-uuid")[0] == 404


def test_job_messages_and_parameters_are_escaped(stack: Stack) -> None:
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    for path in (f"/runs/{stack.ok_run}", "/jobs/testjobs/ok"):
        page = stack.page(path)
        assert SCRIPT not in page and "<script>alert" not in page, path
        assert escaped in page, path


def test_active_alerts_on_the_overview_and_the_job_page(stack: Stack) -> None:
    import redis

    from beat.incidents import store_incidents
    from jobs_core.alerts import AlertKind, Incident
    from jobs_core.wire import Keys

    since = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    hostile_run = '"><img src=x onerror=alert(2)>'
    failing = Incident(
        "testjobs/broken", AlertKind.FAILING, since, (stack.broken_run,), f"failed {SCRIPT}"
    )
    late = Incident("testjobs/broken", AlertKind.LATE, since + timedelta(hours=1))
    gone = Incident("gone/job", AlertKind.TOO_LONG, since, (hostile_run,), "still running")
    client = redis.Redis.from_url(stack.redis_url)
    try:
        assert 'id="alerts">No active alerts.' in stack.page("/")
        # As the leading beat's monitor stores what the evaluator found.
        store_incidents(client, {i.key: i for i in (failing, late, gone)}, [])
        page = stack.page("/")
        banner = page[
            page.index('id="alerts"') : page.index("</section>", page.index('id="alerts"'))
        ]
        assert "3 active alerts on 2 jobs" in banner
        for key in ("testjobs/broken|failing", "testjobs/broken|late", "gone/job|too_long"):
            assert f'data-alert="{key}"' in banner, key
        assert f'<a href="/runs/{stack.broken_run}"' in banner
        assert 'href="/jobs/testjobs/broken"' in banner and "not in this profile" in banner
        assert "since 2024-05-01 12:00:00 UTC" in banner
        broken = _row(page, "testjobs/broken")
        assert 'data-alert="failing"' in broken and 'data-alert="late"' in broken
        assert "a-failing" in broken and f'href="/runs/{stack.broken_run}"' in broken
        assert "since 2024-05-01 13:00:00 UTC" in broken  # the late one
        assert "data-alert" not in _row(page, "testjobs/ok")
        assert _jobs(stack.page("/?alerting=1")) == ["testjobs/broken"]
        job = stack.page("/jobs/testjobs/broken")
        section = job[job.index('id="alerts"') : job.index("</section>", job.index('id="alerts"'))]
        assert "Active alerts" in section
        assert 'data-alert="failing"' in section and 'data-alert="late"' in section
        assert f'<a href="/runs/{stack.broken_run}"' in section
        assert "failed &lt;script&gt;alert(1)&lt;/script&gt;" in section
        assert 'id="alerts">No active alerts.' in stack.page("/jobs/testjobs/ok")
        for html in (page, job):
            assert SCRIPT not in html and "<img src=x" not in html
        # The hostile run id: quoted in its link, escaped in its text.
        assert 'href="/runs/%22%3E%3Cimg%20src%3Dx%20onerror' in page
        assert ">&#34;&gt;&lt;img s</a>" in page
        # Resolved, as the monitor drops them: gone from both pages.
        store_incidents(client, {}, [i.key for i in (failing, late, gone)])
        assert "data-alert" not in stack.page("/")
        assert 'id="alerts">No active alerts.' in stack.page("/jobs/testjobs/broken")
    finally:
        client.delete(Keys.ALERTS)
        client.close()


def test_ledger_lists_backfilled_ticks(stack: Stack) -> None:
    from jobs_core.wire import tick_run_id

    result = _cli(
        stack.env,
        *("infra", "jobs", "backfill", "maintenance/cleanup"),
        *("--from", "2024-01-01T00:00:00+00:00", "--to", "2024-01-01T01:00:00+00:00", "--json"),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["enqueued"] == 2
    page = stack.page("/jobs/maintenance/cleanup")
    ledger = page[page.index("<h2>Tick ledger</h2>") : page.index("<h2>History</h2>")]
    for at in (datetime(2024, 1, 1, 0, 0, tzinfo=UTC), datetime(2024, 1, 1, 0, 30, tzinfo=UTC)):
        run_id = tick_run_id("maintenance/cleanup", at)
        label = f"{at:%Y-%m-%d %H:%M:%S} GMT"
        assert label in ledger, f"the backfilled tick {label} is not in the ledger"
        row = ledger[ledger.index(label) :]
        row = row[: row.index("</tr>")]
        assert "<td>backfill" in row and "by " in row and f'href="/runs/{run_id}"' in row


# ---------------------------------------------------------------- actions


def test_actions_need_a_valid_csrf_token_and_a_user_who_may_act(stack: Stack) -> None:
    before = len(stack.history.runs("testjobs/noop"))
    url = "/jobs/testjobs/noop/run"
    assert stack.request(url, data={"confirmed": "1"})[0] == 403
    assert stack.request(url, data={"confirmed": "1", "csrf_token": "0" * 64})[0] == 403
    # A token valid for the viewer is not valid for the admin.
    viewer_token = stack.csrf("/jobs/testjobs/noop", VIEWER)
    assert stack.request(url, data={"confirmed": "1", "csrf_token": viewer_token})[0] == 403
    status, _, body = stack.request(
        url, auth=VIEWER, data={"confirmed": "1", "csrf_token": viewer_token}
    )
    assert status == 403 and "read-only" in body
    assert "Run now" not in stack.page("/jobs/testjobs/noop", VIEWER)
    assert len(stack.history.runs("testjobs/noop")) == before


def test_run_now_asks_first_then_runs_with_parameters_and_records_the_user(stack: Stack) -> None:
    token = stack.csrf("/jobs/testjobs/ok")
    data = {"csrf_token": token, "params": "who=dashboard"}
    status, _, body = stack.request("/jobs/testjobs/ok/run", data=data)
    assert status == 200 and 'name="confirmed" value="1"' in body  # a confirmation page
    runs_before = {r.id for r in stack.history.runs("testjobs/ok")}
    status, headers, _ = stack.request("/jobs/testjobs/ok/run", data={**data, "confirmed": "1"})
    assert status == 303
    run_id = headers["location"].rsplit("/", 1)[1]
    assert run_id not in runs_before
    run = wait_for(
        lambda: (r := stack.history.run(run_id)) and r.finished and r,
        60,
        0.2,
        "the run started from the dashboard",
    )
    assert run.status is RunStatus.SUCCEEDED and run.message == "hello dashboard"
    assert run.trigger is Trigger.MANUAL and run.parameters["who"] == "dashboard"
    page = stack.page("/jobs/testjobs/ok")
    actions = page[page.index("Actions on this job") :]
    assert "admin" in actions and run_id[:8] in actions and "dashboard" in actions
    status, _, body = stack.request("/jobs/testjobs/ok/run", data={**data, "params": "nokey"})
    assert status == 400 and "KEY=VALUE" in body


def test_cancel_and_rerun_from_the_run_page(stack: Stack) -> None:
    token = stack.csrf("/jobs/testjobs/long")
    data = {"csrf_token": token, "params": "seconds=120", "confirmed": "1"}
    status, headers, _ = stack.request("/jobs/testjobs/long/run", data=data)
    assert status == 303
    long_id = headers["location"].rsplit("/", 1)[1]
    wait_for(
        lambda: (r := stack.history.run(long_id)) and r.status is RunStatus.RUNNING,
        60,
        0.2,
        "the long run running",
    )
    page = stack.page(f"/runs/{long_id}")
    assert f"/runs/{long_id}/cancel" in page and "admin (dashboard)" in page  # triggered by
    bad = stack.request(f"/runs/{long_id}/cancel", data={"csrf_token": "0" * 64})
    assert bad[0] == 403
    status, _, _ = stack.request(f"/runs/{long_id}/cancel", data={"csrf_token": token})
    assert status == 303
    run = stack.history.run(long_id)
    assert run is not None and run.status is RunStatus.CANCELLED
    assert run.cancelled_by == "admin (dashboard)"
    page = stack.page(f"/runs/{long_id}")
    assert 'id="run-cancelled-by">admin (dashboard)' in page and "/cancel" not in page
    again = stack.request(f"/runs/{long_id}/cancel", data={"csrf_token": token})
    assert again[0] == 409

    status, headers, _ = stack.request(f"/runs/{long_id}/rerun", data={"csrf_token": token})
    assert status == 303
    rerun_id = headers["location"].rsplit("/", 1)[1]
    rerun = stack.history.run(rerun_id)
    assert rerun is not None and rerun.trigger is Trigger.RERUN and rerun.rerun_of == long_id
    assert rerun.parameters == run.parameters
    assert f'href="/runs/{long_id}"' in stack.page(f"/runs/{rerun_id}")
    stack.request(f"/runs/{rerun_id}/cancel", data={"csrf_token": token})  # not kept running


def test_pause_and_resume(stack: Stack) -> None:
    import redis

    from jobs_core.wire import Keys

    client = redis.Redis.from_url(stack.redis_url)
    try:
        token = stack.csrf("/jobs/other/ok")
        assert 'name="note"' in stack.page("/jobs/other/ok")  # the pause form takes a note
        status, headers, _ = stack.request(
            "/jobs/other/ok/pause",
            data={"csrf_token": token, "confirmed": "1", "note": "vendor API down <b>"},
        )
        assert status == 303 and headers["location"] == "/jobs/other/ok"
        assert client.sismember(Keys.DISABLED, "other/ok")
        stored = json.loads(client.hget(Keys.PAUSE_NOTES, "other/ok") or "{}")
        assert (stored["note"], stored["by"]) == ("vendor API down <b>", "admin")
        assert "st-paused" in _row(stack.page("/"), "other/ok")
        page = stack.page("/jobs/other/ok")
        assert "Paused at runtime" in page and "/jobs/other/ok/resume" in page
        assert "Paused by admin" in page and "vendor API down &lt;b&gt;" in page
        status, _, _ = stack.request(
            "/jobs/other/ok/resume", data={"csrf_token": token, "confirmed": "1"}
        )
        assert status == 303 and not client.sismember(Keys.DISABLED, "other/ok")
        assert not client.hexists(Keys.PAUSE_NOTES, "other/ok")
        actions = [json.loads(a) for a in client.lrange(Keys.UI_ACTIONS, 0, 1)]
        assert [(a["action"], a["user"], a["job"]) for a in actions] == [
            ("resume", "admin", "other/ok"),
            ("pause", "admin", "other/ok"),
        ]
        assert actions[1]["detail"] == "vendor API down <b>"
    finally:
        client.srem(Keys.DISABLED, "other/ok")
        client.close()


# ---------------------------------------------------------------- helpers


def _row(page: str, key: str) -> str:
    start = page.index(f'data-job="{key}"')
    return page[start : page.index("</tr>", start)]


def _history(page: str) -> str:
    return page[page.index("<h2>History</h2>") :]


def _jobs(page: str) -> list[str]:
    return re.findall(r'data-job="([^"]+)"', page)


# ---------------------------------------------------------------- a real browser


def _chromium() -> str:
    path = (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if path:
        return path
    missing_tool("chromium is not installed (apt-get install chromium)")


def test_in_a_real_browser(stack: Stack) -> None:
    executable = _chromium()
    from playwright.sync_api import expect, sync_playwright

    shots = Path(os.environ.get("SYSTEMPROMPT_UI_SCREENSHOTS") or stack.tmp)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            context = browser.new_context(
                http_credentials={"username": ADMIN[0], "password": ADMIN[1]},
                viewport={"width": 1400, "height": 900},
            )
            page = context.new_page()
            page.on("dialog", lambda dialog: dialog.accept())
            page.goto(stack.base + "/")
            expect(page.locator('tr[data-job="testjobs/long"]')).to_be_visible()
            expect(page.locator("#workers")).to_contain_text("ui@", timeout=60_000)
            # The countdown runs in the page: the next-run text changes by itself.
            countdown = page.locator('tr[data-job="maintenance/cleanup"] time[data-countdown]')
            first = countdown.inner_text()
            expect(countdown).not_to_have_text(first, timeout=5_000)
            page.screenshot(path=str(shots / "ui-overview.png"), full_page=False)

            # Run a job from its page, with a parameter, and watch it finish in place.
            page.locator('a[href="/jobs/testjobs/long"]').click()
            page.locator("textarea[name=params]").fill("seconds=3")
            page.get_by_role("button", name="Run now").click()
            page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
            page.evaluate("window.__still_the_same_page = true")
            status = page.locator("#run-status")
            expect(status).to_contain_text("succeeded", timeout=90_000)
            assert page.evaluate("window.__still_the_same_page") is True  # no reload
            expect(page.locator("#run-message")).to_contain_text("finished on attempt 1")
            run_url = page.url

            # Pause a job from its page (the dialog is accepted), then see it on the overview.
            page.goto(stack.base + "/jobs/maintenance/cleanup")
            page.get_by_role("button", name="Pause").click()
            expect(page.locator("h1 .badge")).to_have_text("paused")
            page.goto(stack.base + "/?state=paused")
            expect(page.locator("tr.job")).to_have_count(1)
            page.get_by_role("link", name="maintenance/cleanup").click()
            page.get_by_role("button", name="Resume").click()
            expect(page.locator("h1 .badge")).to_have_text("enabled")
            for _ in range(2):  # some history for the duration chart
                page.get_by_role("button", name="Run now").click()
                expect(page.locator("#run-status")).to_contain_text("succeeded", timeout=90_000)
                page.goto(stack.base + "/jobs/maintenance/cleanup")
            expect(page.locator(".chart.drawn")).to_be_visible()  # uPlot drew the chart
            page.screenshot(path=str(shots / "ui-job.png"), full_page=True)

            # The run page opens from the job's history.
            page.goto(stack.base + "/jobs/testjobs/long")
            page.locator(f'a[href="{run_url.removeprefix(stack.base)}"]').first.click()
            expect(page.locator("#run-status")).to_contain_text("succeeded")
        finally:
            browser.close()
