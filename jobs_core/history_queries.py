"""Every SQL statement of the PostgreSQL run history, with named parameters.

Parameters are named after the fields of :class:`jobs_core.history.AttemptStart` and
:class:`~jobs_core.history.AttemptEnd` (bound in :mod:`jobs_core.history_pg`); statuses
come from :mod:`jobs_core.status`.
"""

from __future__ import annotations

from .status import TERMINAL, RunStatus, Trigger

_FINISHED = ", ".join(f"'{status.value}'" for status in sorted(TERMINAL))
_RUNNING = f"'{RunStatus.RUNNING.value}'"

#: A run (``job_runs AS r``) that may still change: it has not finished.
UNFINISHED = f"r.status NOT IN ({_FINISHED})"
#: The one rule of a claim, on an upsert of ``job_runs AS r``: the run is not finished
#: and this attempt is not older than the one it has (else it is a redelivery).
CLAIMABLE = f"{UNFINISHED} AND r.attempt <= EXCLUDED.attempt"

#: Records the attempt of the run the statement's ``run`` CTE returned (no row: none).
_RECORD_ATTEMPT = """
INSERT INTO job_run_attempts (run_id, attempt, status, started_at, finished_at,
                              duration_ms, message, error, worker)
SELECT id, %(attempt)s, %(attempt_status)s, COALESCE(started_at, now()), now(),
       %(duration_ms)s, %(message)s, %(error)s, worker
FROM run
ON CONFLICT (run_id, attempt) DO UPDATE SET status = EXCLUDED.status,
    finished_at = EXCLUDED.finished_at, duration_ms = EXCLUDED.duration_ms,
    message = EXCLUDED.message, error = EXCLUDED.error, worker = EXCLUDED.worker
RETURNING run_id
"""

RUN_COLUMNS = (
    "id::text, job_key, trigger, status, scheduled_for, enqueued_at, started_at, finished_at, "
    "attempt, max_attempts, duration_ms, message, error, worker, items_processed, "
    "items_failed, data, parameters, next_attempt_at, triggered_by, reason, rerun_of::text, "
    "cancelled_by"
)

CREATE_RUN = """
INSERT INTO job_runs (id, job_key, trigger, status, scheduled_for, max_attempts,
                      parameters, message, finished_at, triggered_by, reason, rerun_of)
VALUES (%(run_id)s, %(job_key)s, %(trigger)s, %(status)s, %(scheduled_for)s,
        %(max_attempts)s, %(parameters)s, %(message)s,
        CASE WHEN %(closes_run)s THEN now() END, %(triggered_by)s, %(reason)s, %(rerun_of)s)
ON CONFLICT DO NOTHING
"""

#: One queued run per (id, tick); the conflicts (an id or a tick that has a run already,
#: see the tick index of migration 0003) are left alone, so only new ids come back.
CREATE_TICK_RUNS = """
INSERT INTO job_runs (id, job_key, trigger, status, scheduled_for, max_attempts,
                      parameters, triggered_by, reason)
SELECT t.id, %(job_key)s, %(trigger)s, 'queued', t.scheduled_for, %(max_attempts)s,
       %(parameters)s, %(triggered_by)s, %(reason)s
FROM unnest(%(ids)s::uuid[], %(ticks)s::timestamptz[]) AS t(id, scheduled_for)
ON CONFLICT DO NOTHING
RETURNING id::text
"""

#: Queued runs without a tick (manual runs, reruns), one row per element of the arrays,
#: in one statement: all are recorded or none.
CREATE_QUEUED_RUNS = """
INSERT INTO job_runs (id, job_key, trigger, status, max_attempts, parameters,
                      triggered_by, reason, rerun_of)
SELECT r.id, r.job_key, %(trigger)s, 'queued', r.max_attempts, r.parameters,
       %(triggered_by)s, %(reason)s, %(rerun_of)s
FROM unnest(%(ids)s::uuid[], %(job_keys)s::text[], %(max_attempts)s::integer[],
            %(parameters)s::jsonb[]) AS r(id, job_key, max_attempts, parameters)
ON CONFLICT DO NOTHING
RETURNING id::text
"""

_CANCELLED = f"'{RunStatus.CANCELLED.value}'"

#: Cancels the run if it has not finished; returns its status afterwards, and whether
#: this statement changed it (a CTE sees the row as it was before the update).
CANCEL_RUN = f"""
WITH before AS (SELECT status FROM job_runs WHERE id = %(run_id)s),
changed AS (
    UPDATE job_runs AS r SET status = {_CANCELLED}, finished_at = now(), next_attempt_at = NULL,
        cancelled_by = %(by)s, message = %(message)s,
        duration_ms = CASE WHEN r.started_at IS NOT NULL
            THEN (extract(epoch FROM now() - r.started_at) * 1000)::bigint END,
        updated_at = now()
    WHERE id = %(run_id)s AND {UNFINISHED}
    RETURNING id
)
SELECT (SELECT count(*) FROM changed) > 0, (SELECT status FROM before)
"""

_QUEUED = f"'{RunStatus.QUEUED.value}'"

#: Withdraws runs recorded but never sent: only those still queued and never started
#: (a lazily started first attempt is still queued, and its settle re-inserts the run).
WITHDRAW_QUEUED = f"""
DELETE FROM job_runs
WHERE id = ANY(%(ids)s::uuid[]) AND status = {_QUEUED} AND started_at IS NULL
RETURNING id::text
"""

START_ATTEMPT = f"""
WITH prev AS (SELECT status FROM job_runs WHERE id = %(run_id)s)
INSERT INTO job_runs AS r (id, job_key, trigger, status, scheduled_for, enqueued_at,
                           started_at, attempt, max_attempts, worker, parameters, updated_at,
                           triggered_by, reason)
VALUES (%(run_id)s, %(job_key)s, %(trigger)s, {_RUNNING}, %(scheduled_for)s,
        COALESCE(%(enqueued_at)s, now()), now(), %(attempt)s, %(max_attempts)s, %(worker)s,
        %(parameters)s, now(), %(triggered_by)s, %(reason)s)
ON CONFLICT (id) DO UPDATE SET
    status = EXCLUDED.status, started_at = now(), attempt = EXCLUDED.attempt,
    max_attempts = EXCLUDED.max_attempts, worker = EXCLUDED.worker,
    next_attempt_at = NULL, updated_at = now()
WHERE {CLAIMABLE}
RETURNING (SELECT status FROM prev)
"""

RUN_STATUS = "SELECT status FROM job_runs WHERE id = %(run_id)s"

FINISH_ATTEMPT = f"""
WITH run AS (
    UPDATE job_runs AS r SET status = %(status)s, duration_ms = %(duration_ms)s,
        message = %(message)s, error = %(error)s,
        items_processed = %(items_processed)s, items_failed = %(items_failed)s,
        data = COALESCE(%(data)s, data),
        finished_at = CASE WHEN %(closes_run)s THEN now() END,
        next_attempt_at = %(next_attempt_at)s, cancelled_by = %(cancelled_by)s,
        updated_at = now()
    WHERE id = %(run_id)s AND attempt = %(attempt)s AND {UNFINISHED}
    RETURNING id, worker, started_at
)
{_RECORD_ATTEMPT}
"""

SETTLE_ATTEMPT = f"""
WITH run AS (
    INSERT INTO job_runs AS r (id, job_key, trigger, status, scheduled_for, enqueued_at,
        started_at, finished_at, attempt, max_attempts, worker, parameters, duration_ms,
        message, error, items_processed, items_failed, data, next_attempt_at, updated_at,
        triggered_by, reason, cancelled_by)
    VALUES (%(run_id)s, %(job_key)s, %(trigger)s, %(status)s, %(scheduled_for)s,
        COALESCE(%(enqueued_at)s, now()), %(started_at)s,
        CASE WHEN %(closes_run)s THEN now() END, %(attempt)s, %(max_attempts)s, %(worker)s,
        %(parameters)s, %(duration_ms)s, %(message)s, %(error)s, %(items_processed)s,
        %(items_failed)s, COALESCE(%(data)s, '{{}}'::jsonb), %(next_attempt_at)s, now(),
        %(triggered_by)s, %(reason)s, %(cancelled_by)s)
    ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,
        started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at,
        attempt = EXCLUDED.attempt, max_attempts = EXCLUDED.max_attempts,
        worker = EXCLUDED.worker, parameters = EXCLUDED.parameters,
        duration_ms = EXCLUDED.duration_ms, message = EXCLUDED.message,
        error = EXCLUDED.error, items_processed = EXCLUDED.items_processed,
        items_failed = EXCLUDED.items_failed, data = EXCLUDED.data,
        next_attempt_at = EXCLUDED.next_attempt_at, cancelled_by = EXCLUDED.cancelled_by,
        updated_at = now()
    WHERE {CLAIMABLE}
    RETURNING id, worker, started_at
)
{_RECORD_ATTEMPT}"""

_LOST = f"'{RunStatus.LOST.value}'"
_RETRYING = f"'{RunStatus.RETRYING.value}'"

MARK_LOST = f"""
WITH run AS (
    UPDATE job_runs AS r SET
        status = CASE WHEN %(requeue)s THEN {_RETRYING} ELSE {_LOST} END,
        attempt = CASE WHEN %(requeue)s THEN r.attempt + 1 ELSE r.attempt END,
        message = %(message)s, error = NULL,
        finished_at = CASE WHEN %(requeue)s THEN NULL ELSE now() END,
        next_attempt_at = CASE WHEN %(requeue)s THEN now() END, updated_at = now()
    WHERE id = %(run_id)s AND status = {_RUNNING} AND attempt = %(attempt)s
      AND worker = %(worker)s
    RETURNING id, worker, started_at
)
{_RECORD_ATTEMPT}"""

# No index on status (see migration 0001): a scan, run only when a worker is found dead.
RUNNING_ON = f"""
SELECT {RUN_COLUMNS} FROM job_runs
WHERE status = {_RUNNING} AND worker = %(worker)s
  AND (%(started_before)s::timestamptz IS NULL OR started_at < %(started_before)s)
ORDER BY started_at, id
"""

GET_RUN = f"SELECT {RUN_COLUMNS} FROM job_runs WHERE id = %(run_id)s"

GET_ATTEMPTS = """
SELECT attempt, status, started_at, finished_at, duration_ms, message, error, worker
FROM job_run_attempts WHERE run_id = %(run_id)s ORDER BY attempt
"""

#: The conditions of :func:`runs`, by the name of the parameter each binds.
_RUN_FILTERS = {
    "job_key": "job_key = %(job_key)s",
    "status": "status = %(status)s",
    "trigger": "trigger = %(trigger)s",
    "since": "enqueued_at >= %(since)s",
    "until": "enqueued_at < %(until)s",
    "after": "(enqueued_at, id) < (%(after_enqueued_at)s, %(after_id)s::uuid)",
}


def _known(conditions: frozenset[str]) -> None:
    unknown = conditions - _RUN_FILTERS.keys()
    if unknown:
        raise ValueError(f"unknown run filters: {sorted(unknown)}")


def _where(conditions: frozenset[str] | set[str]) -> str:
    return " AND ".join(_RUN_FILTERS[c] for c in _RUN_FILTERS if c in conditions) or "true"


#: The order of every page: the indexes' (enqueued_at, id), the column and not the
#: ``id::text`` of RUN_COLUMNS (ordering by that text the planner cannot walk an index
#: in order, and adds a sort).
_NEWEST_FIRST = "ORDER BY enqueued_at DESC, job_runs.id DESC"


def runs(conditions: frozenset[str]) -> str:
    """Filtered, keyset-paged runs, newest first; ``conditions`` names the filters used
    (keys of ``_RUN_FILTERS``). The order matches the indexes of migration 0003, so a
    page is an index range scan, with or without a job."""
    _known(conditions)
    return (
        f"SELECT {RUN_COLUMNS} FROM job_runs WHERE {_where(conditions)}"
        f" {_NEWEST_FIRST} LIMIT %(limit)s"
    )


def unindexed(conditions: frozenset[str]) -> frozenset[str]:
    """The conditions no index answers, so a page filtered by them reads runs until
    it has ``limit`` matching ones: status (never indexed, see migration 0001) and,
    for one job, trigger (the trigger index leads with the trigger, not the job)."""
    return frozenset(
        c for c in conditions if c == "status" or (c == "trigger" and "job_key" in conditions)
    )


def scanned_runs(conditions: frozenset[str]) -> str:
    """:func:`runs` reading at most ``%(scan)s`` runs of the indexed conditions' range
    and keeping the ones that match the others (:func:`unindexed`): a page costs at most
    that many rows whatever the filters, and may come back short while older runs match
    (:func:`scan_end` says where to go on from)."""
    _known(conditions)
    wanted = _where(unindexed(conditions))
    return f"""
WITH scanned AS (
    SELECT job_runs.id AS run_id, enqueued_at AS at, {wanted} AS wanted FROM job_runs
    WHERE {_where(conditions - unindexed(conditions))}
    {_NEWEST_FIRST} LIMIT %(scan)s
), page AS (
    SELECT run_id, at FROM scanned WHERE wanted ORDER BY at DESC, run_id DESC LIMIT %(limit)s
)
SELECT {RUN_COLUMNS} FROM page JOIN job_runs ON job_runs.id = page.run_id
ORDER BY page.at DESC, page.run_id DESC
"""


def scan_end(conditions: frozenset[str]) -> str:
    """The last run :func:`scanned_runs` read and the one after it (fewer than two
    rows: it read them all): the next page starts after the first."""
    _known(conditions)
    return (
        f"SELECT enqueued_at, id::text FROM job_runs"
        f" WHERE {_where(conditions - unindexed(conditions))}"
        f" {_NEWEST_FIRST} OFFSET %(scan)s - 1 LIMIT 2"
    )


#: One probe of the (job_key, enqueued_at) index per job: reading every run of every
#: job (DISTINCT ON) grows with the history, this with the number of jobs.
LAST_RUNS = f"""
SELECT r.* FROM unnest(%(job_keys)s::text[]) AS k(job_key)
CROSS JOIN LATERAL (
    SELECT {RUN_COLUMNS} FROM job_runs WHERE job_runs.job_key = k.job_key
    ORDER BY enqueued_at DESC, job_runs.id DESC LIMIT 1
) AS r
"""

#: :data:`LAST_RUNS` reduced to what a table of jobs shows. The keys come as one string
#: (see :data:`KEY_SEPARATOR`): binding 100,000 of them as an array costs the client more
#: than the query.
LAST_STATUSES = """
SELECT k.job_key, r.status, coalesce(r.finished_at, r.started_at, r.enqueued_at)
FROM unnest(string_to_array(%(job_keys)s, E'\\x1f')) AS k(job_key)
CROSS JOIN LATERAL (
    SELECT status, finished_at, started_at, enqueued_at FROM job_runs
    WHERE job_runs.job_key = k.job_key
    ORDER BY enqueued_at DESC, job_runs.id DESC LIMIT 1
) AS r
"""
#: Between the keys of :data:`LAST_STATUSES` (a job key never holds a control character).
KEY_SEPARATOR = "\x1f"

COUNTS_SINCE = """
SELECT status, count(*) FROM job_runs
WHERE job_key = %(job_key)s AND enqueued_at >= %(since)s
GROUP BY status
"""

#: One batch of a prune: the next ``batch`` runs enqueued before the cutoff, in
#: (enqueued_at, id) order after the previous batch's last one (an index range: each
#: batch costs its own size, however much was deleted before it), of which the finished
#: ones are deleted. Returns how many were deleted and looked at, and where the batch
#: ended (no row: nothing left to look at).
PRUNE_BATCH = f"""
WITH batch AS (
    SELECT id, enqueued_at, status, finished_at FROM job_runs
    WHERE enqueued_at < %(before)s AND (enqueued_at, id) > (%(after_at)s, %(after_id)s)
    ORDER BY enqueued_at, id LIMIT %(batch)s
), gone AS (
    DELETE FROM job_runs WHERE id IN (
        SELECT id FROM batch WHERE finished_at < %(before)s AND status IN ({_FINISHED}))
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM batch), enqueued_at, id
FROM batch ORDER BY enqueued_at DESC, id DESC LIMIT 1
"""

# ---------------------------------------------------------------- dashboard and alerts

#: The last ``per_job`` runs of each job, newest first: one probe of (job_key,
#: enqueued_at) per job that stops after ``per_job`` rows (the dashboard's overview).
RECENT_OF_JOBS = """
SELECT k.key, r.ids[1], r.statuses[1], r.statuses, r.durations
FROM unnest(%(job_keys)s::text[]) AS k(key)
CROSS JOIN LATERAL (
    SELECT array_agg(id::text ORDER BY enqueued_at DESC) AS ids,
           array_agg(status ORDER BY enqueued_at DESC) AS statuses,
           array_agg(duration_ms ORDER BY enqueued_at DESC) AS durations
    FROM (SELECT id, status, duration_ms, enqueued_at FROM job_runs
          WHERE job_key = k.key ORDER BY enqueued_at DESC LIMIT %(per_job)s) AS last
) AS r
WHERE r.ids IS NOT NULL
"""

#: Triggers of runs that are ticks of the schedule (backfills included): the rows of the
#: tick ledger, written into the SQL as literals so PostgreSQL can use the partial index
#: on ticks (migration 0003).
TICK_TRIGGERS = tuple(t.value for t in Trigger if t.carries_tick)
_TICKS = ", ".join(f"'{t}'" for t in TICK_TRIGGERS)

#: The tick ledger: a job's latest ticks by scheduled instant, skipped ones too.
TICKS = (
    f"SELECT {RUN_COLUMNS} FROM job_runs WHERE job_key = %(job_key)s"
    f" AND trigger IN ({_TICKS})"
    " ORDER BY scheduled_for DESC LIMIT %(limit)s"
)

#: Statuses that count as failures for the alerts (skipped and cancelled runs do not).
FAILURES = (RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.LOST)
_FAILURES = ", ".join(f"'{status.value}'" for status in FAILURES)

#: Runs of each job among which the job health looks for a failure older than the
#: latest success (``JobHealth.last_failure_at`` when none came after it): looking
#: further would read every run of a job that never fails. Nothing else the health
#: reports depends on it.
HEALTH_RECENT_RUNS = 10

_ENDED = ", ".join(f"'{status.value}'" for status in sorted(TERMINAL))

#: The health of every job of ``keys`` in one round trip (the leading beat's alerting
#: cycle); each lateral is one short index walk per job, summed up in the server (a few
#: values per job come back, not runs):
#:
#: - ``s``: the latest success, walking ``job_runs_job_page`` from the newest run;
#: - ``c``: the failures after it, the same walk up to it;
#: - ``r``: the running runs, all of them, from ``job_runs_unfinished`` (migration 0004:
#:   only unfinished runs), however many finished runs came after them (the skipped
#:   ticks of an ``overlap: skip`` job piling up over a hung run);
#: - ``e``: the latest finished run, walking ``job_runs_job_page`` past the unfinished
#:   ones (as few as that index holds);
#: - ``f``: the newest failure among the HEALTH_RECENT_RUNS newest runs, only read when
#:   ``c`` found none. Nothing looks further back for a failure older than the latest
#:   success: for a job that never failed that walk would read every run of the job
#:   (status is not indexed, see migration 0001), seconds at 10 million runs.
JOB_HEALTH = f"""
SELECT k.job_key, s.ref_at, s.enqueued_at, c.last_failed_at, c.failures, c.ids,
       r.running_ids, r.running_since, e.id, e.status, f.failed_at
FROM unnest(%(keys)s::text[]) AS k(job_key)
LEFT JOIN LATERAL (
    SELECT coalesce(scheduled_for, started_at, enqueued_at) AS ref_at, enqueued_at
    FROM job_runs
    WHERE job_key = k.job_key AND status = '{RunStatus.SUCCEEDED.value}'
    ORDER BY enqueued_at DESC LIMIT 1
) s ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS failures,
           (array_agg(id::text ORDER BY enqueued_at DESC))[1:%(max_ids)s] AS ids,
           (array_agg(coalesce(finished_at, updated_at) ORDER BY enqueued_at DESC))[1]
               AS last_failed_at
    FROM job_runs
    WHERE job_key = k.job_key AND status IN ({_FAILURES})
      AND enqueued_at > coalesce(s.enqueued_at, '-infinity'::timestamptz)
) c ON true
LEFT JOIN LATERAL (
    SELECT array_agg(id::text ORDER BY enqueued_at DESC) AS running_ids,
           array_agg(coalesce(started_at, enqueued_at) ORDER BY enqueued_at DESC)
               AS running_since
    FROM job_runs
    WHERE job_key = k.job_key AND finished_at IS NULL AND status = {_RUNNING}
) r ON true
LEFT JOIN LATERAL (
    SELECT id::text, status FROM job_runs
    WHERE job_key = k.job_key AND status IN ({_ENDED})
    ORDER BY enqueued_at DESC LIMIT 1
) e ON true
LEFT JOIN LATERAL (
    SELECT (array_agg(coalesce(finished_at, updated_at) ORDER BY enqueued_at DESC)
               FILTER (WHERE status IN ({_FAILURES})))[1] AS failed_at
    FROM (SELECT status, finished_at, updated_at, enqueued_at FROM job_runs
          WHERE job_key = k.job_key ORDER BY enqueued_at DESC
          LIMIT {HEALTH_RECENT_RUNS}) AS last
    WHERE c.failures = 0
) f ON true
"""

#: What an incremental health read starts from, in the snapshot every statement of the
#: read shares (REPEATABLE READ): the snapshot's xmin (every transaction it could not see
#: has an id from it on), and the jobs that have an unfinished run (``job_runs_unfinished``,
#: migration 0004). Every UPDATE and DELETE of a run (history_queries) applies to a run
#: that has not finished, except a prune's, which only deletes finished runs.
HEALTH_STATE = """
SELECT pg_snapshot_xmin(pg_current_snapshot())::text,
       ARRAY(SELECT DISTINCT job_key FROM job_runs WHERE finished_at IS NULL)
"""

#: The jobs that have a run inserted by a transaction from ``%(since)s`` on (the xmin of
#: an earlier read's snapshot), from ``job_runs_inserted`` (migration 0006).
INSERTED_SINCE = """
SELECT DISTINCT job_key FROM job_runs WHERE inserted_xid >= %(since)s::xid8
"""

#: Whether ``job_runs_inserted`` exists and is valid (a CONCURRENTLY build that failed
#: leaves an invalid one): without it, INSERTED_SINCE would read the whole table.
INSERTED_INDEX_READY = """
SELECT coalesce((SELECT indisvalid AND indisready FROM pg_index
                 WHERE indexrelid = to_regclass('job_runs_inserted')), false)
"""

# ---------------------------------------------------------------- migrations

#: Held by the session for a whole ``db migrate``: a migration that runs outside a
#: transaction (CREATE INDEX CONCURRENTLY) cannot hold a transaction's lock. Tried, not
#: waited for: a session blocked in pg_advisory_lock keeps a snapshot open, which a
#: concurrent index build waits for while the lock's holder waits for the build.
TRY_MIGRATION_LOCK = "SELECT pg_try_advisory_lock(%(lock_id)s)"
MIGRATION_UNLOCK = "SELECT pg_advisory_unlock(%(lock_id)s)"

MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS systemprompt_migrations (
    id text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())
"""

APPLIED_MIGRATIONS = "SELECT id FROM systemprompt_migrations"

RECORD_MIGRATION = "INSERT INTO systemprompt_migrations (id) VALUES (%(migration_id)s)"
