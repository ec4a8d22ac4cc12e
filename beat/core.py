"""The beat's scheduling decisions, as a pure object: plain data in, plain decisions out.

:class:`Scheduler` is handed the job table and ``now`` (integer epoch milliseconds) and
says what to send, what to record as skipped and when the next instant is. It does no
I/O and reads no clock, so every decision (catch-up, stall coalescing, reload) is
tested in milliseconds; :mod:`beat.service` does the sending around it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from jobs_core.registry import JobDefinition, JobRegistry
from jobs_core.status import Trigger

from .schedule import (
    NEVER_MS,
    CatchUp,
    Cron,
    DueHeap,
    Window,
    catch_up,
    iso,
    jitter_offset_ms,
    newest_ticks,
    next_ms,
    to_ms,
)

#: Catch-up records at most this many skipped ticks one by one per job, then summarises.
SKIP_CAP = 100
#: ``catch_up`` counts the ticks it summarises up to this many ("at least" beyond).
DROP_COUNT_CAP = 10_000
#: :meth:`Scheduler.start` and :meth:`Scheduler.reload` call their ``pause`` callback
#: every this many jobs.
PAUSE_EVERY = 1024
#: Cron's finest period: a beat woken less than this after an instant cannot have a
#: second tick of any job due, so that instant's bucket goes out as it is.
MIN_PERIOD_MS = 1000


@dataclass(frozen=True, slots=True)
class Entry:
    """A scheduled job as the core sees it.

    ``cron`` is bounded (a :class:`~beat.schedule.Window`) when the job has
    ``start_at``/``end_at``; ``jitter_ms`` > 0 delays each tick by its offset.
    """

    key: str
    cron: Cron
    grace_s: float
    jitter_ms: int = 0


def entry(job: JobDefinition) -> Entry:
    """``job`` (which has a schedule) as the core sees it."""
    assert job.cron is not None
    policy = job.policy
    cron: Cron = job.cron
    if policy.start_at is not None or policy.end_at is not None:
        cron = Window(
            job.cron,
            to_ms(policy.start_at) if policy.start_at else None,
            to_ms(policy.end_at) if policy.end_at else None,
        )
    return Entry(job.key, cron, policy.misfire_grace, round(policy.jitter * 1000))


def entries(registry: JobRegistry, exclude: Collection[str] = ()) -> list[Entry]:
    """The jobs of ``registry`` the beat schedules: enabled, with a schedule, not in
    ``exclude`` (jobs that used up their ``max_runs``)."""
    if not registry.scheduler_enabled:
        return []
    return [entry(j) for j in registry if j.cron is not None and j.enabled and j.key not in exclude]


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
    #: On-time FIRE of a jittered job: sent at ``due_ms + jitter_ms``.
    jitter_ms: int = 0


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
    each send; :meth:`reload` on a profile change; :meth:`clear` on losing the lease;
    :meth:`drop` for a job that used up its runs.
    A job sits in the heap once, at its next instant, so each tick is planned once.

    Jobs with jitter sit in a heap of their own, at their tick's instant plus its
    offset, and go out through :meth:`take`: the fast path and its prebuilt batches
    stay the plain jobs' alone.
    """

    def __init__(self) -> None:
        self._heap = DueHeap()
        #: Jittered jobs, at their delayed instant; ``_nominal`` holds the tick it is for
        #: and the tick after it (None past an end_at), whose gap caps the offset.
        self._jheap = DueHeap()
        self._nominal: dict[str, tuple[int, int | None]] = {}
        self._jobs: dict[str, Entry] = {}
        #: Jobs sharing a schedule share one cron slot, so they share next-instant
        #: and catch-up arithmetic within one call.
        self._slot: dict[str, int] = {}
        #: Last tick handled (sent, recorded, or not sent because disabled) per job, as
        #: this process saw it: catch-up starts there when Redis lost its own record.
        self._last: dict[str, int] = {}

    # ---------------------------------------------------------------- reading

    def __len__(self) -> int:
        return len(self._heap) + len(self._jheap)

    def next_due(self) -> int | None:
        """When the next send is due (a jittered tick's delayed instant included)."""
        due = self._heap.next_due()
        if self._jheap:
            jdue = self._jheap.next_due()
            if due is None or (jdue is not None and jdue < due):
                return jdue
        return due

    def head(self) -> tuple[int, list[str]] | None:
        """The earliest instant of the jobs without jitter and its jobs, not removed.
        The list is the heap's own: it stays the same object until that instant is
        taken or the table changes."""
        return self._heap.peek()

    def jittered(self) -> dict[str, int]:
        """Jittered jobs -> the instant of the tick each is waiting to send."""
        return {key: nominal for key, (nominal, _) in self._nominal.items()}

    def last(self, job_key: str) -> int | None:
        return self._last.get(job_key)

    # ---------------------------------------------------------------- table

    def start(
        self,
        jobs: Iterable[Entry],
        now_ms: int,
        last: Mapping[str, int],
        pause: Callable[[], object] | None = None,
    ) -> Plan:
        """Become leader at ``now_ms``: catch up every job from its last handled tick.

        ``last`` is what Redis remembers; this process's own memory counts too (the
        newer wins). Ticks in ``(last, now]`` within a job's grace (``now - tick <=
        grace``: a tick exactly the grace old still fires) fire once (the newest,
        trigger catch-up); older ones are recorded as skipped (the newest
        :data:`SKIP_CAP` one by one, the rest in one summary). A job never handled
        starts at its first instant after ``now_ms``.

        ``pause`` is called every :data:`PAUSE_EVERY` jobs: 100,000 jobs take seconds,
        which the caller may need for its own upkeep (renewing its lease).
        """
        self._set_jobs(jobs)
        self._heap = DueHeap()
        self._jheap = DueHeap()
        self._nominal = {}
        sends: list[Send] = []
        failures: list[Failure] = []
        memo: dict[tuple[int, int, int, float], CatchUp] = {}
        nexts: dict[tuple[int, int], int] = {}
        for i, (key, job) in enumerate(self._jobs.items()):
            if pause is not None and i % PAUSE_EVERY == PAUSE_EVERY - 1:
                pause()
            prev = max(last.get(key, 0), self._last.get(key, 0))
            if job.jitter_ms:
                self._resume_jittered(job, prev, now_ms, sends, failures, memo)
                continue
            if prev and not self._catch_up(job, prev, now_ms, sends, failures, memo):
                continue
            due = self._next(job, now_ms, nexts, failures)
            if due is not None and due < NEVER_MS:
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
        kept.update((key, due) for due, key in self._jheap.entries())
        nominal = self._nominal
        self._set_jobs(jobs)
        self._heap = DueHeap()
        self._jheap = DueHeap()
        self._nominal = {}
        failures: list[Failure] = []
        nexts: dict[tuple[int, int], int] = {}
        changed = 0
        for key, job in self._jobs.items():
            before = old.get(key)
            same = (
                before is not None
                and key in kept
                and before.cron == job.cron
                and before.jitter_ms == job.jitter_ms
            )
            if job.jitter_ms:
                if same and key in nominal:
                    self._nominal[key] = nominal[key]
                    self._jheap.push(key, kept[key])
                else:
                    changed += 1
                    self._push_jittered(job, now_ms, failures)
                continue
            due: int | None
            if same:
                due = kept[key]
            else:
                changed += 1
                due = self._next(job, now_ms, nexts, failures)
            if due is not None and due < NEVER_MS:
                self._heap.push(key, due)
        return changed, failures

    def clear(self) -> None:
        """Leadership lost: nothing is due until :meth:`start` again."""
        self._heap = DueHeap()
        self._jheap = DueHeap()
        self._nominal = {}

    def drop(self, job_key: str) -> None:
        """Stop scheduling ``job_key`` (it used up its ``max_runs``) until a reload or a
        start hands it in again."""
        self._heap.discard(job_key)
        self._jheap.discard(job_key)
        self._jobs.pop(job_key, None)
        self._slot.pop(job_key, None)
        self._nominal.pop(job_key, None)

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
            if nxt < NEVER_MS:  # else past its end_at: done
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
        memo: dict[tuple[int, int, int, float], CatchUp] = {}
        if self._jheap:
            self._take_jittered(now_ms, sends, failures, memo)
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
                if nxt is not None and nxt < NEVER_MS:
                    heap.push(key, nxt)
                continue
            sends.append(Send(key, due_ms, Trigger.SCHEDULE, Kind.FIRE))
            if nxt < NEVER_MS:
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

    def _take_jittered(
        self,
        now_ms: int,
        sends: list[Send],
        failures: list[Failure],
        memo: dict[tuple[int, int, int, float], CatchUp],
    ) -> None:
        """:meth:`take` for the jittered jobs whose delayed instant has come."""
        for due_ms, key in self._jheap.pop_due(now_ms):
            job = self._jobs.get(key)
            ticks = self._nominal.pop(key, None)
            if job is None or ticks is None:
                continue  # dropped, or a place left behind by a reload
            nominal, following = ticks
            if following is not None:
                after = self._compute_next(key, following, failures)
                if after is None:
                    continue
                nxt_due = following + self._offset(job, following, after)
                if nxt_due <= now_ms:
                    # More than this tick is due: the process stalled. Catch up as a
                    # job nobody sent (the newest in grace once, older ones skipped).
                    self._resume_jittered(job, nominal - 1, now_ms, sends, failures, memo)
                    continue
                self._nominal[key] = (following, None if after >= NEVER_MS else after)
                self._jheap.push(key, nxt_due)
            sends.append(
                Send(key, nominal, Trigger.SCHEDULE, Kind.FIRE, jitter_ms=due_ms - nominal)
            )

    def _offset(self, job: Entry, nominal: int, following: int | None) -> int:
        gap = None if following is None or following >= NEVER_MS else following - nominal
        return jitter_offset_ms(job.key, nominal, job.jitter_ms, gap)

    def _push_jittered(self, job: Entry, after_ms: int, failures: list[Failure]) -> None:
        """Put jittered ``job`` in its heap at its first tick after ``after_ms``."""
        nominal = self._compute_next(job.key, after_ms, failures)
        if nominal is None or nominal >= NEVER_MS:
            return
        self._push_tick(job, nominal, failures)

    def _push_tick(self, job: Entry, nominal: int, failures: list[Failure]) -> None:
        following = self._compute_next(job.key, nominal, failures)
        if following is None:
            return
        self._nominal[job.key] = (nominal, None if following >= NEVER_MS else following)
        self._jheap.push(job.key, nominal + self._offset(job, nominal, following))

    def _resume_jittered(
        self,
        job: Entry,
        prev: int,
        now_ms: int,
        sends: list[Send],
        failures: list[Failure],
        memo: dict[tuple[int, int, int, float], CatchUp],
    ) -> None:
        """Schedule jittered ``job`` at ``now_ms``, its ticks up to ``prev`` handled.

        The newest tick at or before ``now_ms`` whose delayed instant is still ahead is
        not missed: it waits for its instant. (Offsets stay below the gap to the next
        tick, so only the newest can be waiting.) Older ticks are caught up as usual.
        """
        hi = now_ms
        if prev:
            try:
                newest, _, _ = newest_ticks(job.cron, prev, now_ms, 1)
                waiting = newest[-1] if newest else None
                if waiting is not None:
                    following = next_ms(job.cron, waiting)
                    if waiting + self._offset(job, waiting, following) > now_ms:
                        hi = waiting - 1
                    else:
                        waiting = None
            except Exception as exc:
                failures.append(Failure(job.key, "catch-up", f"{type(exc).__name__}: {exc}"))
                return
            if hi > prev and not self._catch_up(job, prev, now_ms, sends, failures, memo, hi):
                return
            if waiting is not None:
                self._push_tick(job, waiting, failures)
                return
        self._push_jittered(job, now_ms, failures)

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
        """The next instant of job ``key`` after ``after_ms`` (:data:`NEVER_MS` past its
        end_at); None (a failure) if its schedule raised: one broken schedule must not
        stop the others."""
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
        memo: dict[tuple[int, int, int, float], CatchUp],
        hi_ms: int | None = None,
    ) -> bool:
        """Append the sends for the ticks of ``job`` in ``(last_ms, hi_ms]`` (default
        ``now_ms``), missed as seen at ``now_ms``.

        False (a failure) if its schedule raised.
        """
        grace = job.grace_s
        hi = now_ms if hi_ms is None else hi_ms
        # Jobs sharing a schedule and a last tick share the arithmetic (thousands of
        # per-second jobs after a stall must not each walk the cron engine).
        key = (self._slot[job.key], last_ms, hi, grace)
        cu = memo.get(key)
        if cu is None:
            try:
                cu = catch_up(job.cron, last_ms, now_ms, grace, skip_cap=SKIP_CAP, hi_ms=hi)
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
