"""HTTP basic authentication for every path but ``/healthz``, and CSRF tokens for POSTs.

A CSRF token is an HMAC of the user name under a key drawn when the app starts: a form
rendered for one user is refused for another, and every token dies with the process.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .settings import Account, UiSettings

PUBLIC_PATHS = frozenset({"/healthz"})
REALM = 'Basic realm="systemprompt jobs", charset="UTF-8"'


@dataclass(frozen=True)
class User:
    name: str
    can_act: bool


def _credentials(headers: Headers) -> tuple[str, str] | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def check(settings: UiSettings, headers: Headers) -> Account | None:
    """The account these headers authenticate, else None (constant-time comparisons)."""
    given = _credentials(headers)
    if given is None:
        return None
    found: Account | None = None
    for account in settings.accounts:
        user_ok = hmac.compare_digest(account.name.encode(), given[0].encode())
        password_ok = hmac.compare_digest(account.password.encode(), given[1].encode())
        if user_ok and password_ok:
            found = account
    return found


class BasicAuth:
    """ASGI middleware: 401 with a challenge unless the request carries a known account.

    Sets ``scope["user"]`` to a :class:`User`, and adds a ``Server-Timing`` header with
    the time the app took (the benchmark reads it).
    """

    def __init__(self, app: ASGIApp, settings: UiSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = (time.perf_counter() - start) * 1000
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", f"app;dur={took:.2f}".encode()))
                message["headers"] = headers
            await send(message)

        if scope["path"] not in PUBLIC_PATHS:
            account = check(self.settings, Headers(scope=scope))
            if account is None:
                response = PlainTextResponse(
                    "authentication required\n", 401, headers={"WWW-Authenticate": REALM}
                )
                await response(scope, receive, send)
                return
            scope["user"] = User(account.name, account.can_act)
        await self.app(scope, receive, timed_send)


class Csrf:
    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def token(self, user: str) -> str:
        return hmac.new(self._key, user.encode(), hashlib.sha256).hexdigest()

    def valid(self, user: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.token(user), token or "")
