-- One run per tick whatever sent it: the beat (schedule, catch-up) or a backfill. A
-- backfill inserts its queued row first and enqueues only when the insert took place,
-- so a tick that already has a run is not enqueued again, and the beat's run of the
-- same instant (same deterministic run id) finds the row and is not run twice.
CREATE UNIQUE INDEX IF NOT EXISTS job_runs_tick_any
    ON job_runs (job_key, scheduled_for)
    WHERE trigger IN ('schedule', 'catch-up', 'backfill');
DROP INDEX IF EXISTS job_runs_tick_key;

-- History across jobs (`history --all`) and by trigger, newest first. Only columns a
-- run's updates never change (see 0001), so those updates stay HOT.
CREATE INDEX IF NOT EXISTS job_runs_job_page ON job_runs (job_key, enqueued_at DESC, id DESC);
DROP INDEX IF EXISTS job_runs_job_recent;
CREATE INDEX IF NOT EXISTS job_runs_recent ON job_runs (enqueued_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS job_runs_trigger_recent
    ON job_runs (trigger, enqueued_at DESC, id DESC);

-- Who cancelled a run (`jobs cancel`, the dashboard, an overlap policy).
ALTER TABLE job_runs ADD COLUMN IF NOT EXISTS cancelled_by text;
