"""Redis's CPU per tick in the beat's claim-and-send script, without a beat.

Run: ``.venv/bin/python bench/claim_script.py [--jobs 100000] [--instants 5]``. It starts
a private redis-server, builds the on-time ticks of ``--jobs`` jobs of one queue (one
shared template, as ``bench/scale_jobs.py``'s jobs have) for each of ``--instants``
consecutive minutes, sends each instant's batch as the leading beat does (fenced by a
lease token, one write, the chunks read back in turn) and prints, per instant:
redis-server's CPU time (``/proc``) over the send, the script's time as ``INFO
commandstats`` counts it, and both per tick; then the median. The queue is emptied
between instants, outside the measurement (the workers' part).

``--callgrind`` runs redis-server under valgrind's callgrind instead and prints the
instructions Redis executed per tick over one instant (after two that warm it up):
slow (use ``--jobs 20000``), but the same figure on a busy machine, where the CPU
times above vary by a third from one run to the next. ``--dump-dir`` keeps the
profile, for ``callgrind_annotate``.

``--repo PATH`` imports ``beat`` and ``jobs_core`` from another checkout (an export of
another commit), to compare two versions of the script on the same machine, one after
the other.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--instants", type=int, default=5)
    parser.add_argument("--repo", type=Path, default=HERE, help="checkout to import from")
    parser.add_argument("--callgrind", action="store_true", help="count instructions")
    parser.add_argument("--dump-dir", type=Path, help="where callgrind writes its profile")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))  # bench.common
    sys.path.insert(0, str(args.repo.resolve()))

    from beat import ticks
    from beat.ticks import OutTick, TickSender
    from jobs_core.status import Trigger
    from jobs_core.wire import DEFAULT_QUEUE, task_name, tick_run_id_ms, tick_template

    template = tick_template(DEFAULT_QUEUE, Trigger.SCHEDULE, "{}", "bench-beat")
    assert template is not None
    keys = [f"scale/j{i:06d}" for i in range(args.jobs)]
    tasks = [task_name(key) for key in keys]
    start_ms = (int(time.time()) // 60 + 1) * 60_000
    print(f"repo {args.repo}  jobs {args.jobs}  chunk of the script: {ticks.CHUNK}")

    def instant(sender: TickSender, n: int) -> Any:
        due = start_ms + 60_000 * n
        iso = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(due / 1000))
        return sender.prepare(
            [
                OutTick.templated(key, due, template, task, tick_run_id_ms(key, due), iso)
                for key, task in zip(keys, tasks, strict=True)
            ]
        )

    with tempfile.TemporaryDirectory() as tmp:
        if args.callgrind:
            dump_dir = args.dump_dir or Path(tmp) / "callgrind"
            _count_instructions(args.jobs, dump_dir, instant, ticks.SENT)
        else:
            _time_instants(Path(tmp), args.jobs, args.instants, instant, ticks.SENT)


def _time_instants(
    base: Path, jobs: int, instants: int, instant: Callable[[Any, int], Any], sent_status: int
) -> None:
    import redis

    from beat.ticks import TickSender
    from bench.common import cpu_seconds, private_redis
    from jobs_core.wire import DEFAULT_QUEUE, Keys

    token = "bench-token"
    with private_redis(base) as server:
        client = redis.Redis.from_url(server.url)
        assert server.proc is not None
        pid = server.proc.pid
        client.set(Keys.LEASE, token)
        sender = TickSender(client)
        per_tick: list[float] = []
        inside: list[float] = []
        for n in range(instants):
            batch = instant(sender, n)
            client.config_resetstat()
            before = cpu_seconds(pid)
            began = time.perf_counter()
            statuses = sender.send_prepared(batch, token)
            wall = time.perf_counter() - began
            used = cpu_seconds(pid) - before
            stats: Any = client.info("commandstats")
            script = stats.get("cmdstat_evalsha", {}).get("usec", 0) / 1e6
            landed = client.llen(DEFAULT_QUEUE)
            assert statuses.count(sent_status) == landed == jobs, (landed, jobs)
            per_tick.append(used / jobs * 1e6)
            inside.append(script / jobs * 1e6)
            print(
                f"instant {n + 1}: wall {wall * 1000:.0f} ms, redis CPU {used * 1000:.0f} ms"
                f" ({per_tick[-1]:.2f} us/tick), script {script * 1000:.0f} ms"
                f" ({inside[-1]:.2f} us/tick)"
            )
            client.delete(DEFAULT_QUEUE)
        print(
            f"median: redis CPU {statistics.median(per_tick):.2f} us/tick,"
            f" script {statistics.median(inside):.2f} us/tick"
        )


def _count_instructions(
    jobs: int, dump_dir: Path, instant: Callable[[Any, int], Any], sent_status: int
) -> None:
    import redis

    from beat.ticks import TickSender
    from cli.embedded import free_port
    from cli.local_servers import redis_binaries
    from jobs_core.wire import DEFAULT_QUEUE, Keys

    valgrind = shutil.which("valgrind")
    control = shutil.which("callgrind_control")
    if valgrind is None or control is None:
        raise SystemExit("--callgrind needs valgrind (and its callgrind_control) on PATH")
    dump_dir.mkdir(parents=True, exist_ok=True)
    out = dump_dir / "redis.callgrind"
    for old in dump_dir.glob("redis.callgrind*"):
        old.unlink()
    port = free_port()
    server = [redis_binaries().program("redis-server"), "--port", str(port)]
    server += ["--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        [
            valgrind,
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            *server,
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    token = "bench-token"
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 60
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        client.set(Keys.LEASE, token)
        sender = TickSender(client)
        for n in range(2):  # the last-handled hash filled, Lua's and jemalloc's pools grown
            sender.send_prepared(instant(sender, n), token)
            client.delete(DEFAULT_QUEUE)
        batch = instant(sender, 2)
        subprocess.run([control, "--zero", str(proc.pid)], check=True, capture_output=True)
        statuses = sender.send_prepared(batch, token)
        subprocess.run([control, "--dump", str(proc.pid)], check=True, capture_output=True)
        assert statuses.count(sent_status) == client.llen(DEFAULT_QUEUE) == jobs
    finally:
        proc.terminate()
        proc.wait(60)
    dump = min(dump_dir.glob("redis.callgrind.*"))
    total = 0
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            total = int(line.split()[1])
    print(f"redis-server: {total / jobs:,.0f} instructions per tick ({dump})")


if __name__ == "__main__":
    main()
