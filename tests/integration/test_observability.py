"""Metrics, health endpoints, alerts and `jobs health` against real processes: beats,
a prefork worker, Redis, PostgreSQL and a webhook receiver started by the test."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from prometheus_client.parser import text_string_to_metric_families

from cli.embedded import RedisServer
from jobs_core.alerts import SIGNATURE_HEADER, verify
from jobs_core.wire import Keys
from tests.beat_fixtures import EXT, beat_procs, beat_profile, messages
from tests.procs import (
    REPO,
    free_port_for_tests,
    running,
    service_env,
    start_worker,
    wait_for,
    write_profile,
)
from worker.factory import create_app

from .worker_support import History, registry_for, send

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return 0, ""


def scrape(port: int) -> Samples:
    status, text = get(port, "/metrics")
    assert status == 200, text
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


# ------------------------------------------------------------------ beat


def test_beat_metrics_count_every_tick_and_readyz_follows_redis(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    port = free_port_for_tests()
    profile = write_profile(tmp_path / "profile.yaml", beat_profile())
    client = redis_lib.Redis.from_url(own_redis.url)
    first, second = f"{EXT}/every-second", f"{EXT}/also-every-second"
    with beat_procs(tmp_path) as beats:
        beats.start("b1", profile, own_redis.url, extra=("--metrics-port", str(port)))
        wait_for(lambda: get(port, "/healthz")[0] == 200, 30, what="/healthz")
        wait_for(lambda: len(messages(client)) >= 6, 30, what="six ticks")
        # Pause both jobs: their ticks are then refused (outcome skipped) and the
        # counts of sent ticks stop moving, so they can be compared with the queue.
        client.sadd(Keys.DISABLED, first, second)
        wait_for(
            lambda: (
                value(scrape(port), "systemprompt_ticks_total", job=first, outcome="skipped") >= 1
                and value(scrape(port), "systemprompt_ticks_total", job=second, outcome="skipped")
                >= 1
            ),
            30,
            what="paused ticks",
        )
        sent = messages(client)
        m = scrape(port)
        for job in (first, second):
            on_queue = sum(1 for msg in sent if msg.job == job)
            assert on_queue >= 3
            assert value(m, "systemprompt_ticks_total", job=job, outcome="sent") == on_queue
        assert value(m, "systemprompt_tick_lag_seconds_count") == len(sent)
        assert value(m, "systemprompt_beat_leader", beat_id="b1") == 1
        assert value(m, "systemprompt_beat_failovers_total") == 1
        assert value(m, "systemprompt_lease_renewals_total", result="ok") >= 1
        # refreshed by the monitor every scheduler.alerting.check_every (15 s by default)
        wait_for(
            lambda: value(scrape(port), "systemprompt_jobs", state="paused") == 2, 40, what="states"
        )

        status, body = get(port, "/readyz")
        assert status == 200 and json.loads(body)["role"] == "leader"
        own_redis.stop()
        wait_for(lambda: get(port, "/readyz")[0] == 503, 30, what="/readyz to fail without Redis")
        assert get(port, "/healthz")[0] == 200  # alive: it keeps reconnecting
        own_redis.start()
        wait_for(lambda: get(port, "/readyz")[0] == 200, 60, what="/readyz back with Redis")


# ------------------------------------------------------------------ worker

OBS_PROFILE = """
extensions: [tests.obs_fixtures:ObsTestExtension]
database_url: {database_url}
scheduler:
  defaults:
    retry: {{max_attempts: 2, backoff: 100ms, max_backoff: 100ms, jitter: false}}
    timeout: 20s
    alerts: {{late_after: 1s, consecutive_failures: 3, max_duration: 10m}}
  alerting:
    check_every: 300ms
    webhooks: [{{url: "http://127.0.0.1:{hook_port}/hook", secret: s3cret}}]
  jobs:
    - {{extension: obstest, job: every-second, queue: nobody}}
    - {{extension: obstest, job: paused, queue: nobody, enabled: false}}
"""


@pytest.fixture
def obs(tmp_path: Path, redis_url: str, database_url: str) -> Iterator[dict[str, Any]]:
    hooks = Receiver()
    path = tmp_path / "profile.yaml"
    path.write_text(OBS_PROFILE.format(database_url=database_url, hook_port=hooks.port))
    env = service_env(REDIS_URL=redis_url, SYSTEMPROMPT_PROFILE=str(path))
    from jobs_core.profile import load_profile

    app, _, _ = create_app(load_profile(path, env=env), registry_for(path, redis_url, database_url))
    try:
        yield {
            "tmp": tmp_path,
            "profile": path,
            "env": env,
            "app": app,
            "hooks": hooks,
            "history": History(database_url),
        }
    finally:
        app.close()
        hooks.close()


def test_prefork_worker_metrics_sum_every_process(obs: dict[str, Any]) -> None:
    port = free_port_for_tests()
    env = {**obs["env"], "SYSTEMPROMPT_METRICS_PORT": str(port)}
    worker = start_worker(obs["tmp"], env, concurrency=2, pool="prefork")
    with running([worker]):
        wait_for(lambda: get(port, "/readyz")[0] == 200, 30, what="worker /readyz")
        app, history = obs["app"], obs["history"]
        ids = [send(app, "obstest/toggle") for _ in range(6)]
        ids.append(send(app, "obstest/toggle", parameters={"mode": "raise"}))
        ids.append(send(app, "obstest/toggle", parameters={"mode": "refuse"}))

        def done() -> bool:
            runs = [history.run(r) for r in ids]
            return all(r is not None and r.finished for r in runs)

        wait_for(done, 90, what="the runs to finish")
        job = "obstest/toggle"
        # The history row is written before the task returns; the counters right after.
        wait_for(
            lambda: value(scrape(port), "systemprompt_runs_total", job=job, status="failed") == 2,
            30,
            what="the last outcome counted",
        )
        m = scrape(port)
        assert value(m, "systemprompt_runs_total", job=job, status="succeeded") == 6
        assert value(m, "systemprompt_runs_total", job=job, status="failed") == 2
        assert value(m, "systemprompt_attempts_total", job=job, status="retrying") == 1
        assert value(m, "systemprompt_retries_total", job=job) == 1
        assert value(m, "systemprompt_run_duration_seconds_count", job=job) == 9
        assert value(m, "systemprompt_runs_running", job=job) == 0
        assert value(m, "systemprompt_infrastructure_errors_total", job=job) == 0
        workers = {r.worker for r in (history.run(i) for i in ids) if r is not None}
        assert len(workers) == 1  # one node; its two pool processes are summed above


# ------------------------------------------------------------------ alerts


class Receiver:
    """A webhook destination on a free port, recording every POST."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        posts = self.posts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                posts.append((dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self, job: str) -> list[dict[str, Any]]:
        out = []
        for headers, body in list(self.posts):
            event = json.loads(body)
            if event["job"] == job:
                assert verify(body, "s3cret", headers[SIGNATURE_HEADER])
                out.append(event)
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_failing_job_alerts_once_and_resolves_once(obs: dict[str, Any], redis_url: str) -> None:
    app, hooks, history = obs["app"], obs["hooks"], obs["history"]
    port = free_port_for_tests()
    job = "obstest/toggle"
    worker = start_worker(obs["tmp"], obs["env"], concurrency=2)
    with running([worker]), beat_procs(obs["tmp"]) as beats:
        beats.start("b1", obs["profile"], redis_url, extra=("--metrics-port", str(port)))
        wait_for(lambda: get(port, "/readyz")[0] == 200, 30, what="beat /readyz")
        failed = []
        for _ in range(3):
            failed.append(send(app, job, parameters={"mode": "refuse"}))
            wait_for(lambda: (r := history.run(failed[-1])) and r.finished, 60, what="a failure")
        wait_for(lambda: hooks.events(job), 30, what="the failing alert")
        (fired,) = hooks.events(job)
        assert fired["kind"] == "failing" and fired["state"] == "firing"
        assert sorted(fired["run_ids"]) == sorted(failed)

        health = cli("infra", "jobs", "health", "--json", env=obs["env"])
        assert health.returncode == 1, health.stderr
        active = {(a["job"], a["kind"]): a for a in json.loads(health.stdout)}
        assert set(active[(job, "failing")]) >= {"job", "kind", "since", "run_ids"}

        checks = value(scrape(port), "systemprompt_alert_checks_total")
        ok = send(app, job)
        wait_for(lambda: len(hooks.events(job)) >= 2, 30, what="the resolution")
        # A few more evaluations must announce nothing new.
        wait_for(
            lambda: value(scrape(port), "systemprompt_alert_checks_total") >= checks + 5,
            30,
            what="more alert checks",
        )
        events = hooks.events(job)
        assert [(e["kind"], e["state"]) for e in events] == [
            ("failing", "firing"),
            ("failing", "resolved"),
        ]
        assert history.run(ok).status == "succeeded"  # type: ignore[union-attr]
        m = scrape(port)
        assert value(m, "systemprompt_job_consecutive_failures", job=job) == 0
        assert value(m, "systemprompt_job_last_success_timestamp_seconds", job=job) > 0


def test_late_job_and_disabled_job_and_health_exit_codes(
    obs: dict[str, Any], redis_url: str
) -> None:
    env = obs["env"]
    healthy = cli("infra", "jobs", "health", env=env)
    assert healthy.returncode == 0 and "no active alerts" in healthy.stdout

    bad = obs["tmp"] / "bad.yaml"
    bad.write_text("scheduler: {defaults: {alerts: {late_after: soon}}}\n")
    broken = cli("--profile", str(bad), "infra", "jobs", "health", env=env)
    assert broken.returncode == 2 and "late_after" in broken.stderr
    assert "Traceback" not in broken.stderr

    port = free_port_for_tests()
    with beat_procs(obs["tmp"]) as beats:
        beats.start("b1", obs["profile"], redis_url, extra=("--metrics-port", str(port)))

        def late() -> list[dict[str, Any]]:
            result = cli("infra", "jobs", "health", "--json", env=env)
            alerts = json.loads(result.stdout) if result.returncode == 1 else []
            return [a for a in alerts if a["kind"] == "late"]

        found = wait_for(
            lambda: [a for a in late() if a["job"].startswith("obstest/")], 60, what="late"
        )
        assert {a["job"] for a in found} == {"obstest/every-second"}
        checks = value(scrape(port), "systemprompt_alert_checks_total")
        wait_for(
            lambda: value(scrape(port), "systemprompt_alert_checks_total") >= checks + 5,
            30,
            what="more alert checks",
        )
        late_jobs = {a["job"] for a in late()}
        assert "obstest/every-second" in late_jobs and "obstest/paused" not in late_jobs
        m = scrape(port)
        assert value(m, "systemprompt_job_alert_active", job="obstest/every-second", kind="late")
        assert not value(m, "systemprompt_job_alert_active", job="obstest/paused", kind="late")
        events = obs["hooks"].events("obstest/every-second")
        assert [(e["kind"], e["state"]) for e in events] == [("late", "firing")]
        assert obs["hooks"].events("obstest/paused") == []
