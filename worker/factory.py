"""Build the Celery application for a profile and its job table."""

from __future__ import annotations

from celery import Celery

from jobs_core.profile import Profile, load_profile
from jobs_core.registry import JobRegistry, build_registry
from jobs_core.urls import check_database_url, check_redis_url
from jobs_core.wire import DEFAULT_REDIS_URL

from .config import celery_settings
from .runtime import WorkerRuntime
from .tasks import register_job_tasks


def create_app(
    profile: Profile | None = None, registry: JobRegistry | None = None
) -> tuple[Celery, JobRegistry, WorkerRuntime]:
    """The Celery app with one task per job, the job table and the process runtime."""
    profile = profile if profile is not None else load_profile()
    # A malformed URL would otherwise surface deep inside kombu or psycopg.
    if profile.redis_url:
        check_redis_url(profile.redis_url)
    if profile.database_url:
        check_database_url(profile.database_url)
    registry = registry if registry is not None else build_registry(profile)
    celery_app = Celery("systemprompt")
    celery_app.conf.update(celery_settings(profile.redis_url, registry))
    # The profile's URL, not broker_url: Celery's copy has the TLS query parameters
    # (ssl_ca_certs...) moved into broker_use_ssl, and redis-py needs them in the URL.
    runtime = WorkerRuntime(profile.database_url, profile.redis_url or DEFAULT_REDIS_URL)
    register_job_tasks(celery_app, registry, runtime)
    return celery_app, registry, runtime
