"""Public API: declare jobs in extensions; the worker and beat run them."""

from .context import JobContext, RunInfo, Trigger
from .errors import InvalidSchedule, JobsError
from .job import Extension, Job
from .result import JobResult

__all__ = [
    "Extension",
    "InvalidSchedule",
    "Job",
    "JobContext",
    "JobResult",
    "JobsError",
    "RunInfo",
    "Trigger",
]
