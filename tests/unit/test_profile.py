from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs_core.errors import ProfileError
from jobs_core.policy import JobPolicy, Overlap, RetryPolicy
from jobs_core.profile import (
    DEFAULT_PROFILE_FILE,
    PROFILE_ENV,
    Profile,
    load_profile,
    parse_profile,
)
from tests.hypothesis_budget import examples

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "profile.example.yaml"


def write(tmp_path: Path, text: str, name: str = "profile.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ProfileError:
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        load_profile(path, env=env or {})
    err = info.value
    assert err.file == str(path)
    assert "\n" not in str(err), "errors must be one line"
    assert str(err).startswith(f"{path}:")
    return err


FULL = """\
redis_url: redis://:s3cret@redis:6379/0
database_url: postgresql://app:pw@db/app
extensions:
  - extensions.maintenance:MaintenanceExtension
config:
  maintenance:
    retention_days: 14
  other:
scheduler:
  enabled: false
  timezone: Europe/London
  defaults:
    retry: {max_attempts: 4, backoff: 5s, max_backoff: 1h, jitter: false}
    timeout: 1h30m
    overlap: queue
    misfire_grace: 2m
    queue: default
  jobs:
    - extension: maintenance
      job: cleanup
      schedule: "0 */30 * * * *"
      enabled: true
      retry: {max_attempts: 5, backoff: 1m}
      timeout: 30s
      overlap: allow
      misfire_grace: 10s
      queue: maintenance
      parameters: {retention_days: 30}
    - extension: maintenance
      job: heartbeat
      schedule: null
  bootstrap_jobs: [cleanup, maintenance/prune-history]
"""


# --------------------------------------------------------------------------- valid


def test_full_profile(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    p = load_profile(path, env={})
    assert p.path == str(path)
    assert p.redis_url == "redis://:s3cret@redis:6379/0"
    assert p.database_url == "postgresql://app:pw@db/app"
    assert p.extensions == ["extensions.maintenance:MaintenanceExtension"]
    assert p.config == {"maintenance": {"retention_days": 14}, "other": {}}
    assert p.extension_config("maintenance") == {"retention_days": 14}
    assert p.extension_config("missing") == {}
    s = p.scheduler
    assert s.enabled is False
    assert s.timezone == "Europe/London"
    assert str(s.tz) == "Europe/London"
    d = s.defaults
    assert d.policy() == JobPolicy(
        retry=RetryPolicy(4, 5.0, 3600.0, False),
        timeout=5400.0,
        overlap=Overlap.QUEUE,
        misfire_grace=120.0,
        queue="default",
    )
    assert s.bootstrap_jobs == ["cleanup", "maintenance/prune-history"]

    cleanup, heartbeat = s.jobs
    assert cleanup.key == "maintenance/cleanup"
    assert cleanup.line == 19
    assert cleanup.schedule == "0 */30 * * * *"
    assert cleanup.enabled is True
    assert cleanup.retry is not None
    assert cleanup.retry.model_fields_set == {"backoff", "max_attempts"}
    assert (cleanup.timeout, cleanup.overlap, cleanup.misfire_grace) == (30.0, Overlap.ALLOW, 10.0)
    assert cleanup.queue == "maintenance"
    assert cleanup.parameters == {"retention_days": 30}
    assert cleanup.apply(d.policy()) == JobPolicy(
        retry=RetryPolicy(5, 60.0, 3600.0, False),
        timeout=30.0,
        overlap=Overlap.ALLOW,
        misfire_grace=10.0,
        queue="maintenance",
    )

    assert heartbeat.line == 29
    assert heartbeat.is_set("schedule") and heartbeat.schedule is None
    assert not heartbeat.is_set("enabled") and heartbeat.enabled is None
    assert heartbeat.given() == frozenset()
    assert heartbeat.parameters == {}
    assert heartbeat.apply(d.policy()) == d.policy()
    assert s.override_for("maintenance", "heartbeat") is heartbeat
    assert s.override_for("maintenance", "nope") is None


def test_defaults() -> None:
    p = Profile.default()
    assert p.path is None
    assert p.redis_url is None and p.database_url is None
    assert p.extensions == [] and p.config == {}
    s = p.scheduler
    assert s.enabled is True and s.timezone == "UTC"
    assert s.defaults.given() == frozenset()
    assert s.defaults.policy() == JobPolicy(
        retry=RetryPolicy(3, 10.0, 600.0, True),
        timeout=900.0,
        overlap=Overlap.SKIP,
        misfire_grace=300.0,
        queue="jobs",
    )
    assert s.jobs == [] and s.bootstrap_jobs == []


def test_partial_retry_keeps_other_defaults(tmp_path: Path) -> None:
    p = load_profile(
        write(
            tmp_path,
            """\
            scheduler:
              defaults: {retry: {backoff: 1s}}
              jobs:
                - {extension: maintenance, job: cleanup, retry: {jitter: false}}
            """,
        ),
        env={},
    )
    assert p.scheduler.defaults.policy().retry == RetryPolicy(3, 1.0, 600.0, True)
    ov = p.scheduler.jobs[0]
    assert ov.given() == {"retry"}
    assert not ov.is_set("schedule")
    assert ov.apply(p.scheduler.defaults.policy()).retry == RetryPolicy(3, 1.0, 600.0, False)


def test_quoted_keywords_mean_what_they_say(tmp_path: Path) -> None:
    p = load_profile(
        write(
            tmp_path,
            """\
            scheduler:
              defaults: {retry: {jitter: "false", max_attempts: "2"}, overlap: "SKIP"}
              jobs:
                - {extension: m, job: x, retry: {jitter: "False"}, overlap: Allow}
            """,
        ),
        env={},
    )
    base = p.scheduler.defaults.policy()
    assert base.retry.jitter is False and base.retry.max_attempts == 2
    assert base.overlap is Overlap.SKIP
    entry = p.scheduler.jobs[0].apply(base)
    assert entry.retry.jitter is False and entry.overlap is Overlap.ALLOW


def test_empty_file_and_empty_sections_are_defaults(tmp_path: Path) -> None:
    assert load_profile(write(tmp_path, ""), env={}).scheduler == Profile.default().scheduler
    p = load_profile(
        write(tmp_path, "extensions:\nconfig:\nscheduler:\n  jobs:\n  bootstrap_jobs:\n"), env={}
    )
    assert p.extensions == [] and p.scheduler.jobs == []


def test_example_profile_loads() -> None:
    p = load_profile(EXAMPLE, env={})
    assert p.extensions == ["extensions.maintenance:MaintenanceExtension"]
    assert {o.key for o in p.scheduler.jobs} >= {"maintenance/cleanup", "maintenance/prune-history"}
    prune = p.scheduler.override_for("maintenance", "prune-history")
    assert prune is not None and "retention_days" in prune.parameters
    assert p.config["maintenance"]
    assert p.scheduler.bootstrap_jobs


def test_example_profile_with_environment() -> None:
    env = {
        "REDIS_URL": "redis://:pw@redis:6379/0",
        "DATABASE_URL": "postgresql://u:pw@db/app",
        "HISTORY_RETENTION_DAYS": "90",
    }
    p = load_profile(EXAMPLE, env=env)
    assert p.redis_url == env["REDIS_URL"]
    assert p.database_url == env["DATABASE_URL"]
    prune = p.scheduler.override_for("maintenance", "prune-history")
    assert prune is not None and prune.parameters["retention_days"] == "90"


# --------------------------------------------------------------------------- environment


def test_env_substitution(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        database_url: postgresql://${PGUSER}:${PGPASS:-x}@${PGHOST:-localhost}/app
        config:
          ext: {a: "${A}", b: "${B:-fallback}", c: "${EMPTY:-used}", lit: "$${A}", n: 5}
        scheduler:
          defaults: {timeout: "${T:-1m}", retry: {max_attempts: "${N:-2}"}}
        """,
    )
    p = load_profile(path, env={"PGUSER": "me", "A": "alpha", "EMPTY": ""})
    assert p.database_url == "postgresql://me:x@localhost/app"
    assert p.config["ext"] == {"a": "alpha", "b": "fallback", "c": "used", "lit": "${A}", "n": 5}
    assert p.scheduler.defaults.timeout == 60.0
    assert p.scheduler.defaults.policy().retry.max_attempts == 2


def test_env_unset_without_default(tmp_path: Path) -> None:
    err = load_error(tmp_path, "config:\n  ext:\n    token: ${API_TOKEN}\n")
    assert err.line == 3
    assert err.key == "config.ext.token"
    assert "API_TOKEN" in err.detail and "${API_TOKEN:-default}" in err.detail


def test_env_urls_override_file(tmp_path: Path) -> None:
    path = write(tmp_path, "redis_url: redis://file:6379/0\ndatabase_url: postgresql://file/db\n")
    env = {"REDIS_URL": "redis://env:6379/1", "DATABASE_URL": "postgresql://env/db"}
    p = load_profile(path, env=env)
    assert (p.redis_url, p.database_url) == (env["REDIS_URL"], env["DATABASE_URL"])
    # An empty variable does not blank out the file's value.
    p = load_profile(path, env={"REDIS_URL": ""})
    assert p.redis_url == "redis://file:6379/0"


def test_env_urls_apply_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    p = load_profile(env={"REDIS_URL": "redis://env:6379/1"})
    assert p.path is None and p.redis_url == "redis://env:6379/1"


def test_bad_env_url_is_named_as_env(tmp_path: Path) -> None:
    path = write(tmp_path, "redis_url: redis://file/0\n")
    with pytest.raises(ProfileError) as info:
        load_profile(path, env={"REDIS_URL": "http://user:hunter2@x"})
    assert "$REDIS_URL" in str(info.value)
    assert "hunter2" not in str(info.value)


# --------------------------------------------------------------------------- resolution


def test_resolution_explicit_path_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "scheduler: {timezone: Europe/Paris}\n")
    other = write(tmp_path, "scheduler: {timezone: Asia/Tokyo}\n", name="env.yaml")
    explicit = write(tmp_path, "scheduler: {timezone: Europe/London}\n", name="explicit.yaml")
    p = load_profile(explicit, env={PROFILE_ENV: str(other)})
    assert p.scheduler.timezone == "Europe/London"
    assert p.path == str(explicit)


def test_resolution_env_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "scheduler: {timezone: Europe/Paris}\n")
    other = write(tmp_path, "scheduler: {timezone: Asia/Tokyo}\n", name="env.yaml")
    p = load_profile(env={PROFILE_ENV: str(other)})
    assert p.scheduler.timezone == "Asia/Tokyo"


def test_resolution_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = write(tmp_path, "scheduler: {timezone: Asia/Tokyo}\n", name="env.yaml")
    monkeypatch.setenv(PROFILE_ENV, str(other))
    assert load_profile().scheduler.timezone == "Asia/Tokyo"


def test_resolution_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "scheduler: {timezone: Europe/Paris}\n")
    p = load_profile(env={})
    assert p.scheduler.timezone == "Europe/Paris"
    assert p.path == DEFAULT_PROFILE_FILE


def test_resolution_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    p = load_profile(env={})
    assert p.path is None
    assert p.scheduler == Profile.default().scheduler


def test_explicit_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ProfileError, match="not found") as info:
        load_profile(missing, env={})
    assert info.value.file == str(missing)


def test_env_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "{}\n")  # must not fall back to ./profile.yaml
    with pytest.raises(ProfileError, match=rf"not found \(from \${PROFILE_ENV}\)"):
        load_profile(env={PROFILE_ENV: str(tmp_path / "nope.yaml")})


def test_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="directory"):
        load_profile(tmp_path, env={})


# --------------------------------------------------------------------------- errors


def test_bad_yaml_syntax(tmp_path: Path) -> None:
    err = load_error(tmp_path, "scheduler:\n  jobs: [a\n  timezone: UTC\n")
    assert err.line == 3
    assert "invalid YAML" in err.detail


def test_bad_yaml_does_not_echo_secrets(tmp_path: Path) -> None:
    err = load_error(tmp_path, 'redis_url: "redis://:hunter2@x:6379/0\nfoo: [\n')
    assert "hunter2" not in str(err)


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    err = load_error(tmp_path, "- redis_url: x\n")
    assert err.line == 1
    assert "mapping" in err.detail and "scheduler" in err.detail


@pytest.mark.parametrize(
    ("text", "line", "key", "fragments"),
    [
        (
            "scheduler:\n  defaults:\n    timout: 5m\n",
            3,
            "scheduler.defaults.timout",
            ["unknown key 'timout'", "did you mean 'timeout'", "retry, timeout, overlap"],
        ),
        (
            "redis: redis://x\n",
            1,
            "redis",
            ["unknown key", "did you mean 'redis_url'", "database_url"],
        ),
        (
            "scheduler:\n  jobs:\n    - extension: m\n      job: x\n      paramters: {}\n",
            5,
            "scheduler.jobs[0].paramters",
            ["did you mean 'parameters'", "schedule", "misfire_grace"],
        ),
        (
            "scheduler:\n  defaults:\n    retry: {max_attempt: 2}\n",
            3,
            "scheduler.defaults.retry.max_attempt",
            ["did you mean 'max_attempts'", "backoff, max_backoff, jitter"],
        ),
        (
            "scheduler:\n  enabled: maybe\n",
            2,
            "scheduler.enabled",
            ["true or false", '"maybe"'],
        ),
        ("scheduler: 5\n", 1, "scheduler", ["must be a mapping"]),
        ("extensions: foo\n", 1, "extensions", ["must be a list"]),
        ("config:\n  ext: [1]\n", 2, "config.ext", ["must be a mapping"]),
        (
            "scheduler:\n  jobs:\n    - {extension: m, job: x, queue: 5}\n",
            3,
            "scheduler.jobs[0].queue",
            ["must be a string"],
        ),
        (
            "scheduler:\n  defaults:\n    timeout: 10x\n",
            3,
            "scheduler.defaults.timeout",
            ['"10x" is not a duration', "30s, 10m, 1h30m, 2d"],
        ),
        (
            "scheduler:\n  jobs:\n    - extension: m\n      job: x\n      misfire_grace: -5s\n",
            5,
            "scheduler.jobs[0].misfire_grace",
            ["must not be negative"],
        ),
        (
            "scheduler:\n  defaults:\n    overlap: never\n",
            3,
            "scheduler.defaults.overlap",
            ['"never"', "skip|allow|buffer_one|buffer_all|cancel_other|terminate_other"],
        ),
        (
            "scheduler:\n  timezone: Mars/Olympus\n",
            2,
            "scheduler.timezone",
            ['"Mars/Olympus"', "Europe/London"],
        ),
        (
            "scheduler:\n  defaults:\n    retry:\n      max_attempts: 0\n",
            4,
            "scheduler.defaults.retry.max_attempts",
            ["at least 1", "got 0"],
        ),
        (
            "scheduler:\n  jobs:\n    - extension: m\n      job: x\n"
            "      retry: {max_attempts: true}\n",
            5,
            "scheduler.jobs[0].retry.max_attempts",
            ["not a whole number", ">= 1"],
        ),
        (
            "scheduler:\n  defaults:\n    retry:\n      max_attempts: 2.5\n",
            4,
            "scheduler.defaults.retry.max_attempts",
            ["2.5 is not a whole number", "integer >= 1"],
        ),
        (
            "scheduler:\n  jobs:\n    - extension: m\n      job: x\n"
            "      retry:\n        jitter: sometimes\n",
            6,
            "scheduler.jobs[0].retry.jitter",
            ["must be true or false", '"sometimes"'],
        ),
        (
            "scheduler:\n  jobs:\n    - extension: m\n      timeout: 5s\n",
            3,
            "scheduler.jobs[0].job",
            ["required key 'job' is missing", "extension, job"],
        ),
        (
            "scheduler:\n  jobs:\n    - extension: m\n      job: x\n      timeout:\n",
            5,
            "scheduler.jobs[0].timeout",
            ["null is not allowed", "leave the key out"],
        ),
        (
            "extensions: [extensions.maintenance]\n",
            1,
            "extensions[0]",
            ["not an import path", "package.module:Attr"],
        ),
        (
            "scheduler:\n  bootstrap_jobs: [a/b/c]\n",
            2,
            "scheduler.bootstrap_jobs[0]",
            ["extension/job", "bare job name"],
        ),
        (
            "database_url: mysql://root:hunter2@db/app\n",
            1,
            "database_url",
            ["postgresql://"],
        ),
        (
            "scheduler:\n  enabled: true\n  enabled: false\n",
            3,
            "scheduler.enabled",
            ["duplicate key 'enabled'", "line 2"],
        ),
        (
            "scheduler:\n  jobs:\n    - extension: m\n      job: x\n      timezone: Mars/Base\n",
            5,
            "scheduler.jobs[0].timezone",
            ['"Mars/Base" is not a known time zone', "Europe/London"],
        ),
        (
            "scheduler:\n  jobs:\n    - extension: m\n      job: x\n      jitter: soon\n",
            5,
            "scheduler.jobs[0].jitter",
            ['"soon" is not a duration', "30s"],
        ),
        (
            "scheduler:\n  defaults:\n    jitter: -1s\n",
            3,
            "scheduler.defaults.jitter",
            ["must not be negative"],
        ),
        (
            "scheduler:\n  jobs:\n    - extension: m\n      job: x\n"
            "      start_at: 2026-04-01T09:00:00\n",
            5,
            "scheduler.jobs[0].start_at",
            ["has no UTC offset", "2026-04-01T09:00:00+01:00"],
        ),
        (
            "scheduler:\n  jobs:\n    - extension: m\n      job: x\n      end_at: 2026-04-01\n",
            5,
            "scheduler.jobs[0].end_at",
            ["2026-04-01 is a date, not an instant", "with its offset"],
        ),
        (
            "scheduler:\n  jobs:\n    - extension: m\n      job: x\n      end_at: next week\n",
            5,
            "scheduler.jobs[0].end_at",
            ['"next week" is not an instant', "ISO 8601"],
        ),
        (
            "scheduler:\n  jobs:\n    - extension: m\n      job: x\n"
            "      start_at: 2026-05-01T00:00:00Z\n      end_at: 2026-04-01T00:00:00Z\n",
            6,
            "scheduler.jobs[0].end_at",
            ["before start_at", "at or after start_at"],
        ),
        (
            "scheduler:\n  jobs:\n    - extension: m\n      job: x\n      max_runs: 0\n",
            5,
            "scheduler.jobs[0].max_runs",
            ["0 is not a run count", "whole number >= 1"],
        ),
        (
            "scheduler:\n  jobs:\n    - extension: m\n      job: x\n      max_runs: 2.5\n",
            5,
            "scheduler.jobs[0].max_runs",
            ["2.5 is not a run count"],
        ),
        (
            "scheduler:\n  defaults:\n    timezone: Europe/Paris\n",
            3,
            "scheduler.defaults.timezone",
            ["set per job", "scheduler.timezone sets the zone of every job"],
        ),
        (
            "scheduler:\n  defaults:\n    max_runs: 3\n",
            3,
            "scheduler.defaults.max_runs",
            ["set per job", "scheduler.jobs entry"],
        ),
        (
            "scheduler:\n  jobs:\n    - extension: m\n      job: x\n      jiter: 5s\n",
            5,
            "scheduler.jobs[0].jiter",
            ["did you mean 'jitter'", "start_at, end_at, max_runs"],
        ),
    ],
)
def test_errors_are_located(
    tmp_path: Path, text: str, line: int, key: str, fragments: list[str]
) -> None:
    err = load_error(tmp_path, text)
    assert (err.line, err.key) == (line, key), str(err)
    for fragment in fragments:
        assert fragment in err.detail, str(err)
    assert str(err).startswith(f"{err.file}:{line}: {key}: ")
    assert "hunter2" not in str(err)
    assert "validation error" not in str(err).lower()


def test_several_errors_report_the_first_in_file_order(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """\
        scheduler:
          defaults:
            queue: "not a queue"
            timeout: 10x
          timezone: Nowhere/Else
        """,
    )
    assert err.line == 3 and err.key == "scheduler.defaults.queue"
    assert err.detail.endswith("(and 2 more)")


def test_bad_cron_carries_the_cron_message(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """\
        scheduler:
          jobs:
            - extension: maintenance
              job: cleanup
              schedule: "0 61 * * * *"
        """,
    )
    assert (err.line, err.key) == (5, "scheduler.jobs[0].schedule")
    assert "minute" in err.detail and "61" in err.detail and "0-59" in err.detail
    assert "null for manual runs only" in err.detail


@pytest.mark.parametrize("schedule", ['"* * *"', '""', '"0 0 0 30 2 *"'])
def test_other_bad_schedules(tmp_path: Path, schedule: str) -> None:
    err = load_error(
        tmp_path, f"scheduler:\n  jobs:\n    - {{extension: m, job: x, schedule: {schedule}}}\n"
    )
    assert (err.line, err.key) == (3, "scheduler.jobs[0].schedule")


def test_schedule_is_checked_in_the_scheduler_time_zone(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        scheduler:
          timezone: America/New_York
          jobs:
            - {extension: m, job: x, schedule: "0 30 2 * * *"}
        """,
    )
    assert load_profile(path, env={}).scheduler.jobs[0].schedule == "0 30 2 * * *"


def test_duplicate_override(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """\
        scheduler:
          jobs:
            - {extension: maintenance, job: cleanup, timeout: 1m}
            - {extension: maintenance, job: prune-history}
            - extension: maintenance
              job: cleanup
        """,
    )
    assert (err.line, err.key) == (5, "scheduler.jobs[2]")
    assert "maintenance/cleanup" in err.detail and "line 3" in err.detail


def test_profile_error_for_later_checks(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    p = load_profile(path, env={})
    assert p.line_of("scheduler", "jobs", 0, "job") == 20
    assert p.line_of("scheduler", "jobs", 1, "schedule") == 31
    # A key that is not written falls back to the nearest written ancestor.
    assert p.line_of("scheduler", "jobs", 1, "timeout") == 29
    assert p.line_of("nowhere") is None
    err = p.error("no job 'cleanup' in extension maintenance", "scheduler", "jobs", 0, "job")
    assert str(err) == (
        f"{path}:20: scheduler.jobs[0].job: no job 'cleanup' in extension maintenance"
    )
    default_err = Profile.default().error("boom", "scheduler", "bootstrap_jobs", 0)
    assert str(default_err) == "scheduler.bootstrap_jobs[0]: boom"


def test_repr_masks_passwords(tmp_path: Path) -> None:
    p = load_profile(write(tmp_path, FULL), env={})
    for text in (repr(p), str(p)):
        assert "s3cret" not in text and ":pw@" not in text
        assert "redis://:***@redis:6379/0" in text


def test_profile_is_immutable() -> None:
    p = Profile.default()
    with pytest.raises(ValueError):
        p.redis_url = "redis://x"  # type: ignore[misc]


def test_from_dict_runs_every_check() -> None:
    p = Profile.from_dict({"scheduler": {"jobs": [{"extension": "m", "job": "x"}]}})
    assert p.scheduler.jobs[0].key == "m/x"
    with pytest.raises(ProfileError, match=r"scheduler\.jobs\[0\]\.schedule"):
        Profile.from_dict(
            {"scheduler": {"jobs": [{"extension": "m", "job": "x", "schedule": "nope"}]}}
        )


# --------------------------------------------------------------------------- properties

_KEYS = st.sampled_from(
    ["redis_url", "scheduler", "defaults", "jobs", "retry", "timeout", "overlap", "queue", "x"]
)
_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from(["10x", "5m", "skip", "UTC", "${NOPE}", "0 * * * * *", "a/b"]),
)
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=examples(150), deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=4))
def test_any_data_gives_a_profile_or_one_profile_error(data: dict[str, object]) -> None:
    try:
        Profile.from_dict(data)
    except ProfileError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=examples(150), deadline=None)
@given(st.text(alphabet=" \n\t:-[]{}#&*!|>'\"%@`abcdez019$", max_size=60))
def test_any_text_gives_a_profile_or_one_profile_error(text: str) -> None:
    try:
        parse_profile(text, path="p.yaml", env={})
    except ProfileError as exc:
        assert "\n" not in str(exc)


def test_yaml_anchors_and_merge_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        scheduler:
          defaults: &base {timeout: 5m, queue: nightly}
          jobs:
            - {<<: *base, extension: maintenance, job: cleanup}
            - {<<: *base, extension: maintenance, job: prune-history, timeout: 1m}
        """,
    )
    cleanup, prune = load_profile(path, env={}).scheduler.jobs
    assert (cleanup.timeout, cleanup.queue) == (300.0, "nightly")
    assert (prune.timeout, prune.queue) == (60.0, "nightly")


def test_recursive_alias_is_one_error(tmp_path: Path) -> None:
    err = load_error(tmp_path, "config: &a {ext: *a}\n")
    assert err.line == 1 and "recursive" in err.detail


def test_deep_nesting_is_one_error(tmp_path: Path) -> None:
    err = load_error(tmp_path, "config: " + "[" * 5000 + "\n")
    assert "invalid YAML" in err.detail


def test_schedule_settings_parse(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta, timezone

    profile = load_profile(
        write(
            tmp_path,
            """\
            scheduler:
              defaults: {jitter: 10s}
              jobs:
                - extension: m
                  job: x
                  timezone: America/New_York
                  jitter: 1m30s
                  start_at: 2026-04-01T09:00:00+01:00
                  end_at: "2026-05-01T00:00:00Z"
                  max_runs: "3"
            """,
        ),
        env={},
    )
    [entry] = profile.scheduler.jobs
    assert profile.scheduler.defaults.jitter == 10.0
    assert (entry.timezone, entry.jitter, entry.max_runs) == ("America/New_York", 90.0, 3)
    assert entry.start_at == datetime(2026, 4, 1, 9, tzinfo=timezone(timedelta(hours=1)))
    assert entry.end_at == datetime(2026, 5, 1, tzinfo=UTC)


def test_a_job_schedule_is_checked_in_its_own_time_zone(tmp_path: Path) -> None:
    profile = load_profile(
        write(
            tmp_path,
            """\
            scheduler:
              jobs:
                - {extension: m, job: x, schedule: "0 30 1 * * *", timezone: Asia/Kolkata}
            """,
        ),
        env={},
    )
    assert profile.scheduler.jobs[0].timezone == "Asia/Kolkata"
