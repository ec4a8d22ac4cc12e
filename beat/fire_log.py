"""How many ``fire`` lines the beat logs at INFO: a budget per wall-clock second.

One INFO line per tick is what an operator reads on a small beat; at tens of thousands
of ticks a second (a big instant, or a big instant spread by jitter into many small
sends) formatting them holds the loop for seconds. Past the budget a send's fire lines
go to DEBUG and it logs one INFO summary instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass


@dataclass
class FireLineBudget:
    """Fire lines at INFO so far in the current wall-clock second."""

    second: int = -1
    used: int = 0

    def level(self, runs: int, now_s: float, per_second: int) -> int:
        """The level of the fire lines of a send of ``runs`` runs at ``now_s``.

        A send is logged whole at one level: it fits in what is left of this second's
        budget (and uses it up) or its lines go to DEBUG.
        """
        second = int(now_s)
        if second != self.second:
            self.second, self.used = second, 0
        if self.used + runs > per_second:
            return logging.DEBUG
        self.used += runs
        return logging.INFO
