"""The beat's garbage collection policy: automatic collection off, collected when idle."""

from __future__ import annotations

import gc
import weakref

import pytest

from beat import collector
from beat.collector import IdleCollector


def _allocate(n: int) -> list[list[int]]:
    return [[i] for i in range(n)]


def test_automatic_collection_is_off_inside_and_restored_after() -> None:
    assert gc.isenabled()
    with IdleCollector():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_young_garbage_waits_for_idle_time() -> None:
    with IdleCollector() as c:
        gc.collect()
        keep = _allocate(collector.YOUNG_COUNT * 2)
        before = gc.get_count()[0]
        assert before >= collector.YOUNG_COUNT
        c.idle(collector.YOUNG_IDLE_S / 2)  # an instant is too close: nothing happens
        assert gc.get_count()[0] >= before
        c.idle(collector.YOUNG_IDLE_S * 2)
        assert gc.get_count()[0] < collector.YOUNG_COUNT
        del keep


def test_cyclic_garbage_is_freed_by_the_periodic_full_collection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector frees it

    with IdleCollector() as c:
        gc.collect()
        refs = [weakref.ref(Node()) for _ in range(50)]
        assert all(r() is not None for r in refs)
        monkeypatch.setattr(collector, "FULL_EVERY_S", 0.0)
        c.idle(collector.FULL_IDLE_S / 2)  # not idle enough for a full collection
        assert all(r() is not None for r in refs)
        c.idle(collector.FULL_IDLE_S)
        assert all(r() is None for r in refs)


def test_a_full_collection_waits_for_twice_the_time_the_last_one_took(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Over a big job table a full collection takes about a second: it must not start
    when the next instant is closer than that."""

    class Node:
        def __init__(self) -> None:
            self.me = self

    with IdleCollector() as c:
        gc.collect()
        monkeypatch.setattr(collector, "FULL_EVERY_S", 0.0)
        c.full_took_s = 1.0
        refs = [weakref.ref(Node()) for _ in range(50)]
        c.idle(1.5)  # the next instant is nearer than two of the last collection
        assert all(r() is not None for r in refs)
        c.idle(2.0)
        assert all(r() is None for r in refs)
        assert 0 <= c.full_took_s < 1.0  # measured anew
