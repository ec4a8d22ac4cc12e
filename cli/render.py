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
    if any(len(row) != len(headers) for row in cells):
        raise ValueError(f"every row needs {len(headers)} cells")
    columns = [list(column) for column in zip(*cells, strict=True)] if cells else []
    return columns_table(headers, columns or [[] for _ in headers])


def columns_table(headers: Sequence[str], columns: Sequence[Sequence[str]]) -> str:
    """:func:`table` of cells given column by column, all strings: one format string
    for every row, so 100,000 rows cost a few C loops instead of a call per cell."""
    if len(columns) != len(headers) or len({len(c) for c in columns}) > 1:
        raise ValueError(f"{len(headers)} columns of equal length needed")
    widths = [
        max(len(h), max(map(len, c), default=0)) for h, c in zip(headers, columns, strict=True)
    ]
    # Each cell left-aligned to its column's width, two spaces between columns; the
    # last column (descriptions, messages) is left ragged instead of padded.
    line = "  ".join(f"{{:<{w}}}" for w in widths).format
    lines = [line(*headers).rstrip()]
    lines += [line(*row).rstrip() for row in zip(*columns, strict=True)]
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
