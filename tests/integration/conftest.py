"""Fixtures of the beat's process tests (test_beat.py, test_beat_schedules.py)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.beat_fixtures import BeatProcs, beat_procs


@pytest.fixture
def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="sp-beat-test-"))


@pytest.fixture
def procs(workdir: Path) -> Iterator[BeatProcs]:
    with beat_procs(workdir) as p:
        yield p
