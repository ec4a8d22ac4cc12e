"""Shared fixtures: private Redis and PostgreSQL servers started by the test session.

Never the machine's shared instances (nor REDIS_URL/DATABASE_URL): every server here runs
on a free loopback port in a throw-away directory, so fault tests can stop, kill and
restart them. Their binaries are the system's or bundled ones as
``SYSTEMPROMPT_LOCAL_SERVERS`` says (see cli/local_servers.py); a run's last lines name them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest

from cli.embedded import PostgresServer, RedisServer
from cli.local_servers import (
    ENV_VAR,
    MissingBinary,
    choice_from_env,
    postgres_binaries,
    redis_binaries,
)
from jobs_core.errors import ConfigError
from tests.hypothesis_budget import MUTATION_PROFILE
from tests.procs import missing_tool
from tests.sentinel_cluster import SentinelCluster

# Property tests: random locally, so new cases keep being found; derandomized when CI is
# set, so a red build is the code's fault and reproduces (HYPOTHESIS_PROFILE=NAME picks a
# profile by name). Each profile says derandomize explicitly and derives from Hypothesis's
# own default: recent Hypothesis versions load a derandomized profile of their own whenever
# CI exists, even empty. Loaded here, before the test modules build their settings, which
# inherit the loaded profile.
_HYPOTHESIS_BASE = hypothesis.settings.get_profile("default")
hypothesis.settings.register_profile(
    "ci", _HYPOTHESIS_BASE, derandomize=True, database=None, deadline=None, print_blob=True
)
hypothesis.settings.register_profile("dev", _HYPOTHESIS_BASE, derandomize=False)
# `make mutation` reruns the tests once per mutant: few examples (tests that set their own
# count go through tests.hypothesis_budget.examples), always the same ones.
hypothesis.settings.register_profile(
    MUTATION_PROFILE,
    _HYPOTHESIS_BASE,
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=10,
)
hypothesis.settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name the server binaries the run used (also under -q): a CI log then says which."""
    try:
        found = f"{ENV_VAR}={choice_from_env()}: " + "; ".join(
            lookup().describe() for lookup in (redis_binaries, postgres_binaries)
        )
    except ConfigError as exc:  # shown here; the tests that need the server fail on it
        found = str(exc)
    terminalreporter.write_line(f"local servers ({found})")


def _tmpdir(prefix: str) -> Path:
    # Not pytest's tmp_path: PostgreSQL runs as an unprivileged user when we are root
    # and must be able to reach its data dir; pytest's base dir is private to root.
    return Path(tempfile.mkdtemp(prefix=prefix))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    base = _tmpdir("sp-test-redis-")
    server = RedisServer(base).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The session Redis, emptied before each test."""
    import redis

    if not redis_server.running:
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test alone, which the test may stop, kill and restart."""
    base = _tmpdir("sp-test-own-redis-")
    server = RedisServer(base).start()
    try:
        yield server
    finally:
        server.stop(kill=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def sentinel_cluster() -> Iterator[SentinelCluster]:
    """A master, a replica and three sentinels of this test alone (passwords on both)."""
    try:
        binaries = redis_binaries()
    except MissingBinary as exc:
        missing_tool(str(exc))
    base = _tmpdir("sp-test-sentinel-")
    cluster = SentinelCluster(base, "srv-Pw/9c@x", "snt-Pw:4e1", binaries)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    base = _tmpdir("sp-test-pg-")
    server = PostgresServer(base / "data")
    base.chmod(0o755)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def own_pg() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test alone, migrated (its ``url``), which the test may stop
    and restart (same port and data)."""
    from jobs_core.registry import discover_extensions
    from jobs_core.schema import migrate

    base = _tmpdir("sp-test-own-pg-")
    server = PostgresServer(base / "data")
    base.chmod(0o755)
    try:
        server.start()
        migrate(server.url, discover_extensions(None))
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def migrated_template(pg_server: PostgresServer) -> str:
    """A database with every migration applied, cloned for each test."""
    import psycopg

    from jobs_core.registry import discover_extensions
    from jobs_core.schema import migrate

    name = "sp_template"
    with psycopg.connect(pg_server.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    migrate(pg_server.url_for(name), discover_extensions(None))
    return name


@pytest.fixture
def database_url(pg_server: PostgresServer, migrated_template: str) -> Iterator[str]:
    """A fresh, migrated database for this test alone."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {migrated_template}")
    yield pg_server.url_for(name)
    with psycopg.connect(pg_server.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
