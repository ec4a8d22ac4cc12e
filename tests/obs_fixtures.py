"""Jobs of the observability tests (loaded by real beat and worker processes)."""

from __future__ import annotations

from jobs_core import Extension, Job, JobContext, JobResult


class ToggleJob(Job):
    name = "toggle"
    description = "succeeds; mode=refuse returns a failure, mode=raise raises (retried)"

    async def execute(self, ctx: JobContext) -> JobResult:
        mode = ctx.parameter("mode", str, "ok")
        if mode == "raise":
            raise RuntimeError("asked to raise")
        if mode == "refuse":
            return JobResult.failure("asked to fail")
        return JobResult.success()


class EverySecondJob(Job):
    name = "every-second"
    description = "scheduled every second; nothing runs it in the tests, so it turns late"
    schedule = "* * * * * *"

    async def execute(self, ctx: JobContext) -> JobResult:
        return JobResult.success()


class PausedJob(EverySecondJob):
    name = "paused"
    description = "the same schedule, disabled in the profile: never late"


class ObsTestExtension(Extension):
    name = "obstest"

    def jobs(self) -> list[Job]:
        return [ToggleJob(), EverySecondJob(), PausedJob()]
