"""A generated extension for the benchmarks: ``$BENCH_SCALE_JOBS`` jobs (default
100,000) named ``j000000``, ``j000001``, ... all on ``$BENCH_SCALE_SCHEDULE`` (default
``0 * * * * *``, every minute on second 0), or cycling through the ``|``-separated
expressions of ``$BENCH_SCALE_SCHEDULES``, with no policy of their own (so the
profile's defaults apply: overlap skip, default retry).

One class, one instance per job: what an application generating many jobs would do
(a class per job would add ~1 KiB of class object per job that is not the scheduler's).
"""

from __future__ import annotations

import os

from jobs_core import Extension, Job, JobContext, JobResult

DEFAULT_JOBS = 100_000
DEFAULT_SCHEDULE = "0 * * * * *"


class ScaleJob(Job):
    description = "generated (bench/scale_ext.py)"

    def __init__(self, name: str, schedule: str) -> None:
        self.name = name  # type: ignore[misc]  # per instance on purpose (see module doc)
        self.schedule = schedule  # type: ignore[misc]

    async def execute(self, ctx: JobContext) -> JobResult:
        return JobResult.success()


def job_name(index: int) -> str:
    return f"j{index:06d}"


class ScaleExtension(Extension):
    name = "scale"

    def jobs(self) -> list[Job]:
        count = int(os.environ.get("BENCH_SCALE_JOBS", DEFAULT_JOBS))
        schedules = os.environ.get("BENCH_SCALE_SCHEDULES", "").split("|")
        if schedules == [""]:
            schedules = [os.environ.get("BENCH_SCALE_SCHEDULE", DEFAULT_SCHEDULE)]
        return [ScaleJob(job_name(i), schedules[i % len(schedules)]) for i in range(count)]
