"""The HTTP endpoint of a beat or worker: ``/metrics``, ``/healthz`` and ``/readyz``.

``/metrics`` is prometheus_client's exposition of the process's registry. ``/healthz``
answers 200 while the process's loop turns; ``/readyz`` 200 while what it needs (Redis,
PostgreSQL where used) answers. Both return a small JSON object saying why.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from .errors import ConfigError

#: A check: ``(ok, details)``; details go into the JSON body.
Check = Callable[[], tuple[bool, dict[str, Any]]]
StartResponse = Callable[..., Any]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log."""


@dataclass
class MetricsServer:
    """A running endpoint; :meth:`close` stops it."""

    port: int
    _server: Any
    _thread: threading.Thread

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _answer(start: StartResponse, check: Check) -> Iterable[bytes]:
    try:
        ok, details = check()
    except Exception as exc:  # a check must never take the endpoint down
        ok, details = False, {"error": f"{type(exc).__name__}: {exc}"}
    body = json.dumps({"ok": ok, **details}, default=str).encode()
    status = "200 OK" if ok else "503 Service Unavailable"
    start(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def serve(
    registry: CollectorRegistry,
    port: int,
    *,
    healthz: Check,
    readyz: Check,
    host: str = "0.0.0.0",
) -> MetricsServer:
    """Serve the three paths on ``host:port`` from a daemon thread."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _answer(start, healthz)
        if path == "/readyz":
            return _answer(start, readyz)
        if path == "/metrics":
            result: Iterable[bytes] = metrics(environ, start)
            return result
        body = b"not found: try /metrics, /healthz or /readyz\n"
        start("404 Not Found", [("Content-Type", "text/plain")])
        return [body]

    try:
        server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc} "
            "(--metrics-port / scheduler.metrics)"
        ) from None
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return MetricsServer(server.server_port, server, thread)
