"""Which jobs a round of the monitor evaluates again (jobs_core.alert_rounds), and that
evaluating only those gives what evaluating every job gives, round after round."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from jobs_core.alert_rounds import RoundEvaluator, next_change
from jobs_core.alerts import AlertKind, Incident, JobHealth, JobWatch, evaluate
from jobs_core.cron import CronSchedule
from jobs_core.policy import AlertPolicy
from tests.hypothesis_budget import examples

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HOURLY = CronSchedule("0 0 * * * *")
S = timedelta(seconds=1)


def watch(job: str = "ext/a", *, active: bool = True, **alerts: object) -> JobWatch:
    return JobWatch(job, AlertPolicy(**alerts), HOURLY, active, T0)  # type: ignore[arg-type]


# ----------------------------------------------------------------- next_change


def test_late_changes_just_after_its_deadline_and_never_once_late() -> None:
    w = watch(late_after=600)
    h = JobHealth("ext/a", last_success_at=T0)
    deadline = T0 + timedelta(hours=1, minutes=10)
    assert next_change(w, h, T0) == deadline
    assert next_change(w, h, deadline) == deadline  # not late yet at the deadline itself
    assert next_change(w, h, deadline + S) is None  # late: only a success ends it


def test_no_change_by_time_for_failing_skipped_inactive_or_switched_off() -> None:
    h = JobHealth(
        "ext/a", consecutive_failures=5, failing_run_ids=("f",), last_finished=("s", "skipped")
    )
    all_but_late = {"late_after": None, "consecutive_failures": 1, "on_skip": True}
    assert next_change(watch(**all_but_late), h, T0) is None
    assert next_change(watch(active=False), h, T0) is None
    assert next_change(watch(late_after=None, max_duration=None), h, T0) is None


def test_too_long_changes_when_the_next_running_run_crosses_its_limit() -> None:
    w = watch(late_after=None, max_duration=60)
    running = (("c", T0 + 30 * S), ("b", T0 + 10 * S), ("a", T0 - 120 * S))
    h = JobHealth("ext/a", running=running)
    # "a" is over already; "b" joins at T0+70s, then "c" at T0+90s, then nothing.
    assert next_change(w, h, T0) == T0 + 70 * S
    assert next_change(w, h, T0 + 70 * S) == T0 + 70 * S
    assert next_change(w, h, T0 + 71 * S) == T0 + 90 * S
    assert next_change(w, h, T0 + 91 * S) is None


def test_the_earliest_of_late_and_too_long() -> None:
    w = watch(late_after=0, max_duration=60 * 60 * 2)
    h = JobHealth("ext/a", last_success_at=T0, running=(("r", T0),))
    assert next_change(w, h, T0) == T0 + timedelta(hours=1)


# ----------------------------------------------------------------- RoundEvaluator


def test_only_changed_due_and_unstored_jobs_are_evaluated_again() -> None:
    jobs = [f"ext/j{i}" for i in range(10)]
    watches = {j: watch(j, late_after=600, consecutive_failures=1) for j in jobs}
    health = {j: JobHealth(j, last_success_at=T0) for j in jobs}
    ev = RoundEvaluator(full_every=timedelta(days=1))
    first = ev.evaluate(watches, health, {}, T0)
    assert (ev.evaluated, ev.was_full, first.active) == (10, True, {})

    ev.evaluate(watches, health, {}, T0 + 15 * S)
    assert (ev.evaluated, ev.was_full) == (0, False)

    # New history for one job (equal values in a new object count as unchanged).
    health = {j: JobHealth(j, last_success_at=T0) for j in jobs}
    health["ext/j3"] = JobHealth("ext/j3", last_success_at=T0, consecutive_failures=1)
    out = ev.evaluate(watches, health, {}, T0 + 30 * S)
    assert ev.evaluated == 1 and set(out.active) == {"ext/j3|failing"}
    stored = out.active

    # A new watch for one job (paused).
    watches = {**watches, "ext/j5": replace(watches["ext/j5"], active=False)}
    ev.evaluate(watches, health, stored, T0 + 45 * S)
    assert ev.evaluated == 1

    # The incident found is not among the active ones (lost from Redis): that job again,
    # and it is announced again, as a full evaluation would.
    out = ev.evaluate(watches, health, {}, T0 + 60 * S)
    assert ev.evaluated == 1 and [n.incident.key for n in out.notifications] == ["ext/j3|failing"]

    # The late deadline of the 9 active jobs comes: those only, and they fire.
    late_at = T0 + timedelta(hours=1, minutes=10) + S
    out = ev.evaluate(watches, health, out.active, late_at)
    assert ev.evaluated == 9 and not ev.was_full
    assert {i.job for i in out.active.values() if i.kind is AlertKind.LATE} == set(jobs) - {
        "ext/j5"
    }


def test_full_rounds_every_full_every_after_a_reset_and_when_the_clock_goes_back() -> None:
    watches = {"ext/a": watch()}
    health: dict[str, JobHealth] = {}
    ev = RoundEvaluator(full_every=timedelta(minutes=5))
    ev.evaluate(watches, health, {}, T0)
    ev.evaluate(watches, health, {}, T0 + timedelta(minutes=4, seconds=59))
    assert not ev.was_full
    ev.evaluate(watches, health, {}, T0 + timedelta(minutes=5))
    assert ev.was_full
    ev.evaluate(watches, health, {}, T0 + timedelta(minutes=4))
    assert ev.was_full  # the clock went back
    ev.evaluate(watches, health, {}, T0 + timedelta(minutes=4, seconds=15))
    assert not ev.was_full
    ev.reset()
    ev.evaluate(watches, health, {}, T0 + timedelta(minutes=4, seconds=30))
    assert ev.was_full


def test_a_job_gone_from_the_table_resolves_its_incidents() -> None:
    watches = {"ext/a": watch(consecutive_failures=1)}
    health = {"ext/a": JobHealth("ext/a", consecutive_failures=1, failing_run_ids=("r",))}
    ev = RoundEvaluator()
    first = ev.evaluate(watches, health, {}, T0)
    out = ev.evaluate({}, health, first.active, T0 + 15 * S)
    assert out.active == {}
    assert [(n.incident.key, n.state.value) for n in out.notifications] == [
        ("ext/a|failing", "resolved")
    ]


# ----------------------------------------------------------------- the property

JOBS = ("ext/a", "ext/b", "ext/c")
CRONS = (CronSchedule("* * * * * *"), CronSchedule("0 * * * * *"), HOURLY)


@dataclass
class _History:
    """A job's runs, as few facts as JobHealth is made of."""

    last_success_at: datetime | None = None
    failures: list[tuple[str, datetime]] = field(default_factory=list)  # since the success
    running: list[tuple[str, datetime]] = field(default_factory=list)  # newest first
    last_finished: tuple[str, str] | None = None
    runs: int = 0

    def health(self, job: str) -> JobHealth:
        return JobHealth(
            job,
            last_success_at=self.last_success_at,
            last_failure_at=self.failures[0][1] if self.failures else None,
            consecutive_failures=len(self.failures),
            failing_run_ids=tuple(r for r, _ in self.failures[:10]),
            running=tuple(self.running),
            last_finished=self.last_finished,
        )

    def apply(self, what: str, now: datetime) -> None:
        self.runs += 1
        run = f"r{self.runs}"
        if what == "start":
            self.running.insert(0, (run, now - timedelta(seconds=self.runs % 7)))
            return
        if what == "finish-running" and self.running:
            run = self.running.pop()[0]
            what = "succeeded"
        if what == "succeeded":
            self.last_success_at, self.failures = now.replace(microsecond=0), []
        elif what == "failed":
            self.failures.insert(0, (run, now))
        self.last_finished = (run, "skipped" if what == "skipped" else what)


_policy = st.builds(
    AlertPolicy,
    late_after=st.none() | st.sampled_from([0.0, 1.0, 30.0, 600.0]),
    consecutive_failures=st.none() | st.integers(1, 3),
    max_duration=st.none() | st.sampled_from([0.0, 1.0, 20.0, 90.0]),
    on_skip=st.booleans(),
)
_step = st.one_of(
    st.tuples(
        st.just("run"),
        st.sampled_from(JOBS),
        st.sampled_from(["start", "finish-running", "succeeded", "failed", "skipped"]),
    ),
    st.tuples(st.just("time"), st.sampled_from([0, 1, 15, 59, 60, 61, 600, 3600, -1, -15])),
    # Onto the earliest instant a job changes by time alone, or just past it (µs).
    st.tuples(
        st.just("to-next-change"),
        st.none() | st.sampled_from(JOBS),  # None: the earliest of all jobs
        st.sampled_from([0, 0, 1, 1_000_000, -1]),
    ),
    st.tuples(st.just("pause-or-resume"), st.sampled_from(JOBS)),
    st.tuples(st.just("policy"), st.sampled_from(JOBS), _policy),
    st.tuples(st.just("lose-incidents"), st.booleans()),
)


@settings(max_examples=examples(300), deadline=None)
@given(
    policies=st.tuples(_policy, _policy, _policy),
    crons=st.tuples(*(st.sampled_from(CRONS) for _ in JOBS)),
    steps=st.lists(_step, max_size=40),
    full_every=st.sampled_from([timedelta(minutes=5), timedelta(days=365)]),
)
def test_incremental_rounds_give_what_a_full_evaluation_gives(
    policies: tuple[AlertPolicy, ...],
    crons: tuple[CronSchedule, ...],
    steps: list[tuple[object, ...]],
    full_every: timedelta,
) -> None:
    """Whatever runs start and end, however the clock moves (onto a deadline, just
    past it, back), whatever is paused or lost from Redis: each round's incidents and
    notifications are those of evaluating every job."""
    now = T0 + timedelta(microseconds=123)
    watches = {
        j: JobWatch(j, p, c, True, now) for j, p, c in zip(JOBS, policies, crons, strict=True)
    }
    histories = {j: _History() for j in JOBS}
    ev = RoundEvaluator(full_every=full_every)
    active: dict[str, Incident] = {}

    def round_() -> None:
        nonlocal active
        health = {j: h.health(j) for j, h in histories.items()}
        expected = evaluate(watches.values(), health, active, now)
        got = ev.evaluate(watches, health, active, now)
        assert got.active == expected.active
        assert got.notifications == expected.notifications
        active = got.active

    round_()
    for step in steps:
        kind = step[0]
        if kind == "run":
            _, job, what = step
            histories[str(job)].apply(str(what), now)
        elif kind == "time":
            now += timedelta(seconds=int(str(step[1])))
        elif kind == "to-next-change":
            _, one, after = step
            changes = [
                next_change(w, histories[j].health(j), now)
                for j, w in watches.items()
                if one is None or j == one
            ]
            at = min((c for c in changes if c is not None), default=None)
            if at is not None:
                now = at + timedelta(microseconds=int(str(after)))
        elif kind == "pause-or-resume":
            w = watches[str(step[1])]
            watches[w.job] = replace(w, active=not w.active, watched_since=now)
        elif kind == "policy":
            _, job, policy = step
            watches[str(job)] = replace(watches[str(job)], alerts=policy)  # type: ignore[arg-type]
        elif kind == "lose-incidents" and active:
            # A round whose result was not stored, or an incident dropped from Redis.
            active = {} if step[1] else dict(list(active.items())[1:])
        round_()
