"""Alert evaluation: job health and alert rules in, incidents and notifications out.

Pure: no I/O and no clock (``now`` is handed in). The leading beat feeds it the health of
every job (from run history) and the incidents already active (from Redis), and stores
what comes out; a failover therefore neither forgets nor re-announces an incident. One
notification goes out when an incident starts firing and one when it resolves.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from .cron import CronSchedule
from .policy import AlertPolicy

#: Run ids an incident carries at most (the most recent first).
MAX_RUN_IDS = 10
SIGNATURE_HEADER = "X-Systemprompt-Signature"


class AlertKind(StrEnum):
    LATE = "late"
    FAILING = "failing"
    TOO_LONG = "too_long"
    SKIPPED = "skipped"


class AlertState(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class JobHealth:
    """What run history says about one job (see :mod:`jobs_core.job_health`)."""

    job: str
    #: The instant the latest successful run stood for: its tick, else its start.
    last_success_at: datetime | None = None
    #: When the latest failed, timed-out or lost run ended: the newest one since the
    #: latest success, else the newest among the job's 10 newest runs
    #: (``jobs_core.history_queries.HEALTH_RECENT_RUNS``; None when an older one is all
    #: there is: looking further would read every run of a job that never fails). The
    #: only field bounded by a number of runs; no alert depends on it (a metric does).
    last_failure_at: datetime | None = None
    #: Failed, timed-out or lost runs since the latest success (skipped ones do not count).
    consecutive_failures: int = 0
    #: Ids of those failed runs, newest first (at most MAX_RUN_IDS).
    failing_run_ids: tuple[str, ...] = ()
    #: ``(run id, started_at)`` of every run running now, newest first, however many
    #: runs came after it (queued and retrying runs are not running).
    running: tuple[tuple[str, datetime], ...] = ()
    #: ``(run id, status)`` of the latest finished run, however many unfinished runs
    #: came after it.
    last_finished: tuple[str, str] | None = None


@dataclass(frozen=True)
class JobWatch:
    """A job as the evaluator sees it: its rules and whether it is expected to run."""

    job: str
    alerts: AlertPolicy
    cron: CronSchedule | None
    #: Scheduled, enabled in the profile and not paused: only such a job can be late.
    active: bool
    #: Since when this job has been expected to run (the evaluator's first sight of it
    #: active): a job that never succeeded is late counting from here.
    watched_since: datetime


@dataclass(frozen=True)
class Incident:
    job: str
    kind: AlertKind
    since: datetime
    run_ids: tuple[str, ...] = ()
    message: str = ""

    @property
    def key(self) -> str:
        return incident_key(self.job, self.kind)

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "kind": self.kind.value,
            "since": self.since.isoformat(),
            "run_ids": list(self.run_ids),
            "message": self.message,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Incident:
        return cls(
            job=str(data["job"]),
            kind=AlertKind(data["kind"]),
            since=datetime.fromisoformat(str(data["since"])),
            run_ids=tuple(str(r) for r in data.get("run_ids") or ()),
            message=str(data.get("message") or ""),
        )


def incident_key(job: str, kind: AlertKind) -> str:
    return f"{job}|{kind.value}"


@dataclass(frozen=True)
class Notification:
    incident: Incident
    state: AlertState
    at: datetime

    def to_json(self) -> dict[str, Any]:
        """The JSON event POSTed to a webhook."""
        return {
            **self.incident.to_json(),
            "state": self.state.value,
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True)
class Evaluation:
    #: Every incident active after this evaluation, by :func:`incident_key`.
    active: dict[str, Incident]
    notifications: list[Notification] = field(default_factory=list)


#: Next cron instants already computed in a round, by (schedule, reference): jobs on one
#: schedule that succeeded for the same tick share it (most of a round's CPU otherwise).
NextAfterMemo = dict[tuple[CronSchedule, datetime], datetime]


def late_deadline(
    watch: JobWatch, health: JobHealth | None, memo: NextAfterMemo | None = None
) -> tuple[datetime, datetime] | None:
    """``(expected, deadline)``: the next success is expected for ``expected``, and the
    job is late from just after ``deadline``; None: it cannot be late."""
    late_after = watch.alerts.late_after
    if late_after is None or watch.cron is None or not watch.active:
        return None
    reference = watch.watched_since
    if health is not None and health.last_success_at is not None:
        reference = max(reference, health.last_success_at)
    if memo is None:
        expected = watch.cron.next_after(reference)
    else:
        # next_after depends on the instant only, not on the zone it is written in.
        key = (watch.cron, reference)
        known = memo.get(key)
        expected = (
            known if known is not None else memo.setdefault(key, watch.cron.next_after(reference))
        )
    return expected, expected + timedelta(seconds=late_after)


def _late(
    watch: JobWatch, health: JobHealth | None, now: datetime, memo: NextAfterMemo | None = None
) -> Incident | None:
    found = late_deadline(watch, health, memo)
    if found is None:
        return None
    expected, deadline = found
    if now <= deadline:
        return None
    late_after = watch.alerts.late_after
    last = (
        f"last success for {health.last_success_at.isoformat()}"
        if health is not None and health.last_success_at is not None
        else "no successful run yet"
    )
    return Incident(
        watch.job,
        AlertKind.LATE,
        deadline,
        message=(
            f"{watch.job} is late: a successful run was expected for {expected.isoformat()} "
            f"(+{late_after:g}s); {last}"
        ),
    )


def _failing(watch: JobWatch, health: JobHealth | None, now: datetime) -> Incident | None:
    threshold = watch.alerts.consecutive_failures
    if threshold is None or health is None or health.consecutive_failures < threshold:
        return None
    return Incident(
        watch.job,
        AlertKind.FAILING,
        health.last_failure_at or now,
        run_ids=health.failing_run_ids[:MAX_RUN_IDS],
        message=f"{watch.job} failed {health.consecutive_failures} times in a row",
    )


def _too_long(watch: JobWatch, health: JobHealth | None, now: datetime) -> Incident | None:
    limit = watch.alerts.max_duration
    if limit is None or health is None:
        return None
    over = sorted(
        (
            (started, run_id)
            for run_id, started in health.running
            if now - started > timedelta(seconds=limit)
        ),
        reverse=True,
    )
    if not over:
        return None
    oldest = over[-1][0]
    return Incident(
        watch.job,
        AlertKind.TOO_LONG,
        oldest + timedelta(seconds=limit),
        run_ids=tuple(run_id for _, run_id in over[:MAX_RUN_IDS]),
        message=(
            f"{watch.job}: {len(over)} run(s) still running after {limit:g}s "
            f"(the oldest started {oldest.isoformat()})"
        ),
    )


def _skipped(watch: JobWatch, health: JobHealth | None, now: datetime) -> Incident | None:
    if not watch.alerts.on_skip or health is None or health.last_finished is None:
        return None
    run_id, status = health.last_finished
    if status != "skipped":
        return None
    return Incident(
        watch.job,
        AlertKind.SKIPPED,
        now,
        run_ids=(run_id,),
        message=f"{watch.job}: its latest run {run_id} was skipped",
    )


def conditions(
    watch: JobWatch, health: JobHealth | None, now: datetime, memo: NextAfterMemo | None = None
) -> list[Incident]:
    """The incidents whose condition holds for ``watch`` at ``now`` (``memo``: see
    :data:`NextAfterMemo`, one per round)."""
    found = (
        _late(watch, health, now, memo),
        _failing(watch, health, now),
        _too_long(watch, health, now),
        _skipped(watch, health, now),
    )
    return [incident for incident in found if incident is not None]


def evaluate(
    watches: Iterable[JobWatch],
    health: Mapping[str, JobHealth],
    active: Mapping[str, Incident],
    now: datetime,
) -> Evaluation:
    """The incidents active at ``now`` and the notifications that takes.

    An incident already active keeps its ``since`` (its run ids are refreshed) and is not
    announced again; one whose condition no longer holds, or whose job is gone from the
    job table, resolves.
    """
    current: dict[str, Incident] = {}
    memo: NextAfterMemo = {}
    for watch in watches:
        for incident in conditions(watch, health.get(watch.job), now, memo):
            current[incident.key] = incident
    return settle(current, active, now)


def settle(
    current: Mapping[str, Incident], active: Mapping[str, Incident], now: datetime
) -> Evaluation:
    """The incidents whose conditions hold (``current``, by key) against those active
    before: what :func:`evaluate` returns (also :mod:`jobs_core.alert_rounds`)."""
    out: dict[str, Incident] = {}
    notes: list[Notification] = []
    for key, incident in current.items():
        before = active.get(key)
        if before is None:
            out[key] = incident
            notes.append(Notification(incident, AlertState.FIRING, now))
        else:
            out[key] = Incident(
                before.job, before.kind, before.since, incident.run_ids, incident.message
            )
    for key, before in active.items():
        if key not in current:
            notes.append(Notification(before, AlertState.RESOLVED, now))
    return Evaluation(out, notes)


# --------------------------------------------------------------------------- webhooks


def signature(body: bytes, secret: str) -> str:
    """The ``X-Systemprompt-Signature`` value: ``sha256=<hex HMAC-SHA256 of body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str) -> bool:
    """Whether ``header`` is the signature of ``body`` (constant-time comparison)."""
    return hmac.compare_digest(signature(body, secret), header)


def json_body(note: Notification) -> bytes:
    return json.dumps(note.to_json(), separators=(",", ":"), sort_keys=True).encode()


def slack_body(note: Notification) -> bytes:
    """A Slack incoming-webhook message for ``note``."""
    icon = ":rotating_light:" if note.state is AlertState.FIRING else ":white_check_mark:"
    text = f"{icon} [{note.state.value}] {note.incident.kind.value}: {note.incident.message}"
    if note.incident.run_ids:
        text += f" (runs: {', '.join(note.incident.run_ids)})"
    return json.dumps({"text": text}, separators=(",", ":")).encode()
