"""Jobs used by the worker tests (loaded by real worker processes through the profile)."""

from __future__ import annotations

import asyncio
import time

from jobs_core import Extension, Job, JobContext, JobResult


class OkJob(Job):
    name = "ok"
    description = "succeeds"
    tags = ("test", "fast")

    async def execute(self, ctx: JobContext) -> JobResult:
        return JobResult.success().with_message(f"hello {ctx.parameter('who', str, 'world')}")


class NoopJob(Job):
    name = "noop"
    description = "does nothing (throughput and scaling tests)"
    overlap = "allow"

    async def execute(self, ctx: JobContext) -> JobResult:
        return JobResult.success()


class FlakyJob(Job):
    name = "flaky"
    description = "fails on its first attempt, succeeds on the second"

    async def execute(self, ctx: JobContext) -> JobResult:
        if ctx.run.attempt == 1:
            raise RuntimeError("first attempt always fails")
        return JobResult.success().with_message(f"ok on attempt {ctx.run.attempt}")


class BrokenJob(Job):
    name = "broken"
    description = "always raises"

    async def execute(self, ctx: JobContext) -> JobResult:
        raise ValueError(f"broken on attempt {ctx.run.attempt}")


class SlowJob(Job):
    name = "slow"
    description = "sleeps `seconds` (default 60): longer than its timeout"

    async def execute(self, ctx: JobContext) -> JobResult:
        await asyncio.sleep(ctx.parameter("seconds", float, 60.0))
        return JobResult.success().with_message("slept")


class StubbornJob(Job):
    name = "stubborn"
    description = "blocks the event loop, ignoring cancellation"

    async def execute(self, ctx: JobContext) -> JobResult:
        time.sleep(ctx.parameter("seconds", float, 8.0))
        return JobResult.success()


class RefusingJob(Job):
    name = "refusing"
    description = "returns JobResult.failure (not retried)"

    async def execute(self, ctx: JobContext) -> JobResult:
        return JobResult.failure("nothing to do here")


class DbJob(Job):
    name = "db"
    description = "writes and reads the test database through ctx.db_pool"

    async def execute(self, ctx: JobContext) -> JobResult:
        async with ctx.db_pool.connection() as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS worker_test_marks (run_id text PRIMARY KEY)"
            )
            await conn.execute(
                "INSERT INTO worker_test_marks VALUES (%s) ON CONFLICT DO NOTHING",
                (ctx.run.run_id,),
            )
            cur = await conn.execute("SELECT count(*) FROM worker_test_marks")
            row = await cur.fetchone()
        assert row is not None
        return JobResult.success().with_stats(int(row[0]), 0).with_data(rows=int(row[0]))


class LongJob(Job):
    name = "long"
    description = "sleeps `seconds`, then records the run (kill -9 test)"

    async def execute(self, ctx: JobContext) -> JobResult:
        await asyncio.sleep(ctx.parameter("seconds", float, 6.0))
        return JobResult.success().with_message(f"finished on attempt {ctx.run.attempt}")


class CountedJob(Job):
    name = "counted"
    description = (
        "appends its scheduled instant, run id and attempt to the file `log`, then sleeps `seconds`"
    )

    async def execute(self, ctx: JobContext) -> JobResult:
        when = ctx.run.scheduled_for.isoformat() if ctx.run.scheduled_for else "-"
        line = f"{when} {ctx.run.run_id} {ctx.run.attempt}\n"
        # One write of an O_APPEND file: lines of concurrent runs never interleave.
        with open(ctx.parameter("log", str), "a") as out:
            out.write(line)
        await asyncio.sleep(ctx.parameter("seconds", float, 0.0))
        return JobResult.success()


class WorkerTestExtension(Extension):
    name = "testjobs"

    def jobs(self) -> list[Job]:
        return [
            OkJob(),
            NoopJob(),
            FlakyJob(),
            BrokenJob(),
            SlowJob(),
            StubbornJob(),
            RefusingJob(),
            DbJob(),
            LongJob(),
            CountedJob(),
        ]


class ScheduledOkJob(Job):
    name = "ok"
    description = "a second job named ok (ambiguous bare name), scheduled every minute"
    schedule = "0 * * * * *"

    async def execute(self, ctx: JobContext) -> JobResult:
        return JobResult.success()


class OtherExtension(Extension):
    name = "other"

    def jobs(self) -> list[Job]:
        return [ScheduledOkJob()]
