-- Short-lived records that CleanupJob deletes once they expire.
CREATE TABLE IF NOT EXISTS temp_records (
    id         bigserial PRIMARY KEY,
    payload    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS temp_records_expires_at ON temp_records (expires_at);
