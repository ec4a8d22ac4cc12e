"""Click parameter types: bounded durations and ISO 8601 instants, one clear usage error."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from jobs_core.durations import bounded_duration


class Duration(click.ParamType[float]):
    """Seconds (``30``, ``2.5``) or a duration (``30s``, ``10m``) within ``[low, high]``."""

    name = "seconds"

    def __init__(self, low: float, high: float) -> None:
        self.low = low
        self.high = high

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value  # the default
        try:
            return bounded_duration(str(value), low=self.low, high=self.high, key="the value")
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Instant(click.ParamType[datetime]):
    """An ISO 8601 instant (``2030-01-01T12:00:00+02:00``); without an offset it is UTC."""

    name = "iso"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            when = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(
                f"{str(value)[:80]!r} is not an ISO 8601 instant (e.g. 2030-01-01T12:00:00Z)",
                param,
                ctx,
            )
        return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
