"""Speed of jobs_core.cron.CronSchedule.next_after against croniter.

Run: ``python bench/cron_speed.py [--calls N]``. For each expression and zone it times
chained next-fire computations three ways and prints microseconds per call:

* ``croniter reuse``: one ``croniter(expr, start, second_at_beginning=True)`` iterator,
  ``get_next(datetime)`` per call;
* ``croniter new``: a fresh croniter constructed for every call (what a stateless caller
  pays);
* ``ours``: one CronSchedule, ``next_after`` chained from the previous result.

The ratios are croniter time divided by ours (higher is better for us).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from croniter import croniter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_header
from jobs_core.cron import CronSchedule

SEEDS = [
    "0 0 * * * *",
    "0 */30 * * * *",
    "0 */5 * * * *",
    "0 0 3 * * *",
    "0 0 4 * * *",
    "0 0 0 * * 0",
]
COMPLEX = [
    "*/10 * * * * *",
    "0 15,45 8-18 * * MON-FRI",
    "30 0 2 L * *",
    "0 0 12 13 * 5",
    "0 0 9 * * 1#2",
]
ZONES = ["UTC", "Europe/London"]
START = datetime(2026, 1, 1, 0, 0, 7)


def _best_of(repeat: int, run: Callable[[], None], calls: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best / calls * 1e6


def bench(expr: str, zone: str, calls: int, repeat: int) -> tuple[float, float, float]:
    tz = ZoneInfo(zone)
    start = START.replace(tzinfo=tz)

    def croniter_reuse() -> None:
        it = croniter(expr, start, second_at_beginning=True)
        for _ in range(calls):
            it.get_next(datetime)

    def croniter_new() -> None:
        current = start
        for _ in range(calls):
            current = croniter(expr, current, second_at_beginning=True).get_next(datetime)

    schedule = CronSchedule(expr, tz)

    def ours() -> None:
        current = start
        next_after = schedule.next_after
        for _ in range(calls):
            current = next_after(current)

    # Same answers first: a fast wrong engine is worth nothing. Fall-back days are where
    # croniter is known to differ, so compare only on a DST-free stretch.
    theirs = croniter(expr, start, second_at_beginning=True)
    mine = schedule.next_n(start, 20)
    assert [theirs.get_next(datetime) for _ in range(20)] == mine, expr

    return (
        _best_of(repeat, croniter_reuse, calls),
        _best_of(repeat, croniter_new, calls),
        _best_of(repeat, ours, calls),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="chained calls per timing")
    parser.add_argument("--repeat", type=int, default=3, help="timings per cell, best kept")
    args = parser.parse_args()

    header = (
        f"{'expression':<26} {'zone':<14} {'croniter reuse':>14} {'croniter new':>13} "
        f"{'ours':>7} {'x reuse':>8} {'x new':>7}"
    )
    print_header(
        "cron: jobs_core.cron against croniter",
        {"timing": f"µs per next-fire call, {args.calls} chained calls, best of {args.repeat}"},
        production="no servers: pure computation",
    )
    print(header)
    print("-" * len(header))
    ratios = []
    for expr in SEEDS + COMPLEX:
        for zone in ZONES:
            reuse, new, ours = bench(expr, zone, args.calls, args.repeat)
            ratios.append(reuse / ours)
            print(
                f"{expr:<26} {zone:<14} {reuse:>14.1f} {new:>13.1f} {ours:>7.2f} "
                f"{reuse / ours:>7.1f}x {new / ours:>6.1f}x"
            )
    print("-" * len(header))
    print(
        f"speed-up over reused croniter: min {min(ratios):.1f}x, "
        f"max {max(ratios):.1f}x, median {sorted(ratios)[len(ratios) // 2]:.1f}x"
    )


if __name__ == "__main__":
    main()
