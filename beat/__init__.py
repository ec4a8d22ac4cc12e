"""The beat: the highly available scheduler process.

Several beats may run at once; one leads (:mod:`beat.lease`). The leader asks the pure
scheduler (:mod:`beat.core`) what is due and sends it through the claim-and-send script
(:mod:`beat.ticks`), so each tick ``(job key, scheduled instant)`` goes out at most once
however many beats run, restart or split; ticks missed within ``misfire_grace`` fire once
(trigger ``catch-up``), older ones are recorded as skipped. The process loop lives in
:mod:`beat.service`; the Redis keys are named in :class:`jobs_core.wire.Keys` and
described in docs/operations.md.

Entry points: :func:`run_beat` (what ``systemprompt infra beat`` calls) and
``python -m beat --profile PATH --id NAME``; runtime control for the CLI: :mod:`beat.control`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .control import (
        Pause,
        disable,
        disabled_jobs,
        enable,
        is_disabled,
        last_sent,
        leader_status,
        pauses,
        scheduled_runs,
    )
    from .service import Beat, run_beat

__all__ = [
    "Beat",
    "Pause",
    "disable",
    "disabled_jobs",
    "enable",
    "is_disabled",
    "last_sent",
    "leader_status",
    "pauses",
    "run_beat",
    "scheduled_runs",
]

#: Where each name lives. Imported on first use: the CLI imports ``beat.lease`` or
#: ``beat.control`` in every command, and the whole beat (Redis scripts, the profile
#: model, the scheduler) costs a CLI command more than its own work.
_HOME = {name: ".service" if name in ("Beat", "run_beat") else ".control" for name in __all__}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home, __name__), name)
