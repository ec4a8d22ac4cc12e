"""Click parameter types for numeric options: bounded, finite, one clear usage error."""

from __future__ import annotations

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
