"""The effective policies of a job: retry, timeout, overlap, misfire grace, queue, alerts,
and the schedule's own settings (time zone, start-time jitter, start/end bounds, a run
budget).

These are resolved values; the settings that produce them (profile.yaml and Job class
attributes alike) are validated by the models in :mod:`jobs_core.profile`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

_RNG = random.Random()


class Overlap(StrEnum):
    """What a tick does while a run of the same job is still active.

    ``queue`` (the older name of ``buffer_all``) is accepted and read as ``buffer_all``.
    """

    SKIP = "skip"
    ALLOW = "allow"
    BUFFER_ONE = "buffer_one"
    BUFFER_ALL = "buffer_all"
    CANCEL_OTHER = "cancel_other"
    TERMINATE_OTHER = "terminate_other"
    QUEUE = "buffer_all"  # alias: Overlap.QUEUE is Overlap.BUFFER_ALL

    @classmethod
    def _missing_(cls, value: object) -> Overlap | None:
        return cls.BUFFER_ALL if value == "queue" else None

    @property
    def buffers(self) -> bool:
        """Ticks wait in the job's ordered waiting set (see worker.overlap)."""
        return self in (Overlap.BUFFER_ONE, Overlap.BUFFER_ALL)

    @property
    def preempts(self) -> bool:
        """A new tick stops the active run instead of waiting for it."""
        return self in (Overlap.CANCEL_OTHER, Overlap.TERMINATE_OTHER)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: attempt n waits ``backoff * 2**(n-1)``, capped.

    With ``jitter`` the wait is drawn uniformly from ``[0, capped]`` ("full jitter"),
    which spreads retries of many failing runs instead of stampeding together.
    """

    max_attempts: int = 3
    backoff: float = 10.0
    max_backoff: float = 600.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoff and max_backoff must be >= 0")

    def delay(self, failed_attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``failed_attempt`` (1-based) before the next one."""
        exp = max(failed_attempt - 1, 0)
        try:
            # ldexp scales by 2**exp exactly; past the float range any finite cap wins.
            raw = math.ldexp(self.backoff, exp)
        except OverflowError:
            raw = math.inf
        capped = min(float(self.max_backoff), raw)
        if self.jitter:
            return (rng or _RNG).uniform(0, capped)
        return capped


@dataclass(frozen=True)
class AlertPolicy:
    """When the leading beat raises an alert for a job; None turns that alert off.

    ``late_after``: no successful run within the schedule's interval plus this many
    seconds. ``consecutive_failures``: that many finished runs failed in a row.
    ``max_duration``: a run still running after this many seconds. ``on_skip``: the
    latest finished run was skipped.
    """

    late_after: float | None = 10 * 60.0
    consecutive_failures: int | None = 3
    max_duration: float | None = 30 * 60.0
    on_skip: bool = False


@dataclass(frozen=True)
class JobPolicy:
    """The effective policies of one job."""

    retry: RetryPolicy = RetryPolicy()
    timeout: float = 15 * 60.0
    overlap: Overlap = Overlap.SKIP
    misfire_grace: float = 5 * 60.0
    queue: str = "jobs"
    alerts: AlertPolicy = AlertPolicy()
    #: IANA zone of the schedule; None: ``scheduler.timezone``.
    timezone: str | None = None
    #: Seconds: each tick goes out at its instant plus a fixed offset in [0, jitter).
    jitter: float = 0.0
    #: Ticks before ``start_at`` or after ``end_at`` are not sent (both inclusive).
    start_at: datetime | None = None
    end_at: datetime | None = None
    #: Scheduled runs (on time and catch-up) after which the job stops being scheduled.
    max_runs: int | None = None
