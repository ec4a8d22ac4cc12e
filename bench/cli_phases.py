"""Where a ``jobs status NAME`` over 100,000 jobs spends its time, phase by phase.

Run: ``.venv/bin/python bench/cli_phases.py [--jobs 100000] [--repeat 7]``. With a
private redis-server and a durable PostgreSQL (one finished run per job, as in
``scale_jobs.py``) and the project's modules byte-compiled (as installed), it times:

- ``python -c pass``: the interpreter's own start-up (with this virtualenv's ``.pth``
  files, as the ``systemprompt`` script gets it);
- the real command, ``systemprompt infra jobs status NAME`` (wall and CPU of the process);
- the same command's work done step by step in a fresh process (:data:`CHILD`), in the
  order the command does it, with the collector off as in the console script: the
  imports (each group's own cost: what an earlier group imported is not counted again),
  loading the profile, finding the extensions, the extensions' own ``jobs()``, checking
  every job and building the named one, freeing the jobs not kept, the Redis reads and
  the PostgreSQL queries ``jobs status`` makes.

Each figure is the median of ``--repeat`` fresh processes (wall, and the process's CPU
time, less disturbed by the machine's load). The steps add up to a little less than the
command: it also parses its arguments, prints, and runs its ``atexit`` functions.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    REPO,
    VENV_BIN,
    child_env,
    print_header,
    private_postgres,
    private_redis,
)
from bench.scale_jobs import PROJECT_PACKAGES, byte_compile, seed_history, time_cli

#: The steps, run in a fresh interpreter: ``python -c CHILD PROFILE NAME``; prints one
#: JSON object, step -> [wall s, CPU s].
CHILD = r"""
import gc, json, sys, time
gc.disable()  # as cli.main.entry does
steps = {}
clock = [time.perf_counter(), time.process_time()]
def mark(step):
    now = [time.perf_counter(), time.process_time()]
    steps[step] = [now[0] - clock[0], now[1] - clock[1]]
    clock[:] = now
profile_path, name = sys.argv[1], sys.argv[2]
import click, cli.main
mark("import click and cli.main (the command tree)")
import jobs_core.profile
mark("import the profile's models (pydantic, PyYAML)")
import jobs_core.registry
mark("import the job table (importlib.metadata)")
import beat.control
mark("import redis-py (and beat.control)")
import psycopg, jobs_core.history_pg, jobs_core.dst
mark("import psycopg, asyncio (and the history)")
from control.context import Context
ctx = Context(profile_path=profile_path)
ctx.profile
mark("load the profile (YAML, validation, URLs)")
extensions = jobs_core.registry.discover_extensions(ctx.profile)
mark("find and import the extensions (entry points)")
made = [ext.jobs() for ext in extensions]
mark("the extensions' own jobs() (creating the Job objects)")
for ext, jobs in zip(extensions, made):
    ext.jobs = (lambda jobs: lambda: jobs)(jobs)
registry = jobs_core.registry.build_registry(ctx.profile, extensions, only=name)
jd = registry.resolve(name)
mark("check every job, build the named one")
for ext in extensions:
    del ext.jobs
del made, jobs
mark("free the jobs not kept")
from cli.main import _paused, _remaining
from beat.control import leader_status
paused, left, leader = _paused(ctx), _remaining(ctx, [jd]), leader_status(ctx.redis())
mark("Redis: connect, PING, pauses, run counts, leader")
from datetime import UTC, datetime, timedelta
async def fetch(history):
    recent = await history.history(jd.key, limit=1)
    last = await history.get_run(recent[0].id) if recent else None
    return last, await history.counts_since(jd.key, datetime.now(UTC) - timedelta(hours=24))
ctx.with_history("jobs status", fetch)
mark("PostgreSQL: connect, last run, 24 h counts")
print(json.dumps(steps))
"""


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh process."""
    done = time_cli(args, env, 1)
    return done.wall, done.cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    opts = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="sp-bench-phases-"))
    try:
        with private_redis(base) as redis_server, private_postgres(base) as pg:
            return run(opts, base, redis_server.url, pg.url)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run(opts: argparse.Namespace, base: Path, redis_url: str, database_url: str) -> int:
    from jobs_core.registry import discover_extensions
    from jobs_core.schema import migrate

    profile = base / "profile.yaml"
    profile.write_text("extensions: [bench.scale_ext:ScaleExtension]\n")
    env = child_env(REDIS_URL=redis_url, DATABASE_URL=database_url, BENCH_SCALE_JOBS=str(opts.jobs))
    byte_compile(env)
    migrate(database_url, discover_extensions(None))
    seed_history(database_url, opts.jobs)
    name = "scale/j000042" if opts.jobs > 42 else "maintenance/cleanup"
    print_header(
        "cli phases: where `jobs status NAME` spends its time",
        {
            "jobs": f"{opts.jobs:,} generated (bench/scale_ext.py); status of {name}",
            "servers": "private redis-server; durable PostgreSQL, one run per job",
            "modules": f"byte-compiled first, as installed ({', '.join(PROJECT_PACKAGES)})",
            "figures": f"median of {opts.repeat} fresh processes each",
        },
    )
    python = str(VENV_BIN / "python")
    command = [str(VENV_BIN / "systemprompt"), "--profile", str(profile), "infra", "jobs"]
    rows: dict[str, list[tuple[float, float]]] = {}
    for _ in range(opts.repeat):
        # Interleaved, so a change in the machine's load touches every row alike.
        rows.setdefault("python -c pass", []).append(timed([python, "-c", "pass"], env))
        done = subprocess.run(
            [python, "-c", CHILD, str(profile), name],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        for step, (wall, cpu) in json.loads(done.stdout).items():
            rows.setdefault(step, []).append((wall, cpu))
        rows.setdefault("the command: systemprompt infra jobs status NAME", []).append(
            timed([*command, "status", name], env)
        )
    print(f"\n{'step':<58} {'wall ms':>8} {'CPU ms':>8}")
    steps_wall = steps_cpu = 0.0
    for step, values in rows.items():
        wall = statistics.median(v[0] for v in values) * 1000
        cpu = statistics.median(v[1] for v in values) * 1000
        if step.startswith("the command"):
            print(f"{'sum of the rows above':<58} {steps_wall:>8.0f} {steps_cpu:>8.0f}")
        else:
            steps_wall += wall
            steps_cpu += cpu
        print(f"{step:<58} {wall:>8.0f} {cpu:>8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
