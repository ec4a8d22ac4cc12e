"""Registration, validation and the effective job table (code, then profile)."""

from __future__ import annotations

import pytest

from jobs_core import Extension, Job, JobContext, JobResult
from jobs_core.errors import AmbiguousJob, ProfileError, RegistryError, UnknownJob
from jobs_core.policy import Overlap
from jobs_core.profile import parse_profile
from jobs_core.registry import build_registry


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
            "extension 'app', job 'cleanup': invalid schedule: hour: 25 is out of range 0-23",
        ),
        ([type("Caps", (CleanupJob,), {"name": "Clean Up"})()], "invalid job name 'Clean Up'"),
        (
            [type("BadTimeout", (CleanupJob,), {"timeout": "soon"})()],
            "job 'cleanup': \"soon\" is not a duration",
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
