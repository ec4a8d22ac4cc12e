"""The beat's watch over the jobs, in a thread of its own, every ``check_every``:

- every beat: the job-state gauge;
- the leader only: one history query for all jobs (PostgreSQL), the per-job metrics
  (last success / failure, consecutive failures, active alerts), the alert evaluation
  (:mod:`jobs_core.alerts`) against the incidents kept in Redis, and the notifications
  (:mod:`beat.alerting`).

Nothing here runs on the scheduling thread: a slow database or webhook never delays a
tick. Without a database there is no history, hence no alert and no per-job metric.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import redis
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from jobs_core.alerts import (
    AlertKind,
    Incident,
    JobHealth,
    JobWatch,
    Notification,
    evaluate,
)
from jobs_core.job_health import fetch_job_health
from jobs_core.profile import Profile
from jobs_core.registry import JobRegistry
from jobs_core.urls import mask_url
from jobs_core.wire import Keys

from .alerting import WebhookSender
from .chore import Chore
from .control import disabled_jobs
from .incidents import active_incidents, store_incidents

if TYPE_CHECKING:
    from .metrics import BeatMetrics
    from .service import Beat

log = logging.getLogger("beat.alerts")


class _JobCollector(Collector):
    """Per-job metrics of the last evaluation; empty unless this beat leads."""

    def __init__(self) -> None:
        self.health: dict[str, JobHealth] = {}
        self.active: dict[str, Incident] = {}
        self.jobs: list[str] = []

    def clear(self) -> None:
        self.health, self.active, self.jobs = {}, {}, []

    def collect(self) -> Iterator[Metric]:
        health, active, jobs = self.health, self.active, self.jobs
        success = GaugeMetricFamily(
            "systemprompt_job_last_success_timestamp_seconds",
            "Instant (tick, else start) of the job's latest successful run, Unix seconds",
            labels=["job"],
        )
        failure = GaugeMetricFamily(
            "systemprompt_job_last_failure_timestamp_seconds",
            "When the job's latest failed run finished, Unix seconds",
            labels=["job"],
        )
        failures = GaugeMetricFamily(
            "systemprompt_job_consecutive_failures",
            "Failed runs of the job since its latest success",
            labels=["job"],
        )
        alerts = GaugeMetricFamily(
            "systemprompt_job_alert_active",
            "1 while an alert of this kind (late, failing, too_long, skipped) fires",
            labels=["job", "kind"],
        )
        firing = {(i.job, i.kind) for i in active.values()}
        for job in jobs:
            h = health.get(job)
            if h is not None and h.last_success_at is not None:
                success.add_metric([job], h.last_success_at.timestamp())
            if h is not None and h.last_failure_at is not None:
                failure.add_metric([job], h.last_failure_at.timestamp())
            failures.add_metric([job], h.consecutive_failures if h is not None else 0)
            for kind in AlertKind:
                alerts.add_metric([job, kind.value], 1 if (job, kind) in firing else 0)
        yield from (success, failure, failures, alerts)


def _watches(registry: JobRegistry, paused: set[str], since: dict[str, datetime]) -> list[JobWatch]:
    return [
        JobWatch(
            job=jd.key,
            alerts=jd.policy.alerts,
            cron=jd.cron,
            active=_active(registry, jd.key, paused),
            watched_since=since.get(jd.key, datetime.now(UTC)),
        )
        for jd in registry
    ]


def _active(registry: JobRegistry, key: str, paused: set[str]) -> bool:
    jd = registry.jobs[key]
    return registry.scheduler_enabled and jd.enabled and jd.cron is not None and key not in paused


def watched_since(
    client: redis.Redis, registry: JobRegistry, paused: set[str], now: datetime
) -> dict[str, datetime]:
    """Since when each active job is expected to run; inactive jobs start afresh.

    Reads the hash first and writes only what changed: at 100,000 jobs, a write per
    job every round was most of the monitor's CPU (and Redis's between instants).
    """
    stored = cast("dict[str, str]", client.hgetall(Keys.ALERT_WATCH))
    now_ms = str(int(now.timestamp() * 1000))
    start = [k for k in registry.jobs if k not in stored and _active(registry, k, paused)]
    stop = [k for k in stored if k in registry.jobs and not _active(registry, k, paused)]
    if stop:
        client.hdel(Keys.ALERT_WATCH, *stop)
        for key in stop:
            del stored[key]
    if start:
        pipe = client.pipeline(transaction=False)
        for key in start:
            # NX: what another leader wrote meanwhile stays.
            pipe.hsetnx(Keys.ALERT_WATCH, key, now_ms)
        pipe.hmget(Keys.ALERT_WATCH, start)
        fresh: list[str | None] = pipe.execute()[-1]
        stored.update((k, v) for k, v in zip(start, fresh, strict=True) if v is not None)
    return {
        key: datetime.fromtimestamp(int(ms) / 1000, UTC)
        for key, ms in stored.items()
        if key in registry.jobs
    }


class Monitor(Chore):
    """Started by :func:`beat.run_beat` next to the loop; :meth:`close` stops it."""

    name = "beat-monitor"
    what = "job health check"

    def __init__(self, beat: Beat, metrics: BeatMetrics | None) -> None:
        super().__init__(beat, log)
        self.metrics = metrics
        self.jobs = _JobCollector()
        if metrics is not None:
            metrics.registry.register(self.jobs)
        self._db: Any = None
        self._sender: WebhookSender | None = None
        self._db_warned = False
        self._checks: Any = None
        self._notified: Any = None
        if metrics is not None:
            from prometheus_client import Counter

            self._checks = Counter(
                "systemprompt_alert_checks",
                "Alert evaluations completed by this beat as leader",
                registry=metrics.registry,
            )
            self._notified = Counter(
                "systemprompt_alert_notifications",
                "Alert notifications by kind, state and delivery result (per destination)",
                ["kind", "state", "result"],
                registry=metrics.registry,
            )

    def close(self) -> None:
        super().close()
        if self._sender is not None:
            self._sender.close()

    # ------------------------------------------------------------------ loop

    def interval(self) -> float:
        return self.beat.profile.scheduler.alerting.check_every

    def round(self) -> None:
        self.check(self.beat.profile)

    def _database(self, url: str) -> Any:
        if self._db is None or self._db.closed:
            import psycopg

            self._db = psycopg.connect(
                url,
                autocommit=True,
                connect_timeout=5,
                application_name="systemprompt-beat alerts",
                options="-c statement_timeout=10000",
            )
        return self._db

    def _connections(self) -> list[Any]:
        return [*super()._connections(), self._db]

    def _disconnect(self) -> None:
        super()._disconnect()
        self._db = None

    def _senders(self, profile: Profile) -> WebhookSender | None:
        hooks = profile.scheduler.alerting.webhooks
        if self._sender is not None and self._sender.same_hooks(hooks):
            return self._sender
        if self._sender is not None:
            self._sender.close()
        self._sender = WebhookSender(hooks, self._delivered) if hooks else None
        return self._sender

    def _delivered(self, note: Notification, ok: bool) -> None:
        if self._notified is not None:
            kind, state = note.incident.kind.value, note.state.value
            self._notified.labels(kind, state, "delivered" if ok else "failed").inc()

    # ------------------------------------------------------------------ one round

    def check(self, profile: Profile) -> None:
        registry = self.beat.registry
        client = self._redis()
        paused = disabled_jobs(client)
        if self.metrics is not None:
            self._count_states(registry, paused)
        if not self.beat.is_leader:
            self.jobs.clear()
            return
        url = profile.database_url
        if not url:
            if not self._db_warned:
                log.warning("no database_url: no job health metrics and no alerts")
                self._db_warned = True
            return
        try:
            health = fetch_job_health(self._database(url), list(registry.jobs))
        except Exception as exc:
            raise RuntimeError(f"history query at {mask_url(url)} failed: {exc}") from None
        now = datetime.now(UTC)
        since = watched_since(client, registry, paused, now)
        active = active_incidents(client)
        result = evaluate(_watches(registry, paused, since), health, active, now)
        if not self.beat.is_leader:  # lost the lease meanwhile: the new leader decides
            return
        store_incidents(client, result.active, active.keys())
        self.jobs.health, self.jobs.active = health, result.active
        self.jobs.jobs = list(registry.jobs)
        if self._checks is not None:
            self._checks.inc()
        self._announce(profile, result.notifications)

    def _announce(self, profile: Profile, notes: list[Notification]) -> None:
        for note in notes:
            log.warning(
                "alert %s: %s %s: %s",
                note.state.value,
                note.incident.job,
                note.incident.kind.value,
                note.incident.message,
            )
        sender = self._senders(profile)
        if sender is not None and notes:
            sender.send(notes)

    def _count_states(self, registry: JobRegistry, paused: set[str]) -> None:
        assert self.metrics is not None
        counts = {"enabled": 0, "disabled": 0, "paused": 0, "manual": 0}
        for jd in registry:
            if jd.cron is None:
                counts["manual"] += 1
            elif not jd.enabled:
                counts["disabled"] += 1
            elif jd.key in paused:
                counts["paused"] += 1
            else:
                counts["enabled"] += 1
        for state, n in counts.items():
            self.metrics.jobs.labels(state).set(n)

    # ------------------------------------------------------------------ readiness

    def database_ok(self) -> tuple[bool, str | None]:
        """Whether the history database answers (None when there is none)."""
        url = self.beat.profile.database_url
        if not url:
            return True, None
        import psycopg

        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True, "ok"
        except Exception as exc:
            return False, f"{type(exc).__name__}"
