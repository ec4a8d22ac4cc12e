"""Celery protocol-2 task messages as the Redis transport stores them, built by hand.

The beat sends thousands of ticks per second; going through ``app.send_task`` costs a
producer round trip and ~100 µs of Python per message. These helpers build the exact
JSON envelope kombu's Redis transport LPUSHes, so a caller can put many ticks into one
pipeline. JSON only: the body is ``[args, kwargs, embed]`` serialised with ``json``.

The envelope is kept small on purpose (no base64 body, no optional headers that Celery
reads with a default): the beat's claim-and-send script moves every byte of it through
Redis, and at 1,000 ticks per second the payload size is what its latency is made of.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import datetime
from functools import lru_cache
from typing import Any

from .naming import DEFAULT_QUEUE

_EMBED: dict[str, Any] = {}  # no callbacks, errbacks, chain or chord
_COMPACT = (",", ":")


def job_kwargs(
    *,
    run_id: str,
    trigger: str,
    scheduled_for: datetime | None,
    enqueued_at: datetime,
    attempt: int = 1,
    parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON-safe keyword arguments every job task takes."""
    return {
        "run_id": run_id,
        "trigger": trigger,
        "scheduled_for": scheduled_for.isoformat() if scheduled_for else None,
        "enqueued_at": enqueued_at.isoformat(),
        "attempt": attempt,
        "parameters": parameters or {},
    }


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

    def __init__(self, queue: str, trigger: str, parameters_json: str) -> None:
        kwargs = {
            "run_id": RUN_ID,
            "trigger": trigger,
            "scheduled_for": SCHEDULED,
            "enqueued_at": ENQUEUED,
            "attempt": 1,
            "parameters": json.loads(parameters_json),
        }
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
def tick_template(queue: str, trigger: str, parameters_json: str) -> TickTemplate | None:
    """The shared template, or None when this job's values cannot be templated."""
    try:
        return TickTemplate(queue, trigger, parameters_json)
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
