"""JSON log lines (``--log-format json``): one object per line.

Every line logged while a run is being handled carries its ``run_id`` and ``job``: the
worker binds them with :func:`run_context` (a context variable, so it follows the run
onto the event loop), the beat passes ``job`` as an event field, and a tick's run id
follows from its job and instant.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Awaitable, Iterator
from contextvars import ContextVar
from datetime import datetime
from typing import Any, TypeVar

from .profile import LogFormat
from .wire import tick_run_id

T = TypeVar("T")
_RUN: ContextVar[tuple[str, str] | None] = ContextVar("systemprompt_run", default=None)
_STANDARD = frozenset(vars(logging.makeLogRecord({})))


@contextlib.contextmanager
def run_context(run_id: str, job: str) -> Iterator[None]:
    """Lines logged inside carry ``run_id`` and ``job``."""
    token = _RUN.set((run_id, job))
    try:
        yield
    finally:
        _RUN.reset(token)


async def in_run_context(awaitable: Awaitable[T], run_id: str, job: str) -> T:
    """Await ``awaitable`` with the run bound (for coroutines sent to another loop)."""
    with run_context(run_id, job):
        return await awaitable


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        bound = _RUN.get()
        if bound is not None:
            out["run_id"], out["job"] = bound
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in ("fields", "message"):
                out.setdefault(key, value)
        if "run_id" not in out and "job" in out and out.get("scheduled_for"):
            # A beat tick line: its run id is the tick's, a function of job and instant.
            try:
                when = datetime.fromisoformat(str(out["scheduled_for"]))
                out["run_id"] = tick_run_id(str(out["job"]), when)
            except ValueError:
                pass
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def formatter(fmt: LogFormat, text: logging.Formatter) -> logging.Formatter:
    """The formatter for ``fmt``: JSON, or ``text`` (the process's own)."""
    return JsonFormatter() if fmt is LogFormat.JSON else text


def setup_json(level: str | int = "INFO") -> None:
    """Log every logger to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
