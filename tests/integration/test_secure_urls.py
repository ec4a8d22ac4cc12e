"""External-server URL forms, end to end: Redis with a password, Redis over TLS (rediss://,
self-signed CA) and PostgreSQL with a scram password over TLS (sslmode=verify-full).

A real beat and a real worker run against those servers with nothing but the URLs in
REDIS_URL / DATABASE_URL, as a container of compose.yaml would: a scheduled tick and a
manual run (one using ctx.db_pool) must finish in history, and no password may appear in
any process log.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from cli.embedded import PostgresServer, RedisServer
from cli.local_servers import postgres_binaries, redis_binaries, supports_tls
from tests.procs import Proc, missing_tool, running, service_env, start_worker, wait_for

from .worker_support import History, registry_for, send

pytestmark = pytest.mark.integration

REDIS_PASSWORD = "rEd1s-Pw-7f3a9c"
PG_PASSWORD = "pG-Pw-e41b2d"

PROFILE = """
extensions: [tests.worker_fixtures:WorkerTestExtension]
scheduler:
  defaults:
    retry: {max_attempts: 2, backoff: 100ms, max_backoff: 1s, jitter: false}
    timeout: 20s
    misfire_grace: 10s
  jobs:
    - {extension: testjobs, job: noop, schedule: "* * * * * *"}
"""


def _tmpdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_certs(directory: Path) -> dict[str, str]:
    """A throw-away CA and a server certificate for 127.0.0.1 / localhost it signed."""
    if shutil.which("openssl") is None:
        missing_tool("openssl is not installed")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=systemprompt test CA", cwd=directory)  # fmt: skip
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1", cwd=directory)  # fmt: skip
    (directory / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2",
             "-extfile", "ext.cnf", cwd=directory)  # fmt: skip
    for name in ("ca.pem", "server.pem", "server.key"):
        (directory / name).chmod(0o644)
    return {
        "ca": str(directory / "ca.pem"),
        "cert": str(directory / "server.pem"),
        "key": str(directory / "server.key"),
    }


@pytest.fixture
def certs() -> Iterator[dict[str, str]]:
    for binaries in (redis_binaries(), postgres_binaries()):
        if not supports_tls(binaries):
            pytest.skip(f"{binaries.describe()} is built without TLS")
    base = _tmpdir("sp-test-certs-")
    try:
        yield make_certs(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def tls_postgres(certs: dict[str, str]) -> Iterator[str]:
    """A private PostgreSQL that accepts only TLS + scram-sha-256 on TCP; yields its URL."""
    import psycopg

    from jobs_core.registry import discover_extensions
    from jobs_core.schema import migrate

    base = _tmpdir("sp-test-pg-tls-")
    server = PostgresServer(base / "data")
    server.start()
    try:
        data = server.data_dir
        for src, dst in ((certs["cert"], "server.crt"), (certs["key"], "server.key")):
            shutil.copy(src, data / dst)
            (data / dst).chmod(0o600)
            if os.geteuid() == 0:
                owner = pwd.getpwnam(data.owner())
                os.chown(data / dst, owner.pw_uid, owner.pw_gid)
        with psycopg.connect(server.url_for("postgres"), autocommit=True) as conn:
            conn.execute(f"ALTER ROLE {server.user} PASSWORD '{PG_PASSWORD}'")
            conn.execute("ALTER SYSTEM SET password_encryption = 'scram-sha-256'")
            conn.execute("ALTER SYSTEM SET ssl = on")
            hba = conn.execute("SHOW hba_file").fetchone()
            assert hba is not None
            # From the reload on: TLS and a password, or nothing.
            Path(hba[0]).write_text("hostssl all all 127.0.0.1/32 scram-sha-256\n")
            conn.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)
        url = (
            f"postgresql://{server.user}:{quote(PG_PASSWORD)}@127.0.0.1:{server.port}/"
            f"{server.database}?sslmode=verify-full&sslrootcert={certs['ca']}"
        )
        # The rules hold: no password or no TLS is refused.
        for bad in (server.url, server.url.replace("@", f":{PG_PASSWORD}@") + "?sslmode=disable"):
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(bad, connect_timeout=5).close()
        migrate(url, discover_extensions(None))
        yield url
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def _run_stack(tmp: Path, redis_url: str, database_url: str) -> list[Proc]:
    """A beat and a worker on the given URLs; a tick and a manual run reach history."""
    profile_path = tmp / "profile.yaml"
    profile_path.write_text(PROFILE)
    env = service_env(
        REDIS_URL=redis_url, DATABASE_URL=database_url, SYSTEMPROMPT_PROFILE=str(profile_path)
    )
    history = History(database_url)
    worker = start_worker(tmp, env, name="secure", concurrency=2)
    procs = [worker]
    with running(procs):
        beat = Proc(
            [sys.executable, "-m", "beat", "--id", "secure-beat", "--lease-ttl", "2"],
            env,
            tmp / "beat.log",
        )
        procs.append(beat)
        beat.wait_output("became leader", 30)

        from jobs_core.profile import load_profile
        from worker.factory import create_app

        profile = load_profile(profile_path, env=env)
        app, _, _ = create_app(profile, registry_for(profile_path, redis_url, database_url))
        try:
            ids = [send(app, "testjobs/ok"), send(app, "testjobs/db")]
        finally:
            app.close()

        def done() -> bool:
            runs = [history.run(r) for r in ids]
            return all(r is not None and r.finished for r in runs)

        wait_for(done, 30, 0.2, "the manual runs to finish")
        for rid in ids:
            run = history.run(rid)
            assert run is not None and run.status == "succeeded", run
            assert run.worker is not None and run.worker.startswith("secure@")

        def ticks_done() -> int:
            rows = history.sql(
                "SELECT count(*) FROM job_runs WHERE job_key = 'testjobs/noop'"
                " AND trigger = 'schedule' AND status = 'succeeded'"
            )
            return int(rows[0][0]) >= 2

        wait_for(ticks_done, 20, 0.2, "scheduled ticks to run through the worker")
    return procs


def _worker_side_redis_url(tmp: Path, redis_url: str, database_url: str) -> str:
    """The URL the worker's per-process Redis client (overlap locks) connects with."""
    from jobs_core.profile import load_profile
    from worker.factory import create_app

    profile_path = tmp / "probe-profile.yaml"
    profile_path.write_text(PROFILE)
    env = {"REDIS_URL": redis_url, "DATABASE_URL": database_url}
    registry = registry_for(profile_path, redis_url, database_url)
    app, _, runtime = create_app(load_profile(profile_path, env=env), registry)
    app.close()
    return str(runtime.redis_url)


def _assert_no_secret(procs: list[Proc], *secrets: str) -> None:
    for proc in procs:
        text = proc.output()
        assert text, f"{proc.args} logged nothing"
        for secret in secrets:
            assert secret not in text, f"password leaked into {proc.log_path.name}"
            assert quote(secret) not in text, f"password leaked into {proc.log_path.name}"


def test_redis_with_password(tmp_path: Path, database_url: str) -> None:
    base = _tmpdir("sp-test-redis-pw-")
    server = RedisServer(base, password=REDIS_PASSWORD).start()
    try:
        assert server.url.startswith(f"redis://:{REDIS_PASSWORD}@")
        procs = _run_stack(tmp_path, server.url, database_url)
        _assert_no_secret(procs, REDIS_PASSWORD)
    finally:
        server.stop(kill=True)
        shutil.rmtree(base, ignore_errors=True)


def test_redis_tls_and_postgres_tls_with_passwords(
    tmp_path: Path, certs: dict[str, str], tls_postgres: str
) -> None:
    import redis

    base = _tmpdir("sp-test-redis-tls-")
    server = RedisServer(base, password=REDIS_PASSWORD, tls=certs).start()
    try:
        url = f"{server.url}?ssl_cert_reqs=required&ssl_ca_certs={certs['ca']}"
        assert url.startswith("rediss://")
        # The server speaks TLS only, and the CA really is checked: without it, refused.
        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(server.url, socket_connect_timeout=3).ping()
        # The worker's own Redis client (overlap locks) must keep the CA of the URL.
        assert "ssl_ca_certs" in _worker_side_redis_url(tmp_path, url, tls_postgres)
        procs = _run_stack(tmp_path, url, tls_postgres)
        _assert_no_secret(procs, REDIS_PASSWORD, PG_PASSWORD)
    finally:
        server.stop(kill=True)
        shutil.rmtree(base, ignore_errors=True)
