"""Plain-text rendering for the CLI: tables, instants, durations."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from jobs_core.durations import human_ms


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    # The last column (descriptions, messages) is left ragged instead of padded.
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def when(value: datetime | None, tz: ZoneInfo | None = None) -> str:
    if value is None:
        return "-"
    local = value.astimezone(tz) if tz else value
    return local.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


ms = human_ms


def seconds(value: float) -> str:
    from jobs_core.durations import format_duration

    return format_duration(value)


def one_line(text: str | None, width: int = 60) -> str:
    if not text:
        return ""
    line = text.strip().splitlines()[-1] if "\n" in text.strip() else text.strip()
    return line if len(line) <= width else line[: width - 1] + "…"
