"""The wire contract between the CLI, the beat and the workers.

Everything two processes must agree on lives here and nowhere else: task names, the JSON
run message (Celery protocol 2 as kombu's Redis transport stores it, built by hand so the
beat can pipeline thousands of ticks), tick run ids, and every Redis key name. JSON only:
a message body is ``[args, kwargs, embed]`` serialised with :mod:`json`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from .errors import InvalidMessage
from .status import Trigger
from .text import cut, quoted

DEFAULT_QUEUE = "jobs"
TASK_PREFIX = "jobs."
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: The dead-letter list keeps the newest this many messages.
DEAD_LETTER_LIMIT = 10_000


class Keys:
    """Every Redis key the project reads or writes (all under the ``sp:`` prefix)."""

    PREFIX = "sp:"
    #: Leader lease: a random token, ``SET NX PX <lease_ttl>``; renewed and released by token.
    LEASE = f"{PREFIX}beat:lease"
    #: Hash written by the leader at every renewal: beat_id, host, pid, since, heartbeat...
    LEADER = f"{PREFIX}beat:leader"
    #: Hash ``job key -> epoch ms`` of the last tick handled (sent, recorded skipped or
    #: deliberately not sent because the job is disabled). Catch-up starts after it, and
    #: the claim script's compare-and-set on it is what sends every tick at most once.
    LAST = f"{PREFIX}beat:last"
    #: Set of job keys paused at runtime (``jobs disable``); read at every tick.
    DISABLED = f"{PREFIX}jobs:disabled"
    #: Hash job key -> JSON ``{"note", "by", "at"}`` of a pause, beside ``DISABLED``;
    #: ``jobs enable`` removes both.
    PAUSE_NOTES = f"{PREFIX}jobs:pause-notes"
    #: Hash job key -> scheduled runs sent so far, kept for jobs with ``max_runs`` only;
    #: moved by the claim script in the same step that sends the tick.
    SCHEDULED_RUNS = f"{PREFIX}beat:runs"
    #: Hash: template id -> "<queue>\n<message with placeholders>" (see beat.ticks).
    TEMPLATES = f"{PREFIX}beat:templates"
    #: Id of the current beat "session": alive while at least one beat process is running.
    SESSION = f"{PREFIX}beat:session"
    #: Session id whose bootstrap jobs were enqueued.
    BOOTSTRAPPED = f"{PREFIX}beat:bootstrapped"
    #: List of the dashboard's actions, newest first (JSON: at, user, action, job, run).
    UI_ACTIONS = f"{PREFIX}ui:actions"
    #: Prefix of the per-job overlap lock (value: the run id holding it).
    LOCK_PREFIX = f"{PREFIX}lock:"
    #: Prefix of a job's waiting ticks (``overlap: buffer_one|buffer_all``): sorted set
    #: ``run id -> scheduled instant (epoch ms)``; the first one takes the lock next.
    WAITING_PREFIX = f"{PREFIX}waiting:"
    #: Prefix of the hash ``run id -> epoch ms (Redis clock)`` of each waiting tick's
    #: latest try: a tick that stopped trying (its message lost) leaves the set.
    WAITING_SEEN_PREFIX = f"{PREFIX}waiting-seen:"
    #: List of the messages workers refused (JSON :class:`DeadLetter` entries), newest
    #: first, trimmed to :data:`DEAD_LETTER_LIMIT`.
    DEAD_LETTERS = f"{PREFIX}dead-letters"
    #: Hash ``<job key>|<kind> -> incident JSON`` of the alerts firing now; written by the
    #: leading beat, read by ``jobs health``; a new leader takes it over as it is.
    ALERTS = f"{PREFIX}alerts:active"
    #: Hash ``job key -> epoch ms`` since when an active job is expected to run (a job
    #: that never succeeded is late counting from there); dropped while it is inactive.
    ALERT_WATCH = f"{PREFIX}alerts:watched"

    #: Hash ``worker hostname -> heartbeat JSON`` of the workers that have announced
    #: themselves (rewritten at every heartbeat); the leading beat drops a worker once
    #: it has been declared dead and its runs handled.
    WORKERS = f"{PREFIX}workers"
    #: Hash ``worker hostname -> ISO instant`` (PostgreSQL's clock) written by a worker
    #: that starts under a name that was already known: its runs started before that
    #: instant belong to its previous life and are lost.
    WORKERS_RESTARTED = f"{PREFIX}workers-restarted"
    #: Prefix of a worker's liveness key (heartbeat JSON, ``SET PX`` with a short TTL).
    WORKER_PREFIX = f"{PREFIX}workers:"
    #: Prefix of the hash ``delivery tag -> run id`` of the messages a worker holds
    #: without having started them (retries and re-queues waiting for their countdown,
    #: or for a pool slot once it passed),
    #: rewritten with its heartbeat when it changes: when the worker dies, the leading
    #: beat puts those messages back on their queue at once instead of leaving them to
    #: the visibility timeout.
    HELD_PREFIX = f"{PREFIX}held:"

    #: Prefix of a run's cancel request (JSON: by, terminate, at), kept for
    #: :data:`CANCEL_TTL_S`: a queued run that finds it never starts; a running run's
    #: worker polls it and cancels the job's coroutine.
    CANCEL_PREFIX = f"{PREFIX}cancel:"
    #: Prefix of the marker of a recent tick that a backfill enqueued (value "1"), kept
    #: while the beat could still send that tick (misfire grace): the worker then claims
    #: the tick's run before running it, so the beat's message for it does not run twice.
    BACKFILLED_PREFIX = f"{PREFIX}backfilled:"

    @classmethod
    def lock(cls, job_key: str) -> str:
        return cls.LOCK_PREFIX + job_key

    @classmethod
    def waiting(cls, job_key: str) -> str:
        return cls.WAITING_PREFIX + job_key

    @classmethod
    def waiting_seen(cls, job_key: str) -> str:
        return cls.WAITING_SEEN_PREFIX + job_key

    @classmethod
    def worker(cls, hostname: str) -> str:
        return cls.WORKER_PREFIX + hostname

    @classmethod
    def held(cls, hostname: str) -> str:
        return cls.HELD_PREFIX + hostname

    @classmethod
    def cancel(cls, run_id: str) -> str:
        return cls.CANCEL_PREFIX + run_id

    @classmethod
    def backfilled(cls, run_id: str) -> str:
        return cls.BACKFILLED_PREFIX + run_id


#: Compare-and-delete of an overlap lock: KEYS[1] the lock, ARGV[1] the run id expected
#: to hold it. Returns 1 when it was deleted.
RELEASE_LOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

#: Seconds a cancel request is kept: longer than any run waits in a queue.
CANCEL_TTL_S = 7 * 86400
#: Longest ``triggered_by`` and ``reason`` a run message carries.
MAX_TRIGGERED_BY = 200
MAX_REASON = 2000


def task_name(job_key: str) -> str:
    """``maintenance/cleanup`` -> ``jobs.maintenance.cleanup`` (what Flower shows)."""
    extension, _, job = job_key.partition("/")
    return f"{TASK_PREFIX}{extension}.{job}"


_TICK_NS = uuid.UUID("6f1c2a52-58f4-4d0e-9a0e-3c3b8f6c1d2e")
_TICK_NS_BYTES = _TICK_NS.bytes


def tick_run_id(job_key: str, scheduled_for: datetime) -> str:
    """The run id of a scheduled tick: the same for every delivery of that tick."""
    return _tick_id(f"{job_key}@{scheduled_for.timestamp():.6f}")


def tick_run_id_ms(job_key: str, epoch_ms: int) -> str:
    """:func:`tick_run_id` of the instant ``epoch_ms`` (milliseconds since the epoch).

    The beat computes thousands a second; this skips the datetime. The text hashed is
    the one ``tick_run_id`` formats: ``.6f`` of a whole number of milliseconds.
    """
    if epoch_ms < 0:
        return tick_run_id(job_key, datetime.fromtimestamp(epoch_ms / 1000, UTC))
    seconds, millis = divmod(epoch_ms, 1000)
    return _tick_id(f"{job_key}@{seconds}.{millis:03d}000")


def _tick_id(name: str) -> str:
    # str(uuid.uuid5(_TICK_NS, name)), formatted from the digest directly (a third of
    # the time): version nibble 5, RFC 4122 variant bits 10.
    h = hashlib.sha1(_TICK_NS_BYTES + name.encode()).hexdigest()
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


_EMBED: dict[str, Any] = {}  # no callbacks, errbacks, chain or chord
_COMPACT = (",", ":")


def job_kwargs(
    *,
    run_id: str,
    trigger: Trigger,
    scheduled_for: datetime | None,
    enqueued_at: datetime,
    attempt: int = 1,
    parameters: dict[str, Any] | None = None,
    triggered_by: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The JSON-safe keyword arguments every job task takes."""
    kwargs: dict[str, Any] = {
        "run_id": run_id,
        "trigger": Trigger(trigger).value,
        "scheduled_for": scheduled_for.isoformat() if scheduled_for else None,
        "enqueued_at": enqueued_at.isoformat(),
        "attempt": attempt,
        "parameters": parameters or {},
    }
    if triggered_by is not None:
        kwargs["triggered_by"] = triggered_by
    if reason is not None:
        kwargs["reason"] = reason
    return kwargs


def _kwargsrepr(kwargs: dict[str, Any]) -> str:
    # What Flower shows as the task's kwargs: the identity of the run, not every field.
    # (the run id is the task id, which Flower shows anyway)
    shown = {k: kwargs.get(k) for k in ("trigger", "scheduled_for")}
    if kwargs.get("attempt", 1) != 1:
        shown["attempt"] = kwargs["attempt"]
    if kwargs.get("parameters"):
        shown["parameters"] = kwargs["parameters"]
    if kwargs.get("skip_reason"):
        shown["skip_reason"] = kwargs["skip_reason"]
    return repr(shown)


def task_message(
    task: str,
    kwargs: dict[str, Any],
    *,
    queue: str = DEFAULT_QUEUE,
    task_id: str | None = None,
    kwargsrepr: str | None = None,
) -> tuple[str, str]:
    """Return ``(redis_list_key, payload)`` for one task message; LPUSH it to enqueue."""
    tid = task_id or str(uuid.uuid4())
    envelope = {
        "body": json.dumps([[], kwargs, _EMBED], separators=_COMPACT),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": task,
            "id": tid,
            "root_id": tid,
            "retries": 0,
            "kwargsrepr": kwargsrepr if kwargsrepr is not None else _kwargsrepr(kwargs),
        },
        "properties": {
            "correlation_id": tid,
            "reply_to": "",
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return queue, json.dumps(envelope, separators=_COMPACT)


#: Placeholders of a :class:`TickTemplate`. ``@@`` appears nowhere else in a template
#: (checked), so the beat's Lua script can split the text on it.
TASK, RUN_ID, SCHEDULED, ENQUEUED = "@@TASK@@", "@@RUN_ID@@", "@@SCHEDULED@@", "@@ENQUEUED@@"
_MARKERS = (TASK, RUN_ID, SCHEDULED, ENQUEUED)


class TickTemplate:
    """The message of a tick with the per-tick values left as placeholders.

    All jobs of one queue with the same parameters share one template; a tick's message
    is the template with the task name, run id and instants filled in. The beat stores
    the templates in Redis and sends only those values, so a tick costs ~150 bytes on
    the wire instead of ~700, and no JSON encoding. The values filled in (task names,
    UUIDs, ISO 8601 instants) need no JSON escaping, which makes splicing them safe.
    The run id doubles as kombu's delivery tag: it is unique per tick.
    """

    __slots__ = ("_parts", "id", "queue", "text")

    def __init__(
        self,
        queue: str,
        trigger: Trigger,
        parameters_json: str,
        triggered_by: str | None = None,
    ) -> None:
        kwargs = job_kwargs(
            run_id=RUN_ID,
            trigger=trigger,
            scheduled_for=None,
            enqueued_at=datetime.now(UTC),
            parameters=json.loads(parameters_json),
            triggered_by=triggered_by,
        )
        kwargs.update(scheduled_for=SCHEDULED, enqueued_at=ENQUEUED)
        _, text = task_message(TASK, kwargs, queue=queue, task_id=RUN_ID)
        envelope = json.loads(text)
        envelope["properties"]["delivery_tag"] = RUN_ID
        self.text = json.dumps(envelope, separators=_COMPACT)
        markers = sum(self.text.count(m) for m in _MARKERS)
        if self.text.count("@@") != 2 * markers:
            raise ValueError("'@@' in a queue name or parameter: no template for this job")
        self.queue = queue
        self.id = hashlib.sha1(f"{queue}\n{self.text}".encode()).hexdigest()[:16]
        self._parts = _split(self.text)

    def markers(self) -> list[str]:
        """The placeholders of the text, in order (the same for every template)."""
        return [part for part in self._parts if part in _MARKERS]

    def render(self, task: str, run_id: str, scheduled_for: str, enqueued_at: str) -> str:
        values = {TASK: task, RUN_ID: run_id, SCHEDULED: scheduled_for, ENQUEUED: enqueued_at}
        return "".join(values.get(part, part) for part in self._parts)


def _split(text: str) -> tuple[str, ...]:
    parts: list[str] = []
    for i, piece in enumerate(text.split("@@")):
        parts.append(f"@@{piece}@@" if i % 2 else piece)
    return tuple(parts)


@lru_cache(maxsize=4096)
def tick_template(
    queue: str, trigger: Trigger, parameters_json: str, triggered_by: str | None = None
) -> TickTemplate | None:
    """The shared template, or None when this job's values cannot be templated."""
    try:
        return TickTemplate(queue, trigger, parameters_json, triggered_by)
    except ValueError:
        return None


def decode(payload: str | bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(headers, kwargs)`` of a stored message (ours, or Celery's base64 form)."""
    envelope = json.loads(payload)
    body = envelope["body"]
    if envelope.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    _args, kwargs, _embed = json.loads(body)
    return envelope["headers"], kwargs


# --------------------------------------------------------------------------- run messages

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: History stores the attempt in a PostgreSQL integer.
MAX_ATTEMPT = 2**31 - 1
_TRIGGERS = frozenset(t.value for t in Trigger)


def _refuse(field: str, value: Any, allowed: str) -> InvalidMessage:
    return InvalidMessage(f"{field}: {quoted(value, 80)} is not {allowed}", field=field)


def _instant(kwargs: dict[str, Any], field: str) -> datetime | None:
    value = kwargs.get(field)
    if value is None:
        return None
    allowed = "an ISO 8601 instant with a UTC offset"
    if not isinstance(value, str) or len(value) > 64:
        raise _refuse(field, value, allowed)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise _refuse(field, value, allowed) from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise _refuse(field, value, allowed)
    return when


def _text(kwargs: dict[str, Any], field: str, longest: int) -> str | None:
    value = kwargs.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > longest:
        raise _refuse(field, value, f"a string of at most {longest} characters")
    return value


@dataclass(frozen=True)
class RunMessage:
    """The keyword arguments of a job task message, validated.

    Every process that builds or reads a run message goes through this class: the CLI
    and the beat build them with :func:`job_kwargs`, the worker refuses (dead-letters)
    whatever :meth:`from_kwargs` refuses, before anything runs. Unknown keys are
    ignored, so a newer producer can add fields without older workers refusing them.
    """

    run_id: str
    trigger: Trigger
    scheduled_for: datetime | None
    enqueued_at: datetime | None
    attempt: int
    parameters: dict[str, Any]
    skip_reason: str | None = None
    redelivered: bool = False  # from the broker's delivery info (or a re-queued message)
    triggered_by: str | None = None  # user@host, a beat's id, backfill/rerun by user@host
    reason: str | None = None  # the operator's reason (`jobs run --reason`)
    # Times this run was put back because PostgreSQL or Redis failed it. Celery's own
    # retry count also counts job retries and overlap waits, so it cannot bound these.
    infra_errors: int = 0

    @classmethod
    def from_kwargs(cls, kwargs: Any) -> RunMessage:
        """Parse and check ``kwargs``; raise :class:`InvalidMessage` naming the field."""
        if not isinstance(kwargs, dict):
            raise InvalidMessage(
                f"the keyword arguments are {type(kwargs).__name__}, not a JSON object"
            )
        for field in ("run_id", "trigger", "attempt"):
            if field not in kwargs:
                raise InvalidMessage(f"{field}: missing", field=field)
        run_id = kwargs["run_id"]
        if not isinstance(run_id, str) or not _UUID.fullmatch(run_id):
            raise _refuse("run_id", run_id, "a UUID (lower-case, with dashes)")
        trigger = kwargs["trigger"]
        if not isinstance(trigger, str) or trigger not in _TRIGGERS:
            allowed = "one of " + ", ".join(t.value for t in Trigger)
            raise _refuse("trigger", trigger, allowed)
        attempt = kwargs["attempt"]
        if isinstance(attempt, bool) or not isinstance(attempt, int):
            raise _refuse("attempt", attempt, "a whole number")
        if not 1 <= attempt <= MAX_ATTEMPT:
            raise _refuse("attempt", attempt, f"from 1 to {MAX_ATTEMPT}")
        parameters = kwargs.get("parameters")
        if parameters is None:
            parameters = {}
        if not isinstance(parameters, dict):
            raise _refuse("parameters", parameters, "a JSON object")
        skip_reason = kwargs.get("skip_reason")
        if skip_reason is not None and not isinstance(skip_reason, str):
            raise _refuse("skip_reason", skip_reason, "a string")
        redelivered = kwargs.get("redelivered", False)
        if not isinstance(redelivered, bool):
            raise _refuse("redelivered", redelivered, "true or false")
        triggered_by = _text(kwargs, "triggered_by", MAX_TRIGGERED_BY)
        reason = _text(kwargs, "reason", MAX_REASON)
        infra_errors = kwargs.get("infra_errors", 0)
        if isinstance(infra_errors, bool) or not isinstance(infra_errors, int) or infra_errors < 0:
            raise _refuse("infra_errors", infra_errors, "a whole number, 0 or more")
        return cls(
            run_id=run_id,
            trigger=Trigger(trigger),
            scheduled_for=_instant(kwargs, "scheduled_for"),
            enqueued_at=_instant(kwargs, "enqueued_at"),
            attempt=attempt,
            parameters=parameters,
            skip_reason=skip_reason,
            redelivered=redelivered,
            triggered_by=triggered_by,
            reason=reason,
            infra_errors=infra_errors,
        )

    @classmethod
    def from_body(cls, body: Any) -> RunMessage:
        """Check a decoded protocol-2 body ``[args, kwargs, embed]`` and parse its kwargs."""
        if not isinstance(body, list | tuple) or len(body) != 3:
            raise InvalidMessage("the body is not [args, kwargs, embed] (Celery protocol 2)")
        args, kwargs, embed = body
        if args:
            raise InvalidMessage(f"positional arguments {quoted(args, 80)}: jobs take none")
        if embed is not None and not isinstance(embed, dict):
            raise InvalidMessage(f"embed: {quoted(embed, 80)} is not a JSON object")
        return cls.from_kwargs(kwargs)

    def next_attempt_kwargs(self) -> dict[str, Any]:
        return {**self.to_kwargs(), "attempt": self.attempt + 1}

    def after_infra_error_kwargs(self) -> dict[str, Any]:
        """The same attempt, put back after an infrastructure error, counted."""
        return {**self.to_kwargs(), "infra_errors": self.infra_errors + 1}

    def to_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "run_id": self.run_id,
            "trigger": self.trigger.value,
            "scheduled_for": self.scheduled_for.isoformat() if self.scheduled_for else None,
            "enqueued_at": self.enqueued_at.isoformat() if self.enqueued_at else None,
            "attempt": self.attempt,
            "parameters": self.parameters,
        }
        if self.skip_reason is not None:
            kwargs["skip_reason"] = self.skip_reason
        if self.triggered_by is not None:
            kwargs["triggered_by"] = self.triggered_by
        if self.reason is not None:
            kwargs["reason"] = self.reason
        if self.redelivered:
            # A message put back for a later try (overlap: queue) is a new message to
            # the broker; the flag has to travel with it or the run could run twice.
            kwargs["redelivered"] = True
        if self.infra_errors:
            kwargs["infra_errors"] = self.infra_errors
        return kwargs


def check_task_headers(headers: Any) -> None:
    """Refuse headers Celery would choke on while building the request of a job task."""
    if not isinstance(headers, dict):
        raise InvalidMessage("the headers are not a JSON object")
    for field in ("id", "task"):
        value = headers.get(field)
        if not isinstance(value, str) or not value:
            raise _refuse(f"headers.{field}", value, "a non-empty string")
    for field in ("root_id", "parent_id", "argsrepr", "kwargsrepr", "shadow", "group"):
        value = headers.get(field)
        if value is not None and not isinstance(value, str):
            raise _refuse(f"headers.{field}", value, "a string")
    for field in ("eta", "expires"):
        value = headers.get(field)
        if value is not None and not isinstance(value, str | int | float):
            raise _refuse(f"headers.{field}", value, "an ISO 8601 instant")
    limits = headers.get("timelimit")
    if limits is not None and not (
        isinstance(limits, list | tuple) and len(limits) == 2 and all(map(_seconds, limits))
    ):
        raise _refuse("headers.timelimit", limits, "[soft seconds, hard seconds]")
    retries = headers.get("retries")
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int)):
        raise _refuse("headers.retries", retries, "a whole number")


def _seconds(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


# --------------------------------------------------------------------------- dead letters


@dataclass(frozen=True)
class DeadLetter:
    """A message a worker refused, kept whole in :attr:`Keys.DEAD_LETTERS` for inspection."""

    at: datetime
    queue: str | None
    reason: str
    #: The message as it was on the queue: text, or base64 when it was not UTF-8.
    message: str
    encoding: str = "utf-8"
    worker: str | None = None

    @classmethod
    def of(
        cls, raw: str | bytes, *, reason: str, queue: str | None, worker: str | None = None
    ) -> DeadLetter:
        encoding = "utf-8"
        if isinstance(raw, bytes):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text, encoding = base64.b64encode(raw).decode("ascii"), "base64"
        else:
            text = raw
        return cls(datetime.now(UTC), queue, reason, text, encoding, worker)

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "queue": self.queue,
            "reason": self.reason,
            "worker": self.worker,
            "encoding": self.encoding,
            "message": self.message,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=_COMPACT)

    @classmethod
    def loads(cls, text: str | bytes) -> DeadLetter:
        """An entry of the list; one that is not ours is shown, not skipped."""
        try:
            data = json.loads(text)
            return cls(
                at=datetime.fromisoformat(data["at"]),
                queue=data.get("queue"),
                reason=str(data["reason"]),
                message=str(data["message"]),
                encoding=str(data.get("encoding", "utf-8")),
                worker=data.get("worker"),
            )
        except (ValueError, KeyError, TypeError):
            raw = text if isinstance(text, str) else text.decode("utf-8", "replace")
            epoch = datetime.fromtimestamp(0, UTC)
            return cls(epoch, None, "not a dead-letter entry", raw)

    def preview(self, width: int = 80) -> str:
        """The message on one line, cut to ``width`` characters."""
        flat = " ".join(self.message.split())
        return cut(flat, width)
