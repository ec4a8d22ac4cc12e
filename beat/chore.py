"""A periodic duty of the beat in a thread of its own (the job monitor, the reaper).

Main rule: nothing here runs on the scheduling thread, and a failing round never stops
the next one: it is logged, the chore's connections are dropped and made again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Any, Self

import redis

from .redis_client import connect

if TYPE_CHECKING:
    from .service import Beat


class Chore:
    """Subclasses give :attr:`name`, :meth:`interval` and :meth:`round`."""

    name = "beat-chore"
    #: What a round does, for the log line of a failed one.
    what = "chore"
    #: Run the first round at once (the monitor) or after one interval (the reaper).
    first_round_at_start = True

    def __init__(self, beat: Beat, log: logging.Logger) -> None:
        self.beat = beat
        self._log = log
        self._stop = threading.Event()
        self._client: redis.Redis | None = None
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def interval(self) -> float:
        raise NotImplementedError

    def round(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._disconnect()

    def _run(self) -> None:
        if not self.first_round_at_start and self._stop.wait(self.interval()):
            return
        while not self._stop.is_set():
            try:
                self.round()
            except Exception as exc:
                self._log.warning("%s failed: %s: %s", self.what, type(exc).__name__, exc)
                self._disconnect()
            self._stop.wait(self.interval())

    def _redis(self) -> redis.Redis:
        if self._client is None:
            self._client = connect(
                self.beat.redis_target,
                decode_responses=True,
                socket_timeout=5,
                socket_connect_timeout=2,
            )
        return self._client

    def _connections(self) -> list[Any]:
        """What :meth:`_disconnect` closes; subclasses add theirs."""
        return [self._client]

    def _disconnect(self) -> None:
        for conn in self._connections():
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
        self._client = None
