"""Alert delivery to webhooks: signed POSTs, retries with backoff, a timeout per try.

Each destination has its own daemon thread and bounded queue, so a slow or failing
destination delays only its own notifications, never scheduling nor the other
destinations. A notification still failing after ``max_attempts`` is logged and dropped.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

from jobs_core.alerts import SIGNATURE_HEADER, Notification, json_body, signature, slack_body
from jobs_core.profile import WebhookConfig, WebhookFormat, mask_webhook

log = logging.getLogger("beat.alerts")

#: Notifications waiting per destination; beyond this the newest are dropped (logged).
QUEUE_SIZE = 1000
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0

#: Called after each delivery: (notification, delivered).
Outcome = Callable[[Notification, bool], None]


def request_for(hook: WebhookConfig, note: Notification) -> urllib.request.Request:
    """The POST of ``note`` to ``hook``: JSON (or Slack's shape), signed with its secret."""
    body = slack_body(note) if hook.format is WebhookFormat.SLACK else json_body(note)
    headers = {"Content-Type": "application/json", "User-Agent": "systemprompt-alerts/1"}
    if hook.secret is not None:
        headers[SIGNATURE_HEADER] = signature(body, hook.secret.get_secret_value())
    return urllib.request.Request(hook.url, data=body, headers=headers, method="POST")


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        # A refusal (bad signature, unknown hook) will not change by retrying.
        return exc.code >= 500 or exc.code in (408, 429)
    return True


class _Destination:
    def __init__(
        self, hook: WebhookConfig, outcome: Outcome, sleep: Callable[[float], bool]
    ) -> None:
        self.hook = hook
        self.where = mask_webhook(hook.url)
        self.queue: queue.Queue[Notification | None] = queue.Queue(QUEUE_SIZE)
        self._outcome = outcome
        self._sleep = sleep
        self.thread = threading.Thread(target=self._run, name=f"alerts {self.where}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            note = self.queue.get()
            if note is None:
                return
            self._outcome(note, self._deliver(note))

    def _deliver(self, note: Notification) -> bool:
        what = f"{note.incident.kind.value} {note.state.value} for {note.incident.job}"
        delay = FIRST_BACKOFF_S
        for attempt in range(1, self.hook.max_attempts + 1):
            try:
                with urllib.request.urlopen(
                    request_for(self.hook, note), timeout=self.hook.timeout
                ):
                    pass
                log.info("alert delivered: %s to %s", what, self.where)
                return True
            except Exception as exc:
                reason = f"{type(exc).__name__}: {getattr(exc, 'reason', None) or exc}"
                last = attempt >= self.hook.max_attempts or not _retryable(exc)
                log.warning(
                    "alert delivery to %s failed (attempt %d/%d): %s%s",
                    self.where,
                    attempt,
                    self.hook.max_attempts,
                    reason,
                    "; giving up" if last else f"; retrying in {delay:g}s",
                )
                if last or self._sleep(delay):
                    break
                delay = min(delay * 2, MAX_BACKOFF_S)
        log.error("alert not delivered: %s to %s", what, self.where)
        return False


class WebhookSender:
    """Delivers notifications to every configured webhook, off the caller's thread."""

    def __init__(self, hooks: Iterable[WebhookConfig], outcome: Outcome | None = None) -> None:
        self.hooks = list(hooks)
        self._stop = threading.Event()
        self._dests = [
            _Destination(h, outcome or (lambda n, ok: None), self._stop.wait) for h in self.hooks
        ]

    def send(self, notes: Iterable[Notification]) -> None:
        """Queue ``notes`` for every destination; never blocks."""
        for note in notes:
            for dest in self._dests:
                try:
                    dest.queue.put_nowait(note)
                except queue.Full:
                    log.error("alert queue of %s is full; notification dropped", dest.where)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the threads (a retry in its backoff wait gives up at once)."""
        self._stop.set()
        for dest in self._dests:
            with contextlib.suppress(queue.Full):
                dest.queue.put_nowait(None)
        for dest in self._dests:
            dest.thread.join(timeout)

    def same_hooks(self, hooks: Iterable[Any]) -> bool:
        return list(hooks) == self.hooks
