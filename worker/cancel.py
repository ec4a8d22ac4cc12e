"""Cancel requests of runs (`jobs cancel`, the dashboard), read before and during a run.

A request is a Redis key per run id (:meth:`jobs_core.wire.Keys.cancel`). A run checks
it before an attempt starts, so a queued run never starts; while the job runs, the
worker polls it on the process's event loop and cancels the job's coroutine.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from jobs_core.wire import CANCEL_TTL_S, Keys

#: Seconds between two looks at the cancel request of a running job.
CANCEL_POLL_S = 0.5


@dataclass(frozen=True)
class CancelRequest:
    by: str
    terminate: bool = False

    def dumps(self) -> str:
        return json.dumps({"by": self.by, "terminate": self.terminate})

    @classmethod
    def loads(cls, raw: str | bytes) -> CancelRequest:
        try:
            data = json.loads(raw)
            return cls(str(data.get("by") or "unknown"), bool(data.get("terminate")))
        except (ValueError, AttributeError):
            return cls("unknown")


class CancelRequests:
    """The cancel requests in Redis, seen from the worker's event loop."""

    def __init__(self, client: Any) -> None:
        self._client = client

    async def get(self, run_id: str) -> CancelRequest | None:
        raw = await self._client.get(Keys.cancel(run_id))
        return CancelRequest.loads(raw) if raw is not None else None

    async def before_start(self, run_id: str) -> tuple[CancelRequest | None, bool]:
        """The run's cancel request, and whether a backfill enqueued its tick too (one
        round trip)."""
        raw, backfilled = await self._client.mget(Keys.cancel(run_id), Keys.backfilled(run_id))
        return (CancelRequest.loads(raw) if raw is not None else None), backfilled is not None

    async def request(self, run_id: str, request: CancelRequest, *, first: bool = False) -> None:
        """Leave a cancel request; with ``first`` an earlier request (and who made it)
        is kept."""
        await self._client.set(Keys.cancel(run_id), request.dumps(), ex=CANCEL_TTL_S, nx=first)

    async def watch(self, run_id: str, job: asyncio.Future[Any]) -> CancelRequest:
        """Poll until a request arrives, then cancel ``job``; returns the request.

        The caller cancels this watcher when the job ends first.
        """
        while True:
            await asyncio.sleep(CANCEL_POLL_S)
            found = await self.get(run_id)
            if found is not None:
                job.cancel()
                return found
