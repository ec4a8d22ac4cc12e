"""The pure alert evaluation (jobs_core.alerts), the alert profile keys and signatures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs_core.alerts import (
    AlertKind,
    AlertState,
    Incident,
    JobHealth,
    JobWatch,
    Notification,
    evaluate,
    json_body,
    signature,
    slack_body,
    verify,
)
from jobs_core.cron import CronSchedule
from jobs_core.errors import ProfileError
from jobs_core.job_health import health_from_row
from jobs_core.policy import AlertPolicy
from jobs_core.profile import parse_profile

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HOURLY = CronSchedule("0 0 * * * *")


def watch(
    *,
    active: bool = True,
    cron: CronSchedule | None = HOURLY,
    since: datetime = T0,
    **alerts: object,
) -> JobWatch:
    return JobWatch("ext/job", AlertPolicy(**alerts), cron, active, since)  # type: ignore[arg-type]


def kinds(w: JobWatch, h: JobHealth | None, now: datetime) -> set[AlertKind]:
    result = evaluate([w], {"ext/job": h} if h else {}, {}, now)
    return {i.kind for i in result.active.values()}


def test_late_counts_from_the_last_success_tick_plus_interval_plus_grace() -> None:
    w = watch(late_after=600)
    ok = JobHealth("ext/job", last_success_at=T0 + timedelta(hours=1))
    # the next tick after the success is 14:00; late after 14:10, not at 14:10 itself
    assert kinds(w, ok, T0 + timedelta(hours=2, minutes=10)) == set()
    assert kinds(w, ok, T0 + timedelta(hours=2, minutes=10, seconds=1)) == {AlertKind.LATE}


def test_a_job_that_never_succeeded_is_late_counting_from_when_it_was_first_watched() -> None:
    w = watch(late_after=60, since=T0 + timedelta(minutes=30))
    assert kinds(w, None, T0 + timedelta(hours=1, minutes=1)) == set()
    assert kinds(w, None, T0 + timedelta(hours=1, minutes=1, seconds=1)) == {AlertKind.LATE}


def test_disabled_manual_and_switched_off_jobs_are_never_late() -> None:
    later = T0 + timedelta(days=30)
    assert kinds(watch(active=False), None, later) == set()
    assert kinds(watch(cron=None), None, later) == set()
    assert kinds(watch(late_after=None), None, later) == set()


def test_jobs_on_one_schedule_each_count_from_their_own_success() -> None:
    """One round computes a schedule's next instant once per reference (a memo): a job
    that succeeded later is not late because another on its schedule is."""
    jobs = {"ext/a": T0, "ext/b": T0 + timedelta(hours=1), "ext/c": T0}
    watches = [JobWatch(j, AlertPolicy(late_after=600), HOURLY, True, T0) for j in jobs]
    health = {j: JobHealth(j, last_success_at=at) for j, at in jobs.items()}
    result = evaluate(watches, health, {}, T0 + timedelta(hours=1, minutes=11))
    assert sorted(i.job for i in result.active.values()) == ["ext/a", "ext/c"]
    assert {i.since for i in result.active.values()} == {T0 + timedelta(hours=1, minutes=10)}


def test_failing_from_the_threshold_with_the_failed_run_ids() -> None:
    w = watch(consecutive_failures=3, late_after=None)
    two = JobHealth("ext/job", consecutive_failures=2, failing_run_ids=("b", "a"))
    three = JobHealth("ext/job", consecutive_failures=3, failing_run_ids=("c", "b", "a"))
    assert kinds(w, two, T0) == set()
    result = evaluate([w], {"ext/job": three}, {}, T0)
    (incident,) = result.active.values()
    assert incident.kind is AlertKind.FAILING and incident.run_ids == ("c", "b", "a")
    assert [n.state for n in result.notifications] == [AlertState.FIRING]


def test_too_long_names_only_the_runs_past_max_duration() -> None:
    w = watch(max_duration=1800, late_after=None)
    h = JobHealth(
        "ext/job",
        running=(("old", T0 - timedelta(minutes=31)), ("new", T0 - timedelta(minutes=5))),
    )
    (incident,) = evaluate([w], {"ext/job": h}, {}, T0).active.values()
    assert incident.kind is AlertKind.TOO_LONG and incident.run_ids == ("old",)
    assert incident.since == T0 - timedelta(minutes=1)


def test_skipped_only_with_on_skip() -> None:
    h = JobHealth("ext/job", last_finished=("r1", "skipped"))
    assert kinds(watch(late_after=None), h, T0) == set()
    assert kinds(watch(late_after=None, on_skip=True), h, T0) == {AlertKind.SKIPPED}
    ok = JobHealth("ext/job", last_finished=("r2", "succeeded"))
    assert kinds(watch(late_after=None, on_skip=True), ok, T0) == set()


def test_one_notification_per_incident_and_one_when_it_resolves() -> None:
    w = watch(consecutive_failures=3, late_after=None)
    failing = {"ext/job": JobHealth("ext/job", consecutive_failures=3, failing_run_ids=("x",))}
    first = evaluate([w], failing, {}, T0)
    assert [n.state for n in first.notifications] == [AlertState.FIRING]
    worse = {"ext/job": JobHealth("ext/job", consecutive_failures=4, failing_run_ids=("y", "x"))}
    again = evaluate([w], worse, first.active, T0 + timedelta(minutes=1))
    assert again.notifications == []
    (kept,) = again.active.values()
    assert kept.since == next(iter(first.active.values())).since and kept.run_ids == ("y", "x")
    healed = evaluate([w], {"ext/job": JobHealth("ext/job")}, again.active, T0 + timedelta(2))
    assert healed.active == {}
    assert [(n.state, n.incident.run_ids) for n in healed.notifications] == [
        (AlertState.RESOLVED, ("y", "x"))
    ]


def test_incidents_of_a_job_gone_from_the_table_resolve() -> None:
    old = Incident("gone/job", AlertKind.FAILING, T0, ("r",), "failed")
    result = evaluate([], {}, {old.key: old}, T0)
    assert result.active == {}
    assert [n.state for n in result.notifications] == [AlertState.RESOLVED]


_health = st.builds(
    JobHealth,
    job=st.just("ext/job"),
    last_success_at=st.none() | st.datetimes(timezones=st.just(UTC)),
    consecutive_failures=st.integers(0, 6),
    running=st.lists(
        st.tuples(st.sampled_from("abc"), st.datetimes(timezones=st.just(UTC))), max_size=3
    ).map(tuple),
    last_finished=st.none() | st.tuples(st.just("r"), st.sampled_from(["skipped", "failed"])),
)


@given(
    rounds=st.lists(_health, min_size=1, max_size=8),
    on_skip=st.booleans(),
    active=st.booleans(),
)
def test_notifications_alternate_firing_and_resolved_per_incident(
    rounds: list[JobHealth], on_skip: bool, active: bool
) -> None:
    """Whatever history does, an incident is announced firing, then resolved, in turn,
    and the active set is exactly what the last round's conditions say."""
    w = watch(active=active, on_skip=on_skip, consecutive_failures=3, max_duration=60)
    state: dict[str, Incident] = {}
    last: dict[str, AlertState] = {}
    now = datetime(2030, 1, 1, tzinfo=UTC)
    for i, h in enumerate(rounds):
        result = evaluate([w], {"ext/job": h}, state, now + timedelta(minutes=i))
        for note in result.notifications:
            before = last.get(note.incident.key, AlertState.RESOLVED)
            assert note.state != before
            last[note.incident.key] = note.state
        state = result.active
        firing = {k for k, s in last.items() if s is AlertState.FIRING}
        assert firing == set(state)


def test_signature_is_hmac_sha256_of_the_body() -> None:
    note = Notification(Incident("a/b", AlertKind.LATE, T0, (), "late"), AlertState.FIRING, T0)
    body = json_body(note)
    sig = signature(body, "s3cret")
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify(body, "s3cret", sig)
    assert not verify(body + b" ", "s3cret", sig)
    assert not verify(body, "other", sig)
    event = json.loads(body)
    assert event["job"] == "a/b" and event["kind"] == "late" and event["state"] == "firing"
    assert event["run_ids"] == [] and event["message"] == "late"
    assert "late" in json.loads(slack_body(note))["text"]


def test_health_row_from_history() -> None:
    started = datetime.fromtimestamp(1714568400.5, UTC)
    row = ("a/b", T0, T0, T0 + timedelta(hours=1), 2, ["f2", "f1"], ["r3"], [started])
    h = health_from_row((*row, "f2", "failed", T0))
    assert h.consecutive_failures == 2 and h.failing_run_ids == ("f2", "f1")
    assert h.running == (("r3", started),)
    assert h.last_finished == ("f2", "failed")
    # A failure since the latest success comes from the query's count and wins.
    assert h.last_failure_at == T0 + timedelta(hours=1)
    nothing = ("a/b", None, None, None, None, None, None, None, None, None, None)
    assert health_from_row(nothing) == JobHealth("a/b")


def test_health_row_last_failure_from_the_recent_runs() -> None:
    """No failure since the latest success: the latest failure is the newest failed run
    among the recent ones, if any."""
    h = health_from_row(("a/b", T0, T0, None, 0, None, None, None, "s2", "succeeded", T0))
    assert h.last_failure_at == T0 and h.consecutive_failures == 0
    assert h.last_finished == ("s2", "succeeded") and h.running == ()
    h = health_from_row(("a/b", T0, T0, None, 0, None, None, None, "s2", "succeeded", None))
    assert h.last_failure_at is None


# ----------------------------------------------------------------- profile keys


def test_alert_keys_layer_like_every_policy_key() -> None:
    p = parse_profile(
        "scheduler:\n"
        "  defaults:\n"
        "    alerts: {late_after: 5m, on_skip: true}\n"
        "  alerting:\n"
        "    check_every: 2s\n"
        "    webhooks: [{url: 'https://hooks.example/x', secret: s, format: slack}]\n"
        "  metrics: {beat_port: 9100, worker_port: '9101'}\n"
        "log_format: json\n"
    )
    alerts = p.scheduler.defaults.policy().alerts
    assert alerts == AlertPolicy(late_after=300, consecutive_failures=3, on_skip=True)
    assert p.scheduler.metrics.beat_port == 9100 and p.scheduler.metrics.worker_port == 9101
    assert p.scheduler.alerting.check_every == 2.0
    assert p.log_format == "json"
    hook = p.scheduler.alerting.webhooks[0]
    assert "hooks.example/x" not in repr(hook) and "'s'" not in repr(hook)


def test_off_turns_one_alert_off() -> None:
    p = parse_profile("scheduler: {defaults: {alerts: {late_after: off, max_duration: null}}}")
    alerts = p.scheduler.defaults.policy().alerts
    assert alerts.late_after is None and alerts.max_duration is None
    assert alerts.consecutive_failures == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("scheduler: {defaults: {alerts: {late: 1m}}}", "unknown key 'late'"),
        ("scheduler: {defaults: {alerts: {consecutive_failures: 0}}}", "count of failures"),
        ("scheduler: {alerting: {webhooks: [{url: 'ftp://h/x'}]}}", "http:// or https://"),
        ("scheduler: {alerting: {webhooks: [{url: 'http://h', format: xml}]}}", "json"),
        ("scheduler: {metrics: {beat_port: 0}}", "TCP port"),
        ("log_format: yaml", "text or json"),
    ],
)
def test_bad_alert_and_metrics_keys_are_located(text: str, expected: str) -> None:
    with pytest.raises(ProfileError) as err:
        parse_profile(text, path="profile.yaml")
    assert expected in str(err.value) and str(err.value).startswith("profile.yaml:1:")
