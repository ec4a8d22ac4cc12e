"""Safe rendering of connection URLs: passwords never reach logs or CLI output."""

from __future__ import annotations

import math
import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from .errors import ConfigError
from .text import cut

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/]*):(?P<pw>[^@/]*)@")


def mask_url(url: str | None) -> str:
    """Return ``url`` with any password replaced by ``***``.

    Also masks ``password=`` query parameters (libpq style) so a DSN pasted with the
    password in the query string is as safe as one with userinfo.
    """
    if not url:
        return ""
    authority = url.partition("://")[2].partition("/")[0]
    if "@" in authority and ("#" in authority or "?" in authority):
        # An unencoded '#' or '?' in a password would end the netloc early for urlsplit.
        return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            userinfo = f"{user}:***"
        elif parts.scheme.startswith(("redis", "sentinel")) and userinfo:
            # redis://secret@host means password "secret" for the default user
            userinfo = "***"
        netloc = f"{userinfo}@{hostport}"
    query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def mask_secrets_in(text: str, *urls: str | None) -> str:
    """Replace every occurrence of the given URLs (and their passwords) in ``text``."""
    for url in urls:
        if not url:
            continue
        text = text.replace(url, mask_url(url))
        try:
            parts = urlsplit(url)
            secrets = [parts.password or ""]
            # ?password=... (libpq) and ?sentinel_password=... (Redis Sentinel)
            secrets += [v for k, v in parse_qsl(parts.query) if k.lower().endswith("password")]
        except ValueError:
            secrets = []
        for secret in filter(None, secrets):
            text = text.replace(secret, "***")
    return text


#: What each URL setting accepts, for the errors that refuse a malformed one.
REDIS_FORMS = (
    "redis://[[user]:password@]host[:port][/db], rediss://..., unix:///path/to/socket"
    " or redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master_name[/db]"
)
DATABASE_FORMS = "postgresql://[user[:password]@]host[:port]/database[?param=value...]"
_REDIS_SCHEMES = ("redis", "rediss", "unix")
_DATABASE_SCHEMES = ("postgresql", "postgres")
_REDIS_INT_PARAMS = ("db", "max_connections", "health_check_interval")
_REDIS_FLOAT_PARAMS = ("socket_timeout", "socket_connect_timeout", "timeout")
_CERT_REQS = ("none", "optional", "required", "cert_none", "cert_optional", "cert_required")


def check_redis_url(url: str, setting: str = "redis_url") -> str:
    """Return ``url`` when redis-py and kombu can use it; else raise ConfigError (masked)."""
    from .redis_url import SENTINEL_FORM, SENTINEL_SCHEMES, InvalidRedisUrl, parse_redis_url

    if url.partition("://")[0].lower() in SENTINEL_SCHEMES:
        try:
            parse_redis_url(url)
        except InvalidRedisUrl as exc:
            raise _refused(setting, url, exc.problem, SENTINEL_FORM) from None
        return url
    problem = _redis_problem(url)
    if problem:
        raise _refused(setting, url, problem, REDIS_FORMS)
    return url


def check_database_url(url: str, setting: str = "database_url") -> str:
    """Return ``url`` when libpq can parse it; else raise ConfigError (masked)."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    problem = ""
    if scheme not in _DATABASE_SCHEMES:
        problem = "the scheme must be postgresql:// or postgres://"
    else:
        problem = _port_problem(url)
    if not problem:
        import psycopg

        try:
            psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.Error as exc:
            problem = mask_secrets_in(str(exc).strip().splitlines()[0], url)
    if problem:
        raise _refused(setting, url, problem, DATABASE_FORMS)
    return url


def _refused(setting: str, url: str, problem: str, forms: str) -> ConfigError:
    shown = cut(mask_url(url))
    return ConfigError(f"{setting} {shown} is not valid: {cut(problem)}; write {forms}")


def _port_problem(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return str(exc)
    # libpq accepts several hosts (host1:5432,host2:5433); each port must be a number.
    hosts = parts.netloc.rpartition("@")[2]
    for host in hosts.split(","):
        if host.startswith("["):
            if "]" not in host:
                return "an IPv6 address in [ ] is not closed"
            port = host.partition("]")[2].removeprefix(":")
        else:
            port = host.partition(":")[2]
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            return "the port must be a number from 1 to 65535"
    return ""


def _redis_problem(url: str) -> str:
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in _REDIS_SCHEMES:
        return "the scheme must be redis://, rediss://, unix:// or redis+sentinel://"
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError as exc:
        return str(exc)
    if scheme == "unix":
        if not parts.path:
            return "a unix:// URL needs the socket's path, as in unix:///run/redis.sock"
    else:
        problem = _port_problem(url)
        if problem:
            return problem
        db = parts.path.strip("/")
        if db and not db.isdigit():
            return "the path must be a database number such as /0"
    for name, value in query:
        if name in _REDIS_INT_PARAMS and not value.isdigit():
            return f"{name} must be a whole number"
        if name in _REDIS_FLOAT_PARAMS and not _is_seconds(value):
            return f"{name} must be a number of seconds"
        if name == "ssl_cert_reqs" and value.lower() not in _CERT_REQS:
            return f"ssl_cert_reqs must be one of {', '.join(_CERT_REQS[:3])}"
    return ""


def _is_seconds(value: str) -> bool:
    try:
        number = float(value)
    except ValueError:
        return False
    return math.isfinite(number) and number >= 0
