"""Extension discovery and the effective job table.

A job's policy is layered, each layer replacing only the keys it gives: built-in
defaults < ``scheduler.defaults`` < the job class's attributes ("code") < the profile's
entry for the job ("profile"). Class attributes and profile keys go through the same
model. Where each value came from is kept, so ``jobs status`` can tell the operator.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from importlib.metadata import entry_points
from operator import attrgetter
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from .cron import CronSchedule
from .errors import (
    AmbiguousJob,
    ConfigError,
    InvalidSchedule,
    RegistryError,
    UnknownJob,
)
from .gcpause import gc_paused
from .job import NAME_RE, Extension, Job
from .policy import JobPolicy
from .profile import POLICY_KEYS, PolicySettings, explain
from .text import LIMIT, quoted

#: Characters of an unknown job name or tag an error quotes (real names are short).
NAME_LIMIT = 100

if TYPE_CHECKING:
    from .profile import JobOverride, Profile

ENTRY_POINT_GROUP = "systemprompt.extensions"
#: The parameters of every job without a profile entry: one read-only empty mapping.
_NO_PARAMETERS: Mapping[str, Any] = MappingProxyType({})
Source = Literal["built-in", "code", "profile defaults", "profile"]


@dataclass(frozen=True)
class JobDefinition:
    """One job as it will actually run: code merged with the profile."""

    extension: str
    name: str
    description: str
    job: Job
    schedule: str | None
    cron: CronSchedule | None
    enabled: bool
    policy: JobPolicy
    parameters: Mapping[str, Any]
    config: Mapping[str, Any]
    tags: tuple[str, ...]
    sources: Mapping[str, Source] = field(default_factory=dict)

    @cached_property
    def key(self) -> str:
        """``extension/job``. Built on first use and kept: the beat reads it per tick, in
        batches of up to 100,000. (A frozen dataclass without slots has an instance dict,
        where cached_property stores it; ``replace`` makes a new instance, so a new key.)"""
        return f"{self.extension}/{self.name}"

    @property
    def schedule_source(self) -> str:
        return "profile" if self.sources.get("schedule") == "profile" else "code"

    @property
    def timezone(self) -> str:
        """The zone the schedule is read in (the job's own, else ``scheduler.timezone``)."""
        return self.policy.timezone or "UTC"

    def to_json(self) -> dict[str, Any]:
        retry = self.policy.retry
        policy = self.policy
        return {
            "key": self.key,
            "extension": self.extension,
            "name": self.name,
            "description": self.description,
            "schedule": self.schedule,
            "schedule_source": self.schedule_source,
            "timezone": self.timezone,
            "timezone_source": self.sources.get("timezone", "built-in"),
            "jitter_s": policy.jitter,
            "start_at": policy.start_at.isoformat() if policy.start_at else None,
            "end_at": policy.end_at.isoformat() if policy.end_at else None,
            "max_runs": policy.max_runs,
            "enabled": self.enabled,
            "queue": self.policy.queue,
            "tags": list(self.tags),
            "retry": {
                "max_attempts": retry.max_attempts,
                "backoff_s": retry.backoff,
                "max_backoff_s": retry.max_backoff,
                "jitter": retry.jitter,
            },
            "timeout_s": self.policy.timeout,
            "overlap": self.policy.overlap.value,
            "misfire_grace_s": self.policy.misfire_grace,
            "parameters": dict(self.parameters),
            "sources": dict(self.sources),
        }


_new_object = object.__new__
_set_attribute = object.__setattr__
#: The attribute dict of a definition made by the dataclass and never handed out: its
#: copies share its keys (a split table), less than half the size of a plain dict of the
#: same 13 entries.
_prototype: list[dict[str, Any]] = []


def _definition(fields: dict[str, Any]) -> JobDefinition:
    """``JobDefinition(**fields)`` (``fields``: every field, and the ``key`` it caches),
    without the dataclass's ``__init__``.

    A frozen dataclass's ``__init__`` sets each of its 12 fields through
    ``object.__setattr__``, and ``key`` is computed on first use through the
    ``cached_property`` machinery: at 100,000 jobs the two took ~0.2 s of ``jobs list``.
    Here the instance gets a copy of a dataclass-made instance's dict with every value
    replaced: the same object (no ``__post_init__``, every field given;
    tests/unit/test_registry.py checks the fields and the dict's size), made in half the
    time. A dict built from ``fields`` directly would not share the keys of the class's
    other instances: 28 MB more for 100,000 jobs, held by the beat for its lifetime.
    """
    if not _prototype:
        made = JobDefinition(**{k: v for k, v in fields.items() if k != "key"})
        assert made.key == fields["key"]  # now in its dict, after the fields
        _prototype.append(made.__dict__)
    own = _prototype[0].copy()
    own.update(fields)
    jd: JobDefinition = _new_object(JobDefinition)
    _set_attribute(jd, "__dict__", own)
    return jd


def _difflib() -> ModuleType:
    """:mod:`difflib`, imported on first use: only the errors about an unknown name need
    it, and a command that succeeds should not pay for importing it."""
    import difflib

    return difflib


def _closest(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    pool = sorted(set(candidates))
    close: list[str] = _difflib().get_close_matches(name, pool, n=n, cutoff=0.0)
    return close or pool[:n]


class JobRegistry:
    """The effective job table, keyed ``extension/job`` in declaration order."""

    def __init__(
        self,
        extensions: list[Extension],
        jobs: list[JobDefinition],
        *,
        timezone: str = "UTC",
        bootstrap: list[str] | None = None,
        scheduler_enabled: bool = True,
    ) -> None:
        self.extensions = extensions
        self.jobs: dict[str, JobDefinition] = {j.key: j for j in jobs}
        self.timezone = timezone
        self.bootstrap = list(bootstrap or [])
        self.scheduler_enabled = scheduler_enabled

    def __iter__(self) -> Iterator[JobDefinition]:
        return iter(self.jobs.values())

    def __len__(self) -> int:
        return len(self.jobs)

    def __contains__(self, key: object) -> bool:
        return key in self.jobs

    def scheduled(self) -> list[JobDefinition]:
        return [j for j in self.jobs.values() if j.cron is not None]

    def resolve(self, name: str) -> JobDefinition:
        """A job by key (``ext/job``) or by bare name when that name is unique."""
        if name in self.jobs:
            return self.jobs[name]
        if "/" not in name:
            matches = [j for j in self.jobs.values() if j.name == name]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                keys = ", ".join(sorted(j.key for j in matches))
                shown = quoted(name, NAME_LIMIT)
                raise AmbiguousJob(f"job name {shown} is ambiguous: use one of {keys}")
        if not self.jobs:
            raise UnknownJob(f"unknown job {quoted(name, NAME_LIMIT)}: no jobs are registered")
        matcher = _difflib().SequenceMatcher
        probe = name[: 2 * LIMIT]  # a pasted 100 KB "name" must not make this quadratic

        def likeness(jd: JobDefinition) -> float:
            ratio: float = max(
                matcher(None, probe, jd.key).ratio(),
                matcher(None, probe, jd.name).ratio(),
            )
            return ratio

        ranked = sorted(self.jobs.values(), key=lambda jd: (-likeness(jd), jd.key))
        hint = ", ".join(jd.key for jd in ranked[:5])
        raise UnknownJob(f"unknown job {quoted(name, NAME_LIMIT)}; closest known: {hint}")

    def with_tag(self, tag: str) -> list[JobDefinition]:
        found = [j for j in self.jobs.values() if tag in j.tags]
        if not found:
            tags = sorted({t for j in self.jobs.values() for t in j.tags})
            known = ", ".join(tags) or "none"
            raise UnknownJob(f"no job is tagged {quoted(tag, NAME_LIMIT)} (known tags: {known})")
        return found


# ---------------------------------------------------------------- discovery


def load_object(path: str) -> Any:
    """Import ``package.module:Attr``; the current directory is importable, as in celery -A."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"extension path {path!r} must look like package.module:Attribute")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import extension module {module_name!r}: {exc}") from None
    try:
        obj: Any = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _instantiate(obj: Any, origin: str) -> Extension:
    if isinstance(obj, type) and issubclass(obj, Extension):
        return obj()
    if isinstance(obj, Extension):
        return obj
    raise RegistryError(f"{origin} is {obj!r}, not an Extension subclass or instance")


def discover_extensions(profile: Profile | None) -> list[Extension]:
    """Extensions from the ``systemprompt.extensions`` entry points, then the profile's list."""
    found: list[Extension] = []
    seen: set[type] = set()
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            ext = _instantiate(ep.load(), f"entry point {ep.name!r} ({ep.value})")
        except ConfigError:
            raise
        except Exception as exc:
            raise RegistryError(
                f"entry point {ep.name!r} ({ep.value}) failed to load: {exc}"
            ) from exc
        if type(ext) not in seen:
            seen.add(type(ext))
            found.append(ext)
    for index, path in enumerate(profile.extensions if profile else []):
        try:
            ext = _instantiate(load_object(path), f"extension {path!r}")
        except ConfigError as exc:
            if profile is None:
                raise
            raise profile.error(str(exc), "extensions", index) from None
        if type(ext) not in seen:
            seen.add(type(ext))
            found.append(ext)
    return found


# ---------------------------------------------------------------- effective table


def _entry_error(
    profile: Profile | None, found: tuple[int, JobOverride] | None, message: str, key: str = ""
) -> ConfigError:
    """An error about a job's profile entry, located at ``key`` of that entry."""
    assert profile is not None and found is not None
    path: tuple[str | int, ...] = ("scheduler", "jobs", found[0])
    return profile.error(message, *path, *((key,) if key else ()))


def _check_window(
    policy: JobPolicy,
    where: str,
    profile: Profile | None,
    found: tuple[int, JobOverride] | None,
) -> None:
    """``start_at`` after ``end_at`` (each may come from a different layer) is refused."""
    start, end = policy.start_at, policy.end_at
    if start is None or end is None or start <= end:
        return
    message = (
        f"end_at {end.isoformat()} is before start_at {start.isoformat()}; end_at must be at "
        "or after start_at"
    )
    if found is not None and (found[1].is_set("start_at") or found[1].is_set("end_at")):
        key = "end_at" if found[1].is_set("end_at") else "start_at"
        raise _entry_error(profile, found, message, key)
    raise RegistryError(f"{where}: {message}")


def _code_values(job: Job) -> dict[str, Any]:
    """The job's policy attributes that are set (on its class or the instance)."""
    return {key: value for key in POLICY_KEYS if (value := getattr(job, key)) is not None}


_POLICY_KEY_SET = frozenset(POLICY_KEYS)


def _class_facts(cls: type) -> tuple[dict[str, Any], tuple[tuple[str, int], ...]] | None:
    """The policy attributes (:func:`_code_values`) every instance of the Job class
    ``cls`` has unless its own ``__dict__`` sets one, and their policy memo key; None
    when instances may read something else: a policy attribute that is a property or
    another descriptor (computed per instance, or ``__slots__``), or a custom
    ``__getattribute__``."""
    if getattr(cls, "__getattribute__") is not object.__getattribute__:  # noqa: B009 - mypy
        return None
    values: dict[str, Any] = {}
    for key in POLICY_KEYS:
        for klass in cls.__mro__:
            if key in klass.__dict__:
                value = klass.__dict__[key]
                if hasattr(type(value), "__get__"):
                    return None
                if value is not None:
                    values[key] = value
                break
    return values, tuple((k, id(v)) for k, v in values.items())


def _unique_key(name: str, names_of: Mapping[str, set[str]]) -> str | None:
    """The key :meth:`JobRegistry.resolve` gives ``name`` among the jobs ``names_of``
    (extension -> job names), or None where it would raise."""
    if "/" in name:
        ext, _, job = name.partition("/")
        return name if job in names_of.get(ext, ()) else None
    found = [f"{ext}/{name}" for ext, names in names_of.items() if name in names]
    return found[0] if len(found) == 1 else None


def _class_where(ext_name: str, job: Job) -> str:
    return f"extension {ext_name!r}, job class {type(job).__name__}"


def _code_settings(data: dict[str, Any], where: str) -> PolicySettings:
    """A job's policy attributes (:func:`_code_values`), validated by the profile's model."""
    try:
        return PolicySettings.model_validate(data)
    except ValidationError as exc:
        problems = explain(exc, PolicySettings)
        keypath, message = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        key = ".".join(str(part) for part in keypath)
        raise RegistryError(f"{where}: class attribute {key}: {message}{more}") from None


def _effective_policy(
    layers: Iterable[tuple[Source, PolicySettings | None]],
) -> tuple[JobPolicy, dict[str, Source]]:
    """Apply ``layers`` in order over the built-in defaults; remember who set each key."""
    policy = JobPolicy()
    sources: dict[str, Source] = dict.fromkeys(POLICY_KEYS, "built-in")
    for source, settings in layers:
        if settings is None:
            continue
        policy = settings.apply(policy)
        for key in settings.given():
            sources[key] = source
    return policy, sources


_NAMES_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*(?:\n[a-z0-9][a-z0-9_.-]*)*")
_name_of = attrgetter("name")
_schedule_of = attrgetter("schedule")
_dict_of = attrgetter("__dict__")


#: Up to this many (class, schedule) keys, each one's first job is found by a C scan.
_FEW_KEYS = 32


@dataclass(frozen=True)
class _Own:
    """The key of a job with a profile entry: equal to no other job's."""

    index: int


def _jobs_to_walk(
    jobs: list[Job],
    ext_name: str,
    only_job: str | None,
    overrides: Mapping[tuple[str, str], object],
) -> tuple[list[Job], set[str]] | None:
    """For a table of one job: the jobs of an extension the per-job loop must still see
    (and every job name), or None to walk them all.

    The loop checks each job and builds the named one. Checked here for all jobs at once,
    in C loops (~10 times faster at 100,000 jobs): every object is an instance of a Job
    class whose policy attributes can be read once per class, no instance sets one of
    its own, every name is valid and unique. Then a job the loop skips cannot fail where
    an earlier one did not: its policy is its class's and its schedule's parse (in its
    class's zone) is shared with the first job of the same class and schedule, and those
    first jobs are walked, in order, with the named job and the jobs with a profile
    entry. Anything else (a bad name, a duplicate, an unusual class, an attribute that
    raises) walks every job, so errors and their order are exactly those of the loop.
    """
    try:
        classes = set(map(type, jobs))
        for cls in classes:
            if not issubclass(cls, Job) or _class_facts(cls) is None:
                return None
        names: list[str] = list(map(_name_of, jobs))
        if not _NAMES_RE.fullmatch("\n".join(names)):
            return None
        unique = set(names)
        if len(unique) != len(names):
            return None
        if not all(map(_POLICY_KEY_SET.isdisjoint, map(_dict_of, jobs))):
            return None
        schedules = map(_schedule_of, jobs)
        # Keyed by (class, schedule); by schedule alone for one class (the usual case).
        keys: list[object] = (
            list(schedules)
            if len(classes) == 1
            else list(zip(map(type, jobs), schedules, strict=True))
        )
        entries = {name for ext, name in overrides if ext == ext_name} & unique
        wanted = entries | ({only_job} & unique if only_job is not None else set())
        index_of: Mapping[str, int] = (
            dict(zip(names, range(len(names)), strict=True))
            if len(wanted) > 1
            else {name: names.index(name) for name in wanted}
        )
        # A job with a profile entry gets a policy of its own: it is walked, and it does
        # not stand for the other jobs of its class and schedule.
        for name in entries:
            keys[index_of[name]] = _Own(index_of[name])
        distinct = dict.fromkeys(keys)
        if len(distinct) <= _FEW_KEYS:
            indexes = {keys.index(key) for key in distinct}
        else:  # the first index of each key (later ones overwrite, hence reversed)
            first = dict(zip(reversed(keys), range(len(keys) - 1, -1, -1), strict=True))
            indexes = set(first.values())
    except Exception:  # the loop raises it again, for the right job
        return None
    indexes.update(index_of[name] for name in wanted)
    return [jobs[i] for i in sorted(indexes)], unique


def build_registry(
    profile: Profile | None = None,
    extensions: list[Extension] | None = None,
    *,
    only: str | None = None,
) -> JobRegistry:
    """Discover (unless given) the extensions and merge their jobs with the profile.

    With ``only`` (a job name as :meth:`JobRegistry.resolve` takes it), every job is
    still checked, so a mistake anywhere is an error as without it, but the table holds
    only the jobs ``resolve(only)`` may return: a command about one job of 100,000 does
    not build the other 99,999 definitions.
    """
    if extensions is None:
        extensions = discover_extensions(profile)
    with gc_paused():
        return _build_registry(profile, extensions, only)


def _build_registry(
    profile: Profile | None, extensions: list[Extension], only: str | None
) -> JobRegistry:
    only_ext: str | None = None
    only_job = only
    if only is not None and "/" in only:
        only_ext, _, only_job = only.partition("/")
    names_of: dict[str, set[str]] = {}
    tz = profile.scheduler.timezone if profile else "UTC"
    tz_source: Source = (
        "profile defaults"
        if profile is not None and "timezone" in profile.scheduler.model_fields_set
        else "built-in"
    )
    defaults = profile.scheduler.defaults if profile else None
    overrides: dict[tuple[str, str], tuple[int, JobOverride]] = {}
    if profile is not None:
        for index, ov in enumerate(profile.scheduler.jobs):
            overrides[(ov.extension, ov.job)] = (index, ov)

    definitions: list[JobDefinition] = []
    policies: dict[tuple[tuple[str, int], ...], tuple[JobPolicy, Mapping[str, Source]]] = {}
    classes: dict[type, tuple[dict[str, Any], tuple[tuple[str, int], ...]] | None] = {}
    crons: dict[tuple[str, str], CronSchedule] = {}
    ext_names: set[str] = set()
    for ext in extensions:
        if not ext.name or not NAME_RE.match(ext.name):
            raise RegistryError(
                f"extension {type(ext).__name__} has an invalid name {ext.name!r}: use lower-case"
                " letters, digits, '-', '_' and '.'"
            )
        if ext.name in ext_names:
            raise RegistryError(f"two extensions are named {ext.name!r}")
        ext_names.add(ext.name)
        try:
            jobs = list(ext.jobs())
        except Exception as exc:
            raise RegistryError(f"extension {ext.name!r}: jobs() failed: {exc}") from exc
        names: set[str] = set()
        config = dict(profile.config.get(ext.name, {})) if profile else {}
        ext_name = ext.name
        names_of[ext_name] = names
        skip_ext = only_ext is not None and only_ext != ext_name
        walk = jobs
        if only is not None:
            picked = _jobs_to_walk(jobs, ext_name, None if skip_ext else only_job, overrides)
            if picked is not None:
                walk, names_of[ext_name] = picked
        # An extension may declare 100,000 jobs: what depends only on the job's class
        # (being a Job, its policy attributes) is worked out once per class, each job
        # pays only for its own name, schedule and profile entry.
        for job in walk:
            cls = type(job)
            if cls in classes:
                facts = classes[cls]
            else:
                if not isinstance(job, Job):
                    raise RegistryError(f"extension {ext_name!r}: {job!r} is not a Job instance")
                facts = _class_facts(cls)
                if issubclass(cls, Job):  # then every instance is a Job
                    classes[cls] = facts
            name = job.name
            if not name:
                raise RegistryError(
                    f"{_class_where(ext_name, job)}: the job has no name (set the class attribute)"
                )
            if not NAME_RE.match(name):
                raise RegistryError(
                    f"{_class_where(ext_name, job)}: invalid job name {name!r}: use lower-case"
                    " letters, digits, '-', '_' and '.'"
                )
            if name in names:
                raise RegistryError(f"job {ext_name}/{name}: duplicate job key {ext_name}/{name}")
            names.add(name)
            found = overrides.pop((ext_name, name), None) if overrides else None
            override = found[1] if found is not None else None
            code_values: dict[str, Any]
            memo_key: tuple[tuple[str, int], ...] | None
            own_values = getattr(job, "__dict__", None)
            if (
                facts is not None
                and override is None
                and own_values is not None
                and _POLICY_KEY_SET.isdisjoint(own_values)
            ):
                code_values, memo_key = facts
            else:
                code_values = _code_values(job)
                # Jobs without a profile entry whose attributes are the same objects end
                # up with the same policy: compute it once and share it (and its sources).
                memo_key = (
                    None
                    if override is not None
                    else tuple((k, id(v)) for k, v in code_values.items())
                )
            sources: Mapping[str, Source]
            memo = policies.get(memo_key) if memo_key is not None else None
            if memo is not None:
                policy, sources = memo
            else:
                where = f"job {ext_name}/{name}"
                code = _code_settings(code_values, where)
                policy, own = _effective_policy(
                    (("profile defaults", defaults), ("code", code), ("profile", override))
                )
                own["schedule"] = "code"
                own["enabled"] = "built-in"
                if policy.timezone is None:
                    # Every job has its zone resolved: the scheduler's unless it names one.
                    policy = replace(policy, timezone=tz)
                    own["timezone"] = tz_source
                _check_window(policy, where, profile, found)
                if override is not None:
                    if override.is_set("schedule"):
                        own["schedule"] = "profile"
                    if override.enabled is not None:
                        own["enabled"] = "profile"
                sources = own
                if memo_key is not None:
                    sources = MappingProxyType(own)
                    policies[memo_key] = (policy, sources)
            tz_job = policy.timezone or tz
            schedule = job.schedule
            cron: CronSchedule | None = None
            if schedule is not None:
                # Checked even when the profile replaces it: the code must stay valid.
                # Shared per (expression, zone): one parse for all the jobs that use it.
                cron = crons.get((schedule, tz_job))
                if cron is None:
                    try:
                        cron = crons[(schedule, tz_job)] = CronSchedule.of(schedule, tz_job)
                    except InvalidSchedule as exc:
                        raise RegistryError(
                            f"job {ext_name}/{name}: invalid schedule: {exc}"
                        ) from None
            enabled = True
            parameters: Mapping[str, Any] = _NO_PARAMETERS
            if override is not None:
                if override.is_set("schedule"):
                    schedule = override.schedule
                    # The profile checked it (in its own zone) when it was loaded.
                    cron = CronSchedule.of(schedule, tz_job) if schedule else None
                if override.enabled is not None:
                    enabled = override.enabled
                parameters = dict(override.parameters)
            if only is not None and (skip_ext or name != only_job):
                continue
            definitions.append(
                _definition(
                    {
                        "extension": ext_name,
                        "name": name,
                        "description": job.description,
                        "job": job,
                        "schedule": schedule,
                        "cron": cron,
                        "enabled": enabled,
                        "policy": policy,
                        "parameters": parameters,
                        "config": config,
                        "tags": tuple(job.tags),
                        "sources": sources,
                        "key": f"{ext_name}/{name}",
                    }
                )
            )

    if profile is not None and overrides and only is not None:
        # The error names the closest of all the known jobs: build them all for it.
        return _build_registry(profile, extensions, None)
    if profile is not None:
        for index, ov in overrides.values():
            key = f"{ov.extension}/{ov.job}"
            if ov.extension not in ext_names:
                what = f"unknown extension {ov.extension!r}; known extensions: " + (
                    ", ".join(sorted(ext_names)) or "none"
                )
                raise profile.error(what, "scheduler", "jobs", index, "extension")
            raise profile.error(
                f"unknown job {key!r}; known jobs: "
                + ", ".join(_closest(key, (d.key for d in definitions), 10)),
                "scheduler",
                "jobs",
                index,
                "job",
            )
    registry = JobRegistry(
        extensions,
        definitions,
        timezone=tz,
        scheduler_enabled=profile.scheduler.enabled if profile else True,
    )
    if profile is not None:
        for index, name in enumerate(profile.scheduler.bootstrap_jobs):
            if only is not None:
                boot_key = _unique_key(name, names_of)
                if boot_key is None:  # the error lists known jobs: build them all for it
                    return _build_registry(profile, extensions, None)
                registry.bootstrap.append(boot_key)
                continue
            try:
                registry.bootstrap.append(registry.resolve(name).key)
            except (UnknownJob, AmbiguousJob) as exc:
                raise profile.error(str(exc), "scheduler", "bootstrap_jobs", index) from None
    return registry
