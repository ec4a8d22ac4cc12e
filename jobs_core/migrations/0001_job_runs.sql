-- Run history: one row per run (a tick, a manual run, a bootstrap run), one row per attempt.
CREATE TABLE IF NOT EXISTS job_runs (
    id              uuid PRIMARY KEY,
    job_key         text        NOT NULL,
    trigger         text        NOT NULL
        CHECK (trigger IN ('schedule', 'manual', 'catch-up', 'bootstrap')),
    status          text        NOT NULL
        CHECK (status IN ('queued', 'running', 'retrying', 'succeeded', 'failed',
                          'timed_out', 'skipped')),
    scheduled_for   timestamptz,
    enqueued_at     timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    attempt         integer     NOT NULL DEFAULT 0,
    max_attempts    integer     NOT NULL DEFAULT 1,
    duration_ms     bigint,
    message         text,
    error           text,
    worker          text,
    items_processed bigint,
    items_failed    bigint,
    data            jsonb       NOT NULL DEFAULT '{}'::jsonb,
    parameters      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    next_attempt_at timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);  -- room on each page for the HOT updates of a run's row

-- A tick is (job, scheduled instant): at most one run row, whatever the redeliveries.
CREATE UNIQUE INDEX IF NOT EXISTS job_runs_tick_key
    ON job_runs (job_key, scheduled_for)
    WHERE trigger IN ('schedule', 'catch-up');

CREATE INDEX IF NOT EXISTS job_runs_job_recent ON job_runs (job_key, enqueued_at DESC);
-- No index on status or finished_at on purpose: a run's row is updated at start and at
-- finish, and leaving the changing columns unindexed keeps those updates HOT (cheap).

CREATE TABLE IF NOT EXISTS job_run_attempts (
    run_id      uuid        NOT NULL REFERENCES job_runs (id) ON DELETE CASCADE,
    attempt     integer     NOT NULL,
    status      text        NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    duration_ms bigint,
    message     text,
    error       text,
    worker      text,
    PRIMARY KEY (run_id, attempt)
);
