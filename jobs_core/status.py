"""The vocabulary of a run: its status, what triggered it, and what a worker does next.

A status is what history records; an :class:`Action` is what the worker does with the
message once an attempt is over. They are kept apart: a duplicate delivery or an overlap
re-queue changes nothing in history.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    LOST = "lost"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


#: Statuses a run never leaves.
TERMINAL = frozenset(
    {
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.TIMED_OUT,
        RunStatus.SKIPPED,
        RunStatus.CANCELLED,
        RunStatus.LOST,
    }
)
#: Statuses of a run that may still execute.
ACTIVE = frozenset({RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.RETRYING})


class Trigger(StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    CATCH_UP = "catch-up"
    BOOTSTRAP = "bootstrap"
    BACKFILL = "backfill"
    RERUN = "rerun"

    @property
    def is_tick(self) -> bool:
        """A tick of the schedule (what ``overlap: skip`` may skip)."""
        return self in (Trigger.SCHEDULE, Trigger.CATCH_UP)

    @property
    def carries_tick(self) -> bool:
        """The run is one tick of the schedule, sent on time, caught up or backfilled:
        at most one such run per ``(job, scheduled_for)``, whatever its trigger."""
        return self in (Trigger.SCHEDULE, Trigger.CATCH_UP, Trigger.BACKFILL)


class Action(StrEnum):
    """What the worker does with a message after an attempt."""

    ACK = "ack"  # done: the outcome is recorded
    RETRY = "retry"  # send the next attempt after the policy's delay
    REQUEUE = "requeue"  # put the same attempt back (overlap: wait for the active run)
    DUPLICATE = "duplicate"  # a redelivery of a run already settled: drop it
