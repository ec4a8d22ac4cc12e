"""Where the time and memory go at 100,000 jobs: the beat's memory, the CLI's time.

Run: ``.venv/bin/python bench/scale_profile.py [--jobs 100000] [--top 15]``. With a
private redis-server and a durable PostgreSQL (one finished run per job, as in
``scale_jobs.py``), in this process:

- **beat memory** (tracemalloc, one frame): a :class:`beat.service.Beat` on the
  generated extension (:mod:`bench.scale_ext`) at two stages: constructed (profile
  loaded, job table built) and elected (``assume_leader``: catch-up and the full
  due-time heap). For each stage: the process RSS and the source lines that allocated
  most of what is live (the second as a diff against the first);
- **CLI time** (cProfile): ``systemprompt infra jobs list`` and ``jobs status NAME``
  run through :func:`cli.main.main`, output discarded; the functions with the most
  cumulative and own time.

tracemalloc and cProfile slow the code they watch, so read the shares, not the
absolute times (``scale_jobs.py`` measures those without a profiler).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import memory_kib, print_header, private_postgres, private_redis
from bench.scale_jobs import seed_history


def top_lines(snapshot: tracemalloc.Snapshot, before: tracemalloc.Snapshot | None, n: int) -> str:
    root = str(Path(__file__).resolve().parent.parent)
    site = str(Path(sys.executable).resolve().parent.parent)
    if before is None:
        stats = snapshot.statistics("lineno")
        rows = [(s.size, s.count, s.traceback[0]) for s in stats[:n]]
    else:
        diff = snapshot.compare_to(before, "lineno")
        rows = [(d.size_diff, d.count_diff, d.traceback[0]) for d in diff[:n]]
    total = sum(s.size for s in snapshot.statistics("filename"))
    out = [f"  traced live total {total / 2**20:.0f} MiB"]
    for size, count, frame in rows:
        where = frame.filename.replace(root + "/", "").replace(site + "/", "")
        out.append(f"  {size / 2**20:8.1f} MiB {count:>9,} blocks  {where}:{frame.lineno}")
    return "\n".join(out)


def profile_beat(profile: str, redis_url: str, top: int) -> None:
    from beat.service import Beat

    print("== beat memory (tracemalloc; sizes are of live Python objects)")
    rss0, _ = memory_kib(os.getpid())
    tracemalloc.start(1)
    t0 = time.perf_counter()
    beat = Beat(profile, redis_url=redis_url, beat_id="profile", assume_leader=True)
    built = time.perf_counter() - t0
    s1 = tracemalloc.take_snapshot()
    rss1, _ = memory_kib(os.getpid())
    print(
        f"\n-- constructed (job table built) in {built:.1f} s (traced); RSS {rss1 / 1024:.0f}"
        f" MiB ({(rss1 - rss0) / 1024:+.0f} MiB)"
    )
    print(top_lines(s1, None, top))
    t0 = time.perf_counter()
    beat._connect()
    beat._try_acquire()
    elected = time.perf_counter() - t0
    s2 = tracemalloc.take_snapshot()
    rss2, _ = memory_kib(os.getpid())
    print(
        f"\n-- elected, {len(beat._core):,} jobs in the heap, in {elected:.1f} s (traced);"
        f" RSS {rss2 / 1024:.0f} MiB ({(rss2 - rss1) / 1024:+.0f} MiB); grew by:"
    )
    print(top_lines(s2, s1, top))
    tracemalloc.stop()
    beat.stop()
    beat._shutdown()


def profile_cli(profile: str, name: str, top: int) -> None:
    from cli.main import main as cli_main

    for args in (["list"], ["status", name]):
        prof = cProfile.Profile()
        sink = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(sink), contextlib.suppress(SystemExit):
            prof.runcall(cli_main, ["--profile", profile, "infra", "jobs", *args])
        wall = time.perf_counter() - t0
        print(
            f"\n== cProfile of `systemprompt infra jobs {' '.join(args)}`: {wall:.2f} s"
            f" in-process (profiled; {sink.getvalue().count(chr(10)):,} lines of output)"
        )
        for key in ("cumulative", "tottime"):
            text = io.StringIO()
            pstats.Stats(prof, stream=text).strip_dirs().sort_stats(key).print_stats(top)
            body = text.getvalue()
            print(f"-- by {key}:")
            print(body[body.index("   ncalls") :].rstrip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--skip-beat", action="store_true")
    parser.add_argument("--skip-cli", action="store_true")
    opts = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="sp-bench-profile-"))
    try:
        with private_redis(base) as redis_server, private_postgres(base) as pg:
            from jobs_core.registry import discover_extensions
            from jobs_core.schema import migrate

            migrate(pg.url, discover_extensions(None))
            seed_history(pg.url, opts.jobs)
            profile = base / "profile.yaml"
            profile.write_text("extensions: [bench.scale_ext:ScaleExtension]\n")
            os.environ.update(
                BENCH_SCALE_JOBS=str(opts.jobs), REDIS_URL=redis_server.url, DATABASE_URL=pg.url
            )
            os.environ.pop("SYSTEMPROMPT_PROFILE", None)
            print_header(
                "scale profile: beat memory and CLI time at many jobs",
                {
                    "jobs": f"{opts.jobs:,} (bench/scale_ext.py), one finished run each",
                    "tools": f"tracemalloc (1 frame), cProfile; top {opts.top}",
                },
            )
            if not opts.skip_beat:
                profile_beat(str(profile), redis_server.url, opts.top)
            if not opts.skip_cli:
                profile_cli(str(profile), "scale/j000042", opts.top)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
