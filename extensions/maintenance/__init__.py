"""Maintenance jobs shipped with the project: expired-record clean-up and history pruning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import resources

from jobs_core import Extension, Job, JobContext, JobResult
from jobs_core.history import RunHistory
from jobs_core.history_pg import PostgresHistory


class CleanupJob(Job):
    """The seed's example: delete rows of ``temp_records`` whose ``expires_at`` passed."""

    name = "cleanup"
    description = "Clean up expired records"
    schedule = "0 0 * * * *"
    tags = ("maintenance", "nightly")

    async def execute(self, ctx: JobContext) -> JobResult:
        batch = ctx.parameter("batch_size", int, default=10_000)
        deleted = 0
        async with ctx.db_pool.connection() as conn:
            # Batches keep each transaction short on a large backlog.
            while True:
                cur = await conn.execute(
                    "DELETE FROM temp_records WHERE id IN (SELECT id FROM temp_records"
                    " WHERE expires_at < now() LIMIT %s)",
                    (batch,),
                )
                deleted += cur.rowcount
                await conn.commit()
                if cur.rowcount < batch:
                    break
        return JobResult.success().with_message(f"Deleted {deleted} records").with_stats(deleted, 0)


class PruneHistoryJob(Job):
    """Delete finished job runs older than ``retention_days`` (default 30)."""

    name = "prune-history"
    description = "Delete job run history older than retention_days"
    schedule = "0 30 3 * * *"
    tags = ("maintenance", "nightly")

    async def execute(self, ctx: JobContext) -> JobResult:
        days = ctx.parameter("retention_days", int, default=30)
        if days < 1:
            return JobResult.failure(f"retention_days must be >= 1, got {days}")
        cutoff = datetime.now(UTC) - timedelta(days=days)
        history: RunHistory = PostgresHistory(ctx.db_pool)

        def progress(total: int) -> None:
            ctx.log.info("prune-history: %d runs deleted so far", total)

        deleted = await history.prune(cutoff, progress=progress)
        return (
            JobResult.success()
            .with_message(f"Deleted {deleted} runs finished before {cutoff:%Y-%m-%d %H:%M}Z")
            .with_stats(deleted, 0)
            .with_data(retention_days=days, cutoff=cutoff.isoformat())
        )


class HeartbeatJob(Job):
    """Records that the scheduler and a worker are alive; handy to check a deployment."""

    name = "heartbeat"
    description = "Prove that beat, broker and workers work end to end"
    schedule = None
    tags = ("diagnostics",)
    retry = {"max_attempts": 1}

    async def execute(self, ctx: JobContext) -> JobResult:
        lag_ms = None
        if ctx.run.scheduled_for is not None:
            lag_ms = int((datetime.now(UTC) - ctx.run.scheduled_for).total_seconds() * 1000)
        return JobResult.success().with_message("alive").with_data(lag_ms=lag_ms)


class MaintenanceExtension(Extension):
    name = "maintenance"

    def jobs(self) -> list[Job]:
        return [CleanupJob(), PruneHistoryJob(), HeartbeatJob()]

    def migrations(self) -> list[tuple[str, str]]:
        folder = resources.files(__package__) / "migrations"
        return sorted(
            (entry.name.removesuffix(".sql"), entry.read_text("utf-8"))
            for entry in folder.iterdir()
            if entry.name.endswith(".sql")
        )
