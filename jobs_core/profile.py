"""profile.yaml: loading, ``${VAR}`` substitution, validation, located errors; and the
policy settings model that Job class attributes share with it.

Main rule: every mistake is one :class:`~jobs_core.errors.ProfileError` naming the file,
line, key path and what is allowed. Keywords (booleans, overlap modes) are read
case-insensitively, names (extensions, jobs, queues) are not, in code as in the profile.
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from .durations import parse_duration
from .errors import InvalidSchedule, ProfileError
from .policy import AlertPolicy, JobPolicy, Overlap, RetryPolicy
from .redis_url import REDIS_SCHEMES, SENTINEL_SCHEMES, parse_redis_url
from .urls import mask_url

__all__ = [
    "DEFAULT_PROFILE_FILE",
    "PER_JOB_KEYS",
    "POLICY_KEYS",
    "PROFILE_ENV",
    "URL_ENV",
    "AlertSettings",
    "AlertingConfig",
    "JobOverride",
    "KeyPath",
    "LogFormat",
    "MetricsConfig",
    "PolicySettings",
    "Profile",
    "RetrySettings",
    "SchedulerConfig",
    "SchedulerDefaults",
    "UiConfig",
    "WebhookConfig",
    "explain",
    "load_profile",
    "parse_profile",
]

KeyPath = tuple[str | int, ...]

PROFILE_ENV = "SYSTEMPROMPT_PROFILE"
DEFAULT_PROFILE_FILE = "profile.yaml"
#: Environment variables that win over the file, so one profile serves every deployment.
URL_ENV: Mapping[str, str] = {"redis_url": "REDIS_URL", "database_url": "DATABASE_URL"}


# --------------------------------------------------------------------------- values


def _shown(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # Escaped so a multi-line value cannot break the one-line error.
        inner = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
        return f'"{inner}"'
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _duration(value: object, info: ValidationInfo) -> float:
    return parse_duration(value, key=info.field_name or "duration")


def _overlap(value: object) -> Overlap:
    if isinstance(value, Overlap):
        return value
    if isinstance(value, str):
        try:
            return Overlap(value.strip().lower())
        except ValueError:
            pass
    allowed = "|".join(o.value for o in Overlap)
    raise ValueError(
        f"{_shown(value)} is not an overlap mode; use one of {allowed} "
        "(skip: drop the tick while a run is active, allow: run concurrently, "
        "buffer_one: at most one tick waits, buffer_all (alias queue): every tick waits, "
        "in order, within the misfire grace, cancel_other: cancel the active run, "
        "terminate_other: kill the active run's process)"
    )


def _attempts(value: object) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float):
        number = int(value) if value.is_integer() else None
    elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        number = int(value)
    if number is None:
        raise ValueError(f"{_shown(value)} is not a whole number; use an integer >= 1, e.g. 3")
    if number < 1:
        raise ValueError(f"must be at least 1, got {number} (1 means a single try, no retries)")
    return number


_QUEUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")


def _queue(value: object) -> object:
    if isinstance(value, str) and not _QUEUE.fullmatch(value):
        raise ValueError(
            f"{_shown(value)} is not a queue name; use letters, digits and _ . : - "
            'such as "jobs" or "maintenance"'
        )
    return value


_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _name(value: object) -> object:
    if isinstance(value, str) and not _NAME.fullmatch(value):
        raise ValueError(
            f"{_shown(value)} is not a name; use letters, digits and _ . - "
            'such as "maintenance" or "cleanup"'
        )
    return value


def _job_ref(value: object) -> object:
    if isinstance(value, str):
        parts = value.split("/")
        if len(parts) > 2 or not all(_NAME.fullmatch(p) for p in parts):
            raise ValueError(
                f"{_shown(value)} is not a job; write extension/job (e.g. "
                'maintenance/cleanup) or a bare job name such as "cleanup"'
            )
    return value


_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_IMPORT_PATH = re.compile(rf"{_IDENT}(?:\.{_IDENT})*:{_IDENT}(?:\.{_IDENT})*")


def _import_path(value: object) -> object:
    if isinstance(value, str) and not _IMPORT_PATH.fullmatch(value):
        raise ValueError(
            f"{_shown(value)} is not an import path; write package.module:Attr, "
            "e.g. extensions.maintenance:MaintenanceExtension"
        )
    return value


def _zone(value: object) -> object:
    if isinstance(value, str):
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{_shown(value)} is not a known time zone; use an IANA name such as "
                "UTC, Europe/London or America/New_York"
            ) from None
    return value


_INSTANT_HINT = "write an ISO 8601 instant with its offset, e.g. 2026-04-01T09:00:00+01:00 or ...Z"


def _instant(value: object) -> datetime:
    # YAML reads an unquoted timestamp as a datetime (naive without an offset) and a bare
    # date as a date; both are refused: the bound must name one instant.
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        raise ValueError(f"{value.isoformat()} is a date, not an instant; {_INSTANT_HINT}")
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{_shown(value)} is not an instant; {_INSTANT_HINT}") from None
    else:
        raise ValueError(f"{_shown(value)} is not an instant; {_INSTANT_HINT}")
    if moment.utcoffset() is None:
        raise ValueError(f"{_shown(str(value))} has no UTC offset; {_INSTANT_HINT}")
    return moment


def _run_count(value: object) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        number = int(value)
    if number is None or number < 1:
        raise ValueError(
            f"{_shown(value)} is not a run count; use a whole number >= 1 "
            "(leave max_runs out for no limit)"
        )
    return number


Duration = Annotated[float, BeforeValidator(_duration)]
Zone = Annotated[str, BeforeValidator(_zone)]
Instant = Annotated[datetime, BeforeValidator(_instant)]
RunCount = Annotated[int, BeforeValidator(_run_count)]
OverlapMode = Annotated[Overlap, BeforeValidator(_overlap)]
Attempts = Annotated[int, BeforeValidator(_attempts)]
QueueName = Annotated[str, BeforeValidator(_queue)]
Name = Annotated[str, BeforeValidator(_name)]
JobRef = Annotated[str, BeforeValidator(_job_ref)]
ImportPath = Annotated[str, BeforeValidator(_import_path)]


# --------------------------------------------------------------------------- models


class _Section(BaseModel):
    # Validators are built on first use, not at import: a CLI command builds only the
    # ones it validates with, once (building every model eagerly cost ~70 ms a command).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    # `jobs:` with every entry commented out is YAML null; that means "none", not an error.
    _NULL_IS_DEFAULT: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and cls._NULL_IS_DEFAULT:
            return {k: v for k, v in data.items() if not (v is None and k in cls._NULL_IS_DEFAULT)}
        return data


def _no_null(value: object) -> object:
    if value is None:
        raise ValueError("null is not allowed here; leave the key out to keep the default")
    return value


#: The keys of :class:`PolicySettings`, in the order operators read them.
POLICY_KEYS = (
    "retry",
    "timeout",
    "overlap",
    "misfire_grace",
    "queue",
    "alerts",
    "timezone",
    "jitter",
    "start_at",
    "end_at",
    "max_runs",
)
#: Policy keys that describe one job's schedule, so ``scheduler.defaults`` refuses them.
PER_JOB_KEYS = ("timezone", "start_at", "end_at", "max_runs")


def _off(value: object) -> object:
    # `off` (YAML reads a bare off as false), false and null turn one alert off.
    if value is False or (isinstance(value, str) and value.strip().lower() == "off"):
        return None
    return value


def _threshold(value: object) -> object:
    value = _off(value)
    if value is None:
        return None
    try:
        number = _attempts(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(
            f"{_shown(value)} is not a count of failures; use an integer >= 1 (e.g. 3), or off"
        )
    return number


class AlertSettings(_Section):
    """``alerts``: when the leading beat raises an alert for a job (see
    :class:`~jobs_core.policy.AlertPolicy`). The keys given replace those of the layer
    below; ``off`` (or null) turns that alert off."""

    late_after: Duration | None = None
    consecutive_failures: int | None = None
    max_duration: Duration | None = None
    on_skip: bool | None = None

    _late_after_off = field_validator("late_after", "max_duration", mode="before")(_off)
    _failures = field_validator("consecutive_failures", mode="before")(_threshold)
    _reject_null = field_validator("on_skip", mode="before")(_no_null)

    def apply(self, base: AlertPolicy) -> AlertPolicy:
        """``base`` with the keys given here replaced."""
        given = {name: getattr(self, name) for name in self.model_fields_set}
        return replace(base, **given) if given else base


class RetrySettings(_Section):
    """``retry``: the keys given replace those of the layer below; the others are kept."""

    max_attempts: Attempts | None = None
    backoff: Duration | None = None
    max_backoff: Duration | None = None
    jitter: bool | None = None

    _reject_null = field_validator("*", mode="before")(_no_null)

    def apply(self, base: RetryPolicy) -> RetryPolicy:
        """``base`` with the keys given here replaced."""
        given = {name: getattr(self, name) for name in self.model_fields_set}
        return replace(base, **given) if given else base


class PolicySettings(_Section):
    """The policy keys of ``scheduler.defaults``, of a ``scheduler.jobs`` entry and of the
    ``Job`` class attributes: one model, so one spelling means one thing in all three.

    Only the keys given count; a job's policy is built by applying, in order, the
    built-in defaults, ``scheduler.defaults``, the class attributes, the profile entry.
    """

    retry: RetrySettings | None = None
    timeout: Duration | None = None
    overlap: OverlapMode | None = None
    misfire_grace: Duration | None = None
    queue: QueueName | None = None
    alerts: AlertSettings | None = None
    timezone: Zone | None = None
    jitter: Duration | None = None
    start_at: Instant | None = None
    end_at: Instant | None = None
    max_runs: RunCount | None = None

    _NULL_IS_DEFAULT = frozenset({"retry", "alerts"})

    _reject_null = field_validator(
        "timeout",
        "overlap",
        "misfire_grace",
        "queue",
        "timezone",
        "jitter",
        "start_at",
        "end_at",
        "max_runs",
        mode="before",
    )(_no_null)

    def given(self) -> frozenset[str]:
        """The policy keys this layer changes (``retry`` when any retry key is given)."""
        keys = set(self.model_fields_set) & set(POLICY_KEYS)
        for nested in ("retry", "alerts"):
            section: _Section | None = getattr(self, nested)
            if section is None or not section.model_fields_set:
                keys.discard(nested)
        return frozenset(keys)

    def apply(self, base: JobPolicy) -> JobPolicy:
        """``base`` with the keys given here replaced (retry key by key)."""
        changes: dict[str, Any] = {}
        for name in self.given():
            value = getattr(self, name)
            if name == "retry":
                value = value.apply(base.retry)
            elif name == "alerts":
                value = value.apply(base.alerts)
            changes[name] = value
        return replace(base, **changes) if changes else base


class JobOverride(PolicySettings):
    """One entry of ``scheduler.jobs``: what the profile changes for one job."""

    extension: Name
    job: Name
    # Explicit null is meaningful ("manual only"), so it is kept apart from "not given".
    schedule: str | None = None
    enabled: bool | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)

    _NULL_IS_DEFAULT = frozenset({"retry", "alerts", "parameters"})
    _line: int | None = PrivateAttr(default=None)

    _reject_null_enabled = field_validator("enabled", mode="before")(_no_null)

    @property
    def key(self) -> str:
        """The job key ``extension/job``."""
        return f"{self.extension}/{self.job}"

    @property
    def line(self) -> int | None:
        """The line of this entry in profile.yaml (None when not loaded from a file)."""
        return self._line

    def is_set(self, name: str) -> bool:
        """Whether ``name`` was written in the profile (``schedule: null`` counts)."""
        return name in self.model_fields_set


def _per_job_only(value: object, info: ValidationInfo) -> object:
    name = info.field_name
    also = "; scheduler.timezone sets the zone of every job" if name == "timezone" else ""
    raise ValueError(
        f"{name} is set per job: put it on the job's scheduler.jobs entry or on its Job class{also}"
    )


class SchedulerDefaults(PolicySettings):
    """``scheduler.defaults``: policies for every job, below its class attributes."""

    _per_job = field_validator(*PER_JOB_KEYS, mode="before")(_per_job_only)

    def policy(self) -> JobPolicy:
        """The built-in defaults with these applied: a job's policy before its own layers."""
        return self.apply(JobPolicy())


def _webhook_url(value: object) -> object:
    if isinstance(value, str):
        scheme, sep, rest = value.partition("://")
        if not sep or scheme.lower() not in ("http", "https") or not rest.strip("/"):
            # The URL itself may be a secret (Slack's are), so it is not echoed.
            raise ValueError("must be an http:// or https:// URL")
    return value


class WebhookFormat(StrEnum):
    JSON = "json"
    SLACK = "slack"


def _webhook_format(value: object) -> WebhookFormat:
    if isinstance(value, str):
        try:
            return WebhookFormat(value.strip().lower())
        except ValueError:
            pass
    raise ValueError(
        f"{_shown(value)} is not a webhook format; use json (signed JSON event) or slack "
        "(a Slack incoming-webhook message)"
    )


class WebhookConfig(_Section):
    """One alert destination: a POST of every alert firing and resolving."""

    url: Annotated[str, BeforeValidator(_webhook_url)]
    secret: SecretStr | None = None
    format: Annotated[WebhookFormat, BeforeValidator(_webhook_format)] = WebhookFormat.JSON
    timeout: Duration = 5.0
    max_attempts: Attempts = 5

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, mask_webhook(value) if name == "url" else value


def mask_webhook(url: str) -> str:
    """``scheme://host[:port]/...``: what logs may show of a webhook URL (its path and
    query are often the secret)."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}/..."


class AlertingConfig(_Section):
    """``scheduler.alerting``: where alerts go and how often the leading beat checks."""

    webhooks: list[WebhookConfig] = Field(default_factory=list)
    check_every: Duration = 15.0

    _NULL_IS_DEFAULT = frozenset({"webhooks"})

    @field_validator("check_every")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be longer than 0s, e.g. 15s")
        return value


def _port(value: object) -> object:
    if value is None:
        return None
    number = value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    if number is None or not 1 <= number <= 65535:
        raise ValueError(f"{_shown(value)} is not a TCP port; use a number from 1 to 65535")
    return number


Port = Annotated[int | None, BeforeValidator(_port)]


class MetricsConfig(_Section):
    """``scheduler.metrics``: HTTP ports of /metrics, /healthz and /readyz (off when unset)."""

    beat_port: Port = None
    worker_port: Port = None


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


def _log_format(value: object) -> LogFormat:
    if isinstance(value, str):
        try:
            return LogFormat(value.strip().lower())
        except ValueError:
            pass
    raise ValueError(f"{_shown(value)} is not a log format; use text or json")


LogFormatName = Annotated[LogFormat, BeforeValidator(_log_format)]


class SchedulerConfig(_Section):
    """``scheduler``: time zone, default policies, per-job overrides, bootstrap jobs,
    alert destinations and metrics ports."""

    enabled: bool = True
    timezone: Zone = "UTC"
    defaults: SchedulerDefaults = Field(default_factory=SchedulerDefaults)
    jobs: list[JobOverride] = Field(default_factory=list)
    bootstrap_jobs: list[JobRef] = Field(default_factory=list)
    alerting: AlertingConfig = Field(default_factory=AlertingConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

    _NULL_IS_DEFAULT = frozenset({"defaults", "jobs", "bootstrap_jobs", "alerting", "metrics"})

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def override_for(self, extension: str, job: str) -> JobOverride | None:
        """The override entry of ``extension/job``, if the profile has one."""
        for override in self.jobs:
            if override.extension == extension and override.job == job:
                return override
        return None


class UiConfig(_Section):
    """``ui``: who may open the web dashboard (``infra ui``) and where Flower is.

    The SYSTEMPROMPT_UI_* environment variables win over these keys.
    """

    user: str | None = None
    password: SecretStr | None = None
    readonly_user: str | None = None
    readonly_password: SecretStr | None = None
    flower_url: str | None = None


_URL_SCHEMES: Mapping[str, tuple[str, ...]] = {
    "redis_url": REDIS_SCHEMES,
    "database_url": ("postgresql", "postgres"),
}


class Profile(_Section):
    """A validated profile. Build it with :func:`load_profile` or :meth:`Profile.default`."""

    redis_url: str | None = None
    database_url: str | None = None
    extensions: list[ImportPath] = Field(default_factory=list)
    config: dict[str, dict[str, Any]] = Field(default_factory=dict)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    ui: UiConfig = Field(default_factory=UiConfig)
    log_format: LogFormatName = LogFormat.TEXT

    _NULL_IS_DEFAULT = frozenset({"extensions", "config", "scheduler", "ui"})
    _path: str | None = PrivateAttr(default=None)
    _lines: dict[KeyPath, int] = PrivateAttr(default_factory=dict)

    @field_validator("redis_url", "database_url")
    @classmethod
    def _url_scheme(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        schemes = _URL_SCHEMES[info.field_name or ""]
        scheme, sep, _ = value.partition("://")
        if not sep or scheme.lower() not in schemes:
            # The value itself may hold a password, so only the allowed forms are named.
            allowed = ", ".join(f"{s}://" for s in schemes)
            raise ValueError(f"must be a URL starting with {allowed}")
        if info.field_name == "redis_url" and scheme.lower() in SENTINEL_SCHEMES:
            parse_redis_url(value)  # its error names the problem, the password masked
        return value

    @field_validator("config", mode="before")
    @classmethod
    def _empty_sections(cls, value: Any) -> Any:
        # `my-extension:` with nothing under it is an empty section, not a type error.
        if isinstance(value, Mapping):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    @property
    def path(self) -> str | None:
        """The file this profile came from; None for built-in defaults."""
        return self._path

    @classmethod
    def default(cls) -> Profile:
        """Built-in defaults, as if the profile were empty (no file, no environment)."""
        return cls()

    @classmethod
    def from_dict(cls, data: Any, *, path: str | None = None) -> Profile:
        """Validate already-parsed data with every check of :func:`load_profile`."""
        return _build(data, path=path, lines={}, env_sources={})

    def extension_config(self, extension: str) -> dict[str, Any]:
        """``config.<extension>``: what ``JobContext.config`` receives for that extension."""
        return dict(self.config.get(extension, {}))

    def line_of(self, *keypath: str | int) -> int | None:
        """The line of ``keypath`` in the file, else of its nearest ancestor that has one."""
        path: KeyPath = tuple(keypath)
        while path:
            line = self._lines.get(path)
            if line is not None:
                return line
            path = path[:-1]
        return None

    def error(self, message: str, *keypath: str | int) -> ProfileError:
        """A ProfileError located at ``keypath``, for mistakes found after loading."""
        return ProfileError(
            message, file=self._path, line=self.line_of(*keypath), key=_dotted(keypath) or None
        )

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name in URL_ENV and isinstance(value, str):
                yield name, mask_url(value)
            else:
                yield name, value


# --------------------------------------------------------------------------- errors


def _dotted(keypath: Iterable[str | int]) -> str:
    out = ""
    for part in keypath:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _model_at(root: type[BaseModel], keypath: KeyPath) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``keypath`` (for allowed-key lists)."""
    tp: Any = root
    for part in keypath:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return None
            tp = field.annotation
        elif get_origin(tp) is list and isinstance(part, int):
            tp = get_args(tp)[0]
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _describe(err: ErrorDetails, root: type[BaseModel]) -> tuple[KeyPath, str]:
    loc: KeyPath = tuple(p for p in err["loc"] if p != "[key]")
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        key = str(loc[-1])
        model = _model_at(root, loc[:-1])
        allowed = list(model.model_fields) if model else []
        import difflib  # here: only an error needs it

        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return loc, f"unknown key {key!r}{hint}; allowed keys: {', '.join(allowed)}"
    if kind == "missing":
        model = _model_at(root, loc[:-1])
        required = [n for n, f in model.model_fields.items() if f.is_required()] if model else []
        also = f" (required here: {', '.join(required)})" if len(required) > 1 else ""
        return loc, f"required key {str(loc[-1])!r} is missing{also}"
    if kind in ("value_error", "assertion_error"):
        return loc, str(ctx.get("error", err["msg"]))
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return loc, f"must be a mapping of key: value, got {_shown(value)}"
    if kind == "list_type":
        return loc, f"must be a list, got {_shown(value)}"
    if kind == "string_type":
        return loc, f"must be a string, got {_shown(value)}"
    if kind in ("bool_type", "bool_parsing"):
        return loc, f"must be true or false, got {_shown(value)}"
    if kind in ("int_type", "int_parsing", "int_from_float", "float_type", "float_parsing"):
        return loc, f"must be a number, got {_shown(value)}"
    return loc, str(err["msg"])


def explain(exc: ValidationError, root: type[BaseModel]) -> list[tuple[KeyPath, str]]:
    """Each error of ``exc`` (from validating ``root``) as its key path and a one-line message."""
    return [_describe(err, root) for err in exc.errors(include_url=False)]


def _from_validation_error(
    exc: ValidationError,
    path: str | None,
    lines: Mapping[KeyPath, int],
    env_sources: Mapping[str, str],
) -> ProfileError:
    located = []
    for keypath, message in explain(exc, Profile):
        found = _nearest_line(lines, keypath)
        located.append((found if found is not None else 1 << 30, keypath, message))
    # Report the first mistake in file order; that is where a reader starts fixing.
    located.sort(key=lambda item: item[0])
    first_line, keypath, message = located[0]
    if len(located) > 1:
        message += f" (and {len(located) - 1} more)"
    key = _dotted(keypath) or None
    line: int | None = first_line if first_line != 1 << 30 else None
    if keypath and len(keypath) == 1 and keypath[0] in env_sources:
        key = f"{keypath[0]} (from ${env_sources[str(keypath[0])]})"
        line = None
    return ProfileError(message, file=path, line=line, key=key)


def _nearest_line(lines: Mapping[KeyPath, int], keypath: KeyPath) -> int | None:
    while keypath:
        if keypath in lines:
            return lines[keypath]
        keypath = keypath[:-1]
    return None


# --------------------------------------------------------------------------- YAML


#: A profile is a few kilobytes; these bounds refuse hostile files before they cost memory.
MAX_PROFILE_CHARS = 1_000_000
#: Values that aliases may add once expanded (a "billion laughs" file adds 10^9). What is
#: written out is bounded by MAX_PROFILE_CHARS alone, so a large profile with many job
#: entries and no aliases is never refused for its size in values.
MAX_ALIAS_NODES = 100_000


def _read_yaml(text: str, path: str | None) -> tuple[Any, dict[KeyPath, int], int]:
    """Parse ``text``; return the data, the line of every key and item, the root's line."""
    if len(text) > MAX_PROFILE_CHARS:
        raise ProfileError(
            f"is {len(text):,} characters long; a profile may have at most {MAX_PROFILE_CHARS:,}",
            file=path,
        )
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[KeyPath, int] = {}
        if node is None:
            return None, lines, 1
        written = _written_size(node, set())
        limit = written + MAX_ALIAS_NODES
        if _expanded_size(node, {}, set(), limit) > limit:
            raise ProfileError(
                f"invalid YAML: its aliases (*name) expand to more than {MAX_ALIAS_NODES:,} "
                "values beyond those written; write the values out instead of nesting aliases",
                file=path,
            )
        # Lines are recorded before construction: constructing flattens `<<` merges,
        # which would make merged keys look like duplicates.
        _record_lines(node, (), lines, path, set())
        return loader.construct_document(node), lines, node.start_mark.line + 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        # str(exc) would quote the offending line, which may carry a password.
        detail = ", ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ProfileError(
            f"invalid YAML: {detail or 'syntax error'}",
            file=path,
            line=mark.line + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"invalid YAML: {type(exc).__name__}", file=path) from None
    except RecursionError:
        raise ProfileError("invalid YAML: nested too deeply", file=path) from None
    finally:
        loader.dispose()


def _written_size(node: yaml.Node, seen: set[int]) -> int:
    """How many distinct nodes the document holds (an alias is its anchor's node)."""
    todo = [node]
    count = 0
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        count += 1
        if isinstance(current, yaml.MappingNode):
            for key_node, value_node in current.value:
                todo += (key_node, value_node)
        elif isinstance(current, yaml.SequenceNode):
            todo += current.value
    return count


def _expanded_size(node: yaml.Node, sizes: dict[int, int], active: set[int], limit: int) -> int:
    """How many nodes the document holds once every alias is copied out (memoised; stops
    counting past ``limit``)."""
    ident = id(node)
    known = sizes.get(ident)
    if known is not None:
        return known
    if ident in active:  # a recursive alias: refused later, with its key
        return 1
    active.add(ident)
    size = 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            size += _expanded_size(key_node, sizes, active, limit)
            size += _expanded_size(value_node, sizes, active, limit)
            if size > limit:
                break
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            size += _expanded_size(item, sizes, active, limit)
            if size > limit:
                break
    active.discard(ident)
    sizes[ident] = size
    return size


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _record_lines(
    node: yaml.Node, keypath: KeyPath, lines: dict[KeyPath, int], path: str | None, seen: set[int]
) -> None:
    # An aliased node is walked once, at its anchor: aliases can make the node graph cyclic
    # or exponentially large, and the anchor is where its lines are anyway.
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise ProfileError(
                    f"duplicate key {key!r} (first at line {first_line[key]}); "
                    "YAML would silently keep only the last one, so merge them",
                    file=path,
                    line=line,
                    key=_dotted((*keypath, key)),
                )
            first_line[key] = line
            lines[(*keypath, key)] = line
            _record_lines(value_node, (*keypath, key), lines, path, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*keypath, index)] = item.start_mark.line + 1
            _record_lines(item, (*keypath, index), lines, path, seen)


# --------------------------------------------------------------------------- ${VAR}

_VAR = re.compile(r"(\$?)\$\{([^}]*)\}")
_VAR_BODY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


def _substitute(
    data: Any, env: Mapping[str, str], path: str | None, lines: Mapping[KeyPath, int]
) -> Any:
    """Replace ``${VAR}`` in every string value of ``data`` (keys are left alone)."""
    # YAML aliases share containers: each is rewritten once (an alias-heavy file must not
    # blow up exponentially), and one that contains itself is rejected.
    done: dict[int, Any] = {}
    active: set[int] = set()

    def walk(value: Any, keypath: KeyPath) -> Any:
        if isinstance(value, str):
            return _substitute_str(value, keypath, env, path, lines)
        if not isinstance(value, dict | list):
            return value
        ident = id(value)
        if ident in done:
            return done[ident]
        if ident in active:
            raise ProfileError(
                "a YAML alias refers to a mapping or list that contains it; "
                "recursive data cannot be a profile",
                file=path,
                line=_nearest_line(lines, keypath),
                key=_dotted(keypath) or None,
            )
        active.add(ident)
        result: Any
        if isinstance(value, dict):
            result = {k: walk(v, (*keypath, k)) for k, v in value.items()}
        else:
            result = [walk(v, (*keypath, i)) for i, v in enumerate(value)]
        active.discard(ident)
        done[ident] = result
        return result

    return walk(data, ())


def _substitute_str(
    text: str,
    keypath: KeyPath,
    env: Mapping[str, str],
    path: str | None,
    lines: Mapping[KeyPath, int],
) -> str:
    def fail(message: str) -> ProfileError:
        return ProfileError(
            message, file=path, line=_nearest_line(lines, keypath), key=_dotted(keypath) or None
        )

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            # `$${X}` is the escape for a literal `${X}`.
            return match.group(0)[1:]
        body = _VAR_BODY.fullmatch(match.group(2))
        if body is None:
            raise fail(
                f"bad reference ${{{match.group(2)}}}; write ${{NAME}} or ${{NAME:-default}}"
            )
        name, default = body.group(1), body.group(2)
        found = env.get(name)
        if found:
            return found
        if default is not None:
            return default
        if found is not None:
            return found
        raise fail(
            f"environment variable {name} is not set and ${{{name}}} has no default; "
            f"set {name} or write ${{{name}:-default}}"
        )

    return _VAR.sub(replace, text)


# --------------------------------------------------------------------------- build


def _build(
    data: Any,
    *,
    path: str | None,
    lines: Mapping[KeyPath, int],
    env_sources: Mapping[str, str],
    root_line: int = 1,
) -> Profile:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        allowed = ", ".join(Profile.model_fields)
        raise ProfileError(
            f"the top level must be a mapping with keys such as {allowed}; got {_shown(data)}",
            file=path,
            line=root_line,
        )
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        raise _from_validation_error(exc, path, lines, env_sources) from None
    profile._path = path
    profile._lines = dict(lines)
    for index, override in enumerate(profile.scheduler.jobs):
        override._line = lines.get(("scheduler", "jobs", index))
    _check_overrides(profile)
    return profile


def _check_overrides(profile: Profile) -> None:
    """Checks that span several keys: duplicate entries and schedules in the time zone."""
    first: dict[tuple[str, str], int] = {}
    for index, override in enumerate(profile.scheduler.jobs):
        ident = (override.extension, override.job)
        if ident in first:
            earlier = first[ident]
            where = profile.line_of("scheduler", "jobs", earlier)
            raise profile.error(
                f"duplicate override for {override.key} (first at scheduler.jobs[{earlier}]"
                f"{f', line {where}' if where else ''}); merge them into one entry",
                "scheduler",
                "jobs",
                index,
            )
        first[ident] = index
        if override.start_at and override.end_at and override.start_at > override.end_at:
            raise profile.error(
                f"is before start_at ({override.start_at.isoformat()}); end_at must be at or "
                "after start_at",
                "scheduler",
                "jobs",
                index,
                "end_at",
            )
        if override.schedule is None:
            continue
        if not override.schedule.strip():
            raise profile.error(
                'is empty; write a 6-field cron expression such as "0 */30 * * * *", '
                "or null for manual runs only",
                "scheduler",
                "jobs",
                index,
                "schedule",
            )
        # Imported here so that loading a profile without schedules never needs the engine.
        from .cron import CronSchedule

        try:
            CronSchedule.of(override.schedule, override.timezone or profile.scheduler.timezone)
        except (InvalidSchedule, ValueError) as exc:
            raise profile.error(
                f'{exc}; write 6 fields, seconds first (e.g. "0 */30 * * * *" for every '
                "30 minutes), or null for manual runs only",
                "scheduler",
                "jobs",
                index,
                "schedule",
            ) from None


def parse_profile(
    text: str, *, path: str | None = None, env: Mapping[str, str] | None = None
) -> Profile:
    """Validate profile ``text``; ``path`` only names the file in errors."""
    environ = os.environ if env is None else env
    data, lines, root_line = _read_yaml(text, path)
    if data is None:
        data = {}
    if isinstance(data, Mapping):
        data = _substitute(dict(data), environ, path, lines)
        env_sources: dict[str, str] = {}
        for field, var in URL_ENV.items():
            if environ.get(var):
                data[field] = environ[var]
                env_sources[field] = var
    else:
        env_sources = {}
    return _build(data, path=path, lines=lines, env_sources=env_sources, root_line=root_line)


def load_profile(
    path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
) -> Profile:
    """Find, read and validate the profile.

    Looked up at ``path``, else ``$SYSTEMPROMPT_PROFILE``, else ``./profile.yaml`` if it
    exists, else built-in defaults. ``env`` (default ``os.environ``) feeds ``${VAR}``
    references, REDIS_URL / DATABASE_URL overrides and the SYSTEMPROMPT_PROFILE look-up.
    """
    environ = os.environ if env is None else env
    if path is not None:
        chosen: str | None = os.fspath(path)
        source = ""
    elif environ.get(PROFILE_ENV):
        chosen = environ[PROFILE_ENV]
        source = f" (from ${PROFILE_ENV})"
    elif Path(DEFAULT_PROFILE_FILE).is_file():
        chosen = DEFAULT_PROFILE_FILE
        source = ""
    else:
        chosen = None
        source = ""
    if chosen is None:
        return parse_profile("", env=environ)
    file = Path(chosen)
    if not file.exists():
        raise ProfileError(f"profile file not found{source}", file=chosen)
    if file.is_dir():
        raise ProfileError(f"is a directory, not a profile file{source}", file=chosen)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(f"is not UTF-8 text ({exc.reason})", file=chosen) from None
    except OSError as exc:
        raise ProfileError(f"cannot be read: {exc.strerror or exc}", file=chosen) from None
    return parse_profile(text, path=chosen, env=environ)
