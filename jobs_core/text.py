"""Bounding text that errors and logs echo back: a 100 KB value must not become a 100 KB error."""

from __future__ import annotations

#: Characters of user text an error quotes before cutting it short.
LIMIT = 200
ELLIPSIS = "…"


def cut(text: str, limit: int = LIMIT) -> str:
    """``text`` unchanged when short enough, else its first ``limit`` characters and "…"."""
    if len(text) <= limit:
        return text
    return text[:limit] + ELLIPSIS


def quoted(value: object, limit: int = LIMIT) -> str:
    """``repr(value)`` cut to ``limit`` characters: how an error names what it refuses."""
    if isinstance(value, str) and len(value) > 4 * limit:
        value = value[: 4 * limit]  # repr of a huge string is not built only to be cut
    return cut(repr(value), limit)
