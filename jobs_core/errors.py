"""The one exception hierarchy of the project.

Everything a user can cause (a bad profile, a bad cron expression, an unknown job,
an unreachable server) derives from :class:`ConfigError`; the CLI turns those into a
single line and exit code 2.
"""

from __future__ import annotations


class JobsError(Exception):
    """Root of every error raised on purpose by this project."""


class ConfigError(JobsError):
    """A mistake in configuration or usage; reported as one line, exit code 2."""


class ProfileError(ConfigError):
    """A mistake in profile.yaml, located by file, line and key path where known."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.key = key
        self.detail = message
        where = file or "<profile>"
        if line is not None:
            where += f":{line}"
        prefix = f"{where}: " if file or line is not None else ""
        keypart = f"{key}: " if key else ""
        super().__init__(f"{prefix}{keypart}{message}")


class InvalidSchedule(ConfigError, ValueError):
    """A cron expression that does not parse or can never fire."""


class RegistryError(ConfigError):
    """A job or extension definition that cannot be registered."""


class UnknownJob(ConfigError):
    """A job name that matches no registered job."""


class AmbiguousJob(ConfigError):
    """A bare job name that matches jobs of several extensions."""


class ParameterError(JobsError, ValueError):
    """A job parameter that is missing or cannot be parsed as asked."""


class NoDatabaseConfigured(JobsError):
    """A job asked for ``ctx.db_pool`` but no database_url is configured."""


class ServiceUnavailable(ConfigError):
    """A server (Redis, PostgreSQL) that cannot be reached; the URL is masked."""

    @classmethod
    def at(cls, service: str, url: str, exc: BaseException, hint: str = "") -> ServiceUnavailable:
        """ "cannot connect to <service> at <url>: <first line of exc>", passwords masked."""
        from .urls import mask_secrets_in, mask_url

        lines = str(exc).strip().splitlines()
        reason = mask_secrets_in(lines[0] if lines else type(exc).__name__, url)
        suffix = f" ({hint})" if hint else ""
        return cls(f"cannot connect to {service} at {mask_url(url)}: {reason}{suffix}")


class UnknownService(JobsError, LookupError):
    """``ctx.service(T)`` asked for a type nobody registered."""


class InvalidMessage(JobsError, ValueError):
    """A queued message that breaks the wire contract; it is dead-lettered, never run.

    ``reason`` says what is wrong (the field first, then the value, cut short).
    """

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(reason)


class StoreError(JobsError):
    """The run-history store failed in a way the caller should know about."""


class DuplicateTick(StoreError):
    """A second run for a tick: history keeps one run per (job, scheduled instant)."""

    @classmethod
    def of(cls, job_key: str, scheduled_for: object) -> DuplicateTick:
        return cls(f"job {job_key} already has a run for the tick at {scheduled_for}")
