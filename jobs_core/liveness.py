"""Dead-worker detection: the heartbeat a worker publishes, and what becomes of the runs
of a worker that stopped publishing it.

A worker's main process writes its heartbeat under :meth:`Keys.worker` every
:data:`HEARTBEAT_EVERY_S` with a TTL of :data:`HEARTBEAT_TTL_S`, and into the
:attr:`Keys.WORKERS` hash. The leading beat looks every :data:`REAP_EVERY_S`: a worker
in the hash whose key expired is dead, and each run still ``running`` on it is marked
``lost`` and, when its policy allows another attempt, re-queued as the next attempt.

A retry waits for its countdown as a message its worker holds, unacknowledged (Celery's
ETA): kombu keeps it in Redis (:data:`KOMBU_UNACKED`) and hands it to another worker only
after the visibility timeout, up to half an hour with the default policies, while the
run shows ``retrying`` with a next attempt long past. So a worker also publishes, with
its heartbeat, the messages it holds (:meth:`Keys.held`), and when it dies the beat puts
each one still unacknowledged back on its queue (:func:`redelivery`): the run's next
attempt comes at its instant, by another worker, and the run stays as history says.
Pure here: the I/O lives in ``worker.heartbeat`` and ``beat.reaper``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from .history import Run
from .wire import RunMessage, task_message, task_name

#: A worker whose heartbeat is older than this is dead.
HEARTBEAT_TTL_S = 10.0
#: How often a worker renews its heartbeat: two renewals may fail (a slow Redis, a
#: busy host) before the key expires.
HEARTBEAT_EVERY_S = 3.0
#: How often the leading beat looks for dead workers. Worst case from a node's death
#: to its runs marked lost: HEARTBEAT_TTL_S + REAP_EVERY_S (plus the queries).
REAP_EVERY_S = 5.0
#: A re-queued run keeps its job's overlap lock (the lock holds the run id, and the next
#: attempt takes it over): for at least this long, the time for a worker to pick up
#: the next attempt, which then sets the lock's usual TTL itself.
LOCK_HANDOVER_S = 60.0


@dataclass(frozen=True)
class Heartbeat:
    """What a worker publishes about itself."""

    hostname: str
    pid: int
    #: When this worker process started, on PostgreSQL's clock (the clock of the runs'
    #: ``started_at``); None without a database.
    boot: datetime | None = None

    def dumps(self) -> str:
        boot = self.boot.isoformat() if self.boot is not None else None
        return json.dumps({"hostname": self.hostname, "pid": self.pid, "boot": boot})

    @classmethod
    def loads(cls, text: str | bytes) -> Heartbeat | None:
        """The heartbeat, or None when the text is not one (written by someone else)."""
        try:
            data = json.loads(text)
            boot = data.get("boot")
            return cls(
                hostname=str(data["hostname"]),
                pid=int(data["pid"]),
                boot=datetime.fromisoformat(boot) if boot else None,
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


@dataclass(frozen=True)
class Suspect:
    """A worker whose runs may be orphaned: all of them (dead), or those started before
    ``started_before`` (it restarted under the same name)."""

    hostname: str
    started_before: datetime | None
    dead: bool


def suspects(
    known: Mapping[str, str], alive: Mapping[str, bool], restarted: Mapping[str, str]
) -> list[Suspect]:
    """The workers to look at: ``known`` ones that are not ``alive`` (their key expired),
    and the ``restarted`` ones (value: the ISO instant their new life began)."""
    out = [Suspect(h, None, True) for h in sorted(known) if not alive.get(h, False)]
    dead = {s.hostname for s in out}
    for hostname, instant in sorted(restarted.items()):
        if hostname in dead:
            continue  # all of its runs are handled as those of a dead worker
        try:
            before = datetime.fromisoformat(instant)
        except ValueError:
            continue
        if before.tzinfo is not None:
            out.append(Suspect(hostname, before, False))
    return out


@dataclass(frozen=True)
class LostRun:
    """What to do with one orphaned run: record it lost, and maybe re-queue it."""

    run_id: str
    job_key: str
    attempt: int
    worker: str
    message: str
    #: ``(queue, message)`` of the next attempt; None: the run is finished as lost.
    requeue: tuple[str, str] | None
    #: The job takes an overlap lock: released when the run is finished, else kept for
    #: the next attempt (a tick taking it first would skip the run's next attempt).
    locks: bool = True


def plan_lost(run: Run, worker: Suspect, queue: str | None, *, locks: bool = True) -> LostRun:
    """The fate of ``run``, running on ``worker`` when it died (``queue``: the job's
    queue in this beat's registry, None when the job is unknown here; ``locks``: its
    overlap policy takes a lock)."""
    assert run.worker is not None
    why = (
        f"worker {run.worker} stopped (no heartbeat for {HEARTBEAT_TTL_S:g}s)"
        if worker.dead
        else f"worker {run.worker} restarted"
    )
    where = f"lost: {why} during attempt {run.attempt}/{run.max_attempts}"
    if queue is None:
        message = f"{where}; not re-queued: the job is not in this beat's profile"
        return LostRun(run.id, run.job_key, run.attempt, run.worker, message, None, locks)
    if run.attempt >= run.max_attempts:
        message = f"{where}; no attempt left"
        return LostRun(run.id, run.job_key, run.attempt, run.worker, message, None, locks)
    current = RunMessage(
        run_id=run.id,
        trigger=run.trigger,
        scheduled_for=run.scheduled_for,
        enqueued_at=run.enqueued_at,
        attempt=run.attempt,
        parameters=run.parameters,
    )
    # The run id is the task id, as for every delivery of this run.
    sent = task_message(
        task_name(run.job_key), current.next_attempt_kwargs(), queue=queue, task_id=run.id
    )
    message = f"{where}; attempt {run.attempt + 1} re-queued"
    return LostRun(run.id, run.job_key, run.attempt, run.worker, message, sent, locks)


# ---------------------------------------------------------------- held messages

#: kombu's Redis transport keeps every delivered, unacknowledged message in this hash
#: (delivery tag -> JSON ``[message, exchange, routing key]``) and its delivery instant in
#: this sorted set; acknowledging removes both, the visibility timeout restores it.
KOMBU_UNACKED = "unacked"
KOMBU_UNACKED_INDEX = "unacked_index"
#: Prefix of kombu's set of the queues bound to an exchange, members
#: ``routing key + SEP + pattern + SEP + queue``.
KOMBU_BINDINGS = "_kombu.binding."
KOMBU_SEP = "\x06\x16"


def redelivery(raw: str, bindings: Iterable[str] = ()) -> tuple[str, str] | None:
    """kombu's restore of one unacknowledged message (``raw``: its entry in
    :data:`KOMBU_UNACKED`; ``bindings``: the members of its exchange's binding set):
    the queue to push it to and the message flagged redelivered, as kombu's own restore
    after the visibility timeout does. None when it cannot be placed exactly as kombu
    would (a priority queue, an exchange bound to no queue): the visibility timeout
    restores it then."""
    try:
        message, exchange, routing_key = json.loads(raw)
        properties = message["properties"]
        priority = properties.get("priority") or 0
        if not isinstance(routing_key, str) or not isinstance(exchange, str | None):
            return None
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    if priority != 0:
        return None  # kombu pushes those to a per-priority list: left to kombu
    if exchange:
        queues = sorted(
            {
                parts[2]
                for member in bindings
                if len(parts := member.split(KOMBU_SEP)) == 3 and parts[0] == routing_key
            }
        )
    else:
        queues = [routing_key]
    if len(queues) != 1 or not queues[0]:
        return None
    if isinstance(message.get("headers"), dict):
        message["headers"]["redelivered"] = True
    delivery = properties.get("delivery_info")
    if isinstance(delivery, dict):
        delivery["redelivered"] = True
    return queues[0], json.dumps(message)
