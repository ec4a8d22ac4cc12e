-- migrate: no-transaction
-- The runs that have not finished, by job: what the alerting cycle reads for the runs
-- still running, however many newer runs there are (a hung run of an `overlap: skip`
-- job under its skipped ticks). Every writer sets finished_at exactly when the status
-- becomes final (jobs_core.status.TERMINAL), so the index holds the unfinished runs and
-- stays as small as they are. The key holds only columns no update changes: a run
-- written once, finished (most runs: lazy start), never enters it and costs what it did;
-- a run written unfinished pays one update that is not HOT when it finishes (finished_at
-- is in the predicate), and none at its start or retries.
--
-- Built CONCURRENTLY: no write to job_runs waits for the build on a live database. A
-- build that failed leaves an invalid index behind, which the DROP removes on the next
-- `db migrate` (the migration is recorded only once both statements succeeded).
DROP INDEX CONCURRENTLY IF EXISTS job_runs_unfinished;
CREATE INDEX CONCURRENTLY job_runs_unfinished ON job_runs (job_key, enqueued_at DESC)
    WHERE finished_at IS NULL;
