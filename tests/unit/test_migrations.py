"""The core migrations as the runner reads them (no database)."""

from __future__ import annotations

from jobs_core.schema import NO_TRANSACTION, core_migrations, statements


def test_statements_of_a_migration_outside_a_transaction() -> None:
    sql = f"""{NO_TRANSACTION}
-- a comment; with a semicolon
DROP INDEX CONCURRENTLY IF EXISTS a;
  -- indented comment;
CREATE INDEX CONCURRENTLY a ON t (x)
    WHERE y IS NULL;
"""
    assert statements(sql) == [
        "DROP INDEX CONCURRENTLY IF EXISTS a",
        "CREATE INDEX CONCURRENTLY a ON t (x)\n    WHERE y IS NULL",
    ]


def test_only_concurrent_index_builds_run_outside_a_transaction() -> None:
    """Every core migration that builds an index on existing runs concurrently is
    marked, and one so marked contains nothing else (its statements are not atomic)."""
    marked = {mid: sql for mid, sql in core_migrations() if sql.startswith(NO_TRANSACTION)}
    assert list(marked) == ["core/0004_unfinished_runs", "core/0006_inserted_runs"]
    allowed = ("DROP INDEX CONCURRENTLY IF EXISTS ", "CREATE INDEX CONCURRENTLY ")
    for sql in marked.values():
        for stmt in statements(sql):
            assert stmt.startswith(allowed), stmt
