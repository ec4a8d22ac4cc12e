"""Simulation of splitting the job table over several beat groups (docs/scaling.md).

Run: ``.venv/bin/python bench/shard_split.py [--jobs 1000000] [--groups 1,4,8,16]
[--runs-per-s 10000]``. Pure computation, no servers. Jobs are assigned the way
docs/scaling.md proposes: a fixed number of *logical shards* (``--logical``, default 256;
a job's shard is CRC16 of its key, Redis Cluster's hash, modulo that number), and whole
logical shards are handed to *groups* (a Redis instance, or a cluster hash tag, with its
beats and workers). For each group count it prints:

- balance: jobs per group (min / max / max over mean);
- the burst: the ticks due at the busiest instant (midnight, where every job of the
  expression mix below fires at once) on the biggest group;
- what that group's beat must do, from this repository's measured figures (options,
  defaults from README's Performance section; each option's help names its figure):
  start-up time, memory (the peak of a reload, two job tables alive), burst lag;
- growth: adding one group moves whole logical shards to it; the share of jobs that move,
  and a check that every job is owned by exactly one group before and after;
- worker fleets: processes per group for ``--runs-per-s`` at the measured rate per process.

Figures are extrapolations of measurements on one machine, not measurements.
"""

from __future__ import annotations

import argparse
import binascii
import random
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_header


def crc16(data: bytes) -> int:
    """CRC16-CCITT (XModem): the function Redis Cluster maps keys to slots with."""
    return binascii.crc_hqx(data, 0)


def assign(logical: int, groups: int) -> list[int]:
    """Logical shard -> group, balanced (shard counts differ by at most one)."""
    return [i % groups for i in range(logical)]


def grow(owner: list[int], groups: int) -> list[int]:
    """Add group ``groups`` (0-based): it takes whole logical shards, one at a time from
    the group that has most, until it has its share; no other shard moves."""
    out = list(owner)
    share = len(out) // (groups + 1)
    for _ in range(share):
        counts = Counter(out)
        donor = max(range(groups), key=lambda g: (counts[g], -g))
        out[max(i for i, g in enumerate(out) if g == donor)] = groups
    return out


@dataclass(frozen=True)
class Costs:
    """Per-job and per-tick costs measured on this repository (see README)."""

    startup_s_per_job: float
    rss_mib_per_job: float
    rss_mib_base: float
    lag_p99_ms_per_tick: float
    runs_per_s_per_worker: float


#: Expressions whose instants all fall on second 0 (every n minutes): the share of jobs
#: on each, like a catalogue of clean-ups, hourly and nightly jobs.
MIX = ((1, 0.2), (5, 0.3), (15, 0.2), (60, 0.2), (1440, 0.1))


def burst(jobs_per_shard: int, rng: random.Random) -> int:
    """Ticks due at the busiest instant of a day on a shard of ``jobs_per_shard`` jobs
    (at midnight every job of the mix fires at once)."""
    periods = rng.choices([p for p, _ in MIX], weights=[w for _, w in MIX], k=jobs_per_shard)
    return sum(1 for p in periods if (24 * 60) % p == 0)


def simulate(
    jobs: int,
    logical: int,
    groups: int,
    costs: Costs,
    runs_per_s: float,
    seed: int,
    jitter_s: float,
) -> list[str]:
    rng = random.Random(seed)
    shard = [crc16(f"ext{i % 50}/job{i:07d}".encode()) % logical for i in range(jobs)]
    owner = assign(logical, groups)
    per_group = Counter(owner[s] for s in shard)
    sizes = [per_group.get(g, 0) for g in range(groups)]
    biggest = max(sizes)
    grown = grow(owner, groups)
    moved = sum(1 for s in shard if owner[s] != grown[s])
    # Each logical shard (and so each job) has exactly one owner, before and after.
    assert len(grown) == logical and all(0 <= g <= groups for g in grown)
    peak = burst(biggest, rng)
    start_s = biggest * costs.startup_s_per_job
    rss = costs.rss_mib_base + biggest * costs.rss_mib_per_job
    lag_ms = peak * costs.lag_p99_ms_per_tick
    workers = runs_per_s / groups / costs.runs_per_s_per_worker
    return [
        f"{groups:>3} groups: jobs per group {min(sizes):,} - {biggest:,} (max/mean "
        f"{biggest / (jobs / groups):.3f}); busiest instant {peak:,} ticks on the biggest",
        f"     its beat: start-up ~{start_s:.1f} s, RSS ~{rss:.0f} MiB, burst p99 lag "
        f"~{lag_ms:,.0f} ms (with {jitter_s:g} s of jitter: {peak / jitter_s:,.0f} ticks/s); "
        f"adding a group moves {moved / jobs:.1%} of the jobs (ideal "
        f"{1 / (groups + 1):.1%}); {runs_per_s / groups:,.0f} runs/s per group = "
        f"~{workers:.0f} worker processes at {costs.runs_per_s_per_worker:.0f} runs/s each",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--groups", default="1,4,8,16")
    parser.add_argument("--logical", type=int, default=256)
    parser.add_argument("--runs-per-s", type=float, default=10_000)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--jitter-s", type=float, default=30.0)
    # Cost defaults from README's Performance section: the beat's from "Scale: 100,000
    # jobs" (bench/scale_jobs.py --minutes 2 --skip-cli, commit 4e1d4ca, load 0.4), the
    # worker's from "Worker throughput" (bench/throughput.py --rounds 3, commit e2d263b).
    parser.add_argument(
        "--startup-s-per-job",
        type=float,
        default=1.03e-5,
        help="spawn to the full schedule: 1.03 s for 100,000 jobs",
    )
    parser.add_argument(
        "--rss-mib-per-job",
        type=float,
        default=4.4e-3,
        help="RSS at a reload's peak: (498 MiB - the base) / 100,000 jobs",
    )
    parser.add_argument(
        "--rss-mib-base",
        type=float,
        default=60.0,
        help="the beat before its job table: importing its modules alone takes 52 MiB",
    )
    parser.add_argument(
        "--lag-p99-ms-per-tick",
        type=float,
        default=4.9e-3,
        help="burst p99 lag: 489 ms for 100,000 ticks of one instant (after a reload; "
        "474 ms before it)",
    )
    parser.add_argument(
        "--runs-per-s-per-worker",
        type=float,
        default=234.0,
        help="468 runs/s (the slower round; 515 in the other) of a prefork -c 2 worker on "
        "a 2-core machine, over its 2 processes",
    )
    opts = parser.parse_args()
    costs = Costs(
        opts.startup_s_per_job,
        opts.rss_mib_per_job,
        opts.rss_mib_base,
        opts.lag_p99_ms_per_tick,
        opts.runs_per_s_per_worker,
    )
    print_header(
        "shard split: the job table over several beat groups (simulation)",
        {
            "jobs": f"{opts.jobs:,}",
            "assignment": f"CRC16(job key) mod {opts.logical} logical shards, whole shards"
            " per group",
            "costs": f"{costs} (from README's Performance figures)",
            "mix": ", ".join(f"every {p} min: {w:.0%}" for p, w in MIX),
        },
    )
    for groups in (int(g) for g in opts.groups.split(",")):
        lines = simulate(
            opts.jobs, opts.logical, groups, costs, opts.runs_per_s, opts.seed, opts.jitter_s
        )
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
