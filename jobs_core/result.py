"""JobResult: what a job's ``execute`` returns and history stores."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, overload


class _SuccessAttr:
    """``JobResult.success()`` builds a result; ``result.success`` is the bool.

    The public API names both the constructor and the field ``success``; a typed
    descriptor keeps both readable and mypy-clean.
    """

    @overload
    def __get__(self, instance: None, owner: type[JobResult]) -> Callable[[], JobResult]: ...

    @overload
    def __get__(self, instance: JobResult, owner: type[JobResult]) -> bool: ...

    def __get__(
        self, instance: JobResult | None, owner: type[JobResult]
    ) -> bool | Callable[[], JobResult]:
        if instance is None:
            return lambda: owner(ok=True)
        return instance._ok


class JobResult:
    """Outcome of one run. Immutable: the ``with_*`` methods return a new result.

    ``JobResult.failure(msg)`` is a final failure (not retried); raising from
    ``execute`` is the way to ask for a retry.
    """

    __slots__ = ("_ok", "data", "duration_ms", "items_failed", "items_processed", "message")

    success = _SuccessAttr()

    def __init__(
        self,
        *,
        ok: bool,
        message: str | None = None,
        items_processed: int | None = None,
        items_failed: int | None = None,
        duration_ms: int | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self._ok = bool(ok)
        self.message = message
        self.items_processed = items_processed
        self.items_failed = items_failed
        self.duration_ms = duration_ms
        self.data: dict[str, Any] = dict(data or {})

    @classmethod
    def failure(cls, message: str) -> JobResult:
        return cls(ok=False, message=message)

    def _replace(self, **changes: Any) -> JobResult:
        values = self.to_json()
        values["ok"] = values.pop("success")
        values.update(changes)
        return JobResult(**values)

    def with_message(self, message: str) -> JobResult:
        return self._replace(message=message)

    def with_stats(self, processed: int, failed: int = 0) -> JobResult:
        if processed < 0 or failed < 0:
            raise ValueError("with_stats: counts must be >= 0")
        return self._replace(items_processed=int(processed), items_failed=int(failed))

    def with_duration(self, ms: int | float) -> JobResult:
        return self._replace(duration_ms=int(ms))

    def with_data(self, **values: Any) -> JobResult:
        merged = {**self.data, **values}
        try:
            json.dumps(merged)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"with_data: values must be JSON-serialisable ({exc})") from None
        return self._replace(data=merged)

    def to_json(self) -> dict[str, Any]:
        return {
            "success": self._ok,
            "message": self.message,
            "items_processed": self.items_processed,
            "items_failed": self.items_failed,
            "duration_ms": self.duration_ms,
            "data": dict(self.data),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> JobResult:
        return cls(
            ok=bool(raw["success"]),
            message=raw.get("message"),
            items_processed=raw.get("items_processed"),
            items_failed=raw.get("items_failed"),
            duration_ms=raw.get("duration_ms"),
            data=raw.get("data") or {},
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobResult) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash((self._ok, self.message, self.items_processed, self.items_failed))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.to_json().items() if v not in (None, {}))
        return f"JobResult({fields})"
