"""Names shared by everything that sends or runs job tasks."""

from __future__ import annotations

DEFAULT_QUEUE = "jobs"
TASK_PREFIX = "jobs."


def task_name(job_key: str) -> str:
    """``maintenance/cleanup`` -> ``jobs.maintenance.cleanup`` (what Flower shows)."""
    extension, _, job = job_key.partition("/")
    return f"{TASK_PREFIX}{extension}.{job}"
