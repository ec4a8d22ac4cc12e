"""The beat's scheduling decisions, as a pure object: plain data in, plain decisions out.

:class:`Scheduler` is handed the job table and ``now`` (integer epoch milliseconds) and
says what to send, what to record as skipped and when the next instant is. It does no
I/O and reads no clock, so every decision (catch-up, stall coalescing, reload) is
tested in milliseconds; :mod:`beat.service` does the sending around it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from jobs_core.registry import JobRegistry
from jobs_core.status import Trigger

from .schedule import CatchUp, Cron, DueHeap, catch_up, iso, next_ms

#: Catch-up records at most this many skipped ticks one by one per job, then summarises.
SKIP_CAP = 100
#: ``catch_up`` counts the ticks it summarises up to this many ("at least" beyond).
DROP_COUNT_CAP = 10_000
#: Cron's finest period: a beat woken less than this after an instant cannot have a
#: second tick of any job due, so that instant's bucket goes out as it is.
MIN_PERIOD_MS = 1000


@dataclass(frozen=True, slots=True)
class Entry:
    """A scheduled job as the core sees it."""

    key: str
    cron: Cron
    grace_s: float


def entries(registry: JobRegistry) -> list[Entry]:
    """The jobs of ``registry`` the beat schedules: enabled, with a schedule."""
    if not registry.scheduler_enabled:
        return []
    return [
        Entry(j.key, j.cron, j.policy.misfire_grace)
        for j in registry
        if j.cron is not None and j.enabled
    ]


class Kind(StrEnum):
    FIRE = "fire"  # a run of the job
    SKIP = "skip"  # a record of one tick missed beyond misfire_grace
    SUMMARY = "summary"  # one record for the older missed ticks beyond the skip cap


@dataclass(slots=True)  # not frozen: thousands are made a second, and frozen costs more
class Send:
    """One message to send: tick ``(job_key, due_ms)``."""

    job_key: str
    due_ms: int
    trigger: Trigger
    kind: Kind
    skip_reason: str | None = None
    #: FIRE: in-grace ticks folded into this run; SUMMARY: ticks it stands for.
    count: int = 0
    #: SUMMARY: the oldest tick it stands for (``due_ms`` is the newest).
    first_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """A job dropped until the next reload because its schedule raised."""

    job_key: str
    during: str  # "schedule" | "catch-up"
    error: str


@dataclass(slots=True)
class Plan:
    """What to send now, in order, and the jobs that could not be planned."""

    sends: list[Send]
    failures: list[Failure]


class Scheduler:
    """The due-time heap of one leading beat and every decision about it.

    Protocol: :meth:`start` when the beat becomes leader (catches up from the last
    handled ticks); then, at each wake-up, either the fast path (:meth:`on_time`,
    :meth:`pop_head`, send, :meth:`advance`) or :meth:`take`; :meth:`handled` after
    each send; :meth:`reload` on a profile change; :meth:`clear` on losing the lease.
    A job sits in the heap once, at its next instant, so each tick is planned once.
    """

    def __init__(self) -> None:
        self._heap = DueHeap()
        self._jobs: dict[str, Entry] = {}
        #: Jobs sharing a schedule share one cron slot, so they share next-instant
        #: and catch-up arithmetic within one call.
        self._slot: dict[str, int] = {}
        #: Last tick handled (sent, recorded, or not sent because disabled) per job, as
        #: this process saw it: catch-up starts there when Redis lost its own record.
        self._last: dict[str, int] = {}

    # ---------------------------------------------------------------- reading

    def __len__(self) -> int:
        return len(self._heap)

    def next_due(self) -> int | None:
        return self._heap.next_due()

    def head(self) -> tuple[int, list[str]] | None:
        """The earliest instant and its jobs, not removed. The list is the heap's own:
        it stays the same object until that instant is taken or the table changes."""
        return self._heap.peek()

    def last(self, job_key: str) -> int | None:
        return self._last.get(job_key)

    # ---------------------------------------------------------------- table

    def start(self, jobs: Iterable[Entry], now_ms: int, last: Mapping[str, int]) -> Plan:
        """Become leader at ``now_ms``: catch up every job from its last handled tick.

        ``last`` is what Redis remembers; this process's own memory counts too (the
        newer wins). Ticks in ``(last, now]`` within a job's grace (``now - tick <=
        grace``: a tick exactly the grace old still fires) fire once (the newest,
        trigger catch-up); older ones are recorded as skipped (the newest
        :data:`SKIP_CAP` one by one, the rest in one summary). A job never handled
        starts at its first instant after ``now_ms``.
        """
        self._set_jobs(jobs)
        self._heap = DueHeap()
        sends: list[Send] = []
        failures: list[Failure] = []
        memo: dict[tuple[int, int, float], CatchUp] = {}
        nexts: dict[tuple[int, int], int] = {}
        for key, job in self._jobs.items():
            prev = max(last.get(key, 0), self._last.get(key, 0))
            if prev and not self._catch_up(job, prev, now_ms, sends, failures, memo):
                continue
            due = self._next(job, now_ms, nexts, failures)
            if due is not None:
                self._heap.push(key, due)
        return Plan(sends, failures)

    def reload(self, jobs: Iterable[Entry], now_ms: int) -> tuple[int, list[Failure]]:
        """Swap the job table: unchanged jobs keep their next instant; added ones, ones
        whose schedule changed and ones enabled again start after ``now_ms`` (no
        catch-up of the time they were absent); removed ones leave the heap.

        Returns how many jobs were (re)started, and the failures.
        """
        old = self._jobs
        kept = {key: due for due, key in self._heap.entries()}
        self._set_jobs(jobs)
        self._heap = DueHeap()
        failures: list[Failure] = []
        nexts: dict[tuple[int, int], int] = {}
        changed = 0
        for key, job in self._jobs.items():
            before = old.get(key)
            due: int | None
            if before is not None and key in kept and before.cron == job.cron:
                due = kept[key]
            else:
                changed += 1
                due = self._next(job, now_ms, nexts, failures)
            if due is not None:
                self._heap.push(key, due)
        return changed, failures

    def clear(self) -> None:
        """Leadership lost: nothing is due until :meth:`start` again."""
        self._heap = DueHeap()

    # ---------------------------------------------------------------- instants

    def on_time(self, now_ms: int) -> tuple[int, list[str]] | None:
        """The head instant when it is due and every job of it simply fires on time
        (woken less than :data:`MIN_PERIOD_MS` after it); else None: use :meth:`take`."""
        head = self._heap.peek()
        if head is None or not head[0] <= now_ms < head[0] + MIN_PERIOD_MS:
            return None
        return head

    def pop_head(self) -> tuple[int, list[str]]:
        """Remove the head instant (after :meth:`on_time` returned it); the caller
        sends its ticks, then calls :meth:`advance`."""
        return self._heap.pop_first()

    def advance(self, due_ms: int, keys: list[str]) -> list[Failure]:
        """Schedule the next instant of each job whose tick ``due_ms`` was popped."""
        slots, heap = self._slot, self._heap
        nexts: dict[int, int] = {}
        failures: list[Failure] = []
        for key in keys:
            slot = slots.get(key)
            if slot is None:
                continue  # removed by a reload
            nxt = nexts.get(slot)
            if nxt is None:
                nxt = self._compute_next(key, due_ms, failures)
                if nxt is None:
                    continue
                nexts[slot] = nxt
            heap.push(key, nxt)
        return failures

    def take(self, now_ms: int) -> Plan:
        """Every tick due at or before ``now_ms``, and the heap moved past ``now_ms``.

        A job with one tick due fires it on time (trigger schedule). A job with more
        than one due (the process stalled: suspend, swap, a long pause) is caught up
        like a job nobody sent: the newest tick within grace fires once as catch-up,
        older ones are recorded as skipped; no burst of stale runs.
        """
        sends: list[Send] = []
        failures: list[Failure] = []
        jobs, heap = self._jobs, self._heap
        nexts: dict[tuple[int, int], int] = {}
        memo: dict[tuple[int, int, float], CatchUp] = {}
        for due_ms, key in heap.pop_due(now_ms):
            job = jobs.get(key)
            if job is None:
                continue
            nxt = self._next(job, due_ms, nexts, failures)
            if nxt is None:
                continue
            if nxt <= now_ms:
                if not self._catch_up(job, due_ms - 1, now_ms, sends, failures, memo):
                    continue
                nxt = self._next(job, now_ms, nexts, failures)
                if nxt is not None:
                    heap.push(key, nxt)
                continue
            sends.append(Send(key, due_ms, Trigger.SCHEDULE, Kind.FIRE))
            heap.push(key, nxt)
        return Plan(sends, failures)

    def handled(self, ticks: Iterable[tuple[str, int]]) -> None:
        """Ticks ``(job_key, due_ms)`` that Redis accepted (sent, or held back because
        the job is disabled): catch-up after a leadership change starts after them."""
        last = self._last
        for key, due_ms in ticks:
            if due_ms > last.get(key, 0):
                last[key] = due_ms

    def handled_instant(self, due_ms: int, keys: list[str]) -> None:
        """:meth:`handled` for every tick of an on-time instant (newer than any tick of
        these jobs handled before, as the heap only holds instants after those)."""
        self._last.update(dict.fromkeys(keys, due_ms))

    # ---------------------------------------------------------------- internals

    def _set_jobs(self, jobs: Iterable[Entry]) -> None:
        table = {job.key: job for job in jobs}
        slots: dict[Cron, int] = {}
        self._slot = {key: slots.setdefault(job.cron, len(slots)) for key, job in table.items()}
        self._jobs = table

    def _next(
        self,
        job: Entry,
        after_ms: int,
        cache: dict[tuple[int, int], int],
        failures: list[Failure],
    ) -> int | None:
        """:meth:`_compute_next`, shared by the jobs of one cron slot within one call."""
        memo = (self._slot[job.key], after_ms)
        nxt = cache.get(memo)
        if nxt is None:
            nxt = self._compute_next(job.key, after_ms, failures)
            if nxt is not None:
                cache[memo] = nxt
        return nxt

    def _compute_next(self, key: str, after_ms: int, failures: list[Failure]) -> int | None:
        """The next instant of job ``key`` after ``after_ms``; None (a failure) if its
        schedule raised: one broken schedule must not stop the others."""
        try:
            return next_ms(self._jobs[key].cron, after_ms)
        except Exception as exc:
            failures.append(Failure(key, "schedule", f"{type(exc).__name__}: {exc}"))
            return None

    def _catch_up(
        self,
        job: Entry,
        last_ms: int,
        now_ms: int,
        sends: list[Send],
        failures: list[Failure],
        memo: dict[tuple[int, int, float], CatchUp],
    ) -> bool:
        """Append the sends for the ticks of ``job`` in ``(last_ms, now_ms]``.

        False (a failure) if its schedule raised.
        """
        grace = job.grace_s
        # Jobs sharing a schedule and a last tick share the arithmetic (thousands of
        # per-second jobs after a stall must not each walk the cron engine).
        key = (self._slot[job.key], last_ms, grace)
        cu = memo.get(key)
        if cu is None:
            try:
                cu = catch_up(job.cron, last_ms, now_ms, grace, skip_cap=SKIP_CAP)
            except Exception as exc:
                failures.append(Failure(job.key, "catch-up", f"{type(exc).__name__}: {exc}"))
                return False
            memo[key] = cu
        if cu.empty:
            return True
        if cu.dropped and cu.dropped_last_ms is not None and cu.dropped_first_ms is not None:
            more = "at least " if cu.dropped >= DROP_COUNT_CAP else ""
            reason = (
                f"missed while no beat was running: {more}{cu.dropped} older ticks from "
                f"{iso(cu.dropped_first_ms)} to {iso(cu.dropped_last_ms)} were dropped "
                f"(beyond misfire_grace {grace:g}s; only the newest {SKIP_CAP} are "
                "recorded one by one)"
            )
            sends.append(
                Send(
                    job.key,
                    cu.dropped_last_ms,
                    Trigger.CATCH_UP,
                    Kind.SUMMARY,
                    reason,
                    cu.dropped,
                    cu.dropped_first_ms,
                )
            )
        for due_ms in cu.skipped:
            late = (now_ms - due_ms) / 1000
            reason = (
                f"missed while no beat was running: {late:.1f}s late, beyond "
                f"misfire_grace {grace:g}s"
            )
            sends.append(Send(job.key, due_ms, Trigger.CATCH_UP, Kind.SKIP, reason))
        if cu.fire_ms is not None:
            sends.append(Send(job.key, cu.fire_ms, Trigger.CATCH_UP, Kind.FIRE, None, cu.coalesced))
        return True
