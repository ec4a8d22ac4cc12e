"""The points of the beat loop that observers (metrics) hear about; the base does nothing.

The loop calls these synchronously: an implementation must be cheap and never raise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from jobs_core.status import Trigger


class TickInfo(Protocol):
    """What the loop knows of one tick of a sent batch."""

    @property
    def job_key(self) -> str: ...
    @property
    def due_ms(self) -> int: ...
    @property
    def trigger(self) -> Trigger: ...
    @property
    def kind(self) -> str:
        """beat.core.Kind: "fire" | "skip" | "summary"."""

    @property
    def jitter_ms(self) -> int:
        """A jittered on-time tick is due this long after ``due_ms``."""


class BeatObserver:
    def loop_turned(self) -> None:
        """Once per turn of the loop (a beat whose loop stops turning is not healthy)."""

    def redis_state(self, up: bool) -> None:
        """Redis connected (True) or lost (False)."""

    def elected(self) -> None:
        """This beat won the lease."""

    def lost(self) -> None:
        """This beat lost the lease (or gave it up)."""

    def renewed(self, ok: bool) -> None:
        """A lease renewal succeeded or found the lease gone."""

    def ticks(self, ticks: Sequence[TickInfo], statuses: Sequence[int], done_ms: float) -> None:
        """A batch was sent: each tick with the claim script's status, at ``done_ms``."""

    def instant(
        self, due_ms: int, jobs: Sequence[str], statuses: Sequence[int], done_ms: float
    ) -> None:
        """The on-time batch of instant ``due_ms`` (scheduled fires of ``jobs``) was sent."""


NULL_OBSERVER = BeatObserver()
