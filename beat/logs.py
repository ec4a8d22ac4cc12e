"""Structured (logfmt) log lines: ``ts=... level=INFO event=fire job=a/b lag_ms=0.8``.

One line per event with stable keys, so ``grep event=fire`` or a log shipper can parse
them. Fields are passed as ``extra={"fields": {...}}``.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from jobs_core.logjson import formatter
from jobs_core.profile import LogFormat

log = logging.getLogger("beat")


def _value(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [
            f"ts={ts}.{int(record.msecs):03d}Z",
            f"level={record.levelname}",
            f"logger={record.name}",
            f"event={_value(record.getMessage())}",
        ]
        fields: dict[str, Any] = getattr(record, "fields", None) or {}
        parts += [f"{k}={_value(v)}" for k, v in fields.items()]
        if record.exc_info:
            parts.append(f"exc={_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


def event(level: int, name: str, **fields: Any) -> None:
    """Log one structured event (cheap no-op when ``level`` is disabled)."""
    if log.isEnabledFor(level):
        log.log(level, name, extra={"fields": fields})


def setup(level: str | int = "INFO", fmt: LogFormat = LogFormat.TEXT) -> None:
    """Log to stderr in logfmt, or JSON lines with ``fmt`` json."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt, LogfmtFormatter()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
