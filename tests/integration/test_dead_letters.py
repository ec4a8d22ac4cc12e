"""Poison messages on the real queue of a real worker: each is dead-lettered with its
reason, none runs, the worker keeps consuming, and a good message after them runs once."""

from __future__ import annotations

import base64
import json
import pickle
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from jobs_core.wire import Keys, job_kwargs, task_message, task_name
from tests.procs import running, service_env, start_worker, wait_for, write_profile
from worker.dead_letter import entries
from worker.factory import create_app

from .worker_support import WORKER_PROFILE, History, registry_for, send

pytestmark = pytest.mark.integration


@pytest.fixture
def setup(tmp_path: Path, redis_url: str, database_url: str) -> Iterator[dict[str, Any]]:
    from jobs_core.profile import load_profile

    profile_path = write_profile(tmp_path / "profile.yaml", WORKER_PROFILE)
    env = service_env(
        REDIS_URL=redis_url, DATABASE_URL=database_url, SYSTEMPROMPT_PROFILE=str(profile_path)
    )
    profile = load_profile(profile_path, env=env)
    app, _, _ = create_app(profile, registry_for(profile_path, redis_url, database_url))
    yield {"tmp": tmp_path, "env": env, "app": app, "history": History(database_url)}
    app.close()


def _run_message(task_id: str, job: str = "testjobs/ok", **changes: Any) -> str:
    """A well-formed message of ``job`` whose kwargs are changed by ``changes``."""
    kwargs = job_kwargs(
        run_id=str(uuid.uuid4()),
        trigger="manual",
        scheduled_for=None,
        enqueued_at=datetime.now(UTC),
    )
    kwargs.update(changes)
    _, payload = task_message(task_name(job), kwargs, task_id=task_id)
    return payload


def _pickled(task_id: str) -> str:
    envelope = json.loads(_run_message(task_id))
    _args, kwargs, _embed = json.loads(envelope["body"])
    envelope["content-type"] = "application/x-python-serialize"
    envelope["content-encoding"] = "binary"
    envelope["body"] = base64.b64encode(pickle.dumps(([], kwargs, {}))).decode()
    return json.dumps(envelope)


def _poison() -> list[tuple[str, bytes | str, str]]:
    """``(name, raw item, expected reason fragment)`` of every kind of poison message."""
    ids = {name: str(uuid.uuid4()) for name in ("unknown", "pickle", "run_id", "a0", "ax",
                                                 "trigger", "iso", "params", "args")}  # fmt: skip
    return [
        ("not json", b"this is not JSON {", "not JSON"),
        ("not utf-8", b"\xff\xfe\x00garbage", "not JSON"),
        ("json array", "[1, 2, 3]", "not a message envelope: a JSON list"),
        ("no properties", '{"body": "e30=", "headers": {}}', "not a message envelope: KeyError"),
        ("headers not object", _with_headers([1]), "headers: not a JSON object"),
        (
            "unknown task",
            _run_message(ids["unknown"], job="nosuch/job"),
            "unknown task 'jobs.nosuch.job'",
        ),
        ("pickle", _pickled(ids["pickle"]), "'application/x-python-serialize' refused"),
        ("bad run id", _run_message(ids["run_id"], run_id="not-a-uuid"), "run_id: 'not-a-uuid'"),
        ("attempt 0", _run_message(ids["a0"], attempt=0), "attempt: 0 is not from 1"),
        ("attempt x", _run_message(ids["ax"], attempt="x"), "attempt: 'x' is not a whole number"),
        ("trigger", _run_message(ids["trigger"], trigger="whenever"), "trigger: 'whenever'"),
        (
            "bad instant",
            _run_message(ids["iso"], scheduled_for="yesterday"),
            "scheduled_for: 'yesterday' is not an ISO 8601 instant",
        ),
        (
            "parameters",
            _run_message(ids["params"], parameters=[1, 2]),
            "parameters: [1, 2] is not a JSON object",
        ),
    ]


def _with_headers(headers: Any) -> str:
    envelope = json.loads(_run_message(str(uuid.uuid4())))
    envelope["headers"] = headers
    return json.dumps(envelope)


def _raw_text(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode()


def test_poison_messages_are_dead_lettered_and_the_worker_keeps_consuming(
    setup: dict[str, Any], redis_url: str
) -> None:
    import redis

    app, history = setup["app"], setup["history"]
    client = redis.Redis.from_url(redis_url)
    poison = _poison()
    worker = start_worker(setup["tmp"], setup["env"], name="dl", concurrency=2)
    with running([worker]):
        for _, raw, _ in poison:
            client.lpush("jobs", raw)
        good = send(app, "testjobs/ok", parameters={"who": "after the poison"})
        wait_for(
            lambda: (r := history.run(good)) is not None and r.finished, 60, 0.1, "the good run"
        )
        kept = wait_for(
            lambda: len(got := entries(client)) >= len(poison) and got,
            30,
            0.1,
            "every poison message in the dead-letter list",
        )
        assert worker.popen.poll() is None, worker.output()

        run = history.run(good)
        assert run is not None and run.status == "succeeded"
        assert run.message == "hello after the poison"
        assert [a.attempt for a in run.attempts] == [1]  # ran exactly once
        # Nothing else reached history: no poison message ran.
        assert [r.id for r in history.runs(limit=100)] == [good]
        assert len(kept) == len(poison), [k.reason for k in kept]
        for name, raw, reason in poison:
            text = _raw_text(raw)
            matches = [k for k in kept if k.message == text or _same_envelope(k.message, text)]
            assert len(matches) == 1, f"{name}: {[k.reason for k in kept]}"
            letter = matches[0]
            assert reason in letter.reason, f"{name}: {letter.reason}"
            assert letter.queue == "jobs"
            assert (datetime.now(UTC) - letter.at).total_seconds() < 120
        # Acknowledged: nothing waits in kombu's unacked hash to be delivered again.
        assert client.hlen("unacked") == 0
        # Logged once each, and never as a traceback.
        output = worker.output()
        assert output.count("refused a message from queue jobs") == len(poison)
        assert "Traceback" not in output and "Unrecoverable" not in output
        # Still consuming after all that.
        again = send(app, "testjobs/ok")
        wait_for(lambda: (r := history.run(again)) is not None and r.finished, 30, 0.1, "again")
        assert worker.popen.poll() is None
    assert client.llen(Keys.DEAD_LETTERS) == len(poison)
    client.close()


def _same_envelope(kept: str, sent: str) -> bool:
    """The consumer keeps the envelope kombu parsed, re-serialised: compare as JSON."""
    try:
        a, b = json.loads(kept), json.loads(sent)
    except ValueError:
        return False
    return bool(a == b)
