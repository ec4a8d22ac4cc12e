"""Human durations for the profile: ``500ms``, ``30s``, ``10m``, ``1h30m``, ``2d`` or seconds."""

from __future__ import annotations

import math
import re

from .text import cut

_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
# "ms" must be tried before "m" or "500ms" would read as 500 minutes followed by junk.
_PART = re.compile(rf"\s*({_NUMBER})\s*(ms|s|m|h|d)\s*")
_PLAIN = re.compile(rf"\s*({_NUMBER})\s*")

HINT = "use e.g. 30s, 10m, 1h30m, 2d or a number of seconds"


def _reject(value: object) -> ValueError:
    if value is None:
        shown = "null"
    elif isinstance(value, str):
        shown = f'"{cut(value)}"'
    else:
        shown = cut(repr(value))
    return ValueError(f"{shown} is not a duration; {HINT}")


def parse_duration(value: object, *, key: str = "duration") -> float:
    """Return ``value`` as seconds (float).

    Accepts a non-negative int/float (seconds) or a string made of ``<number><unit>``
    parts (units ``ms s m h d``, optionally separated by spaces), or a bare number of
    seconds as a string. ``key`` only names the setting in negative-value messages.
    """
    # bool is an int subclass; `timeout: yes` is a typo, not one second.
    if isinstance(value, bool) or value is None:
        raise _reject(value)
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds):
            raise _reject(value)
        if seconds < 0:
            raise ValueError(f"{key} must not be negative (got {value}); {HINT}")
        return seconds
    if not isinstance(value, str):
        raise _reject(value)
    text = value.strip()
    if text.startswith("-"):
        raise ValueError(f'{key} must not be negative (got "{cut(value)}"); {HINT}')
    plain = _PLAIN.fullmatch(text)
    if plain:
        return float(plain.group(1))
    total = 0.0
    pos = 0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise _reject(value)
    return total


def format_duration(seconds: float) -> str:
    """Render seconds compactly (``5400 -> "1h30m"``, ``0.5 -> "500ms"``), to the millisecond.

    The result always parses back with :func:`parse_duration` to the same number of
    whole milliseconds.
    """
    if isinstance(seconds, bool) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format {seconds!r} as a duration")
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    parts: list[str] = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    if ms:
        parts.append(f"{ms}ms")
    return "".join(parts)


def bounded_duration(value: object, *, low: float, high: float, key: str = "duration") -> float:
    """:func:`parse_duration`, refusing anything outside ``[low, high]`` seconds.

    For command-line options, where NaN, infinities and ``1e-9`` are typos, not settings.
    """
    seconds = parse_duration(value, key=key)
    if not low <= seconds <= high:
        raise ValueError(
            f"{key} must be from {format_duration(low)} to {format_duration(high)}, "
            f"got {format_duration(seconds)}"
        )
    return seconds


def human_ms(value: int | None) -> str:
    """A measured duration for people (``"850 ms"``, ``"2.5 s"``, ``"3 min 5 s"``); ``-``
    when there is none. Shared by the CLI and the dashboard."""
    if value is None:
        return "-"
    if value < 1000:
        return f"{value} ms"
    if value < 60_000:
        return f"{value / 1000:.1f} s"
    return f"{value // 60_000} min {value % 60_000 // 1000} s"
