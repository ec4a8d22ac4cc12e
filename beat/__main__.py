"""``python -m beat``: run one beat process (the CLI's ``systemprompt infra beat`` does
the same through :func:`beat.run_beat`)."""

from __future__ import annotations

import argparse
import sys

from jobs_core.durations import bounded_duration
from jobs_core.errors import ConfigError
from jobs_core.profile import LogFormat, load_profile
from jobs_core.urls import check_redis_url

from . import logs
from .lease import LEASE_TTL_RANGE
from .service import resolve_profile_path, run_beat


def _lease_ttl(text: str) -> float:
    low, high = LEASE_TTL_RANGE
    try:
        return bounded_duration(text, low=low, high=high, key="the lease TTL")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _redis_url(text: str) -> str:
    try:
        return check_redis_url(text, "--redis-url")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m beat", description=__doc__)
    parser.add_argument(
        "--profile", help="profile.yaml (default: $SYSTEMPROMPT_PROFILE, else ./profile.yaml)"
    )
    parser.add_argument(
        "--redis-url", type=_redis_url, help="overrides the profile's redis_url and $REDIS_URL"
    )
    parser.add_argument("--id", dest="beat_id", help="name of this beat in logs and status")
    parser.add_argument(
        "--lease-ttl", type=_lease_ttl, default=5.0, help="leader lease TTL, seconds (1 to 3600)"
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    parser.add_argument(
        "--assume-leader",
        action="store_true",
        help="fault injection for tests: skip the election and act as leader (the per-tick"
        " claims must still keep every tick single)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="serve /metrics, /healthz and /readyz on this port (profile: "
        "scheduler.metrics.beat_port; off when unset)",
    )
    parser.add_argument(
        "--log-format", choices=["text", "json"], help="log lines as logfmt text or JSON"
    )
    args = parser.parse_args(argv)
    try:
        fmt = args.log_format or load_profile(resolve_profile_path(args.profile)).log_format
        logs.setup(args.log_level, LogFormat(fmt))
        run_beat(
            args.profile,
            redis_url=args.redis_url,
            beat_id=args.beat_id,
            lease_ttl=args.lease_ttl,
            assume_leader=args.assume_leader,
            metrics_port=args.metrics_port,
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
