"""The beat's tick metrics for jittered ticks and max_runs (beat.metrics)."""

from __future__ import annotations

import pytest

from beat.core import Kind, Send
from beat.metrics import BeatMetrics, TickOutcome
from beat.ticks import EXHAUSTED, SENT, SENT_LAST
from jobs_core.status import Trigger


def test_a_jittered_tick_lag_counts_from_its_delayed_instant() -> None:
    metrics = BeatMetrics("b1")
    sends = [
        Send("a/j", 10_000, Trigger.SCHEDULE, Kind.FIRE, jitter_ms=4000),
        Send("a/p", 10_000, Trigger.SCHEDULE, Kind.FIRE),
    ]
    metrics.ticks(sends, [SENT, SENT], 14_100.0)
    lags = metrics._ticks.lag_sum
    assert lags == pytest.approx(0.1 + 4.1)  # 100 ms late after its offset; 4.1 s plain


def test_the_last_run_counts_as_sent_and_refusals_for_max_runs_are_counted() -> None:
    metrics = BeatMetrics("b1")
    sends = [Send("a/m", 1000, Trigger.SCHEDULE, Kind.FIRE) for _ in range(2)]
    metrics.ticks(sends, [SENT_LAST, EXHAUSTED], 1000.0)
    metrics.instant(2000, ["a/m", "a/n"], [EXHAUSTED, SENT_LAST], 2000.0)
    counts = metrics._ticks.counts
    assert counts[("a/m", TickOutcome.SENT)] == 1
    assert counts[("a/m", TickOutcome.EXHAUSTED)] == 2
    assert counts[("a/n", TickOutcome.SENT)] == 1
