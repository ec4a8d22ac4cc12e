"""A Redis master, a replica and three sentinels on free loopback ports, for failover tests.

The sentinels are ``redis-server --sentinel`` (the same binary as the servers, found by
cli/local_servers.py), so no separate redis-sentinel program is needed. Timeouts are
short (down after 1 s, failover timeout 3 s) so a failover completes in seconds.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

from cli.embedded import RedisServer, _stop_process, _wait_port, free_port
from cli.local_servers import ServerBinaries, redis_binaries
from tests.procs import wait_for

MASTER_NAME = "sp-master"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000

_SENTINEL_CONF = """\
port {port}
bind 127.0.0.1
daemonize no
dir {dir}
logfile {dir}/sentinel.log
requirepass {sentinel_password}
sentinel sentinel-pass {sentinel_password}
sentinel monitor {name} 127.0.0.1 {master_port} 2
sentinel auth-pass {name} {password}
sentinel down-after-milliseconds {name} {down_after}
sentinel failover-timeout {name} {failover_timeout}
sentinel parallel-syncs {name} 1
"""


@dataclass
class SentinelProc:
    """One ``redis-server --sentinel`` process."""

    data_dir: Path
    port: int
    password: str
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def client(self) -> redis.Redis:
        return redis.Redis(
            port=self.port, password=self.password, socket_timeout=2, decode_responses=True
        )

    def stop(self) -> None:
        _stop_process(self.proc, signal.SIGKILL, 10)
        self.proc = None


@dataclass
class SentinelCluster:
    base: Path
    password: str
    sentinel_password: str
    binaries: ServerBinaries = field(default_factory=redis_binaries)
    servers: list[RedisServer] = field(default_factory=list)
    sentinels: list[SentinelProc] = field(default_factory=list)

    def start(self, timeout: float = 60.0) -> SentinelCluster:
        auth = ("--masterauth", self.password)
        master = RedisServer(
            self.base / "master", password=self.password, binaries=self.binaries, options=auth
        ).start()
        self.servers.append(master)
        follow = ("--replicaof", "127.0.0.1", str(master.port), *auth)
        replica = RedisServer(
            self.base / "replica", password=self.password, binaries=self.binaries, options=follow
        )
        self.servers.append(replica.start())
        for i in range(3):
            directory = self.base / f"sentinel-{i}"
            directory.mkdir(parents=True)
            sentinel = SentinelProc(directory, free_port(), self.sentinel_password)
            conf = directory / "sentinel.conf"  # sentinels rewrite their config: a file
            conf.write_text(
                _SENTINEL_CONF.format(
                    port=sentinel.port,
                    dir=directory,
                    sentinel_password=self.sentinel_password,
                    name=MASTER_NAME,
                    master_port=master.port,
                    password=self.password,
                    down_after=DOWN_AFTER_MS,
                    failover_timeout=FAILOVER_TIMEOUT_MS,
                )
            )
            program = self.binaries.program("redis-server")
            sentinel.proc = subprocess.Popen(
                [program, str(conf), "--sentinel"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            self.sentinels.append(sentinel)
            _wait_port(sentinel.port, sentinel.proc, time.monotonic() + timeout, "sentinel")
        wait_for(self._settled, timeout, 0.2, "the sentinels to see each other and the replica")
        return self

    def _settled(self) -> bool:
        """Every sentinel knows the two others and the synced replica."""
        for sentinel in self.sentinels:
            try:
                info: dict[str, Any] = sentinel.client().sentinel_master(MASTER_NAME)
            except redis.RedisError:
                return False
            if int(info.get("num-other-sentinels", 0)) < 2 or int(info.get("num-slaves", 0)) < 1:
                return False
        return bool(self.replica.proc) and _link_up(self.replica, self.password)

    @property
    def master(self) -> RedisServer:
        return self.servers[0]

    @property
    def replica(self) -> RedisServer:
        return self.servers[1]

    def url(self, scheme: str = "redis+sentinel", db: int = 0) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return (
            f"{scheme}://:{quote(self.password, safe='')}@{hosts}/{MASTER_NAME}/{db}"
            f"?sentinel_password={quote(self.sentinel_password, safe='')}"
        )

    def master_port(self) -> set[int]:
        """The master's port as each answering sentinel names it."""
        ports: set[int] = set()
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                addr = sentinel.client().sentinel_get_master_addr_by_name(MASTER_NAME)
                if addr:
                    ports.add(int(addr[1]))
        return ports

    def kill_master(self) -> float:
        """kill -9 the master; returns the time.time() of the kill."""
        self.master.stop(kill=True)
        return time.time()

    def wait_promoted(self, timeout: float) -> float:
        """Until every sentinel names the replica and the replica says it is master."""

        def promoted() -> bool:
            if self.master_port() != {self.replica.port}:
                return False
            try:
                role = redis.Redis(port=self.replica.port, password=self.password).role()
            except redis.RedisError:
                return False
            return bool(role) and role[0] in (b"master", "master")

        wait_for(promoted, timeout, 0.05, "a sentinel failover to the replica")
        return time.time()

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in self.servers:
            server.stop(kill=True)


def _link_up(server: RedisServer, password: str) -> bool:
    try:
        info = redis.Redis(port=server.port, password=password, socket_timeout=2).info(
            "replication"
        )
    except redis.RedisError:
        return False
    return info.get("master_link_status") == "up"
