"""Private redis-server and PostgreSQL processes on free loopback ports.

Used by ``systemprompt infra up`` (data kept under ``.systemprompt/``) and by the test
suite (throw-away data dirs, stopped and restarted by fault tests); the binaries are
the system's or bundled ones, as :mod:`cli.local_servers` finds them. PostgreSQL refuses
to run as root, so when we are root the cluster is owned by and run as the
``postgres`` system user (or ``nobody`` when that user does not exist).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from jobs_core.errors import ConfigError

from .local_servers import (
    MissingBinary,
    ServerBinaries,
    postgres_binaries,
    postgres_binaries_for,
    redis_binaries,
)


class ServerStartError(ConfigError):
    """An embedded server could not be initialised or started."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], deadline: float, what: str) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"{what} did not accept connections on 127.0.0.1:{port} in time")


def _stop_process(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class _ChildServer:
    """Stop, restart and liveness of a server run as a child process."""

    proc: subprocess.Popen[bytes] | None
    stop_signal: signal.Signals = signal.SIGTERM
    stop_timeout: float = 15.0

    def start(self, timeout: float = 30.0) -> _ChildServer:
        raise NotImplementedError

    def stop(self, *, kill: bool = False) -> None:
        _stop_process(self.proc, signal.SIGKILL if kill else self.stop_signal, self.stop_timeout)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class RedisServer(_ChildServer):
    """A redis-server child process. ``restart()`` keeps the port (and data if persisted)."""

    data_dir: Path
    port: int = 0
    password: str | None = None
    persist: bool = False
    tls: dict[str, str] | None = None  # {"cert": ..., "key": ..., "ca": ...}
    binaries: ServerBinaries | None = None  # found on first start when not given
    options: tuple[str, ...] = ()  # more redis-server arguments ("--replicaof", ...)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls:
            return f"rediss://{auth}127.0.0.1:{self.port}/0"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> RedisServer:
        if self.binaries is None:
            self.binaries = redis_binaries()
        binary = self.binaries.program("redis-server")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        args = [binary, "--bind", "127.0.0.1", "--dir", str(self.data_dir)]
        args += ["--save", "", "--daemonize", "no", "--logfile", str(self.data_dir / "redis.log")]
        args += ["--appendonly", "yes" if self.persist else "no"]
        if self.password:
            args += ["--requirepass", self.password]
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port)]
            args += ["--tls-cert-file", self.tls["cert"], "--tls-key-file", self.tls["key"]]
            args += ["--tls-ca-cert-file", self.tls["ca"], "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        args += self.options
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        _wait_port(self.port, self.proc, time.monotonic() + timeout, "redis-server")
        return self


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int

    @property
    def gids(self) -> set[int]:
        return set(os.getgrouplist(self.name, self.gid))


def postgres_account() -> Account | None:
    """The unprivileged account to run PostgreSQL as, when we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        return Account(name, pw.pw_uid, pw.pw_gid)
    raise MissingBinary("running as root and neither a 'postgres' nor a 'nobody' user exists")


@dataclass
class PostgresServer(_ChildServer):
    """A private PostgreSQL cluster (initdb on first start) on a loopback port."""

    data_dir: Path
    port: int = 0
    user: str = "systemprompt"
    database: str = "systemprompt"
    durable: bool = False  # tests turn fsync off; `infra up` keeps data safe
    binaries: ServerBinaries | None = None  # found on first start when not given
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    # SIGINT is PostgreSQL's "fast" shutdown: no waiting for clients to leave.
    stop_signal: signal.Signals = field(default=signal.SIGINT, repr=False)
    stop_timeout: float = field(default=30.0, repr=False)

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def url_for(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _run_as(self) -> dict[str, int]:
        owner = postgres_account()
        return {} if owner is None else {"user": owner.uid, "group": owner.gid}

    def _binaries(self) -> ServerBinaries:
        found = self.binaries or postgres_binaries()
        owner = postgres_account()
        if owner is not None:
            found = postgres_binaries_for(found, owner.uid, owner.gids)
        self.binaries = found
        return found

    def _initdb(self) -> None:
        owner = postgres_account()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            os.chown(self.data_dir, owner.uid, owner.gid)
        args = [self._binaries().program("initdb"), "-D", str(self.data_dir), "-U", self.user]
        args += ["--auth=trust", "--encoding=UTF8", "--no-instructions"]
        if not self.durable:
            args.append("--no-sync")
        done = subprocess.run(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            **self._run_as(),  # type: ignore[call-overload]
        )
        if done.returncode != 0:
            detail = (done.stderr or "").strip().splitlines()
            hint = ""
            if owner is not None:
                hint = (
                    f" (running as root, so PostgreSQL runs as user {owner.name!r}, which must be"
                    f" able to reach {self.data_dir})"
                )
            raise ServerStartError(
                f"initdb failed for {self.data_dir}: {detail[-1] if detail else 'no output'}{hint}"
            )

    def start(self, timeout: float = 30.0) -> PostgresServer:
        postgres = self._binaries().program("postgres")
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        if not self.port:
            self.port = free_port()
        args = [postgres, "-D", str(self.data_dir), "-p", str(self.port)]
        args += ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="]
        args += ["-c", "max_connections=300", "-c", "shared_buffers=64MB"]
        if not self.durable:
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
            args += ["-c", "full_page_writes=off"]
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **self._run_as(),  # type: ignore[call-overload]
        )
        log.close()
        _wait_port(self.port, self.proc, time.monotonic() + timeout, "postgres")
        self._ensure_database(time.monotonic() + timeout)
        return self

    def _ensure_database(self, deadline: float) -> None:
        import psycopg

        while True:
            try:
                with psycopg.connect(self.url_for("postgres"), autocommit=True) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{self.database}"')
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
