"""Tick run ids: deterministic, and the fast millisecond form agrees with the datetime one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from jobs_core.wire import _TICK_NS, tick_run_id, tick_run_id_ms

keys = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,20}/[a-z0-9][a-z0-9_.-]{0,20}", fullmatch=True)
# 1970 .. 2200, whole milliseconds (what the beat schedules), and a few before 1970
instants_ms = st.integers(min_value=-(10**12), max_value=7_258_118_400_000)


@given(keys, instants_ms)
def test_the_millisecond_form_is_the_datetime_form(key: str, ms: int) -> None:
    at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    assert tick_run_id_ms(key, ms) == tick_run_id(key, at)


@given(keys, st.datetimes(timezones=st.just(UTC)))
def test_ids_are_uuid5_of_key_and_instant(key: str, at: datetime) -> None:
    expected = uuid.uuid5(_TICK_NS, f"{key}@{at.timestamp():.6f}")
    assert tick_run_id(key, at) == str(expected)
    assert uuid.UUID(tick_run_id(key, at)).version == 5


def test_ids_differ_by_job_and_instant() -> None:
    at = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    one = tick_run_id("a/b", at)
    assert one == tick_run_id("a/b", at.astimezone(UTC))
    assert one != tick_run_id("a/c", at)
    assert one != tick_run_id("a/b", at + timedelta(milliseconds=1))
