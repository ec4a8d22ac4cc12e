"""``systemprompt infra up``: the whole system on one machine, for trying and developing.

Redis and PostgreSQL are started privately (data under ``.systemprompt/``, reused on the
next start) unless the profile or the environment names servers; their binaries are the
system's or bundled ones (:mod:`cli.local_servers`). Then the schema is migrated and one
beat, one worker and Flower (when installed) run as child processes whose log lines are
streamed here. Ctrl-C stops everything, children first.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import click

from control.context import STACK_FILE, STATE_DIR, Context, embedded_stack_urls
from jobs_core.errors import ConfigError
from jobs_core.schema import migrate
from jobs_core.urls import mask_secrets_in, mask_url

from .embedded import PostgresServer, RedisServer, free_port, postgres_account
from .local_servers import reachable, shared_data_dir

#: Lines of the children worth streaming: our run events and anything loud.
_INTERESTING = (
    "worker.runs",
    " started",
    "succeeded",
    "failed",
    "retrying",
    "skipped",
    "timed_out",
    "event=",
    "ERROR",
    "CRITICAL",
    "WARNING",
    "Visit me at",
    "ready.",
)
#: ... except these: Celery's own summary of each task repeats our run line, and Flower
#: complains while the worker is still starting.
_BORING = ("] Task jobs.", "Inspect method")


class Child:
    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        secrets: list[str],
        ready_when: str | None = None,
    ):
        self.name = name
        self.secrets = secrets
        self.ready_when = ready_when
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
            text=True,
            bufsize=1,
        )
        self._thread = threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str] | None) -> None:
        if stream is None:
            return
        for line in stream:
            line = line.rstrip()
            if self.ready_when and self.ready_when in line:
                self.ready.set()
            if any(word in line for word in _BORING):
                continue
            if line and any(word in line for word in _INTERESTING):
                click.echo(f"[{self.name}] {mask_secrets_in(line, *self.secrets)}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, timeout: float) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                click.echo(f"[up] {self.name} did not stop in {timeout:.0f}s; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


def _flower_installed() -> bool:
    try:
        import flower  # noqa: F401
    except ImportError:
        return False
    return True


def _postgres_data_dir() -> tuple[Path, str]:
    """Where PostgreSQL's data lives, and a note when that is not ``.systemprompt/``.

    As root, PostgreSQL runs as an unprivileged account that cannot enter a clone under a
    private directory (``/root``, a ``mktemp -d``): its data then goes to a directory of
    its own under /var/lib/systemprompt, linked from ``.systemprompt/postgres``.
    """
    local = STATE_DIR.resolve() / "postgres"
    owner = postgres_account()
    note = ""
    data_dir = local
    if owner is not None and not reachable(local, owner.uid, owner.gids):
        data_dir = shared_data_dir(STATE_DIR, "postgres")
        data_dir.mkdir(exist_ok=True)
        if local.is_dir() and not local.is_symlink():
            with contextlib.suppress(OSError):
                local.rmdir()  # left empty by an initdb that could not reach it
        if not local.exists() and not local.is_symlink():
            local.symlink_to(data_dir)
        note = (
            f"; {owner.name!r}, the account PostgreSQL runs as under root, cannot enter "
            f"{local.parent.parent}"
        )
    if local.is_symlink():
        data_dir = local.resolve()
        note += f"; linked from {local}"
    return data_dir, note


def _ui_credentials(ctx: Context) -> tuple[dict[str, str], str | None]:
    """Environment for the dashboard child, and the generated password to print (None
    when the profile or the environment already name an account)."""
    from ui.settings import PASSWORD_ENV, USER_ENV, load_settings

    try:
        load_settings(ctx.profile)
        return {}, None
    except ConfigError:
        pass
    # A local password, kept so that it stays the same from one `infra up` to the next.
    file = STATE_DIR / "ui-password"
    try:
        password = file.read_text().strip()
    except FileNotFoundError:
        password = ""
    if not password:
        password = secrets.token_urlsafe(12)
        file.touch(mode=0o600)
        file.write_text(password + "\n")
    return {USER_ENV: "admin", PASSWORD_ENV: password}, password


def run_stack(ctx: Context, *, flower: bool, concurrency: int, ui: bool = True) -> int:
    began = time.monotonic()
    running = embedded_stack_urls()
    if running:
        raise ConfigError(
            f"a stack started from this directory is already running ({STACK_FILE}); stop it first"
        )
    profile = ctx.profile
    registry = ctx.registry
    STATE_DIR.mkdir(exist_ok=True)
    servers: list[RedisServer | PostgresServer] = []
    children: list[Child] = []
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        redis_url = profile.redis_url
        if not redis_url:
            redis = RedisServer(STATE_DIR.resolve() / "redis", persist=True).start()
            servers.append(redis)
            redis_url = redis.url
            assert redis.binaries is not None
            click.echo(
                f"[up] {redis.binaries.describe()} on {redis_url} (data in {redis.data_dir})"
            )
        else:
            click.echo(f"[up] using Redis at {mask_url(redis_url)}")
        database_url = profile.database_url
        if not database_url:
            data_dir, note = _postgres_data_dir()
            pg = PostgresServer(data_dir, durable=True)
            servers.append(pg)
            pg.start()
            database_url = pg.url
            assert pg.binaries is not None
            click.echo(
                f"[up] {pg.binaries.describe()} on {database_url} (data in {pg.data_dir}{note})"
            )
        else:
            click.echo(f"[up] using PostgreSQL at {mask_url(database_url)}")
        STACK_FILE.write_text(
            json.dumps({"pid": os.getpid(), "redis_url": redis_url, "database_url": database_url})
        )
        applied = migrate(database_url, registry.extensions)
        click.echo(f"[up] database migrated ({len(applied)} new migrations)")

        env = dict(os.environ, REDIS_URL=redis_url, DATABASE_URL=database_url)
        env["PYTHONUNBUFFERED"] = "1"
        if ctx.profile_path:
            env["SYSTEMPROMPT_PROFILE"] = os.path.abspath(ctx.profile_path)
        secrets_masked = [redis_url, database_url]
        queues = ",".join(sorted({jd.policy.queue for jd in registry} or {"jobs"}))
        py = sys.executable
        children.append(
            Child(
                "beat",
                [py, "-m", "beat", "--id", "local-beat"],
                env,
                secrets_masked,
                ready_when="became leader",
            )
        )
        children.append(
            Child(
                "worker",
                [
                    py,
                    "-m",
                    "celery",
                    "-A",
                    "worker.app",
                    "worker",
                    "-Q",
                    queues,
                    "-c",
                    str(concurrency),
                    "-n",
                    "local@%h",
                    "--loglevel",
                    "INFO",
                ],
                env,
                secrets_masked,
                ready_when="ready.",
            )
        )
        if flower and _flower_installed():
            port = 5555 if _port_free(5555) else free_port()
            children.append(
                Child(
                    "flower",
                    [
                        py,
                        "-m",
                        "celery",
                        "-A",
                        "worker.app",
                        "flower",
                        "--address=127.0.0.1",
                        f"--port={port}",
                    ],
                    env,
                    secrets_masked,
                )
            )
        if ui:
            ui_env, generated = _ui_credentials(ctx)
            ui_port = 8585 if _port_free(8585) else free_port()
            children.append(
                Child(
                    "ui",
                    [py, "-m", "cli.main", "infra", "ui", "--port", str(ui_port)],
                    dict(env, **ui_env),
                    [*secrets_masked, *([generated] if generated else [])],
                )
            )
            login = f" (user admin, password {generated})" if generated else ""
            click.echo(f"[up] dashboard on http://127.0.0.1:{ui_port}/{login}")
        click.echo(
            f"[up] {len(registry)} jobs from {len(registry.extensions)} extensions; "
            "press Ctrl-C to stop. Try: systemprompt infra jobs run heartbeat --wait"
        )
        announced = False
        while not stop.wait(0.1 if not announced else 0.5):
            if not announced and all(c.ready.is_set() for c in children if c.ready_when):
                announced = True
                click.echo(f"[up] stack ready in {time.monotonic() - began:.1f} s")
            dead = [c for c in children if not c.alive()]
            if dead:
                names = ", ".join(f"{c.name} (exit {c.proc.returncode})" for c in dead)
                click.echo(f"[up] stopping: {names} exited", err=True)
                return 1
        click.echo("[up] stopping")
        return 0
    finally:
        for child in reversed(children):
            child.terminate(30 if child.name == "worker" else 10)
        for server in reversed(servers):
            server.stop()
        with contextlib.suppress(FileNotFoundError):
            if json.loads(STACK_FILE.read_text()).get("pid") == os.getpid():
                STACK_FILE.unlink()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        click.echo("[up] stopped")


def _port_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) != 0
