"""Webhook delivery (beat.alerting) against a local HTTP server: signature, retries with
backoff on 5xx and timeouts, no retry on a refusal, never blocking the caller."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

import beat.alerting as alerting
from jobs_core.alerts import SIGNATURE_HEADER, AlertKind, AlertState, Incident, Notification, verify
from jobs_core.profile import WebhookConfig
from tests.procs import wait_for

NOTE = Notification(
    Incident("a/b", AlertKind.FAILING, datetime(2024, 1, 1, tzinfo=UTC), ("r1",), "failed"),
    AlertState.FIRING,
    datetime(2024, 1, 1, tzinfo=UTC),
)


class Server:
    """Answers each POST with the next code of ``codes`` (then 204); records them."""

    def __init__(self, codes: list[int], delay: float = 0.0) -> None:
        self.codes = list(codes)
        self.posts: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts.append((dict(self.headers.items()), body))
                time.sleep(delay)
                self.send_response(outer.codes.pop(0) if outer.codes else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerting, "FIRST_BACKOFF_S", 0.01)


def deliver(server: Server, **hook: Any) -> list[bool]:
    results: list[bool] = []
    sender = alerting.WebhookSender(
        [WebhookConfig(url=server.url, secret="k", **hook)], lambda n, ok: results.append(ok)
    )
    started = time.monotonic()
    sender.send([NOTE])
    assert time.monotonic() - started < 0.1  # queued, not sent on the caller's thread
    try:
        wait_for(lambda: results, 30, 0.02, "a delivery outcome")
    finally:
        sender.close()
    return results


@pytest.fixture
def server_factory() -> Iterator[Any]:
    servers: list[Server] = []

    def make(codes: list[int], delay: float = 0.0) -> Server:
        servers.append(Server(codes, delay))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_signed_and_retried_after_server_errors(server_factory: Any) -> None:
    server = server_factory([500, 503])
    assert deliver(server, max_attempts=3) == [True]
    assert len(server.posts) == 3
    for headers, body in server.posts:
        assert verify(body, "k", headers[SIGNATURE_HEADER])


def test_gives_up_after_max_attempts(server_factory: Any) -> None:
    server = server_factory([500, 500, 500])
    assert deliver(server, max_attempts=2) == [False]
    assert len(server.posts) == 2


def test_a_refusal_is_not_retried(server_factory: Any) -> None:
    server = server_factory([400])
    assert deliver(server, max_attempts=5) == [False]
    assert len(server.posts) == 1


def test_a_slow_destination_times_out_and_is_retried(server_factory: Any) -> None:
    server = server_factory([], delay=1.0)
    assert deliver(server, max_attempts=2, timeout=0.2) == [False]
    assert len(server.posts) == 2
