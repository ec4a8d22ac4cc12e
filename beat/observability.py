"""Wires the beat's metrics, health endpoints and job monitor around one :class:`Beat`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from jobs_core.metrics_http import serve
from jobs_core.redis_url import parse_redis_url

from .metrics import BeatMetrics
from .monitor import Monitor
from .reaper import reaper_for
from .redis_client import connect
from .service import Beat


def _redis_ok(url: str) -> tuple[bool, str]:
    client = connect(parse_redis_url(url), socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
        return True, "ok"
    except Exception as exc:
        return False, type(exc).__name__
    finally:
        client.close()


@contextlib.contextmanager
def observed(beat: Beat, port: int | None) -> Iterator[None]:
    """Run the monitor (and with ``port`` the metrics and their HTTP endpoint) while the
    block runs."""
    metrics = BeatMetrics(beat.beat_id) if port is not None else None
    if metrics is not None:
        beat.observer = metrics
    needs_monitor = metrics is not None or bool(beat.profile.database_url)
    monitor = Monitor(beat, metrics).start() if needs_monitor else None
    reaper = reaper_for(beat)
    server = None
    if metrics is not None and port is not None:

        def healthz() -> tuple[bool, dict[str, Any]]:
            return metrics.loop_health()

        def readyz() -> tuple[bool, dict[str, Any]]:
            loop_ok, details = metrics.loop_health()
            redis_ok, details["redis"] = _redis_ok(beat.redis_url)
            db_ok = True
            if monitor is not None:
                db_ok, db = monitor.database_ok()
                if db is not None:
                    details["postgres"] = db
            # Leader or standby: either is ready while its loop turns and its stores answer.
            details["role"] = "leader" if beat.is_leader else "standby"
            return loop_ok and redis_ok and db_ok, details

        server = serve(metrics.registry, port, healthz=healthz, readyz=readyz)
    try:
        yield
    finally:
        if server is not None:
            server.close()
        if monitor is not None:
            monitor.close()
        if reaper is not None:
            reaper.close()
