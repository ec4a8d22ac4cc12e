"""A chore's round keeps clear of the beat's instants (it takes CPU the send needs)."""

from __future__ import annotations

import logging
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from beat import chore
from beat.chore import Chore
from tests.procs import wait_for


class _Counting(Chore):
    name = "test-chore"

    def __init__(self, beat: Any) -> None:
        super().__init__(beat, logging.getLogger("test"))
        self.starts: list[float] = []
        self.started = threading.Event()

    def interval(self) -> float:
        return 60.0

    def round(self) -> None:
        self.starts.append(time.time())
        self.started.set()


def test_a_round_waits_until_the_instant_was_sent() -> None:
    beat = SimpleNamespace(next_instant_at=time.time() + 0.3, reloading=False)
    c = _Counting(beat)
    c.round_took_s = 1.0  # the last round would overlap the instant
    c.start()
    try:
        assert not c.started.wait(0.5)  # the instant came: it is being sent
        beat.next_instant_at = time.time() + 60  # sent; the next one is far
        wait_for(c.started.is_set, 5, what="the round")
    finally:
        c.close()
    assert len(c.starts) == 1


def test_a_round_waits_no_longer_than_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """An instant every second never leaves room: the round runs anyway."""
    monkeypatch.setattr(chore, "YIELD_MAX_S", 0.3)
    beat = SimpleNamespace(next_instant_at=time.time() - 1, reloading=False)  # forever being sent
    c = _Counting(beat)
    began = time.time()
    c.start()
    try:
        wait_for(c.started.is_set, 5, what="the round")
    finally:
        c.close()
    assert c.starts[0] - began >= 0.25


def test_a_round_starts_at_once_with_room_or_without_leadership() -> None:
    for at in (None, time.time() + 60):
        c = _Counting(SimpleNamespace(next_instant_at=at, reloading=False))
        began = time.time()
        c.start()
        try:
            wait_for(c.started.is_set, 5, what="the round")
        finally:
            c.close()
        assert c.starts[0] - began < 2.0  # not the 5 s cap


def test_a_round_waits_while_a_reload_is_built() -> None:
    beat = SimpleNamespace(next_instant_at=None, reloading=True)
    c = _Counting(beat)
    c.start()
    try:
        assert not c.started.wait(0.4)
        beat.reloading = False
        wait_for(c.started.is_set, 5, what="the round")
    finally:
        c.close()
