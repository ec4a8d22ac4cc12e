"""``python -m beat``: run one beat process (the CLI's ``systemprompt infra beat`` does
the same through :func:`beat.run_beat`)."""

from __future__ import annotations

import argparse
import sys

from jobs_core.errors import ConfigError

from . import logs
from .service import run_beat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m beat", description=__doc__)
    parser.add_argument(
        "--profile", help="profile.yaml (default: $SYSTEMPROMPT_PROFILE, else ./profile.yaml)"
    )
    parser.add_argument("--redis-url", help="overrides the profile's redis_url and $REDIS_URL")
    parser.add_argument("--id", dest="beat_id", help="name of this beat in logs and status")
    parser.add_argument("--lease-ttl", type=float, default=5.0, help="leader lease TTL, seconds")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    parser.add_argument(
        "--assume-leader",
        action="store_true",
        help="fault injection for tests: skip the election and act as leader (the per-tick"
        " claims must still keep every tick single)",
    )
    args = parser.parse_args(argv)
    logs.setup(args.log_level)
    try:
        run_beat(
            args.profile,
            redis_url=args.redis_url,
            beat_id=args.beat_id,
            lease_ttl=args.lease_ttl,
            assume_leader=args.assume_leader,
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
