"""The run-message contract: every valid message round-trips, every mutation is refused
with a reason naming the field."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs_core.errors import InvalidMessage
from jobs_core.status import Trigger
from jobs_core.wire import MAX_ATTEMPT, RunMessage, check_task_headers, job_kwargs

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
instants = st.builds(
    lambda dt, tz: dt.replace(tzinfo=UTC).astimezone(tz),
    st.datetimes(datetime(1971, 1, 1), datetime(2200, 1, 1)),
    offsets,
)
messages = st.builds(
    RunMessage,
    run_id=st.uuids().map(str),
    trigger=st.sampled_from(list(Trigger)),
    scheduled_for=st.none() | instants,
    enqueued_at=st.none() | instants,
    attempt=st.integers(1, MAX_ATTEMPT),
    parameters=st.dictionaries(st.text(max_size=10), json_values, max_size=4),
    skip_reason=st.none() | st.text(max_size=30),
    redelivered=st.booleans(),
    infra_errors=st.integers(0, 500),
)


@given(messages)
def test_valid_messages_round_trip_through_json(message: RunMessage) -> None:
    wire = json.loads(json.dumps(message.to_kwargs()))
    assert RunMessage.from_kwargs(wire) == message
    assert RunMessage.from_body([[], wire, {}]) == message
    if message.attempt < MAX_ATTEMPT:
        following = RunMessage.from_kwargs(message.next_attempt_kwargs())
        assert following == replace(message, attempt=message.attempt + 1)
    put_back = RunMessage.from_kwargs(message.after_infra_error_kwargs())
    assert put_back == replace(message, infra_errors=message.infra_errors + 1)


def test_a_message_without_infra_errors_has_none() -> None:
    # Messages of older producers carry no count; a run that never failed sends none.
    assert RunMessage.from_kwargs(_valid()).infra_errors == 0
    assert "infra_errors" not in RunMessage.from_kwargs(_valid()).to_kwargs()


# (field, bad value, fragment of the reason)
MUTATIONS: list[tuple[str, Any, str]] = [
    ("run_id", "not-a-uuid", "run_id: 'not-a-uuid' is not a UUID"),
    ("run_id", "", "run_id: '' is not a UUID"),
    ("run_id", 42, "run_id: 42 is not a UUID"),
    ("run_id", None, "run_id: None is not a UUID"),
    ("run_id", str(uuid.uuid4()).upper(), "is not a UUID (lower-case"),
    ("run_id", "{" + str(uuid.uuid4()) + "}", "is not a UUID"),
    ("attempt", 0, "attempt: 0 is not from 1"),
    ("attempt", -1, "attempt: -1 is not from 1"),
    ("attempt", MAX_ATTEMPT + 1, "is not from 1"),
    ("attempt", "x", "attempt: 'x' is not a whole number"),
    ("attempt", "2", "attempt: '2' is not a whole number"),
    ("attempt", 1.0, "attempt: 1.0 is not a whole number"),
    ("attempt", True, "attempt: True is not a whole number"),
    ("attempt", None, "attempt: None is not a whole number"),
    ("trigger", "whenever", "trigger: 'whenever' is not one of schedule, manual"),
    ("trigger", ["schedule"], "trigger: ['schedule'] is not one of"),
    ("trigger", None, "trigger: None is not one of"),
    ("scheduled_for", "yesterday", "scheduled_for: 'yesterday' is not an ISO 8601 instant"),
    ("scheduled_for", "2026-01-01T00:00:00", "is not an ISO 8601 instant with a UTC offset"),
    ("scheduled_for", 1700000000, "scheduled_for: 1700000000 is not an ISO 8601"),
    ("enqueued_at", "2026-13-01T00:00:00+00:00", "enqueued_at: "),
    ("parameters", [1, 2], "parameters: [1, 2] is not a JSON object"),
    ("parameters", "a=1", "parameters: 'a=1' is not a JSON object"),
    ("skip_reason", 5, "skip_reason: 5 is not a string"),
    ("redelivered", "yes", "redelivered: 'yes' is not true or false"),
    ("infra_errors", -1, "infra_errors: -1 is not a whole number, 0 or more"),
    ("infra_errors", "3", "infra_errors: '3' is not a whole number"),
    ("infra_errors", True, "infra_errors: True is not a whole number"),
]


def _valid() -> dict[str, Any]:
    return job_kwargs(
        run_id=str(uuid.uuid4()),
        trigger=Trigger.SCHEDULE,
        scheduled_for=datetime(2026, 1, 1, tzinfo=UTC),
        enqueued_at=datetime.now(UTC),
    )


@pytest.mark.parametrize(("field", "value", "reason"), MUTATIONS, ids=[m[2] for m in MUTATIONS])
def test_mutated_fields_are_refused_with_the_field_named(
    field: str, value: Any, reason: str
) -> None:
    kwargs = {**_valid(), field: value}
    with pytest.raises(InvalidMessage) as caught:
        RunMessage.from_kwargs(kwargs)
    assert reason in caught.value.reason
    assert caught.value.field == field


@given(messages, st.sampled_from(["run_id", "trigger", "attempt"]))
def test_a_missing_required_field_is_refused(message: RunMessage, field: str) -> None:
    kwargs = message.to_kwargs()
    del kwargs[field]
    with pytest.raises(InvalidMessage, match=f"^{field}: missing$"):
        RunMessage.from_kwargs(kwargs)


@given(
    messages,
    st.text(min_size=1, max_size=12).filter(lambda k: k not in RunMessage.__dataclass_fields__),
    json_values,
)
def test_unknown_keys_are_ignored(message: RunMessage, key: str, value: Any) -> None:
    # A newer producer may add fields; older workers must not refuse its messages.
    assert RunMessage.from_kwargs({**message.to_kwargs(), key: value}) == message


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"run_id": "x"}, "is not [args, kwargs, embed]"),
        ([[], {}], "is not [args, kwargs, embed]"),
        ([[1], {}, {}], "positional arguments [1]: jobs take none"),
        ([[], [], {}], "the keyword arguments are list, not a JSON object"),
        ([[], {}, "x"], "embed: 'x' is not a JSON object"),
    ],
)
def test_bodies_that_are_not_protocol_2_are_refused(body: Any, reason: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        RunMessage.from_body(body)
    assert reason in caught.value.reason


def test_a_huge_value_is_cut_in_the_reason() -> None:
    with pytest.raises(InvalidMessage) as caught:
        RunMessage.from_kwargs({**_valid(), "run_id": "x" * 100_000})
    assert len(caught.value.reason) < 200


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([], "the headers are not a JSON object"),
        ({"task": "jobs.a.b"}, "headers.id: None is not a non-empty string"),
        ({"id": "1", "task": 5}, "headers.task: 5 is not a non-empty string"),
        ({"id": "1", "task": "t", "timelimit": 5}, "headers.timelimit: 5 is not"),
        ({"id": "1", "task": "t", "timelimit": [1, "x"]}, "headers.timelimit"),
        ({"id": "1", "task": "t", "retries": "0"}, "headers.retries: '0' is not a whole number"),
        ({"id": "1", "task": "t", "eta": ["x"]}, "headers.eta"),
        ({"id": "1", "task": "t", "root_id": 3}, "headers.root_id: 3 is not a string"),
    ],
)
def test_headers_celery_would_choke_on_are_refused(headers: Any, reason: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        check_task_headers(headers)
    assert reason in caught.value.reason


def test_headers_of_real_messages_pass() -> None:
    headers = {"id": "1", "task": "t", "timelimit": [None, 30.0], "retries": 2}
    check_task_headers({**headers, "eta": "2026-01-01T00:00:00+00:00", "parent_id": None})
