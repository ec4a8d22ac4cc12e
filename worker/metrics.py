"""The worker's Prometheus metrics, correct under the prefork pool.

Every pool process counts its own runs; prometheus_client's multiprocess mode keeps each
process's values in files of one directory (``PROMETHEUS_MULTIPROC_DIR``) and the main
process's endpoint sums them at scrape time. :func:`enable` runs in the main process
before the pool forks, so every pool process inherits the setting.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jobs_core.errors import ConfigError
from jobs_core.status import Action, RunStatus

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Attempt duration buckets, seconds: from a no-op run to a long batch job.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class WorkerMetrics:
    """The metric objects; one instance per worker, shared by its pool processes."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        registry = registry if registry is not None else REGISTRY

        self.runs = Counter(
            "systemprompt_runs",
            "Runs that reached a final status, by job and status",
            ["job", "status"],
            registry=registry,
        )
        self.attempts = Counter(
            "systemprompt_attempts",
            "Attempts that ran or were recorded, by job and the status they left",
            ["job", "status"],
            registry=registry,
        )
        self.retries = Counter(
            "systemprompt_retries",
            "Attempts that failed and were scheduled to run again, by job",
            ["job"],
            registry=registry,
        )
        self.infra_errors = Counter(
            "systemprompt_infrastructure_errors",
            "Attempts put back because PostgreSQL or Redis failed, by job",
            ["job"],
            registry=registry,
        )
        self.duration = Histogram(
            "systemprompt_run_duration_seconds",
            "Duration of each attempt that executed the job, by job",
            ["job"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.running = Gauge(
            "systemprompt_runs_running",
            "Attempts executing now, by job",
            ["job"],
            multiprocess_mode="livesum",
            registry=registry,
        )

        # Labelled children by label values: .labels() validates and locks on every call.
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    @contextlib.contextmanager
    def attempt(self, job: str) -> Iterator[None]:
        gauge = self._child(self.running, job)
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()

    def outcome(
        self, job: str, status: RunStatus | None, action: Action, duration_ms: int | None
    ) -> None:
        """One attempt's outcome (``status`` None: nothing recorded, e.g. a duplicate)."""
        if status is None:
            return
        self._child(self.attempts, job, status.value).inc()
        if action is Action.RETRY:
            self._child(self.retries, job).inc()
        if status.is_terminal:
            self._child(self.runs, job, status.value).inc()
        if duration_ms is not None and status is not RunStatus.SKIPPED:
            self._child(self.duration, job).observe(duration_ms / 1000)

    def infra_error(self, job: str) -> None:
        self.infra_errors.labels(job).inc()


class _Off:
    """What the task shell calls when metrics are off: nothing."""

    @contextlib.contextmanager
    def attempt(self, job: str) -> Iterator[None]:
        yield

    def outcome(self, *args: Any) -> None:
        pass

    def infra_error(self, job: str) -> None:
        pass


#: The worker's metrics (or the no-op stand-in); set by :func:`enable`.
METRICS: WorkerMetrics | _Off = _Off()


def enable(directory: str | None = None) -> WorkerMetrics:
    """Switch metrics on for this process and the pool processes it will fork.

    ``directory`` (default ``$PROMETHEUS_MULTIPROC_DIR``, else a new temporary one) is
    emptied: values of an earlier worker would otherwise be added to this one's.
    """
    global METRICS
    if isinstance(METRICS, WorkerMetrics):
        return METRICS
    import tempfile

    path = directory or os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="sp-metrics-")
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        for stale in Path(path).glob("*.db"):
            stale.unlink()
    except OSError as exc:
        raise ConfigError(f"metrics directory {path}: {exc.strerror or exc}") from None
    os.environ[MULTIPROC_ENV] = path
    from prometheus_client import values

    # prometheus_client picks its value class from the environment when first imported;
    # whoever imported it first, the metrics made from here on write to the directory.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    METRICS = WorkerMetrics()
    return METRICS


def registry() -> Any:
    """A registry that sums the values of every process (for the endpoint)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    reg = CollectorRegistry()
    MultiProcessCollector(reg, path=os.environ[MULTIPROC_ENV])  # type: ignore[no-untyped-call]
    return reg


def process_exited(pid: int) -> None:
    """Drop the live-gauge values of a pool process that exited."""
    if isinstance(METRICS, WorkerMetrics):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, os.environ[MULTIPROC_ENV])  # type: ignore[no-untyped-call]
