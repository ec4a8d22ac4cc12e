"""The beat: the highly available scheduler process.

Several beats may run at once (the usual deployment runs two). One is the leader
(:mod:`beat.lease`); it sleeps exactly until the next due instant of the job table
(:mod:`beat.schedule`), then claims and sends every tick due at that instant in one Lua
call (:mod:`beat.ticks`). Each tick ``(job key, scheduled instant)`` is claimed in Redis
in the same atomic script that pushes its message (the job's last handled instant must
move forward), so it goes out at most once however many beats run, restart or split;
the same mark tells a new leader what was missed: it fires the ticks missed within
``misfire_grace`` once (coalesced, trigger ``catch-up``) and
records older ticks as skipped. The process loop lives in :mod:`beat.service`.

Entry points: :func:`run_beat` (what ``systemprompt infra beat`` calls) and
``python -m beat --profile PATH --id NAME --lease-ttl 5 --log-level INFO``.
Runtime control for the CLI: :mod:`beat.control` (``disable``, ``enable``,
``is_disabled``, ``disabled_jobs``, ``pauses``, ``scheduled_runs``, ``last_sent``,
``leader_status``).

Redis keys (all prefixed ``sp:``; see :class:`jobs_core.wire.Keys`):

==============================  ==========  ================================================
key                             type        meaning
==============================  ==========  ================================================
``sp:beat:lease``               string      leader lease: random token, ``PX`` lease TTL
``sp:beat:leader``              hash        leader heartbeat: beat_id, host, pid, since,
                                            heartbeat, heartbeat_ms, lease_ttl_ms, jobs;
                                            expires after three lease TTLs
``sp:beat:last``                hash        job key -> epoch ms of the last tick handled
                                            (sent, recorded skipped, or not sent because
                                            the job was disabled); a tick is claimed by
                                            moving it forward; catch-up starts there
``sp:jobs:disabled``            set         job keys paused at runtime (enable/disable)
``sp:jobs:pause-notes``         hash        job key -> JSON note, by, at of its pause
``sp:beat:runs``                hash        job key -> scheduled runs sent (jobs with
                                            ``max_runs`` only; the claim script counts)
``sp:beat:templates``           hash        template id -> queue and tick message with
                                            placeholders (see :mod:`beat.ticks`)
``sp:beat:session``             string      id of the running deployment session: kept
                                            alive by every beat process, expires three
                                            lease TTLs after the last beat stopped
``sp:beat:bootstrapped``        string      session id whose bootstrap jobs were enqueued
``<queue>`` (e.g. ``jobs``)     list        Celery's queue lists, as kombu's Redis
                                            transport stores them
==============================  ==========  ================================================

Bootstrap jobs run once per *fresh deployment start*: the first time a beat becomes
leader while no beat process has been alive for three lease TTLs (the session key had
expired or never existed): the first start ever, ``compose up`` after ``compose down``,
a restart of the only beat after a pause longer than that. A failover, a rolling restart
of one beat of two, a quick crash-restart, and a Redis restart under running beats are
not fresh starts (a running beat re-creates the session with the id it remembers). The
enqueueing and the "done for this session" mark are one Lua script, so a crash in between
cannot run them twice or lose them.
"""

from __future__ import annotations

from .control import (
    Pause,
    disable,
    disabled_jobs,
    enable,
    is_disabled,
    last_sent,
    leader_status,
    pauses,
    scheduled_runs,
)
from .service import Beat, run_beat

__all__ = [
    "Beat",
    "Pause",
    "disable",
    "disabled_jobs",
    "enable",
    "is_disabled",
    "last_sent",
    "leader_status",
    "pauses",
    "run_beat",
    "scheduled_runs",
]
