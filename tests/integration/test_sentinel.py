"""Redis Sentinel failover under a running stack: two beats and a worker on a
``redis+sentinel://`` URL (server and sentinel passwords) while the master is killed.

After kill -9 of the master the sentinels promote the replica; nobody restarts anything.
Counted: the ticks each beat sent per instant (its ``event=fire`` lines), the executions
per instant (the job appends one line per execution), the runs in each final state
(history), and the gap between the last tick sent before the kill and the first after.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from tests.procs import VENV_BIN, Proc, running, service_env, start_worker, wait_for
from tests.sentinel_cluster import DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS, SentinelCluster

from .worker_support import History

pytestmark = pytest.mark.integration

JOB = "testjobs/counted"
LEASE_TTL = 2.0
PROFILE = """
extensions: [tests.worker_fixtures:WorkerTestExtension]
scheduler:
  defaults:
    retry: {{max_attempts: 3, backoff: 200ms, max_backoff: 1s, jitter: false}}
    timeout: 3s
    misfire_grace: 60s
  jobs:
    - extension: testjobs
      job: counted
      schedule: "* * * * * *"
      parameters: {{log: "{log}", seconds: 0.5}}
"""
_COALESCED = re.compile(r"event=\"missed ticks coalesced\" job=testjobs/counted count=(\d+)")
_FIRE = re.compile(
    r"^ts=(\S+) .*event=fire job=(\S+) scheduled_for=(\S+) lag_ms=(\S+) trigger=(\S+)"
)


def _fires(*beats: Proc) -> list[tuple[float, str, str, float, str]]:
    """(logged at, job, scheduled_for, lag_ms, trigger) of every tick the beats sent."""
    out = []
    for beat in beats:
        for line in beat.output().splitlines():
            m = _FIRE.match(line)
            if m:
                at = datetime.fromisoformat(m[1].replace("Z", "+00:00")).timestamp()
                out.append((at, m[2], m[3], float(m[4]), m[5]))
    return sorted(out)


def _executions(log: Path) -> list[tuple[float, str, int]]:
    """(scheduled instant, run id, attempt) of every execution of the job."""
    if not log.exists():
        return []
    rows = []
    for line in log.read_text().splitlines():
        when, run_id, attempt = line.split()
        rows.append((datetime.fromisoformat(when).timestamp(), run_id, int(attempt)))
    return rows


def test_beats_and_worker_ride_through_a_sentinel_failover(
    tmp_path: Path, sentinel_cluster: SentinelCluster, database_url: str
) -> None:
    cluster = sentinel_cluster
    url = cluster.url()
    runs_log = tmp_path / "runs.log"
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE.format(log=runs_log))
    env = service_env(REDIS_URL=url, DATABASE_URL=database_url, SYSTEMPROMPT_PROFILE=str(profile))
    history = History(database_url)

    worker = start_worker(tmp_path, env, name="sentinel", concurrency=2)
    procs = [worker]
    with running(procs):
        beats = []
        for name in ("a", "b"):
            args = [sys.executable, "-m", "beat", "--id", name, "--lease-ttl", str(LEASE_TTL)]
            beats.append(Proc(args, env, tmp_path / f"beat-{name}.log"))
        procs += beats
        wait_for(lambda: len(_executions(runs_log)) >= 3, 60, 0.1, "three runs before the kill")
        # Kill while a run is in flight (it logs first, then sleeps 0.5 s): its worker
        # loses the broker with a message unacknowledged.
        seen = len(_executions(runs_log))
        wait_for(lambda: len(_executions(runs_log)) > seen, 30, 0.01, "a run to start")
        killed_at = cluster.kill_master()
        promoted_at = cluster.wait_promoted(30)

        # Nothing is restarted: beats and worker must find the new master on their own.
        def runs_after(t: float) -> bool:
            return any(when >= t for when, _, _ in _executions(runs_log))

        wait_for(lambda: runs_after(promoted_at + 5), 90, 0.2, "runs 5 s after the promotion")
        # The CLI reads the beat's state through the sentinels: the new leader, alive.
        status = subprocess.run(
            [str(VENV_BIN / "systemprompt"), "infra", "jobs", "status", JOB, "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        leader = json.loads(status.stdout)["beat"]
        assert leader["alive"] and leader["beat_id"] in ("a", "b"), leader
        for secret in (cluster.password, cluster.sentinel_password):
            assert secret not in status.stdout + status.stderr
        for beat in beats:
            beat.stop()
        fires = _fires(*beats)
        instants = {when for _, job, when, _, _ in fires if job == JOB}

        def all_finished() -> bool:
            rows = history.sql(
                "SELECT count(*) FROM job_runs WHERE job_key = %s AND finished_at IS NOT NULL",
                JOB,
            )
            return int(rows[0][0]) >= len(instants)

        wait_for(all_finished, 60, 0.2, "the worker to finish every tick sent")
    assert all(p.popen.returncode is not None for p in procs)
    for proc in procs:
        for secret in (cluster.password, cluster.sentinel_password):
            assert secret not in proc.output(), f"a password leaked into {proc.log_path.name}"

    # Ticks sent per instant, over both beats: exactly one each. The instants the
    # failover swallowed are coalesced into one catch-up tick (misfire rules), and every
    # one of them is accounted for in the new leader's log; none is missing elsewhere.
    per_instant = Counter(when for _, job, when, _, _ in fires if job == JOB)
    doubled = {k: n for k, n in per_instant.items() if n != 1}
    assert not doubled, f"ticks sent more than once: {doubled}"
    seconds = sorted(datetime.fromisoformat(w).timestamp() for w in per_instant)
    every = {seconds[0] + i for i in range(int(seconds[-1] - seconds[0]) + 1)}
    missing = sorted(every - set(seconds))
    assert all(killed_at - 1 < m < promoted_at + 3 * LEASE_TTL for m in missing), missing
    coalesced = sum(int(n) for beat in beats for n in _COALESCED.findall(beat.output()))
    assert coalesced == len(missing), (coalesced, missing)
    triggers = Counter(trigger for _, job, _, _, trigger in fires if job == JOB)
    assert set(triggers) <= {"schedule", "catch-up"}, triggers
    assert triggers["catch-up"] >= (1 if missing else 0), triggers

    # Runs executed: at most once per instant, each on its first attempt. The run in
    # flight at the kill took its overlap lock on the old master (replicated) and could
    # not release it, so the ticks until that lock's TTL ends are skipped (overlap: skip).
    executions = _executions(runs_log)
    executed = Counter(when for when, _, _ in executions)
    assert set(executed) <= set(seconds)
    assert set(executed.values()) == {1}, {k: n for k, n in executed.items() if n > 1}
    assert {attempt for _, _, attempt in executions} == {1}

    # History: one row per instant sent; every instant executed finished, the others
    # were skipped while the stale lock lived.
    states = dict(
        history.sql("SELECT status, count(*) FROM job_runs WHERE job_key = %s GROUP BY status", JOB)
    )
    assert sum(states.values()) == len(seconds), states
    assert set(states) <= {"succeeded", "skipped"}, states
    assert states.get("skipped", 0) == len(seconds) - len(executed), states

    # The gap: from the last tick sent before the kill to the first sent after it.
    before = max(at for at, *_ in fires if at < killed_at)
    after = min(at for at, *_ in fires if at > killed_at)
    gap = after - before
    late = max(lag for *_, lag, _ in fires) / 1000
    print(
        f"\nsentinel failover: promoted {promoted_at - killed_at:.2f} s after kill -9 "
        f"(down-after {DOWN_AFTER_MS} ms, failover-timeout {FAILOVER_TIMEOUT_MS} ms); "
        f"no tick sent for {gap:.2f} s; latest tick sent {late:.2f} s after its instant; "
        f"{len(seconds)} instants sent once each ({dict(triggers)}, {len(missing)} coalesced), "
        f"{len(executions)} runs executed, final states {states}"
    )
    # Bounded: detection + election + the lease TTL the new master still holds + backoff.
    bound = (DOWN_AFTER_MS + FAILOVER_TIMEOUT_MS) / 1000 + 3 * LEASE_TTL + 10
    assert gap < bound, f"no tick for {gap:.1f} s (bound {bound:.1f} s)"
    assert time.time() - killed_at < 300
