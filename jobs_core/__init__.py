"""Public API: declare jobs in extensions; the worker and beat run them."""

from .context import JobContext, RunInfo
from .errors import InvalidSchedule, JobsError
from .job import Extension, Job
from .result import JobResult
from .status import RunStatus, Trigger

__all__ = [
    "Extension",
    "InvalidSchedule",
    "Job",
    "JobContext",
    "JobResult",
    "JobsError",
    "RunInfo",
    "RunStatus",
    "Trigger",
]
