"""A periodic duty of the beat in a thread of its own (the job monitor, the reaper).

Main rule: nothing here runs on the scheduling thread, and a failing round never stops
the next one: it is logged, the chore's connections are dropped and made again.

A round still takes CPU (and Python's GIL) that the scheduling thread and Redis need at
an instant: the monitor's round over 100,000 jobs takes seconds. So a round does not
start when the next instant is closer than the last round took (plus a margin), nor
while an instant is being sent, nor while a reloaded profile is being built (which then
has the CPU to itself); it waits until after it, at most :data:`YIELD_MAX_S`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Self

import redis

from .redis_client import connect

if TYPE_CHECKING:
    from .service import Beat

#: A round waits for an instant at most this long (a table with an instant every second
#: never leaves room: the round runs anyway).
YIELD_MAX_S = 5.0
#: Room kept between the end of a round and the next instant.
YIELD_MARGIN_S = 0.5


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
        #: How long the last round took: the room a round needs before an instant.
        self.round_took_s = 0.0

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
            self._yield_to_instant()
            if self._stop.is_set():
                return
            started = time.monotonic()
            try:
                self.round()
            except Exception as exc:
                self._log.warning("%s failed: %s: %s", self.what, type(exc).__name__, exc)
                self._disconnect()
            self.round_took_s = time.monotonic() - started
            self._stop.wait(self.interval())

    def _yield_to_instant(self) -> None:
        """Wait (at most :data:`YIELD_MAX_S`) until a round cannot overlap an instant."""
        give_up = time.monotonic() + YIELD_MAX_S
        while not self._stop.is_set() and time.monotonic() < give_up:
            if self.beat.reloading:
                self._stop.wait(0.1)
                continue
            at = self.beat.next_instant_at
            if at is None:
                return
            left = at - time.time()
            if left >= self.round_took_s + YIELD_MARGIN_S:
                return
            # Due or being sent (the loop moves it on once the send is done): look again
            # shortly after.
            self._stop.wait(min(max(left, 0.0) + 0.05, give_up - time.monotonic()))

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
