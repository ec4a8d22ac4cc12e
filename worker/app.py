"""The Celery application: ``celery -A worker.app worker|flower`` works with env vars only.

Configuration comes from the profile (``$SYSTEMPROMPT_PROFILE``, else ``./profile.yaml``;
``systemprompt --profile`` sets that variable for the worker it starts) and
``REDIS_URL`` / ``DATABASE_URL``.
"""

from __future__ import annotations

from typing import Any

from celery import signals

from jobs_core.profile import load_profile

from . import heartbeat, observability
from .factory import create_app

__all__ = ["app", "create_app", "registry", "runtime"]

_profile = load_profile()
app, registry, runtime = create_app(_profile)
observability.install(_profile, runtime.redis_url or "")
heartbeat.install(runtime.redis_url or "", runtime.database_url)


@signals.worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _close_process_resources(**_: Any) -> None:
    runtime.close()


@signals.worker_shutdown.connect  # type: ignore[untyped-decorator]
def _close_main_resources(**_: Any) -> None:
    # solo and threads pools run tasks in the main process
    runtime.close()
