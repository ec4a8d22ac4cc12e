"""What a mistake in a policy setting tells the operator: which value, which key, where;
and the bounds the resolved policies enforce."""

from __future__ import annotations

import math

import pytest

from jobs_core.durations import format_duration, parse_duration
from jobs_core.errors import ProfileError
from jobs_core.policy import RetryPolicy
from jobs_core.profile import Profile, parse_profile


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, "null"), (True, "True"), (math.nan, "nan"), (math.inf, "inf"), ([1], "[1]")],
)
def test_a_rejected_duration_shows_the_value(value: object, shown: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert str(info.value).startswith(f"{shown} is not a duration; use e.g. 30s")


def test_a_negative_duration_names_the_setting() -> None:
    with pytest.raises(ValueError, match=r"^duration must not be negative \(got -1\)"):
        parse_duration(-1)
    with pytest.raises(ValueError, match=r"^timeout must not be negative \(got -1\)"):
        parse_duration(-1, key="timeout")


@pytest.mark.parametrize("value", [math.inf, math.nan, -1.0, True])
def test_format_duration_refuses_what_it_cannot_render(value: float) -> None:
    with pytest.raises(ValueError, match=f"cannot format {value!r} as a duration"):
        format_duration(value)


@pytest.mark.parametrize(
    "settings", [{"backoff": -1.0}, {"max_backoff": -1.0}, {"backoff": -1.0, "max_backoff": -1.0}]
)
def test_a_negative_backoff_is_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff and max_backoff must be >= 0"):
        RetryPolicy(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("max_backoff", [0.0, 0.5])
def test_a_cap_below_one_second_is_allowed(max_backoff: float) -> None:
    policy = RetryPolicy(backoff=10.0, max_backoff=max_backoff, jitter=False)
    assert policy.delay(3) == max_backoff


def _overlap_error(value: str) -> str:
    with pytest.raises(ProfileError) as info:
        parse_profile(f"scheduler:\n  defaults:\n    overlap: {value}\n", path="p.yaml")
    return str(info.value)


@pytest.mark.parametrize(
    ("yaml_value", "shown"),
    [
        ("true", "true"),
        ("false", "false"),
        ("{a: 1}", "a mapping"),
        ("[1]", "a list"),
        # One line whatever the value holds: backslashes, newlines and tabs are escaped.
        ('"a\\\\b\\nc\\td"', '"a\\\\b\\nc\\td"'),
    ],
)
def test_a_bad_value_is_shown_on_one_line(yaml_value: str, shown: str) -> None:
    message = _overlap_error(yaml_value)
    assert message.startswith(f"p.yaml:3: scheduler.defaults.overlap: {shown} is not an overlap")
    assert "\n" not in message


def test_the_first_mistake_in_file_order_is_reported_with_a_count_of_the_rest() -> None:
    # The model checks `extensions` before `scheduler`; the reader meets line 3 first.
    text = "scheduler:\n  defaults:\n    overlap: sometimes\nextensions: nope\n"
    with pytest.raises(ProfileError) as info:
        parse_profile(text, path="p.yaml")
    assert (info.value.line, info.value.key) == (3, "scheduler.defaults.overlap")
    assert str(info.value).startswith(
        'p.yaml:3: scheduler.defaults.overlap: "sometimes" is not an overlap mode'
    )
    assert str(info.value).endswith("(and 1 more)")


def test_a_mistake_without_a_line_names_no_line() -> None:
    with pytest.raises(ProfileError) as info:
        Profile.from_dict({"extensions": 5})
    assert info.value.line is None
    assert str(info.value) == "extensions: must be a list, got 5"


def test_a_bad_value_from_the_environment_names_the_variable_not_a_line() -> None:
    with pytest.raises(ProfileError) as info:
        parse_profile("redis_url: redis://localhost:6379/0\n", env={"REDIS_URL": "http://x"})
    assert info.value.line is None
    assert info.value.key == "redis_url (from $REDIS_URL)"
