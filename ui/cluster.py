"""The live state kept in Redis and Celery: paused jobs, active alerts, the beat leader,
the workers online, and the log of what dashboard users did."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from beat.control import Pause, last_sent, leader_status, pauses
from beat.incidents import active_incidents
from jobs_core.alerts import Incident
from jobs_core.wire import Keys

log = logging.getLogger("ui.actions")
ACTIONS_KEPT = 1000


@dataclass(frozen=True)
class Action:
    at: datetime
    user: str
    action: str
    job: str
    run: str | None = None
    detail: str | None = None


@dataclass
class Workers:
    """Workers that answered the last ``ping`` broadcast (refreshed in the background, so
    no page waits for a broadcast's timeout)."""

    names: list[str] = field(default_factory=list)
    checked_at: float | None = None
    error: str | None = None


class Cluster:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.workers = Workers()
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- reads

    def paused(self) -> dict[str, Pause]:
        """Paused jobs with who paused them, when and why."""
        return pauses(self.client)

    def incidents(self) -> dict[str, list[Incident]]:
        """The alerts firing now (as the leading beat keeps them), by job key, each job's
        in kind order: one read of the whole set, whatever the number of jobs."""
        by_job: dict[str, list[Incident]] = {}
        for incident in sorted(active_incidents(self.client).values(), key=_incident_order):
            by_job.setdefault(incident.job, []).append(incident)
        return by_job

    def leader(self) -> dict[str, Any] | None:
        return leader_status(self.client)

    def last_tick(self, job_key: str) -> datetime | None:
        return last_sent(self.client, job_key)

    def actions(self, job_key: str | None = None, limit: int = 10) -> list[Action]:
        raw = self.client.lrange(Keys.UI_ACTIONS, 0, ACTIONS_KEPT - 1)
        out: list[Action] = []
        for item in raw:
            try:
                data = json.loads(item)
                entry = Action(
                    datetime.fromisoformat(data["at"]),
                    str(data["user"]),
                    str(data["action"]),
                    str(data["job"]),
                    data.get("run"),
                    data.get("detail"),
                )
            except (ValueError, KeyError, TypeError):
                continue
            if job_key is None or entry.job == job_key:
                out.append(entry)
                if len(out) >= limit:
                    break
        return out

    # ---------------------------------------------------------------- writes

    def record(self, action: Action) -> None:
        """Keep who did what (newest first, the last ACTIONS_KEPT) and log it."""
        entry = {
            "at": action.at.isoformat(),
            "user": action.user,
            "action": action.action,
            "job": action.job,
            "run": action.run,
            "detail": action.detail,
        }
        pipe = self.client.pipeline()
        pipe.lpush(Keys.UI_ACTIONS, json.dumps(entry))
        pipe.ltrim(Keys.UI_ACTIONS, 0, ACTIONS_KEPT - 1)
        pipe.execute()
        log.info(
            "ui action=%s job=%s run=%s user=%s", action.action, action.job, action.run, action.user
        )

    # ---------------------------------------------------------------- workers

    def refresh_workers(self, celery_app: Any, timeout: float = 1.0) -> None:
        """Ping every worker (blocking for ``timeout``); called from a background thread."""
        try:
            replies = celery_app.control.ping(timeout=timeout) or []
            names = sorted(name for reply in replies for name in reply)
            error = None
        except Exception as exc:  # the broker may be down: show it, keep the page up
            names, error = [], type(exc).__name__  # its text may hold the broker URL
        with self._lock:
            self.workers = Workers(names, time.time(), error)


def _incident_order(incident: Incident) -> tuple[str, str]:
    return incident.job, incident.kind.value


def now() -> datetime:
    return datetime.now(UTC)
