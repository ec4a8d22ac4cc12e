"""The worker's metrics endpoint, health checks and JSON logs, wired to Celery signals.

Only a ``celery worker`` process acts on them (the signals never fire in Flower or
``celery inspect``). ``infra worker --metrics-port / --log-format`` reach Celery through
the environment variables below; the profile keys are the fallback.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from celery import signals

from jobs_core.logjson import JsonFormatter
from jobs_core.profile import LogFormat, Profile

from . import metrics

if TYPE_CHECKING:
    from jobs_core.metrics_http import MetricsServer

METRICS_PORT_ENV = "SYSTEMPROMPT_METRICS_PORT"
LOG_FORMAT_ENV = "SYSTEMPROMPT_LOG_FORMAT"

log = logging.getLogger("worker.metrics")


def _check_redis(url: str) -> tuple[bool, str]:
    from jobs_core.redis_url import parse_redis_url

    from .redis_client import connect

    client = connect(parse_redis_url(url), socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
        return True, "ok"
    except Exception as exc:
        return False, type(exc).__name__
    finally:
        client.close()


def _check_postgres(url: str) -> tuple[bool, str]:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True, "ok"
    except Exception as exc:
        return False, type(exc).__name__


class _State:
    def __init__(self, port: int | None, fmt: LogFormat, redis_url: str, db: str | None):
        self.port = port
        self.fmt = fmt
        self.redis_url = redis_url
        self.database_url = db
        self.server: MetricsServer | None = None
        self.ready = False
        self.stopping = False

    def healthz(self) -> tuple[bool, dict[str, Any]]:
        return self.ready and not self.stopping, {
            "consuming": self.ready,
            "stopping": self.stopping,
        }

    def readyz(self) -> tuple[bool, dict[str, Any]]:
        ok, details = self.healthz()
        redis_ok, details["redis"] = _check_redis(self.redis_url)
        db_ok = True
        if self.database_url:
            db_ok, details["postgres"] = _check_postgres(self.database_url)
        return ok and redis_ok and db_ok, details


def install(profile: Profile, redis_url: str) -> None:
    """Connect the signal handlers for this worker's settings."""
    raw_port = os.environ.get(METRICS_PORT_ENV)
    port = int(raw_port) if raw_port else profile.scheduler.metrics.worker_port
    fmt = LogFormat(os.environ.get(LOG_FORMAT_ENV) or profile.log_format)
    state = _State(port, fmt, redis_url, profile.database_url)

    if fmt is LogFormat.JSON:

        def json_logs(logger: logging.Logger, **_: Any) -> None:
            for handler in logger.handlers:
                handler.setFormatter(JsonFormatter())

        signals.after_setup_logger.connect(json_logs, weak=False)
        signals.after_setup_task_logger.connect(json_logs, weak=False)

    if port is None:
        return

    def on_init(**_: Any) -> None:
        metrics.enable()  # before the pool forks: the children inherit the setting

    def on_ready(**_: Any) -> None:
        from jobs_core.metrics_http import serve

        state.ready = True
        if state.server is None:
            state.server = serve(
                metrics.registry(), port, healthz=state.healthz, readyz=state.readyz
            )
            log.info("metrics on port %d: /metrics /healthz /readyz", state.server.port)

    def on_stopping(**_: Any) -> None:
        state.stopping = True

    def on_stopped(**_: Any) -> None:
        if state.server is not None:
            state.server.close()
            state.server = None

    def on_process_exit(pid: int | None = None, **_: Any) -> None:
        metrics.process_exited(pid or os.getpid())

    signals.worker_init.connect(on_init, weak=False)
    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_shutting_down.connect(on_stopping, weak=False)
    signals.worker_shutdown.connect(on_stopped, weak=False)
    signals.worker_process_shutdown.connect(on_process_exit, weak=False)
