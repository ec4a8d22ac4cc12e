"""The database schema: core and extension migrations, applied once each, in order."""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from typing import TYPE_CHECKING

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


def migrate(database_url: str, extensions: Iterable[Extension] = ()) -> list[str]:
    """Apply every migration not yet applied; returns the ids applied now. Idempotent.

    Concurrent callers (two deploys at once) serialise on an advisory lock.
    """
    import psycopg

    try:
        conn = psycopg.connect(database_url, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable.at("PostgreSQL", database_url, exc) from None
    applied: list[str] = []
    with conn, conn.transaction():
        conn.execute(q.MIGRATION_LOCK, {"lock_id": _MIGRATION_LOCK})
        conn.execute(q.MIGRATIONS_TABLE)
        done = {r[0] for r in conn.execute(q.APPLIED_MIGRATIONS)}
        for mid, sql in all_migrations(extensions):
            if mid in done:
                continue
            try:
                conn.execute(sql.encode())
            except psycopg.Error as exc:
                raise StoreError(f"migration {mid} failed: {exc}") from exc
            conn.execute(q.RECORD_MIGRATION, {"migration_id": mid})
            applied.append(mid)
    return applied
