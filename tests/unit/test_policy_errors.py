"""What a mistake in a policy setting tells the operator: which value, which key, where;
and the bounds the resolved policies enforce."""

from __future__ import annotations

import math

import pytest

from jobs_core.durations import format_duration, parse_duration
from jobs_core.errors import ProfileError
from jobs_core.policy import RetryPolicy
from jobs_core.profile import MAX_ALIAS_NODES, Profile, parse_profile


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


def test_each_retry_waits_twice_as_long_as_the_one_before() -> None:
    policy = RetryPolicy(backoff=10.0, max_backoff=600.0, jitter=False)
    assert [policy.delay(attempt) for attempt in (1, 2, 3, 4)] == [10.0, 20.0, 40.0, 80.0]


def test_the_smallest_counts_are_allowed() -> None:
    text = (
        "scheduler:\n"
        "  defaults:\n"
        "    alerts: {consecutive_failures: 1}\n"
        "  jobs:\n"
        "    - {extension: m, job: x, max_runs: 1}\n"
    )
    scheduler = parse_profile(text).scheduler
    assert scheduler.defaults.alerts is not None
    assert scheduler.defaults.alerts.consecutive_failures == 1
    assert scheduler.jobs[0].max_runs == 1


# YAML reads a bare off as false; quoted, it stays the word.
@pytest.mark.parametrize("value", ["off", "false", "null", '"off"', '"OFF"', '" Off "'])
def test_an_alert_is_turned_off_by_off_false_or_null(value: str) -> None:
    text = f"scheduler:\n  defaults:\n    alerts: {{consecutive_failures: {value}}}\n"
    alerts = parse_profile(text).scheduler.defaults.alerts
    assert alerts is not None and alerts.consecutive_failures is None


def _aliased(extra: str) -> str:
    # 250 aliases of a 400-node list (the list and its 399 items) add 100,000 values
    # beyond those written, exactly the bound; `*y`, an alias of a scalar, adds one more.
    items = ", ".join(["1"] * 399)
    aliases = ", ".join(["*x"] * 250)
    return f"config:\n  x:\n    a: &x [{items}]\n    y: &y 2\n    b: [{aliases}{extra}]\n"


def test_aliases_may_add_values_up_to_the_bound() -> None:
    assert MAX_ALIAS_NODES == 100_000
    assert parse_profile(_aliased("")).config["x"]["b"][0] == [1] * 399
    assert parse_profile(_aliased(", 3")).config["x"]["b"][-1] == 3  # written, not added
    with pytest.raises(ProfileError, match="its aliases"):
        parse_profile(_aliased(", *y"))


def test_a_large_profile_without_aliases_is_not_refused_for_its_values() -> None:
    # 15,000 job entries hold about 135,000 values, more than aliases may add, none aliased.
    entries = "".join(
        f"    - {{extension: e{i}, job: j, parameters: {{a: 1, b: 2}}}}\n" for i in range(15_000)
    )
    profile = parse_profile(f"scheduler:\n  jobs:\n{entries}")
    assert len(profile.scheduler.jobs) == 15_000
