"""The database schema: core and extension migrations, applied once each, in order."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from importlib import resources
from typing import TYPE_CHECKING, Any

from . import history_queries as q
from .errors import ServiceUnavailable, StoreError

if TYPE_CHECKING:
    from .job import Extension

_MIGRATION_LOCK = 0x5359_5350_4A4F_4253  # arbitrary, constant: serialises concurrent migrates


def core_migrations() -> list[tuple[str, str]]:
    folder = resources.files("jobs_core") / "migrations"
    found = sorted(
        (entry.name, entry.read_text("utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )
    return [(f"core/{name.removesuffix('.sql')}", sql) for name, sql in found]


def all_migrations(extensions: Iterable[Extension] = ()) -> list[tuple[str, str]]:
    out = core_migrations()
    for ext in extensions:
        out += [(f"{ext.name}/{mid}", sql) for mid, sql in ext.migrations()]
    return out


#: First line of a migration that cannot run inside a transaction (CREATE INDEX
#: CONCURRENTLY, so that a live table's writes never wait for an index build). Its
#: statements run one at a time, in autocommit: plain statements separated by ``;`` at the
#: end of a line, ``--`` comments on lines of their own, no function bodies.
NO_TRANSACTION = "-- migrate: no-transaction"
#: Between two tries of the migration lock while another ``db migrate`` holds it.
_LOCK_POLL_S = 0.2


def statements(sql: str) -> list[str]:
    """The statements of a :data:`NO_TRANSACTION` migration, in order."""
    code = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [stmt.strip() for stmt in code.split(";") if stmt.strip()]


def _apply(conn: Any, mid: str, sql: str) -> None:
    import psycopg

    try:
        if sql.lstrip().startswith(NO_TRANSACTION):
            # Each statement is idempotent on its own (see the migration); the record comes
            # last, so a failure part-way leaves the migration to be run again whole.
            for stmt in statements(sql):
                conn.execute(stmt.encode())
            conn.execute(q.RECORD_MIGRATION, {"migration_id": mid})
            return
        with conn.transaction():
            conn.execute(sql.encode())
            conn.execute(q.RECORD_MIGRATION, {"migration_id": mid})
    except psycopg.Error as exc:
        raise StoreError(f"migration {mid} failed: {exc}") from exc


def _lock(conn: Any) -> None:
    while not conn.execute(q.TRY_MIGRATION_LOCK, {"lock_id": _MIGRATION_LOCK}).fetchone()[0]:
        time.sleep(_LOCK_POLL_S)


def migrate(database_url: str, extensions: Iterable[Extension] = ()) -> list[str]:
    """Apply every migration not yet applied; returns the ids applied now. Idempotent.

    Each migration is applied with its record in one transaction (a
    :data:`NO_TRANSACTION` one statement by statement, then its record): a failure
    leaves the migrations before it applied and recorded. Concurrent callers (two
    deploys at once) serialise on an advisory lock held by the session.
    """
    return apply_migrations(database_url, all_migrations(extensions))


def apply_migrations(database_url: str, migrations: Iterable[tuple[str, str]]) -> list[str]:
    """:func:`migrate` with the ``(id, sql)`` migrations given, in their order."""
    import psycopg

    try:
        conn = psycopg.connect(database_url, connect_timeout=10, autocommit=True)
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable.at("PostgreSQL", database_url, exc) from None
    applied: list[str] = []
    with conn:
        _lock(conn)
        try:
            conn.execute(q.MIGRATIONS_TABLE)
            done = {r[0] for r in conn.execute(q.APPLIED_MIGRATIONS)}
            for mid, sql in migrations:
                if mid not in done:
                    _apply(conn, mid, sql)
                    applied.append(mid)
        finally:
            # Closing the session releases it too; this only keeps a failure's own error.
            with contextlib.suppress(psycopg.Error):
                conn.execute(q.MIGRATION_UNLOCK, {"lock_id": _MIGRATION_LOCK})
    return applied
