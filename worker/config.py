"""Celery settings derived from the profile and the job table."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from jobs_core.redis_url import RedisTarget, parse_redis_url
from jobs_core.registry import JobRegistry
from jobs_core.wire import DEFAULT_QUEUE, DEFAULT_REDIS_URL, task_name

from .execution import hard_time_limit

_CERT_REQS = {
    "required": ssl.CERT_REQUIRED,
    "cert_required": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "cert_optional": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
    "cert_none": ssl.CERT_NONE,
}
#: Seconds the broker waits for a sentinel (to connect, then for each reply).
SENTINEL_TIMEOUTS = {"socket_connect_timeout": 3.0, "socket_timeout": 3.0}


def visibility_timeout(registry: JobRegistry) -> float:
    """Seconds before Redis hands an unacknowledged message to another worker.

    It must outlast the longest run (timeout plus the hard-limit margin) and the longest
    retry countdown (a retry waits as an unacknowledged ETA message), or a healthy run
    would be delivered twice. Kept no longer than needed, because it is also how long a
    run whose worker was killed waits before it is delivered again.
    """
    longest = 0.0
    for jd in registry:
        longest = max(longest, hard_time_limit(jd.policy.timeout) + jd.policy.retry.max_backoff)
    return max(30.0, longest * 1.1 + 10)


def broker_ssl_options(redis_url: str) -> tuple[str, dict[str, Any] | None]:
    """Turn ``rediss://...?ssl_cert_reqs=...&ssl_ca_certs=...`` into Celery's ``broker_use_ssl``.

    redis-py reads those query parameters itself, kombu's Celery broker wants them as a
    setting; accepting one URL form for both keeps configuration to one variable.
    """
    parts = urlsplit(redis_url)
    if parts.scheme != "rediss":
        return redis_url, None
    query = dict(parse_qsl(parts.query))
    options: dict[str, Any] = {
        "ssl_cert_reqs": _CERT_REQS.get(
            query.pop("ssl_cert_reqs", "required").lower(), ssl.CERT_REQUIRED
        )
    }
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if name in query:
            options[name] = query.pop(name)
    clean = urlunsplit(parts._replace(query=urlencode(query)))
    return clean, options


def sentinel_broker(target: RedisTarget) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    """kombu's form of a Sentinel URL: its broker URL, transport options and TLS options.

    kombu wants one ``sentinel://`` URL per sentinel, joined by ``;``, reads the servers'
    login and the database from the first, and takes the master name and the sentinels'
    own login as transport options (``master_name``, ``sentinel_kwargs``).
    """
    sentinel = target.sentinel
    if sentinel is None:
        raise ValueError("not a Sentinel URL")
    auth = ""
    if target.username is not None or target.password is not None:
        auth = f"{quote(target.username or '', safe='')}:{quote(target.password or '', safe='')}@"
    url = ";".join(
        f"sentinel://{auth}{f'[{host}]' if ':' in host else host}:{port}/{target.db}"
        for host, port in sentinel.hosts
    )
    options: dict[str, Any] = {"master_name": sentinel.master_name}
    # Given sentinel_kwargs, redis-py no longer copies the socket timeouts to the
    # sentinels' connections: without one, a sentinel host that is down stalls discovery.
    sentinel_kwargs = {**SENTINEL_TIMEOUTS, **target.sentinel_kwargs()}
    use_ssl: dict[str, Any] | None = None
    if target.tls:
        tls = dict(target.tls_options)
        use_ssl = {"ssl_cert_reqs": _CERT_REQS[tls.pop("ssl_cert_reqs", "required")], **tls}
        sentinel_kwargs["ssl_cert_reqs"] = use_ssl["ssl_cert_reqs"]
    options["sentinel_kwargs"] = sentinel_kwargs
    return url, options, use_ssl


def celery_settings(redis_url: str | None, registry: JobRegistry) -> dict[str, Any]:
    target = parse_redis_url(redis_url or DEFAULT_REDIS_URL)
    sentinel_options: dict[str, Any] = {}
    if target.sentinel is not None:
        broker, sentinel_options, use_ssl = sentinel_broker(target)
    else:
        broker, use_ssl = broker_ssl_options(target.url)
    routes = {task_name(jd.key): {"queue": jd.policy.queue} for jd in registry}
    settings: dict[str, Any] = {
        "broker_url": broker,
        # Screens every message, and dead-letters what the worker cannot accept.
        "broker_transport": "worker.screening:"
        + ("SentinelTransport" if target.sentinel is not None else "Transport"),
        "worker_consumer": "worker.screening:Consumer",
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_transport_options": {
            "visibility_timeout": visibility_timeout(registry),
            # Check for messages of dead workers every 5 s instead of every 100 s.
            "unacked_restore_interval": 5,
            "unacked_restore_throttle": 1,
            "socket_keepalive": True,
            "health_check_interval": 30,
            **sentinel_options,
        },
        # JSON only: a pickle message is refused, never deserialised.
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # History lives in PostgreSQL; no result backend to keep in sync.
        "task_ignore_result": True,
        "result_backend": None,
        # At-least-once: ack after the run, redeliver the run of a worker that died.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # Flower sees every run.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_default_queue": DEFAULT_QUEUE,
        "task_routes": routes,
        "task_create_missing_queues": True,
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "enable_utc": True,
        "timezone": "UTC",
    }
    if use_ssl is not None:
        settings["broker_use_ssl"] = use_ssl
    return settings
