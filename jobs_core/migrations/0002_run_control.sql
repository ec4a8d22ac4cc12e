-- Run control and audit: statuses cancelled and lost, triggers backfill and rerun, who
-- triggered a run and why, and the run a rerun repeats.
ALTER TABLE job_runs DROP CONSTRAINT IF EXISTS job_runs_trigger_check;
ALTER TABLE job_runs ADD CONSTRAINT job_runs_trigger_check
    CHECK (trigger IN ('schedule', 'manual', 'catch-up', 'bootstrap', 'backfill', 'rerun'));
ALTER TABLE job_runs DROP CONSTRAINT IF EXISTS job_runs_status_check;
ALTER TABLE job_runs ADD CONSTRAINT job_runs_status_check
    CHECK (status IN ('queued', 'running', 'retrying', 'succeeded', 'failed', 'timed_out',
                      'skipped', 'cancelled', 'lost'));
ALTER TABLE job_runs
    ADD COLUMN IF NOT EXISTS triggered_by text,
    ADD COLUMN IF NOT EXISTS reason       text,
    ADD COLUMN IF NOT EXISTS rerun_of     uuid;
