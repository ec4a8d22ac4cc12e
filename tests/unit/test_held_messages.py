"""Messages a dead worker held for their countdown: kombu's restore of one unacknowledged
entry (jobs_core.liveness.redelivery) and what the worker's heartbeat publishes
(worker.heartbeat.held_messages)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs_core.liveness import KOMBU_SEP, redelivery
from jobs_core.status import Trigger
from jobs_core.wire import job_kwargs, task_message, task_name
from worker.heartbeat import held_messages

RUN = str(uuid.uuid4())


def message(queue: str = "jobs", priority: Any = 0) -> dict[str, Any]:
    kwargs = job_kwargs(
        run_id=RUN,
        trigger=Trigger.MANUAL,
        scheduled_for=None,
        enqueued_at=datetime(2030, 1, 1, tzinfo=UTC),
        attempt=2,
    )
    _, payload = task_message(task_name("ext/job"), kwargs, queue=queue, task_id=RUN)
    out: dict[str, Any] = json.loads(payload)
    out["properties"]["priority"] = priority
    return out


def entry(msg: dict[str, Any], exchange: str | None, routing_key: Any) -> str:
    """What kombu keeps in its ``unacked`` hash for a delivered message."""
    return json.dumps([msg, exchange, routing_key])


def binding(routing_key: str, queue: str) -> str:
    return KOMBU_SEP.join([routing_key, routing_key, queue])


def test_the_anonymous_exchange_goes_to_the_routing_key_flagged_redelivered() -> None:
    msg = message()
    placed = redelivery(entry(msg, "", "jobs"))
    assert placed is not None
    queue, payload = placed
    back = json.loads(payload)
    assert queue == "jobs"
    assert back["headers"]["redelivered"] is True
    assert back["properties"]["delivery_info"]["redelivered"] is True
    # Nothing else changes: the body, the task id, the delivery tag.
    for flagged in (back["headers"], back["properties"]["delivery_info"]):
        del flagged["redelivered"]
    assert back == msg


def test_a_named_exchange_goes_to_the_queue_bound_to_the_routing_key() -> None:
    bindings = {binding("jobs", "jobs"), binding("other", "other-queue")}
    msg = message()
    placed = redelivery(entry(msg, "jobs", "jobs"), bindings)
    assert placed is not None and placed[0] == "jobs"
    assert redelivery(entry(msg, "jobs", "other"), bindings) == ("other-queue", placed[1])


@pytest.mark.parametrize(
    ("raw", "bindings"),
    [
        # An exchange bound to no queue for that key, or to two: left to kombu.
        (entry(message(), "jobs", "jobs"), set()),
        (entry(message(), "jobs", "jobs"), {binding("jobs", "a"), binding("jobs", "b")}),
        # A priority queue (a list of its own per priority step).
        (entry(message(priority=5), "", "jobs"), set()),
        # Not kombu's entry.
        ("not json", set()),
        (json.dumps({"a": 1}), set()),
        (json.dumps([1, 2]), set()),
        (json.dumps([{"no": "properties"}, "", "jobs"]), set()),
        (entry(message(), "", 7), set()),
        (entry(message(), "", ""), set()),
        ("[]", {binding("jobs", "jobs")}),
    ],
)
def test_what_cannot_be_placed_as_kombu_would_is_left_to_kombu(
    raw: str, bindings: set[str]
) -> None:
    assert redelivery(raw, bindings) is None


def test_a_missing_priority_is_the_plain_queue() -> None:
    msg = message()
    del msg["properties"]["priority"]
    assert redelivery(entry(msg, "", "jobs")) is not None


@given(queue=st.text(st.characters(codec="utf-8", exclude_characters="\x06"), min_size=1))
def test_any_queue_name_round_trips(queue: str) -> None:
    placed = redelivery(entry(message(queue), "", queue), ())
    assert placed is not None and placed[0] == queue
    assert json.loads(placed[1])["headers"]["id"] == RUN


# ---------------------------------------------------------------- held_messages


@dataclass(eq=False)
class _Message:
    delivery_tag: Any


@dataclass(eq=False)
class _Request:
    """The two attributes of a Celery request the heartbeat reads."""

    id: str
    message: _Message


@pytest.fixture
def celery_state() -> Iterator[Any]:
    from celery.worker import state

    yield state
    for requests in (state.scheduled_requests, state.reserved_requests, state.active_requests):
        requests.clear()


def test_held_messages_lists_the_requests_not_started(celery_state: Any) -> None:
    assert held_messages() == {}
    # The state's sets hold weak references: the test keeps the requests.
    eta = _Request(RUN, _Message("tag-eta"))
    waiting = _Request("waiting", _Message("tag-waiting"))
    started = _Request("started", _Message("tag-started"))
    untagged = _Request("untagged", _Message(None))
    celery_state.scheduled_requests.add(eta)  # waiting for its countdown
    celery_state.reserved_requests.add(waiting)  # its countdown passed, waiting for a slot
    celery_state.reserved_requests.add(started)  # reserved, then started: not held
    celery_state.active_requests.add(started)
    celery_state.scheduled_requests.add(untagged)
    assert held_messages() == {"tag-eta": RUN, "tag-waiting": "waiting"}
