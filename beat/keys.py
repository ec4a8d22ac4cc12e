"""Every Redis key the beat reads or writes (all under the ``sp:`` prefix).

Kept in one place so the CLI, the tests and the docs agree on the names.
"""

from __future__ import annotations

PREFIX = "sp:"

#: Leader lease: a random token, ``SET NX PX <lease_ttl>``; renewed and released by token.
LEASE = f"{PREFIX}beat:lease"
#: Hash written by the leader at every renewal: beat_id, host, pid, since, heartbeat...
LEADER = f"{PREFIX}beat:leader"
#: Hash ``job key -> epoch ms`` of the last tick handled (sent, recorded skipped or
#: deliberately not sent because the job is disabled). Catch-up starts after it, and the
#: claim script's compare-and-set on it is what sends every tick at most once.
LAST = f"{PREFIX}beat:last"
#: Set of job keys paused at runtime (``jobs disable``); read at every tick.
DISABLED = f"{PREFIX}jobs:disabled"
#: hash: template id -> "<queue>\n<message with placeholders>" (see beat.ticks)
TEMPLATES = f"{PREFIX}beat:templates"
#: Id of the current beat "session": alive while at least one beat process is running.
SESSION = f"{PREFIX}beat:session"
#: Session id whose bootstrap jobs were enqueued.
BOOTSTRAPPED = f"{PREFIX}beat:bootstrapped"
