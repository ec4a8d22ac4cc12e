"""Registration, validation and the effective job table (code, then profile)."""

from __future__ import annotations

import copy
import dataclasses
import gc
import re
import sys
from datetime import UTC, datetime
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jobs_core.registry as registry_module
from jobs_core import Extension, Job, JobContext, JobResult
from jobs_core.errors import AmbiguousJob, ProfileError, RegistryError, UnknownJob
from jobs_core.policy import JobPolicy, Overlap, RetryPolicy
from jobs_core.profile import Profile, parse_profile
from jobs_core.registry import JobDefinition, build_registry
from tests.hypothesis_budget import examples


class CleanupJob(Job):
    name = "cleanup"
    description = "Clean up expired records"
    schedule = "0 0 * * * *"

    async def execute(self, ctx: JobContext) -> JobResult:
        return JobResult.success()


class TunedJob(Job):
    name = "tuned"
    description = "sets its own policies"
    tags = ("web",)
    retry = {"max_attempts": 5, "backoff": "30s"}
    timeout = "2m"
    overlap = "queue"
    queue = "heavy"

    async def execute(self, ctx: JobContext) -> JobResult:
        return JobResult.success()


def ext(name: str, *jobs: Job) -> Extension:
    class _Ext(Extension):
        def jobs(self) -> list[Job]:
            return list(jobs)

    _Ext.name = name
    return _Ext()


def test_seed_cleanup_job_registers_with_defaults() -> None:
    registry = build_registry(None, [ext("my-extension", CleanupJob())])
    jd = registry.resolve("cleanup")
    assert jd.key == "my-extension/cleanup"
    assert jd.schedule == "0 0 * * * *" and jd.schedule_source == "code"
    assert jd.cron is not None and jd.enabled
    assert jd.policy.retry.max_attempts == 3 and jd.policy.timeout == 900
    assert jd.policy.overlap is Overlap.SKIP and jd.policy.queue == "jobs"
    assert jd.sources["timeout"] == "built-in"


def test_a_jobs_key_is_built_once_and_follows_a_replaced_name() -> None:
    """The beat reads ``key`` per tick (batches of 100,000): one string, not a new one
    per access; the definition stays a frozen value (equality, ``replace``, copies)."""
    jd = build_registry(None, [ext("my-extension", CleanupJob())]).resolve("cleanup")
    assert jd.key == "my-extension/cleanup" and jd.key is jd.key
    with pytest.raises(dataclasses.FrozenInstanceError):
        jd.name = "other"  # type: ignore[misc]
    renamed = dataclasses.replace(jd, name="renamed")
    assert renamed.key == "my-extension/renamed" and jd.key == "my-extension/cleanup"
    twin = dataclasses.replace(jd)
    assert twin == jd and twin.key == jd.key
    assert "key" not in {f.name for f in dataclasses.fields(jd)}
    assert copy.copy(jd).key == jd.key


def test_built_definitions_are_those_the_dataclass_makes() -> None:
    """The table is built without ``JobDefinition.__init__`` (100,000 jobs): each
    definition holds every field itself, its cached key agrees, and it equals the one
    the dataclass makes of the same values (a field added later with a default must be
    given by the build too)."""
    profile = parse_profile(
        "scheduler:\n  jobs:\n    - {extension: app, job: tuned, enabled: false, "
        "parameters: {days: 3}}\n",
        path="p.yaml",
        env={},
    )
    registry = build_registry(profile, [ext("app", CleanupJob(), TunedJob())])
    assert len(registry) == 2
    for jd in registry:
        values = {f.name: getattr(jd, f.name) for f in dataclasses.fields(jd)}
        assert set(vars(jd)) == {*values, "key"}
        assert jd.key == f"{jd.extension}/{jd.name}"
        made = JobDefinition(**values)
        assert made == jd and repr(made) == repr(jd) and made.key == jd.key
        # It shares its keys with the class's other instances, as the dataclass's do: a
        # plain dict per definition would hold the beat's table at twice the memory.
        assert sys.getsizeof(vars(jd)) == sys.getsizeof(vars(made))
    assert registry.resolve("app/tuned").parameters == {"days": 3}
    assert not registry.resolve("app/tuned").enabled


def test_code_policies_then_profile_overrides_with_sources() -> None:
    profile = parse_profile(
        """
scheduler:
  timezone: Europe/London
  defaults: {timeout: 5m, retry: {max_attempts: 2}}
  jobs:
    - extension: app
      job: tuned
      schedule: "0 */5 * * * *"
      retry: {max_backoff: 1m}
      parameters: {days: 3}
    - {extension: app, job: cleanup, enabled: false, timeout: 10s}
""",
        path="p.yaml",
        env={},
    )
    registry = build_registry(profile, [ext("app", CleanupJob(), TunedJob())])
    tuned = registry.resolve("app/tuned")
    assert tuned.schedule == "0 */5 * * * *" and tuned.schedule_source == "profile"
    assert tuned.policy.retry.max_attempts == 5 and tuned.policy.retry.backoff == 30
    assert tuned.policy.retry.max_backoff == 60
    assert tuned.policy.timeout == 120 and tuned.policy.overlap is Overlap.QUEUE
    # `queue` (the Job attribute here) is shown by its canonical name.
    assert tuned.policy.overlap is Overlap.BUFFER_ALL and tuned.to_json()["overlap"] == "buffer_all"
    assert tuned.policy.queue == "heavy" and tuned.parameters == {"days": 3}
    assert tuned.sources["retry"] == "profile" and tuned.sources["timeout"] == "code"
    assert tuned.cron is not None and str(tuned.cron.tz) == "Europe/London"
    cleanup = registry.resolve("cleanup")
    assert cleanup.enabled is False and cleanup.policy.timeout == 10
    assert cleanup.policy.retry.max_attempts == 2
    assert cleanup.sources["retry"] == "profile defaults"
    assert registry.with_tag("web") == [tuned]


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        ([type("NoName", (CleanupJob,), {"name": ""})()], "the job has no name"),
        ([CleanupJob(), CleanupJob()], "duplicate job key app/cleanup"),
        (
            [type("Bad", (CleanupJob,), {"schedule": "0 0 25 * * *"})()],
            "job app/cleanup: invalid schedule: hour: 25 is out of range 0-23",
        ),
        ([type("Caps", (CleanupJob,), {"name": "Clean Up"})()], "invalid job name 'Clean Up'"),
        (
            [type("BadTimeout", (CleanupJob,), {"timeout": "soon"})()],
            'job app/cleanup: class attribute timeout: "soon" is not a duration',
        ),
    ],
)
def test_invalid_jobs_name_extension_and_job(jobs: list[Job], message: str) -> None:
    with pytest.raises(RegistryError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_registry(None, [ext("app", *jobs)])


def test_profile_override_of_unknown_job_lists_known_ones() -> None:
    profile = parse_profile(
        "scheduler:\n  jobs:\n    - {extension: app, job: cleanpu}\n", path="p.yaml", env={}
    )
    with pytest.raises(ProfileError) as err:
        build_registry(profile, [ext("app", CleanupJob(), TunedJob())])
    text = str(err.value)
    assert text.startswith("p.yaml:3") and "unknown job 'app/cleanpu'" in text
    assert "app/cleanup" in text
    profile = parse_profile(
        "scheduler:\n  jobs:\n    - {extension: nope, job: cleanup}\n", path="p.yaml", env={}
    )
    with pytest.raises(ProfileError, match="unknown extension 'nope'; known extensions: app"):
        build_registry(profile, [ext("app", CleanupJob())])


def test_bootstrap_jobs_resolve_or_fail_with_location() -> None:
    ok = parse_profile("scheduler:\n  bootstrap_jobs: [cleanup]\n", path="p.yaml", env={})
    assert build_registry(ok, [ext("app", CleanupJob())]).bootstrap == ["app/cleanup"]
    bad = parse_profile("scheduler:\n  bootstrap_jobs: [nothing]\n", path="p.yaml", env={})
    with pytest.raises(ProfileError, match=r"p.yaml:2.*unknown job 'nothing'"):
        build_registry(bad, [ext("app", CleanupJob())])


def test_resolve_bare_names() -> None:
    registry = build_registry(None, [ext("a", CleanupJob(), TunedJob()), ext("b", CleanupJob())])
    assert registry.resolve("tuned").key == "a/tuned"
    with pytest.raises(AmbiguousJob, match="a/cleanup, b/cleanup"):
        registry.resolve("cleanup")
    with pytest.raises(UnknownJob, match="closest known: a/tuned"):
        registry.resolve("tunde")


# ------------------------------------------------------------ one policy path


def with_attrs(**attrs: Any) -> Job:
    """A CleanupJob whose class sets the given policy attributes."""
    return type("Custom", (CleanupJob,), attrs)()


def through_code(key: str, value: Any) -> JobPolicy:
    registry = build_registry(None, [ext("app", with_attrs(**{key: value}))])
    return registry.resolve("app/cleanup").policy


def through_profile(key: str, value: Any) -> JobPolicy:
    entry = {"extension": "app", "job": "cleanup", key: value}
    profile = Profile.from_dict({"scheduler": {"jobs": [entry]}}, path="p.yaml")
    return build_registry(profile, [ext("app", CleanupJob())]).resolve("app/cleanup").policy


SAME_SPELLING = [
    ("retry", {"jitter": "false"}, lambda p: p.retry.jitter is False),
    ("retry", {"jitter": "Off"}, lambda p: p.retry.jitter is False),
    ("retry", {"jitter": "TRUE"}, lambda p: p.retry.jitter is True),
    ("retry", {"jitter": False}, lambda p: p.retry.jitter is False),
    ("retry", {"max_attempts": "4"}, lambda p: p.retry.max_attempts == 4),
    ("retry", {"max_attempts": 2.0}, lambda p: p.retry.max_attempts == 2),
    ("retry", {"backoff": "1m", "max_backoff": 90}, lambda p: p.retry.backoff == 60),
    ("overlap", "SKIP", lambda p: p.overlap is Overlap.SKIP),
    ("overlap", " Allow ", lambda p: p.overlap is Overlap.ALLOW),
    ("overlap", "queue", lambda p: p.overlap is Overlap.QUEUE),
    ("overlap", "Buffer_One", lambda p: p.overlap is Overlap.BUFFER_ONE),
    ("overlap", "cancel_other", lambda p: p.overlap is Overlap.CANCEL_OTHER),
    ("overlap", "terminate_other", lambda p: p.overlap is Overlap.TERMINATE_OTHER),
    ("timeout", "1h30m", lambda p: p.timeout == 5400),
    ("timeout", 45, lambda p: p.timeout == 45),
    ("misfire_grace", "500ms", lambda p: p.misfire_grace == 0.5),
    ("queue", "heavy", lambda p: p.queue == "heavy"),
    ("timezone", "Europe/London", lambda p: p.timezone == "Europe/London"),
    ("jitter", "30s", lambda p: p.jitter == 30),
    ("jitter", 0.5, lambda p: p.jitter == 0.5),
    ("start_at", "2026-04-01T09:00:00+01:00", lambda p: p.start_at.hour == 9),
    ("end_at", "2026-04-01T08:00:00Z", lambda p: p.end_at.isoformat().endswith("+00:00")),
    ("max_runs", 3, lambda p: p.max_runs == 3),
    ("max_runs", "7", lambda p: p.max_runs == 7),
]


@pytest.mark.parametrize(("key", "value", "check"), SAME_SPELLING)
def test_same_spelling_same_meaning_in_class_and_profile(key: str, value: Any, check: Any) -> None:
    in_code, in_profile = through_code(key, value), through_profile(key, value)
    assert check(in_code), in_code
    assert in_code == in_profile


BAD_VALUES = [
    ("retry", {"max_attempts": 2.5}, "retry.max_attempts", "2.5 is not a whole number"),
    ("retry", {"max_attempts": "2.5"}, "retry.max_attempts", "not a whole number"),
    ("retry", {"max_attempts": True}, "retry.max_attempts", "use an integer >= 1"),
    ("retry", {"max_attempts": 0}, "retry.max_attempts", "must be at least 1"),
    ("retry", {"jitter": "maybe"}, "retry.jitter", 'must be true or false, got "maybe"'),
    ("retry", {"jitter": 2}, "retry.jitter", "must be true or false"),
    ("retry", {"max_attemps": 3}, "retry.max_attemps", "did you mean 'max_attempts'"),
    ("retry", {"backoff": "-5s"}, "retry.backoff", "backoff must not be negative"),
    ("retry", 3, "retry", "must be a mapping"),
    (
        "overlap",
        "never",
        "overlap",
        "use one of skip|allow|buffer_one|buffer_all|cancel_other|terminate_other",
    ),
    ("overlap", 1, "overlap", "is not an overlap mode"),
    ("timeout", "soon", "timeout", '"soon" is not a duration; use e.g. 30s'),
    ("misfire_grace", -1, "misfire_grace", "must not be negative"),
    ("queue", "not a queue", "queue", "is not a queue name; use letters"),
    ("timezone", "Europe/Londn", "timezone", "is not a known time zone"),
    ("jitter", "a bit", "jitter", "is not a duration"),
    ("start_at", "2026-04-01 09:00", "start_at", "has no UTC offset"),
    ("end_at", "tomorrow", "end_at", "is not an instant"),
    ("max_runs", 0, "max_runs", "is not a run count"),
    ("max_runs", True, "max_runs", "is not a run count"),
]


@pytest.mark.parametrize(("key", "value", "where", "detail"), BAD_VALUES)
def test_bad_values_are_refused_alike_naming_job_and_key(
    key: str, value: Any, where: str, detail: str
) -> None:
    with pytest.raises(RegistryError) as in_code:
        through_code(key, value)
    with pytest.raises(ProfileError) as in_profile:
        through_profile(key, value)
    assert str(in_code.value).startswith(f"job app/cleanup: class attribute {where}: ")
    assert in_profile.value.key == f"scheduler.jobs[0].{where}"
    assert detail in in_profile.value.detail
    # One model, one message: the class attribute error says what the profile says.
    assert str(in_code.value).endswith(f"{where}: {in_profile.value.detail}")


def test_several_bad_class_attributes_are_counted() -> None:
    with pytest.raises(RegistryError, match=r"retry\.max_attempts: .* \(and 1 more\)$"):
        build_registry(None, [ext("app", with_attrs(retry={"max_attempts": 0}, timeout="x"))])


def test_precedence_builtin_defaults_class_then_profile_entry() -> None:
    job = with_attrs(retry={"backoff": "30s", "max_attempts": 4}, timeout="2m", queue="heavy")
    profile = Profile.from_dict(
        {
            "scheduler": {
                "defaults": {
                    "retry": {"max_attempts": 7, "backoff": "1s", "max_backoff": "5m"},
                    "timeout": "1h",
                    "overlap": "allow",
                },
                "jobs": [
                    {
                        "extension": "app",
                        "job": "cleanup",
                        "retry": {"jitter": "no", "max_attempts": 2},
                        "overlap": "queue",
                    }
                ],
            }
        }
    )
    jd = build_registry(profile, [ext("app", job)]).resolve("app/cleanup")
    assert jd.policy == JobPolicy(
        retry=RetryPolicy(max_attempts=2, backoff=30.0, max_backoff=300.0, jitter=False),
        timeout=120.0,
        overlap=Overlap.QUEUE,
        misfire_grace=300.0,
        queue="heavy",
        timezone="UTC",  # resolved: the scheduler's zone when the job names none
    )
    assert {
        k: jd.sources[k] for k in ("retry", "timeout", "overlap", "misfire_grace", "queue")
    } == {
        "retry": "profile",
        "timeout": "code",
        "overlap": "profile",
        "misfire_grace": "built-in",
        "queue": "code",
    }


# One value per layer and key; None means the layer leaves the key alone.
_LAYER_VALUES: dict[str, list[Any]] = {
    "max_attempts": [1, 2, 5],
    "backoff": [0, 2, "3s"],
    "max_backoff": [60, "2m"],
    "jitter": [True, "false"],
    "timeout": [5, "1m"],
    "overlap": ["allow", "QUEUE"],
    "misfire_grace": [0, "10s"],
    "queue": ["a", "b"],
}
_RETRY_KEYS = ("max_attempts", "backoff", "max_backoff", "jitter")
_AS_SECONDS = {"3s": 3.0, "2m": 120.0, "1m": 60.0, "10s": 10.0}
_BUILT_IN = {
    "max_attempts": 3,
    "backoff": 10.0,
    "max_backoff": 600.0,
    "jitter": True,
    "timeout": 900.0,
    "overlap": Overlap.SKIP,
    "misfire_grace": 300.0,
    "queue": "jobs",
}


def _layer() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {}, optional={k: st.sampled_from(v) for k, v in _LAYER_VALUES.items()}
    )


def _settings(flat: dict[str, Any]) -> dict[str, Any]:
    nested = {k: v for k, v in flat.items() if k not in _RETRY_KEYS}
    retry = {k: v for k, v in flat.items() if k in _RETRY_KEYS}
    if retry:
        nested["retry"] = retry
    return nested


def _meaning(key: str, value: Any) -> Any:
    if key == "jitter":
        return value is True
    if key == "overlap":
        return Overlap(value.lower())
    if key in ("backoff", "max_backoff", "timeout", "misfire_grace"):
        return _AS_SECONDS.get(value, value)
    return value


@settings(max_examples=examples(60), deadline=None)
@given(defaults=_layer(), code=_layer(), entry=_layer())
def test_each_key_comes_from_the_last_layer_that_sets_it(
    defaults: dict[str, Any], code: dict[str, Any], entry: dict[str, Any]
) -> None:
    profile = Profile.from_dict(
        {
            "scheduler": {
                "defaults": _settings(defaults),
                "jobs": [{"extension": "app", "job": "cleanup", **_settings(entry)}],
            }
        }
    )
    jd = build_registry(profile, [ext("app", with_attrs(**_settings(code)))]).resolve("cleanup")
    expected = dict(_BUILT_IN)
    for layer in (defaults, code, entry):
        expected.update({k: _meaning(k, v) for k, v in layer.items()})
    retry = jd.policy.retry
    got = {k: getattr(retry, k) for k in _RETRY_KEYS}
    got.update({k: getattr(jd.policy, k) for k in _BUILT_IN if k not in _RETRY_KEYS})
    assert got == expected


def test_time_zone_per_job_with_its_source() -> None:
    class InParis(CleanupJob):
        name = "paris"
        schedule = "0 30 1 * * *"
        timezone = "Europe/Paris"

    profile = Profile.from_dict(
        {
            "scheduler": {
                "timezone": "Europe/London",
                "jobs": [
                    {"extension": "app", "job": "cleanup", "timezone": "America/New_York"},
                ],
            }
        }
    )
    registry = build_registry(profile, [ext("app", CleanupJob(), InParis(), with_name("plain"))])
    cleanup, paris, plain = (registry.resolve(n) for n in ("cleanup", "paris", "plain"))
    assert (cleanup.timezone, cleanup.sources["timezone"]) == ("America/New_York", "profile")
    assert (paris.timezone, paris.sources["timezone"]) == ("Europe/Paris", "code")
    assert (plain.timezone, plain.sources["timezone"]) == ("Europe/London", "profile defaults")
    assert cleanup.cron is not None and cleanup.cron.tz.key == "America/New_York"
    assert paris.cron is not None and paris.cron.tz.key == "Europe/Paris"
    assert plain.to_json()["timezone"] == "Europe/London"
    bare = build_registry(None, [ext("app", CleanupJob())]).resolve("cleanup")
    assert (bare.timezone, bare.sources["timezone"]) == ("UTC", "built-in")


def with_name(name: str) -> Job:
    return type("Named", (CleanupJob,), {"name": name})()


def test_start_after_end_across_layers_is_refused_at_the_profile_entry() -> None:
    job = with_attrs(start_at="2026-06-01T00:00:00Z")
    entry = {"extension": "app", "job": "cleanup", "end_at": "2026-05-01T00:00:00Z"}
    profile = Profile.from_dict({"scheduler": {"jobs": [entry]}}, path="p.yaml")
    with pytest.raises(ProfileError) as info:
        build_registry(profile, [ext("app", job)])
    assert info.value.key == "scheduler.jobs[0].end_at"
    assert "before start_at 2026-06-01T00:00:00+00:00" in info.value.detail
    bad = with_attrs(start_at="2026-06-01T00:00:00Z", end_at="2026-05-01T00:00:00Z")
    with pytest.raises(RegistryError, match=r"^job app/cleanup: end_at .* is before start_at"):
        build_registry(None, [ext("app", bad)])


def test_jitter_may_come_from_the_defaults_and_per_job_keys_may_not() -> None:
    profile = Profile.from_dict({"scheduler": {"defaults": {"jitter": "5s"}}})
    jd = build_registry(profile, [ext("app", CleanupJob())]).resolve("cleanup")
    assert (jd.policy.jitter, jd.sources["jitter"]) == (5.0, "profile defaults")
    with pytest.raises(ProfileError, match="start_at is set per job"):
        Profile.from_dict({"scheduler": {"defaults": {"start_at": "2026-01-01T00:00:00Z"}}})


def test_jobs_on_one_expression_and_zone_share_one_schedule() -> None:
    class InParis(CleanupJob):
        name = "paris"
        timezone = "Europe/Paris"

    profile = Profile.from_dict(
        {"scheduler": {"jobs": [{"extension": "app", "job": "b", "schedule": "0 5 * * * *"}]}}
    )
    jobs = [with_name("a"), with_name("b"), with_name("c"), InParis()]
    registry = build_registry(profile, [ext("app", *jobs)])
    a, b, c, paris = (registry.resolve(n).cron for n in ("a", "b", "c", "paris"))
    assert a is not None and b is not None and c is not None and paris is not None
    assert a is c  # same code schedule, same zone: one object
    assert b is not a and b.expr == "0 5 * * * *"  # the profile's own schedule
    # Same expression, another zone: its own schedule, firing on Paris time.
    assert paris is not a and paris.expr == a.expr and paris.tz.key == "Europe/Paris"
    at = datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
    assert a.next_after(at) == datetime(2026, 1, 1, 1, tzinfo=UTC)
    assert paris.next_after(at).astimezone(UTC) == datetime(2026, 1, 1, 1, tzinfo=UTC)
    summer = datetime(2026, 7, 1, 0, 30, tzinfo=UTC)
    assert paris.next_after(summer).astimezone(UTC) == datetime(2026, 7, 1, 1, tzinfo=UTC)


def test_jobs_sharing_a_policy_do_not_share_a_profile_entry() -> None:
    profile = Profile.from_dict(
        {
            "scheduler": {
                "jobs": [
                    {
                        "extension": "app",
                        "job": "b",
                        "queue": "heavy",
                        "enabled": False,
                        "parameters": {"days": 3},
                    }
                ]
            }
        }
    )
    registry = build_registry(
        profile, [ext("app", with_name("a"), with_name("b"), with_name("c"), TunedJob())]
    )
    a, b, c, tuned = (registry.resolve(n) for n in ("a", "b", "c", "tuned"))
    assert (b.policy.queue, b.sources["queue"], b.enabled, dict(b.parameters)) == (
        "heavy",
        "profile",
        False,
        {"days": 3},
    )
    for plain in (a, c):
        assert (plain.policy.queue, plain.sources["queue"], plain.enabled) == (
            "jobs",
            "built-in",
            True,
        )
        assert plain.sources["enabled"] == "built-in" and dict(plain.parameters) == {}
    assert (tuned.policy.queue, tuned.sources["queue"], tuned.policy.timeout) == (
        "heavy",
        "code",
        120,
    )
    assert a.policy is c.policy  # computed once for jobs with the same attributes
    assert a.to_json()["sources"] == c.to_json()["sources"]


def test_attributes_set_per_instance_give_each_job_its_own_policy() -> None:
    fast, slow = with_name("fast"), with_name("slow")
    fast.timeout = "1m"  # type: ignore[misc]
    slow.timeout = "1h"  # type: ignore[misc]
    registry = build_registry(None, [ext("app", fast, slow, with_name("plain"))])
    timeouts = {jd.name: (jd.policy.timeout, jd.sources["timeout"]) for jd in registry}
    assert timeouts == {"fast": (60, "code"), "slow": (3600, "code"), "plain": (900, "built-in")}


# ------------------------------------------------------------ one job of many


def test_policy_attributes_computed_per_instance_are_read_per_instance() -> None:
    class ByName(CleanupJob):
        @property
        def timeout(self) -> str:  # type: ignore[override]
            return "1m" if self.name == "fast" else "1h"

    class Slotted(CleanupJob):
        __slots__ = ("queue",)

        def __init__(self, name: str, queue: str) -> None:
            self.name = name  # type: ignore[misc]
            self.queue = queue  # type: ignore[misc]

    fast, slow = ByName(), ByName()
    fast.name, slow.name = "fast", "slow"  # type: ignore[misc]
    jobs = [fast, slow, Slotted("a", "qa"), Slotted("b", "qb"), with_name("plain")]
    registry = build_registry(None, [ext("app", *jobs)])
    seen = {jd.name: (jd.policy.timeout, jd.policy.queue) for jd in registry}
    assert seen == {
        "fast": (60, "jobs"),
        "slow": (3600, "jobs"),
        "a": (900, "qa"),
        "b": (900, "qb"),
        "plain": (900, "jobs"),
    }


ONLY_PROFILE = """
scheduler:
  timezone: Europe/Paris
  defaults: {timeout: 5m}
  bootstrap_jobs: [tuned, b/cleanup]
  jobs:
    - {extension: a, job: cleanup, schedule: "0 */5 * * * *", parameters: {days: 3}}
    - {extension: b, job: x2, enabled: false}
"""


def only_extensions() -> list[Extension]:
    return [
        ext("a", CleanupJob(), TunedJob(), with_name("x1")),
        ext("b", CleanupJob(), with_name("x2")),
    ]


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("a/cleanup", ["a/cleanup"]),
        ("tuned", ["a/tuned"]),
        ("x2", ["b/x2"]),
        ("cleanup", ["a/cleanup", "b/cleanup"]),  # ambiguous: resolve() lists both
        ("b/tuned", []),
        ("nothing", []),
        ("a/b/c", []),
    ],
)
def test_only_builds_what_resolve_may_return_equal_to_the_full_table(
    name: str, keys: list[str]
) -> None:
    profile = parse_profile(ONLY_PROFILE, path="p.yaml", env={})
    full = build_registry(profile, only_extensions())
    one = build_registry(profile, only_extensions(), only=name)
    assert list(one.jobs) == keys
    for key in keys:  # the same definition, field for field (the job objects differ)
        a, b = one.jobs[key], full.jobs[key]
        assert (a.key, a.schedule, a.policy, dict(a.sources), dict(a.parameters)) == (
            b.key,
            b.schedule,
            b.policy,
            dict(b.sources),
            dict(b.parameters),
        )
        assert (a.enabled, a.tags, a.description, a.cron) == (
            b.enabled,
            b.tags,
            b.description,
            b.cron,
        )
    assert one.bootstrap == full.bootstrap == ["a/tuned", "b/cleanup"]
    assert (one.timezone, one.scheduler_enabled) == (full.timezone, full.scheduler_enabled)


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        ([with_name("x1"), with_name("x1")], "duplicate job key b/x1"),
        ([type("Bad", (CleanupJob,), {"schedule": "0 0 25 * * *"})()], "invalid schedule"),
        ([with_name("Bad Name")], "invalid job name 'Bad Name'"),
        ([with_attrs(timeout="soon")], "class attribute timeout"),
        ([with_attrs(start_at="2026-06-01T00:00:00Z", end_at="2026-05-01T00:00:00Z")], "end_at"),
    ],
)
def test_only_still_refuses_a_broken_job_elsewhere(jobs: list[Job], message: str) -> None:
    extensions = [ext("a", CleanupJob(), TunedJob()), ext("b", *jobs)]
    with pytest.raises(RegistryError, match=message):
        build_registry(None, extensions, only="a/tuned")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "scheduler:\n  jobs:\n    - {extension: a, job: cleanpu}\n",
            "closest|known jobs: a/cleanup",
        ),
        ("scheduler:\n  jobs:\n    - {extension: nope, job: x}\n", "unknown extension 'nope'"),
        ("scheduler:\n  bootstrap_jobs: [nothing]\n", "unknown job 'nothing'"),
        ("scheduler:\n  bootstrap_jobs: [cleanup]\n", "ambiguous"),
        ("scheduler:\n  bootstrap_jobs: [b/tuned]\n", "unknown job 'b/tuned'"),
    ],
)
def test_only_gives_the_full_tables_profile_errors(text: str, message: str) -> None:
    profile = parse_profile(text, path="p.yaml", env={})
    with pytest.raises(ProfileError) as full:
        build_registry(profile, only_extensions())
    with pytest.raises(ProfileError) as one:
        build_registry(profile, only_extensions(), only="a/tuned")
    assert str(one.value) == str(full.value)
    assert re.search(message, str(one.value))


def test_the_collector_is_paused_while_building_and_restored_after() -> None:
    states: list[bool] = []

    class Watching(Extension):
        name = "w"

        def jobs(self) -> list[Job]:
            states.append(gc.isenabled())
            return [CleanupJob()]

    assert gc.isenabled()
    build_registry(None, [Watching()])
    assert states == [False] and gc.isenabled()
    gc.disable()
    try:
        build_registry(None, [Watching()])
        assert not gc.isenabled()  # not turned on by the build when it was off before
    finally:
        gc.enable()
    with pytest.raises(RegistryError):
        build_registry(None, [Watching(), ext("w")])
    assert gc.isenabled()


# ---- building one job checks every job, and fails exactly as the full build would


class _Plain(Job):
    async def execute(self, ctx: JobContext) -> JobResult:
        return JobResult.success()


class _Zoned(_Plain):
    timezone = "Europe/Paris"


class _BadWindow(_Plain):
    start_at = "2026-06-01T00:00:00Z"
    end_at = "2026-05-01T00:00:00Z"


class _BadTimeout(_Plain):
    timeout = "soon"


class _NotAJob:
    name = "j3"
    schedule = None
    description = ""
    tags = ()

    def __repr__(self) -> str:  # the error quotes it: the same for every instance
        return "<not a job>"


_KINDS: dict[str, type] = {
    "plain": _Plain,
    "zoned": _Zoned,
    "bad-window": _BadWindow,
    "bad-timeout": _BadTimeout,
    "not-a-job": _NotAJob,
}
_JOB_SPEC = st.tuples(
    st.sampled_from(["plain", "plain", "plain", "zoned", "bad-window", "bad-timeout", "not-a-job"]),
    st.sampled_from(["j0", "j1", "j2", "j3", "j4", "j5", "Bad Name", ""]),
    st.sampled_from(["0 0 * * * *", "0 0 * * * *", "0 */5 * * * *", None, "0 0 25 * * *"]),
    st.sampled_from([None, None, None, "5m", "soon"]),  # a timeout set on the instance
)
#: j1's entry ends the window _BadWindow's attributes open wrongly: j1 is fine, another
#: _BadWindow job is not.
_ENTRIES = """
scheduler:
  jobs:
    - {extension: a, job: j1, end_at: "2026-07-01T00:00:00Z"}
    - {extension: a, job: j4, timeout: 1m}
"""


def _spec_job(kind: str, name: str, schedule: str | None, timeout: str | None) -> Any:
    job = _KINDS[kind]()
    job.name = name
    job.schedule = schedule
    if timeout is not None:
        job.timeout = timeout
    return job


def _outcome(build: Any) -> Any:
    try:
        registry = build()
    except (RegistryError, ProfileError) as exc:
        return (type(exc).__name__, str(exc))
    return registry


@pytest.mark.parametrize("few_keys", [32, 0])  # each (class, schedule) found by scan or map
@settings(max_examples=examples(300), deadline=None)
@given(
    specs=st.lists(_JOB_SPEC, min_size=1, max_size=12, unique_by=lambda s: s[1]),
    entries=st.booleans(),
    target=st.sampled_from(["a/j0", "j1", "a/j4", "b/only", "a/nothing"]),
)
def test_only_fails_where_and_as_the_full_build_does(
    few_keys: int,
    specs: list[tuple[str, str, str | None, str | None]],
    entries: bool,
    target: str,
) -> None:
    profile = parse_profile(_ENTRIES if entries else "", path="p.yaml", env={})
    names = {spec[1] for spec in specs}
    if entries and not {"j1", "j4"} <= names:
        profile = parse_profile("", path="p.yaml", env={})  # no entry for a missing job

    def extensions() -> list[Extension]:
        return [ext("a", *[_spec_job(*spec) for spec in specs]), ext("b", with_name("only"))]

    full = _outcome(lambda: build_registry(profile, extensions()))
    with patch.object(registry_module, "_FEW_KEYS", few_keys):
        one = _outcome(lambda: build_registry(profile, extensions(), only=target))
    if isinstance(full, tuple):
        assert one == full
        return
    assert not isinstance(one, tuple), one
    for key, jd in one.jobs.items():
        other = full.jobs[key]
        assert (jd.schedule, jd.cron, jd.policy, dict(jd.sources), dict(jd.parameters)) == (
            other.schedule,
            other.cron,
            other.policy,
            dict(other.sources),
            dict(other.parameters),
        )
    if "/" in target and target in full.jobs:
        assert list(one.jobs) == [target]


def test_only_with_many_jobs_still_finds_a_late_broken_one() -> None:
    """The bulk check's own paths: a duplicate, a bad name, an own policy attribute
    and a bad schedule at the end of 5,000 good jobs of one class."""
    good = [_spec_job("plain", f"j{i}", "0 0 * * * *", None) for i in range(5000)]
    for last, message in [
        (_spec_job("plain", "j7", "0 0 * * * *", None), "duplicate job key a/j7"),
        (_spec_job("plain", "Bad", "0 0 * * * *", None), "invalid job name 'Bad'"),
        (_spec_job("plain", "late", "0 0 * * * *", "soon"), "job a/late: class attribute"),
        (_spec_job("plain", "late", "0 0 25 * * *", None), "job a/late: invalid schedule"),
        (_spec_job("bad-window", "late", None, None), "job a/late: end_at"),
    ]:
        with pytest.raises(RegistryError, match=message):
            build_registry(None, [ext("a", *good, last)], only="a/j1")
    one = build_registry(None, [ext("a", *good)], only="j4999")
    assert list(one.jobs) == ["a/j4999"]


def test_only_a_job_with_an_entry_does_not_stand_for_its_class() -> None:
    """j1's entry mends the window its class opens wrongly; j2, of the same class and
    schedule without an entry, is still refused when only j0 is built."""
    profile = parse_profile(_ENTRIES.replace("j4", "j0"), path="p.yaml", env={})
    jobs = [
        _spec_job("bad-window", "j1", "0 0 * * * *", None),
        _spec_job("bad-window", "j2", "0 0 * * * *", None),
        _spec_job("plain", "j0", "0 0 * * * *", None),
    ]
    with pytest.raises(RegistryError, match="job a/j2: end_at"):
        build_registry(profile, [ext("a", *jobs)])
    with pytest.raises(RegistryError, match="job a/j2: end_at"):
        build_registry(profile, [ext("a", *jobs)], only="a/j0")
