"""The Celery application: ``celery -A worker.app worker|flower`` works with env vars only.

Configuration comes from the profile (``--profile`` of the CLI, ``$SYSTEMPROMPT_PROFILE``
or ``./profile.yaml``) and ``REDIS_URL`` / ``DATABASE_URL``.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from jobs_core.profile import Profile, load_profile
from jobs_core.registry import JobRegistry, build_registry

from .config import celery_settings
from .runtime import WorkerRuntime
from .tasks import register_job_tasks

log = logging.getLogger("worker")


def create_app(
    profile: Profile | None = None, registry: JobRegistry | None = None
) -> tuple[Celery, JobRegistry, WorkerRuntime]:
    profile = profile if profile is not None else load_profile()
    registry = registry if registry is not None else build_registry(profile)
    celery_app = Celery("systemprompt")
    celery_app.conf.update(celery_settings(profile.redis_url, registry))
    runtime = WorkerRuntime(profile.database_url, celery_app.conf.broker_url)
    register_job_tasks(celery_app, registry, runtime)
    return celery_app, registry, runtime


app, registry, runtime = create_app()


@signals.worker_process_shutdown.connect
def _close_process_resources(**_: Any) -> None:
    runtime.close()


@signals.worker_shutdown.connect
def _close_main_resources(**_: Any) -> None:
    # solo and threads pools run tasks in the main process
    runtime.close()
