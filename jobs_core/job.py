"""The public API for declaring jobs: ``Job`` and ``Extension``."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .context import JobContext
    from .result import JobResult

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class Job(ABC):
    """A background job. Subclass it, set the class attributes, implement ``execute``.

    ``schedule`` is a 6-field cron expression (seconds first) or ``None`` for a job
    that only runs by hand or as a bootstrap job. The optional policy attributes take
    the keys and spellings of profile.yaml's ``scheduler.defaults`` and are checked the
    same way; they win over ``scheduler.defaults`` and lose to the job's own entry in
    ``scheduler.jobs``.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    schedule: ClassVar[str | None] = None
    tags: ClassVar[tuple[str, ...]] = ()

    # Optional policy settings (None = not set here).
    retry: ClassVar[dict[str, Any] | None] = None  # e.g. {"max_attempts": 5, "backoff": "30s"}
    timeout: ClassVar[str | float | None] = None  # "30s" or seconds
    overlap: ClassVar[str | None] = None  # "skip" | "allow" | "queue"
    queue: ClassVar[str | None] = None
    misfire_grace: ClassVar[str | float | None] = None
    alerts: ClassVar[dict[str, Any] | None] = None  # e.g. {"late_after": "1h"}
    timezone: ClassVar[str | None] = None  # IANA zone; None: scheduler.timezone
    jitter: ClassVar[str | float | None] = None  # "30s": start up to 30 s after each tick
    start_at: ClassVar[str | datetime | None] = None  # ISO 8601 with offset
    end_at: ClassVar[str | datetime | None] = None
    max_runs: ClassVar[int | None] = None  # scheduled runs, then no more ticks

    @abstractmethod
    async def execute(self, ctx: JobContext) -> JobResult:
        """Do the work. Raise to ask for a retry; return ``JobResult.failure`` to stop."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class Extension(ABC):
    """A named group of jobs, found by entry point or by the profile's ``extensions:``."""

    name: ClassVar[str] = ""

    @abstractmethod
    def jobs(self) -> list[Job]:
        """The jobs this extension provides."""

    def migrations(self) -> list[tuple[str, str]]:
        """``(migration_id, sql)`` pairs this extension needs, applied in order.

        ``systemprompt infra db migrate`` applies each once and records it.
        """
        return []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
