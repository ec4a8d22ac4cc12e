"""Safe rendering of connection URLs: passwords never reach logs or CLI output."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/]*):(?P<pw>[^@/]*)@")


def mask_url(url: str | None) -> str:
    """Return ``url`` with any password replaced by ``***``.

    Also masks ``password=`` query parameters (libpq style) so a DSN pasted with the
    password in the query string is as safe as one with userinfo.
    """
    if not url:
        return ""
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
        elif parts.scheme.startswith("redis") and userinfo:
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
            pw = urlsplit(url).password
        except ValueError:
            pw = None
        if pw:
            text = text.replace(pw, "***")
    return text
