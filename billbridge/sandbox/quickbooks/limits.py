"""Intuit's throttling of the QuickBooks Online Accounting API, as the sandbox enforces it.

Since 2025 (Intuit's developer blog, August 2025): 10 requests a second per realm and app, and the
batch endpoint at 120 requests a minute per realm (whatever the app); more are refused with the throttle fault
(``ThrottleExceeded``, code 3001, HTTP 429). Both are sliding windows counted when a request
arrives; a refused request does not count. ``INTUIT_LIMITS`` is what ``start_quickbooks`` enforces
unless a test that is not about throttling opts out with ``limits=None``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class QboLimits:
    """What a realm may be asked: ``requests_per_second`` of any kind per app (client id) connected to it,
    ``batches_per_minute`` batch calls from all its apps together."""

    requests_per_second: int = 10
    batches_per_minute: int = 120


INTUIT_LIMITS = QboLimits()


class Throttle:
    """The sliding windows of one sandbox: requests per (realm, app), batches per realm; ``admit`` says
    how long to wait, or None."""

    def __init__(self, limits: QboLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits, self.clock = limits, clock
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], deque[float]] = {}
        self._batches: dict[str, deque[float]] = {}
        self.refused = 0  # how many requests were answered 429 (a benchmark reports it)

    def admit(self, realm: str, *, batch: bool, app: str = "") -> int | None:
        """Count a request of ``app`` (its client id) to ``realm`` and return None, or refuse it: the whole
        seconds to wait (Retry-After)."""
        with self._lock:
            now = self.clock()
            windows = [(self._requests.setdefault((realm, app), deque()), self.limits.requests_per_second, 1.0)]
            if batch:
                windows.append((self._batches.setdefault(realm, deque()), self.limits.batches_per_minute, 60.0))
            wait = 0.0
            for sent, limit, span in windows:
                while sent and now - sent[0] >= span:
                    sent.popleft()
                if len(sent) >= limit:
                    wait = max(wait, span - (now - sent[0]))
            if wait > 0:
                self.refused += 1
                return max(1, math.ceil(wait))
            for sent, _limit, _span in windows:
                sent.append(now)
            return None
