"""One reading of a Redis URL: a direct server, or a master watched by Redis Sentinel.

Direct: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...``, ``unix:///path``.
Sentinel (``sentinel://`` is an alias of ``redis+sentinel://``; ``rediss+sentinel://``
speaks TLS to the sentinels and the servers)::

    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master[/db][?sentinel_password=...]

The userinfo is the servers' login; the sentinels' own (``requirepass`` in sentinel.conf)
goes in ``sentinel_username`` / ``sentinel_password``. Characters such as ``@ : / , ?``
in a password are percent-encoded. Each side (beat, worker, CLI) builds its clients from
the :class:`RedisTarget` this module returns; this module imports no Redis library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import ConfigError
from .urls import mask_url

#: Sentinel schemes and whether they mean TLS.
SENTINEL_SCHEMES = {"redis+sentinel": False, "sentinel": False, "rediss+sentinel": True}
DIRECT_SCHEMES = ("redis", "rediss", "unix")
REDIS_SCHEMES = (*DIRECT_SCHEMES, *SENTINEL_SCHEMES)
DEFAULT_SENTINEL_PORT = 26379
SENTINEL_FORM = (
    "redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master_name[/db]"
    "[?sentinel_password=...]"
)
DIRECT_FORM = "redis://[[user]:password@]host[:port][/db], rediss://... or unix:///path"
_SENTINEL_AUTH = ("sentinel_username", "sentinel_password")
_TLS_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_CERT_REQS = ("required", "optional", "none")


class InvalidRedisUrl(ConfigError, ValueError):
    """A Redis URL that cannot be used; the message shows it with passwords masked."""

    def __init__(self, message: str, problem: str) -> None:
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True)
class SentinelTarget:
    """Where the sentinels are and which master they watch."""

    hosts: tuple[tuple[str, int], ...]
    master_name: str
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RedisTarget:
    """A parsed Redis URL. ``sentinel`` is None for a direct server (then redis-py and
    kombu read ``url`` themselves, query options included)."""

    url: str = field(repr=False)
    scheme: str
    tls: bool
    db: int
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    sentinel: SentinelTarget | None = None
    tls_options: tuple[tuple[str, str], ...] = ()

    @property
    def masked(self) -> str:
        return mask_url(self.url)

    def server_kwargs(self) -> dict[str, Any]:
        """redis-py keyword arguments of a connection to the master (Sentinel form)."""
        kwargs: dict[str, Any] = {"db": self.db}
        if self.username is not None:
            kwargs["username"] = self.username
        if self.password is not None:
            kwargs["password"] = self.password
        if self.tls:
            kwargs["ssl"] = True
            kwargs.update(self.tls_options)
        return kwargs

    def sentinel_kwargs(self) -> dict[str, Any]:
        """redis-py keyword arguments of a connection to a sentinel."""
        kwargs: dict[str, Any] = {}
        if self.sentinel is not None:
            if self.sentinel.username is not None:
                kwargs["username"] = self.sentinel.username
            if self.sentinel.password is not None:
                kwargs["password"] = self.sentinel.password
        if self.tls:
            kwargs["ssl"] = True
            kwargs.update(self.tls_options)
        return kwargs

    def secrets(self) -> list[str]:
        """Every password of the URL (to scrub from text that might echo one)."""
        found = [self.password]
        if self.sentinel is not None:
            found.append(self.sentinel.password)
        return [s for s in found if s]


def parse_redis_url(url: str) -> RedisTarget:
    """Read ``url`` (any form above); :class:`InvalidRedisUrl` names what is wrong."""
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in REDIS_SCHEMES:
        allowed = ", ".join(f"{s}://" for s in REDIS_SCHEMES)
        raise _invalid(url, f"the scheme must be one of {allowed}", DIRECT_FORM)
    if scheme in SENTINEL_SCHEMES:
        return _parse_sentinel(url, scheme)
    try:
        parts = urlsplit(url)
        db_text = parts.path.strip("/") if scheme != "unix" else ""
        query = dict(parse_qsl(parts.query))
        db = int(query.get("db", db_text or "0"))
        username, password = parts.username, parts.password
    except ValueError as exc:
        raise _invalid(url, str(exc), DIRECT_FORM) from None
    return RedisTarget(
        url,
        scheme,
        scheme == "rediss",
        db,
        unquote(username) if username else None,
        unquote(password) if password is not None else None,
    )


def _parse_sentinel(url: str, scheme: str) -> RedisTarget:
    def fail(problem: str) -> InvalidRedisUrl:
        return _invalid(url, problem, SENTINEL_FORM)

    rest = url.partition("://")[2]
    if "#" in rest:
        raise fail("'#' must be percent-encoded (%23)")
    rest, _, query_text = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        if ":" not in userinfo:
            raise fail("the login must be :password@ or user:password@")
        user, _, pw = userinfo.partition(":")
        username, password = (unquote(user) or None), unquote(pw)
    hosts = tuple(_host_port(h, fail) for h in hostlist.split(","))
    master, _, db_text = path.partition("/")
    master = unquote(master)
    if not master:
        raise fail("the path must name the master the sentinels watch, as in /mymaster/0")
    if any(c.isspace() for c in master):
        raise fail("the master name must not contain spaces")
    db_text = db_text.strip("/")
    if db_text and not db_text.isdigit():
        raise fail("the database after the master name must be a number, as in /mymaster/0")
    tls = SENTINEL_SCHEMES[scheme]
    allowed = _SENTINEL_AUTH + (_TLS_OPTIONS if tls else ())
    query: dict[str, str] = {}
    for name, value in parse_qsl(query_text, keep_blank_values=True):
        if name not in allowed:
            extra = "" if tls else " (ssl_* options need rediss+sentinel://)"
            raise fail(f"unknown option {name!r}; allowed: {', '.join(allowed)}{extra}")
        query[name] = value
    reqs = query.get("ssl_cert_reqs", "required").lower().removeprefix("cert_")
    if reqs not in _CERT_REQS:
        raise fail(f"ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}")
    if "ssl_cert_reqs" in query:
        query["ssl_cert_reqs"] = reqs
    sentinel = SentinelTarget(
        hosts,
        master,
        query.get("sentinel_username") or None,
        query.get("sentinel_password"),
    )
    tls_options = tuple((k, query[k]) for k in _TLS_OPTIONS if k in query)
    db = int(db_text or "0")
    return RedisTarget(url, scheme, tls, db, username, password, sentinel, tls_options)


def _host_port(text: str, fail: Any) -> tuple[str, int]:
    if not text:
        raise fail("list the sentinels as host:port, separated by commas")
    if text.startswith("["):
        host, close, port_text = text[1:].partition("]")
        if not close:
            raise fail("an IPv6 address in [ ] is not closed")
        port_text = port_text.removeprefix(":")
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise fail("a sentinel has no host name")
    if not port_text:
        return host, DEFAULT_SENTINEL_PORT
    if not (port_text.isdigit() and 0 < int(port_text) < 65536):
        raise fail("a sentinel's port must be a number from 1 to 65535")
    return host, int(port_text)


def _invalid(url: str, problem: str, form: str) -> InvalidRedisUrl:
    message = f"Redis URL {mask_url(url)} is not valid: {problem}; write {form}"
    return InvalidRedisUrl(message, problem)
