"""JSON log lines: one object per line, run id and job key on every line about a run."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime

from jobs_core.logjson import JsonFormatter, in_run_context, run_context
from jobs_core.wire import tick_run_id


def line(logger: str, msg: str, *args: object, **extra: object) -> dict[str, object]:
    record = logging.getLogger(logger).makeRecord(
        logger, logging.INFO, __file__, 1, msg, args, None, extra=extra
    )
    text = JsonFormatter().format(record)
    assert "\n" not in text
    return json.loads(text)  # type: ignore[no-any-return]


def test_a_run_binds_its_id_and_job_to_every_line() -> None:
    assert "run_id" not in line("worker.runs", "idle")
    with run_context("r-1", "ext/job"):
        out = line("jobs.ext/job", "deleted %d rows", 3)
    assert out["run_id"] == "r-1" and out["job"] == "ext/job"
    assert out["message"] == "deleted 3 rows" and out["level"] == "INFO"
    assert "run_id" not in line("worker.runs", "after")


def test_the_binding_follows_the_run_onto_an_event_loop() -> None:
    async def job() -> dict[str, object]:
        await asyncio.sleep(0)
        return line("jobs.x", "inside")

    out = asyncio.run(in_run_context(job(), "r-2", "ext/other"))
    assert out["run_id"] == "r-2" and out["job"] == "ext/other"


def test_a_beat_tick_line_carries_the_tick_run_id() -> None:
    when = datetime(2024, 1, 1, 12, 0, 5, tzinfo=UTC)
    fields = {"job": "ext/job", "scheduled_for": "2024-01-01T12:00:05.000Z", "lag_ms": 1.5}
    out = line("beat", "fire", fields=fields)
    assert out["message"] == "fire"
    assert out["lag_ms"] == 1.5 and out["run_id"] == tick_run_id("ext/job", when)
