"""The dead-letter list in Redis: messages a worker refused, kept whole with the reason.

Written by the worker (see :mod:`worker.screening`), read and purged by
``systemprompt infra jobs dead-letters``. The list is newest first and bounded, so a
flood of bad messages cannot fill Redis.
"""

from __future__ import annotations

import logging
from typing import Any

from jobs_core.wire import DEAD_LETTER_LIMIT, DeadLetter, Keys

log = logging.getLogger("worker.dead_letters")


def record(client: Any, letter: DeadLetter) -> bool:
    """Keep ``letter``; False (logged) when Redis refused it."""
    try:
        with client.pipeline(transaction=True) as pipe:
            pipe.lpush(Keys.DEAD_LETTERS, letter.dumps())
            pipe.ltrim(Keys.DEAD_LETTERS, 0, DEAD_LETTER_LIMIT - 1)
            pipe.execute()
    except Exception as exc:
        log.error(
            "refused a message from queue %s (%s) and could not keep it in %s: %s: %s",
            letter.queue,
            letter.reason,
            Keys.DEAD_LETTERS,
            type(exc).__name__,
            exc,
        )
        return False
    log.warning(
        "refused a message from queue %s, kept in %s: %s",
        letter.queue,
        Keys.DEAD_LETTERS,
        letter.reason,
    )
    return True


def entries(client: Any, limit: int | None = None) -> list[DeadLetter]:
    """The kept messages, newest first."""
    end = -1 if limit is None else limit - 1
    return [DeadLetter.loads(raw) for raw in client.lrange(Keys.DEAD_LETTERS, 0, end)]


def purge(client: Any) -> int:
    """Empty the list; return how many entries it held."""
    with client.pipeline(transaction=True) as pipe:
        pipe.llen(Keys.DEAD_LETTERS)
        pipe.delete(Keys.DEAD_LETTERS)
        count, _ = pipe.execute()
    return int(count)
