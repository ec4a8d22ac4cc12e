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

    def watch(self, run_id: str, job: asyncio.Future[Any]) -> CancelWatch:
        """Poll for a request while ``job`` runs, and cancel ``job`` when one arrives.

        The caller stops the watch when the job ends first.
        """
        return CancelWatch(self, run_id, job)


class CancelWatch:
    """The polling of one running job's cancel request.

    A timer, not a task: most jobs end before the first look, and a timer cancelled
    unfired costs far less than a task that is started, cancelled and unwound.
    """

    def __init__(self, requests: CancelRequests, run_id: str, job: asyncio.Future[Any]) -> None:
        self._requests = requests
        self._run_id = run_id
        self._job = job
        self._loop = asyncio.get_running_loop()
        self._looking: asyncio.Task[None] | None = None
        self._stopped = False
        #: The request that cancelled the job (None: none yet).
        self.found: CancelRequest | None = None
        #: Why polling stopped early (Redis failing): raised by :meth:`outcome`.
        self.error: BaseException | None = None
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(CANCEL_POLL_S, self._look)

    def _look(self) -> None:
        self._timer = None
        self._looking = self._loop.create_task(self._get())

    async def _get(self) -> None:
        try:
            found = await self._requests.get(self._run_id)
        except Exception as exc:
            self.error = exc
            return
        if found is not None:
            self.found = found
            self._job.cancel()
        elif not self._stopped:
            self._timer = self._loop.call_later(CANCEL_POLL_S, self._look)

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._looking is not None and not self._looking.done():
            self._looking.cancel()

    def outcome(self) -> CancelRequest | None:
        """The request that cancelled the job, or None; raises what stopped the polling."""
        if self.error is not None:
            raise self.error
        return self.found
