from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs_core.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("10m", 600.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("2d", 172800.0),
        ("45", 45.0),
        ("1.5h", 5400.0),
        (" 2m ", 120.0),
        ("1m30s500ms", 90.5),
        ("0", 0.0),
        (0, 0.0),
        (12, 12.0),
        (0.25, 0.25),
    ],
)
def test_parses(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "bad", ["10x", "", "  ", "m", "1h30", "h1", "5 5s", "1e3", "ten", "1,5s", True, None, [1]]
)
def test_rejects_with_a_hint(bad: object) -> None:
    with pytest.raises(ValueError, match=r"is not a duration; use e\.g\. 30s, 10m, 1h30m, 2d"):
        parse_duration(bad)


def test_message_quotes_the_value() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("10x")
    assert str(info.value) == (
        '"10x" is not a duration; use e.g. 30s, 10m, 1h30m, 2d or a number of seconds'
    )


@pytest.mark.parametrize("bad", [-1, -0.5, "-5s", "-3"])
def test_rejects_negative_naming_the_key(bad: object) -> None:
    with pytest.raises(ValueError, match="timeout must not be negative"):
        parse_duration(bad, key="timeout")


def test_rejects_non_finite() -> None:
    for bad in (math.inf, math.nan):
        with pytest.raises(ValueError):
            parse_duration(bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5400, "1h30m"),
        (0.5, "500ms"),
        (0, "0s"),
        (90.5, "1m30s500ms"),
        (172800, "2d"),
        (61, "1m1s"),
    ],
)
def test_formats(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_rejects_negative() -> None:
    with pytest.raises(ValueError):
        format_duration(-1)


@given(st.integers(min_value=0, max_value=10**12))
def test_round_trip_whole_milliseconds(ms: int) -> None:
    assert round(parse_duration(format_duration(ms / 1000)) * 1000) == ms


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_format_is_parseable_and_close(seconds: float) -> None:
    assert abs(parse_duration(format_duration(seconds)) - seconds) <= 0.0005 + seconds * 1e-12


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=999), st.sampled_from(["ms", "s", "m", "h", "d"])
        ),
        min_size=1,
        max_size=5,
    ),
    st.sampled_from(["", " "]),
)
def test_compound_is_the_sum_of_parts(parts: list[tuple[int, str]], sep: str) -> None:
    size = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    text = sep.join(f"{n}{unit}" for n, unit in parts)
    assert parse_duration(text) == pytest.approx(sum(n * size[u] for n, u in parts))
