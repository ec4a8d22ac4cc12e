"""Python's garbage collector, run where it cannot delay a tick.

CPython starts a collection whenever allocations cross a threshold, wherever that
happens, the send path included; a full collection over a job table of 10,000 jobs
takes tens of milliseconds. While the beat runs, automatic collection is off and the
loop calls :meth:`IdleCollector.idle` before it sleeps: young generations are collected
when there is time to spare before the next instant, a full collection once a minute
when there is plenty: at least twice as long as the last full collection took (over
the job table of 100,000 jobs one takes about a second, which would otherwise land on an
instant whenever the minute of the collector and the instants line up). Garbage still
cannot pile up: past a hard count (or when a full collection is long overdue) the
collection runs whatever the schedule.
"""

from __future__ import annotations

import gc
import time
from types import TracebackType

#: Collect the young generations when this many net allocations piled up and the next
#: instant is at least YOUNG_IDLE_S away; at FORCE_COUNT, collect regardless.
YOUNG_COUNT = 2_000
YOUNG_IDLE_S = 0.01
FORCE_COUNT = 200_000
#: Full collections: every FULL_EVERY_S when the loop has FULL_IDLE_S to spare;
#: regardless once FULL_OVERDUE_S have passed.
FULL_EVERY_S = 60.0
FULL_IDLE_S = 0.2
FULL_OVERDUE_S = 600.0


class IdleCollector:
    """Context manager: automatic collection off inside, :meth:`idle` collects."""

    def __init__(self) -> None:
        self._was_enabled = False
        self._last_full = time.monotonic()
        #: How long the last full collection took: the next one waits for twice that.
        self.full_took_s = 0.0

    def __enter__(self) -> IdleCollector:
        self._was_enabled = gc.isenabled()
        gc.disable()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._was_enabled:
            gc.enable()

    def idle(self, free_s: float) -> None:
        """The loop is about to sleep; its next instant is ``free_s`` seconds away."""
        now = time.monotonic()
        since_full = now - self._last_full
        room = max(FULL_IDLE_S, 2 * self.full_took_s)
        if (since_full >= FULL_EVERY_S and free_s >= room) or (since_full >= FULL_OVERDUE_S):
            gc.collect()
            self._last_full = time.monotonic()
            self.full_took_s = self._last_full - now
            return
        young = gc.get_count()[0]
        if (young >= YOUNG_COUNT and free_s >= YOUNG_IDLE_S) or young >= FORCE_COUNT:
            gc.collect(1)
