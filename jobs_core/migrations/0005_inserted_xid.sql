-- The transaction that inserted each run: what the alerting cycle's incremental health
-- read asks for, the runs inserted since its last read (jobs_core.job_health), from the
-- index of migration 0006. Why not updated_at: an index on a column every update
-- changes makes every update of a run non-HOT (see 0001); the inserting transaction
-- never changes, so updates stay HOT and an insert pays one small index entry. Why a
-- transaction id and not a time: a transaction's now() is its start, so a run committed
-- late carries an instant older than a read made meanwhile; a snapshot says exactly
-- which transactions it could not see (every id from its xmin on may be one of them).
--
-- Adding the column without a default rewrites nothing; the default set afterwards
-- applies to the rows inserted from then on (the older ones have none, and are in no
-- incremental read: the first read after a start is a full one). ALTER TABLE waits for
-- every transaction writing job_runs, so no run is inserted without it once it is done.
ALTER TABLE job_runs ADD COLUMN IF NOT EXISTS inserted_xid xid8;
ALTER TABLE job_runs ALTER COLUMN inserted_xid SET DEFAULT pg_current_xact_id();
