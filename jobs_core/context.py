"""JobContext: what a running job gets to work with."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from .errors import NoDatabaseConfigured, ParameterError, UnknownService
from .status import Trigger
from .text import quoted

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

T = TypeVar("T")
_MISSING: Any = object()


@dataclass(frozen=True)
class RunInfo:
    """Identity of the run being executed."""

    run_id: str
    job_key: str
    attempt: int
    max_attempts: int
    scheduled_for: datetime | None
    trigger: Trigger

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts


def _parse_bool(raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on", "y"):
        return True
    if low in ("0", "false", "no", "off", "n"):
        return False
    raise ValueError(f"{raw!r} is not a boolean (true/false, yes/no, 1/0, on/off)")


class JobContext:
    """Handed to ``Job.execute``: database pool, services, config, parameters, run info."""

    def __init__(
        self,
        *,
        run: RunInfo,
        db_pool_factory: Callable[[], AsyncConnectionPool[Any]] | None = None,
        config: Mapping[str, Any] | None = None,
        parameters: Mapping[str, Any] | None = None,
        services: Mapping[type, object] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.run = run
        self._db_pool_factory = db_pool_factory
        self.config: Mapping[str, Any] = dict(config or {})
        self.parameters: Mapping[str, Any] = dict(parameters or {})
        self._services = dict(services or {})
        base = logger or logging.getLogger(f"jobs.{run.job_key}")
        self.log: logging.LoggerAdapter[logging.Logger] = logging.LoggerAdapter(
            base, {"job": run.job_key, "run_id": run.run_id, "attempt": run.attempt}
        )

    @property
    def db_pool(self) -> AsyncConnectionPool[Any]:
        """The worker's shared ``psycopg_pool.AsyncConnectionPool`` (opened on first use)."""
        if self._db_pool_factory is None:
            raise NoDatabaseConfigured(
                f"job {self.run.job_key} asked for ctx.db_pool but no database is configured: "
                "set database_url in profile.yaml or the DATABASE_URL environment variable"
            )
        return self._db_pool_factory()

    def service(self, kind: type[T]) -> T:
        """The registered service of type ``kind`` (exact type, else a subclass)."""
        if kind in self._services:
            return cast(T, self._services[kind])
        for _registered, svc in self._services.items():
            if isinstance(svc, kind):
                return svc
        known = ", ".join(sorted(t.__name__ for t in self._services)) or "none"
        raise UnknownService(f"no service of type {kind.__name__} is registered (known: {known})")

    @overload
    def parameter(self, name: str) -> Any: ...

    @overload
    def parameter(self, name: str, kind: type[T], default: T = ...) -> T: ...

    def parameter(self, name: str, kind: type[Any] | None = None, default: Any = _MISSING) -> Any:
        """One parameter, parsed as ``kind``; a clear error names the job and key."""
        if name not in self.parameters:
            if default is _MISSING:
                raise ParameterError(
                    f"job {self.run.job_key}: parameter {name!r} is required "
                    f"(set it under parameters: in profile.yaml or with -p {name}=VALUE)"
                )
            return default
        raw = self.parameters[name]
        if kind is None or (isinstance(raw, kind) and not (kind is int and isinstance(raw, bool))):
            return raw
        try:
            if kind is bool and isinstance(raw, str):
                return _parse_bool(raw)
            if kind in (list, dict) and isinstance(raw, str):
                value = json.loads(raw)
                if not isinstance(value, kind):
                    raise ValueError(f"expected a JSON {kind.__name__}")
                return value
            if kind is int and isinstance(raw, float) and not raw.is_integer():
                raise ValueError("not a whole number")
            return kind(raw)
        except (TypeError, ValueError) as exc:
            raise ParameterError(
                f"job {self.run.job_key}: parameter {name!r}={quoted(raw)} is not a valid "
                f"{kind.__name__} ({exc})"
            ) from None
