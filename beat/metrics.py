"""The beat's Prometheus metrics (``--metrics-port``) and its health checks.

Tick counts and the lag histogram are kept in plain dicts and lists and turned into
metric families at scrape time: a batch of 10,000 ticks then costs one lock and a dict
increment per tick instead of 10,000 labelled-child look-ups. The per-job history
metrics are exported by the leader alone (see :mod:`beat.monitor`).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from jobs_core.status import Trigger

from .observe import BeatObserver, TickInfo
from .ticks import DISABLED, DUPLICATE, EXHAUSTED, SENT, SENT_LAST

#: Tick lag buckets, seconds: the beat's lag is normally a few milliseconds.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: A beat whose loop has not turned for this long is not healthy.
STALL_S = 30.0


class TickOutcome:
    SENT = "sent"
    CATCH_UP = "catch_up"
    MISSED = "missed"  # recorded as a skipped run: missed beyond misfire_grace
    SKIPPED = "skipped"  # not sent: the job is paused
    DUPLICATE = "duplicate_refused"  # another beat (or an earlier send) had it
    EXHAUSTED = "max_runs_refused"  # not sent: the job's max_runs are used up


def outcome_of(tick: TickInfo, status: int) -> str | None:
    if status in (SENT, SENT_LAST):
        if tick.kind != "fire":
            return TickOutcome.MISSED
        return TickOutcome.CATCH_UP if tick.trigger is Trigger.CATCH_UP else TickOutcome.SENT
    if status == DISABLED:
        return TickOutcome.SKIPPED
    return _REFUSED.get(status)


_REFUSED = {
    DISABLED: TickOutcome.SKIPPED,
    DUPLICATE: TickOutcome.DUPLICATE,
    EXHAUSTED: TickOutcome.EXHAUSTED,
}


class _TickCollector(Collector):
    """``systemprompt_ticks_total{job,outcome}`` and ``systemprompt_tick_lag_seconds``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[tuple[str, str], int] = {}
        self.buckets = [0] * (len(LAG_BUCKETS) + 1)  # the last one is +Inf
        self.lag_sum = 0.0

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            counts = dict(self.counts)
            buckets = list(self.buckets)
            lag_sum = self.lag_sum
        ticks = CounterMetricFamily(
            "systemprompt_ticks",
            "Ticks handled by this beat, by job and outcome (sent, catch_up, missed, "
            "skipped: paused, duplicate_refused, max_runs_refused)",
            labels=["job", "outcome"],
        )
        for (job, outcome), n in sorted(counts.items()):
            ticks.add_metric([job, outcome], n)
        yield ticks
        cumulative, running = [], 0
        for bound, n in zip((*LAG_BUCKETS, float("inf")), buckets, strict=True):
            running += n
            cumulative.append((_bound(bound), running))
        yield HistogramMetricFamily(
            "systemprompt_tick_lag_seconds",
            "Delay from a tick's scheduled instant to its enqueueing (on-time ticks)",
            buckets=cumulative,
            sum_value=lag_sum,
        )


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


class BeatMetrics(BeatObserver):
    """The beat's registry, fed by the loop through the :class:`BeatObserver` hooks."""

    def __init__(self, beat_id: str) -> None:
        self.beat_id = beat_id
        self.registry = CollectorRegistry()
        self._ticks = _TickCollector()
        self.registry.register(self._ticks)
        self._leader = Gauge(
            "systemprompt_beat_leader",
            "1 while this beat holds the leader lease",
            ["beat_id"],
            registry=self.registry,
        ).labels(beat_id)
        self._leader.set(0)
        renewals = Counter(
            "systemprompt_lease_renewals",
            "Leader lease renewals by result (ok, lost)",
            ["result"],
            registry=self.registry,
        )
        self._renew_ok = renewals.labels("ok")
        self._renew_lost = renewals.labels("lost")
        self._elections = Counter(
            "systemprompt_beat_failovers",
            "Times this beat became leader (at start-up, or taking over from another beat)",
            registry=self.registry,
        )
        self._losses = Counter(
            "systemprompt_beat_leadership_lost",
            "Times this beat lost the lease",
            registry=self.registry,
        )
        self._redis_up = Gauge(
            "systemprompt_beat_redis_up",
            "1 while this beat is connected to Redis",
            registry=self.registry,
        )
        self.jobs = Gauge(
            "systemprompt_jobs",
            "Jobs of the job table by state (enabled, disabled in the profile, paused at "
            "runtime, manual: no schedule)",
            ["state"],
            registry=self.registry,
        )
        self.is_leader = False
        self.last_turn = time.monotonic()

    # -- hooks (beat thread) ------------------------------------------------------

    def loop_turned(self) -> None:
        self.last_turn = time.monotonic()

    def redis_state(self, up: bool) -> None:
        self._redis_up.set(1 if up else 0)

    def elected(self) -> None:
        self.is_leader = True
        self._leader.set(1)
        self._elections.inc()

    def lost(self) -> None:
        self.is_leader = False
        self._leader.set(0)
        self._losses.inc()

    def renewed(self, ok: bool) -> None:
        (self._renew_ok if ok else self._renew_lost).inc()

    def ticks(self, ticks: Sequence[TickInfo], statuses: Sequence[int], done_ms: float) -> None:
        c = self._ticks
        counts = c.counts
        lags: dict[int, int] = {}  # the ticks of a batch mostly share one instant
        with c.lock:
            for tick, status in zip(ticks, statuses, strict=True):
                outcome = outcome_of(tick, status)
                if outcome is None:
                    continue
                key = (tick.job_key, outcome)
                counts[key] = counts.get(key, 0) + 1
                if outcome == TickOutcome.SENT:
                    # A jittered tick is due at its instant plus its offset.
                    at = tick.due_ms + tick.jitter_ms
                    lags[at] = lags.get(at, 0) + 1
            for due_ms, n in lags.items():
                lag = max(0.0, (done_ms - due_ms) / 1000)
                c.buckets[bisect.bisect_left(LAG_BUCKETS, lag)] += n
                c.lag_sum += lag * n

    def instant(
        self, due_ms: int, jobs: Sequence[str], statuses: Sequence[int], done_ms: float
    ) -> None:
        c = self._ticks
        counts = c.counts
        sent = 0
        with c.lock:
            for job, status in zip(jobs, statuses, strict=True):
                outcome = TickOutcome.SENT if status in (SENT, SENT_LAST) else _REFUSED.get(status)
                if outcome is None:
                    continue
                key = (job, outcome)
                counts[key] = counts.get(key, 0) + 1
                sent += outcome == TickOutcome.SENT
            if sent:
                lag = max(0.0, (done_ms - due_ms) / 1000)
                c.buckets[bisect.bisect_left(LAG_BUCKETS, lag)] += sent
                c.lag_sum += lag * sent

    # -- health ---------------------------------------------------------------------

    def loop_health(self) -> tuple[bool, dict[str, Any]]:
        age = time.monotonic() - self.last_turn
        return age < STALL_S, {"loop_age_s": round(age, 3), "leader": self.is_leader}
