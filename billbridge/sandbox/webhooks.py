"""Webhook delivery as the vendors do it, shared by the sandboxes: from a background queue, in order,
and retried with exponential backoff when the endpoint times out, cannot be reached or answers
anything but 2xx; every attempt carries the same event (the receiver dedupes it by its id).

Real vendors retry for far longer (Stripe: exponential backoff for up to three days in live mode;
Intuit: after 10 s, 20 s, 30 s, 5 min, ... then every 6 hours, holding a realm's later notifications
until the first is acknowledged). A sandbox keeps the shape with short, configurable delays
(``Redelivery``) so a test sees a retry in a second, not an hour.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

Build = Callable[[], tuple[bytes, dict[str, str]]]
"""The payload and headers of one attempt, built anew each time (Stripe signs with the attempt's time)."""


@dataclass(frozen=True)
class Redelivery:
    """How often and how soon a failed delivery is tried again: ``attempts`` in all, the n-th retry
    ``first_delay * factor ** (n - 1)`` seconds after the failure before it; ``timeout`` per attempt."""

    attempts: int = 4
    first_delay: float = 0.5
    factor: float = 2.0
    timeout: float = 5.0

    def delays(self) -> list[float]:
        """The pause before each retry (0.5 s, 1 s, 2 s, ... by default)."""
        return [self.first_delay * self.factor**n for n in range(max(0, self.attempts - 1))]


@dataclass(frozen=True)
class Attempt:
    key: str  # what was delivered (an event id, a notification's number)
    status: int | None  # the endpoint's HTTP status, or None: timed out or not reached


@dataclass
class WebhookQueue:
    """Sends webhooks to ``url`` from one background thread, each until a 2xx or its attempts run out.
    ``delivered``/``failed`` list the keys by their final outcome, ``attempts`` every try."""

    url: str
    policy: Redelivery = field(default_factory=Redelivery)
    name: str = "webhooks"
    sleep: Callable[[float], None] = time.sleep
    delivered: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    on_done: Callable[[str, int | None, bytes], None] | None = None  # (key, final status, payload)
    _queue: queue.Queue[tuple[str, Build] | None] = field(default_factory=queue.Queue)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, key: str, build: Build) -> None:
        """Queue one delivery (returns at once: the vendor's answer to the API call does not wait for it)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        self._queue.put((key, build))

    def flush(self) -> None:
        """Wait until every queued delivery has succeeded or used up its attempts."""
        self._queue.join()

    def _run(self) -> None:
        with httpx.Client(timeout=self.policy.timeout) as client:
            while (job := self._queue.get()) is not None:
                try:
                    self._deliver(client, *job)
                finally:
                    self._queue.task_done()

    def _deliver(self, client: httpx.Client, key: str, build: Build) -> None:
        pauses = [0.0, *self.policy.delays()]
        status: int | None = None
        payload = b""
        for pause in pauses:
            if pause:
                self.sleep(pause)
            payload, headers = build()
            try:
                status = client.post(self.url, content=payload, headers=headers).status_code
            except httpx.HTTPError:  # a timeout, a refused or dropped connection
                status = None
            self.attempts.append(Attempt(key, status))
            if status is not None and 200 <= status < 300:
                break
        ok = status is not None and 200 <= status < 300
        (self.delivered if ok else self.failed).append(key)
        if self.on_done is not None:
            self.on_done(key, status, payload)
