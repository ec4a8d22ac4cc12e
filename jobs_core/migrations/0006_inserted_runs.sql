-- migrate: no-transaction
-- The runs by inserting transaction (migration 0005), for the incremental health read;
-- the runs from before 0005 have none and are left out. Built CONCURRENTLY as 0004: no
-- write to job_runs waits for the build; a failed build leaves an invalid index, which
-- the DROP removes on the next `db migrate` (the health reader reads every job while the
-- index is not valid).
DROP INDEX CONCURRENTLY IF EXISTS job_runs_inserted;
CREATE INDEX CONCURRENTLY job_runs_inserted ON job_runs (inserted_xid)
    WHERE inserted_xid IS NOT NULL;
