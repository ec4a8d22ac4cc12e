"""The beat's watch over the jobs, in a thread of its own, every ``check_every``:

- every beat: the job-state gauge;
- the leader only: the health of the jobs whose runs changed since the last round (of
  every job on a full round: :class:`jobs_core.job_health.HealthReader`), the per-job metrics
  (last success / failure, consecutive failures, active alerts), the alert evaluation
  (:mod:`jobs_core.alerts`) against the incidents kept in Redis, and the notifications
  (:mod:`beat.alerting`).

Nothing here runs on the scheduling thread: a slow database or webhook never delays a
tick. Without a database there is no history, hence no alert and no per-job metric.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import redis
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from jobs_core.alert_rounds import RoundEvaluator
from jobs_core.alerts import AlertKind, Incident, JobHealth, JobWatch, Notification
from jobs_core.job_health import HealthReader
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


def active_jobs(registry: JobRegistry, paused: set[str]) -> set[str]:
    """The jobs expected to run: scheduled, enabled in the profile and not paused."""
    if not registry.scheduler_enabled:
        return set()
    return {k for k, jd in registry.jobs.items() if jd.enabled and jd.cron is not None} - paused


class _Watches:
    """Each job's :class:`JobWatch`, the same object from round to round while nothing
    of it changed (what :class:`jobs_core.alert_rounds.RoundEvaluator` tests first)."""

    def __init__(self) -> None:
        self._registry: JobRegistry | None = None
        self._active: set[str] = set()
        self._since: dict[str, datetime] = {}
        self._last: dict[str, JobWatch] = {}

    def build(
        self,
        registry: JobRegistry,
        active: set[str],
        since: dict[str, datetime],
        now: datetime,
    ) -> dict[str, JobWatch]:
        if registry is not self._registry:
            changed: Iterable[str] = registry.jobs
            out: dict[str, JobWatch] = {}
        else:
            # Set operations (C loops): a round that paused, resumed or first watched a
            # few jobs builds a few watches, not 100,000.
            moved = {k for k, _ in since.items() ^ self._since.items()}
            changed = (active ^ self._active) | moved
            out = self._last.copy()
        for key in changed:
            jd = registry.jobs.get(key)
            if jd is None:
                continue
            # An inactive job cannot be late: since when it is watched does not matter.
            out[key] = JobWatch(
                job=key,
                alerts=jd.policy.alerts,
                cron=jd.cron,
                active=key in active,
                watched_since=since.get(key, now),
            )
        self._registry, self._active, self._since, self._last = registry, active, since, out
        return out


def watched_since(
    client: redis.Redis,
    registry: JobRegistry,
    paused: set[str],
    now: datetime,
    active: set[str] | None = None,
) -> dict[str, datetime]:
    """Since when each active job is expected to run; inactive jobs start afresh.
    ``active``: :func:`active_jobs` when the caller has it already.

    Reads the hash first and writes only what changed: at 100,000 jobs, a write per
    job every round was most of the monitor's CPU (and Redis's between instants).
    """
    if active is None:
        active = active_jobs(registry, paused)
    stored = cast("dict[str, str]", client.hgetall(Keys.ALERT_WATCH))
    now_ms = str(int(now.timestamp() * 1000))
    start = list(active - stored.keys())
    stop = list((stored.keys() & registry.jobs.keys()) - active)
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
    # Jobs first watched in one round share an instant: each is converted once.
    instants = {ms: datetime.fromtimestamp(int(ms) / 1000, UTC) for ms in set(stored.values())}
    jobs = registry.jobs
    return {key: instants[ms] for key, ms in stored.items() if key in jobs}


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
        # Kept from round to round so that a round re-evaluates only the jobs whose
        # history, watch or time calls for it (jobs_core.alert_rounds).
        self._evaluator = RoundEvaluator()
        self._health = HealthReader()
        self._watches = _Watches()
        #: The job table and the leadership the kept state was built under.
        self._under: tuple[JobRegistry, float] | None = None
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
        # A failed round may have stored part of what it found: start afresh.
        self.forget()

    def forget(self) -> None:
        """Drop what was kept from the last rounds: the next one evaluates every job."""
        self._evaluator.reset()
        self._health.reset()
        self._watches = _Watches()
        self._under = None

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
            self.forget()
            return
        under = (registry, self.beat.leader_since)
        if self._under is None or under[0] is not self._under[0] or under[1] != self._under[1]:
            # A reloaded job table, or leadership lost and won again since the last
            # round (another leader may have changed the incidents meanwhile).
            self.forget()
            self._under = under
        url = profile.database_url
        if not url:
            if not self._db_warned:
                log.warning("no database_url: no job health metrics and no alerts")
                self._db_warned = True
            return
        try:
            health = self._health.read(self._database(url), list(registry.jobs))
        except Exception as exc:
            raise RuntimeError(f"history query at {mask_url(url)} failed: {exc}") from None
        now = datetime.now(UTC)
        on = active_jobs(registry, paused)
        since = watched_since(client, registry, paused, now, on)
        active = active_incidents(client)
        watches = self._watches.build(registry, on, since, now)
        result = self._evaluator.evaluate(watches, health, active, now)
        log.debug(
            "alert round: %d of %d jobs evaluated (%s), health of %d read (%s), %d changed",
            self._evaluator.evaluated,
            len(watches),
            "full" if self._evaluator.was_full else "incremental",
            self._health.read_jobs,
            "full" if self._health.was_full else "incremental",
            self._health.changed,
        )
        if not self.beat.is_leader:  # lost the lease meanwhile: the new leader decides
            self.forget()
            return
        store_incidents(client, result.active, active.keys(), active)
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
