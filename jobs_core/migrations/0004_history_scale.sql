-- History at scale. The runs of one job newest first, and all runs in enqueue order:
-- `jobs list`'s LAST column probes the first per job, and prune-history walks the
-- second in batches (each batch an index range, so a large backlog is not rescanned).
-- Only columns a run's updates never change (see 0001), so those updates stay HOT.
-- Same names and definitions as the run-control migration's indexes: whichever of the
-- two migrations runs first creates them, the other finds them.
CREATE INDEX IF NOT EXISTS job_runs_job_page ON job_runs (job_key, enqueued_at DESC, id DESC);
DROP INDEX IF EXISTS job_runs_job_recent;
CREATE INDEX IF NOT EXISTS job_runs_recent ON job_runs (enqueued_at DESC, id DESC);
