"""Alert evaluation round after round, re-evaluating only the jobs that need it.

:func:`jobs_core.alerts.evaluate` looks at every job; at 100,000 jobs that is seconds of
CPU every round (mostly the next cron instant of each job for ``late``). Yet a job's
conditions depend on nothing but its :class:`~jobs_core.alerts.JobWatch`, its
:class:`~jobs_core.alerts.JobHealth` and the time, and time alone changes them only at
instants known in advance (:func:`next_change`). So :class:`RoundEvaluator` keeps each
job's last conditions and evaluates a job again only when:

- its health or its watch differ from those of its last evaluation (a new, started or
  finished run; paused, resumed, first watched);
- the instant of its next change by time has come (``late``: the deadline of the next
  expected success; ``too_long``: a running run reaching ``max_duration``);
- one of its incidents is not among the active ones handed in (lost from Redis, or the
  round that found it was not stored): a full evaluation would announce it as new, with
  a ``since`` of this round.

Everything else keeps its last conditions. The result is the one :func:`evaluate` gives
(same incidents, notifications, and order); a full evaluation still runs every
:data:`FULL_EVERY`, on the first round, when the clock went back, and after
:meth:`RoundEvaluator.reset` (the monitor calls it on a leadership change, a reloaded
job table or a failed round), so a change missed by mistake cannot hide an alert for
longer than that.

Pure: no I/O and no clock (``now`` is handed in).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from .alerts import (
    Evaluation,
    Incident,
    JobHealth,
    JobWatch,
    NextAfterMemo,
    conditions,
    late_deadline,
    settle,
)

#: A full evaluation at least this often, whatever changed.
FULL_EVERY = timedelta(minutes=5)


def next_change(
    watch: JobWatch, health: JobHealth | None, now: datetime, memo: NextAfterMemo | None = None
) -> datetime | None:
    """The earliest instant ``t`` such that at some time after ``t`` the conditions of
    ``watch`` and ``health`` (their keys, run ids and messages) may differ from those at
    ``now``, with nothing but time passing; None: never.

    Re-evaluating the job at the first round with ``t <= now`` is enough: a rule's
    condition turns on strictly after its instant (``now > deadline``), and none turns
    off with time alone (``late`` ends with a success, ``too_long`` with the run's end:
    both change the health).
    """
    due: datetime | None = None
    deadline = late_deadline(watch, health, memo)
    if deadline is not None and now <= deadline[1]:
        due = deadline[1]
    limit = watch.alerts.max_duration
    if limit is not None and health is not None and health.running:
        # Each run still within its limit joins the incident (count, ids, oldest) when
        # it crosses it.
        span = timedelta(seconds=limit)
        for _, started in health.running:
            over_at = started + span
            if now <= over_at and (due is None or over_at < due):
                due = over_at
    return due


@dataclass(frozen=True)
class _Seen:
    """A job as of its last evaluation."""

    watch: JobWatch
    health: JobHealth | None
    found: tuple[Incident, ...]
    due: datetime | None


class RoundEvaluator:
    """:func:`~jobs_core.alerts.evaluate`, round after round, on the jobs that need it.

    One instance per evaluating process (the leading beat's monitor); not thread-safe.
    """

    def __init__(self, full_every: timedelta = FULL_EVERY) -> None:
        self.full_every = full_every
        self._seen: dict[str, _Seen] = {}
        #: The incidents found last round, by key.
        self._current: dict[str, Incident] = {}
        self._last_now: datetime | None = None
        self._last_full: datetime | None = None
        #: Jobs the last round evaluated, and whether it was a full round.
        self.evaluated = 0
        self.was_full = False

    def reset(self) -> None:
        """Forget every job: the next round is a full one."""
        self._seen = {}
        self._current = {}
        self._last_now = None
        self._last_full = None

    def _full_due(self, now: datetime) -> bool:
        last_now, last_full = self._last_now, self._last_full
        return (
            last_now is None
            or last_full is None
            or now < last_now  # the clock went back: a deadline passed may be ahead again
            or now - last_full >= self.full_every
        )

    def evaluate(
        self,
        watches: Mapping[str, JobWatch],
        health: Mapping[str, JobHealth],
        active: Mapping[str, Incident],
        now: datetime,
    ) -> Evaluation:
        """What :func:`~jobs_core.alerts.evaluate` gives for ``watches.values()`` (by
        job), ``health``, ``active`` and ``now``."""
        full = self._full_due(now)
        before = {} if full else self._seen
        # The jobs that have an incident found last time and not active now.
        unstored = {i.job for k, i in self._current.items() if k not in active}
        seen: dict[str, _Seen] = {}
        current: dict[str, Incident] = {}
        memo: NextAfterMemo = {}
        evaluated = 0
        for job, watch in watches.items():
            h = health.get(job)
            last = before.get(job)
            if (
                last is None
                or (last.watch is not watch and last.watch != watch)
                or (last.health is not h and last.health != h)
                or (last.due is not None and last.due <= now)
                or job in unstored
            ):
                found = tuple(conditions(watch, h, now, memo))
                last = _Seen(watch, h, found, next_change(watch, h, now, memo))
                evaluated += 1
            seen[job] = last
            if last.found:
                for incident in last.found:
                    current[incident.key] = incident
        self._seen, self._current = seen, current
        self._last_now = now
        if full:
            self._last_full = now
        self.evaluated, self.was_full = evaluated, full
        return settle(current, active, now)
