"""Intuit's throttling of the QuickBooks Online Accounting API, as the sandbox enforces it.

Since 2025 (Intuit's developer blog, August 2025): 10 requests a second per realm and app, and the
batch endpoint at 120 requests a minute per realm; more are refused with the throttle fault
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
    """Requests a realm may make: ``requests_per_second`` of any kind, ``batches_per_minute`` batch calls."""

    requests_per_second: int = 10
    batches_per_minute: int = 120


INTUIT_LIMITS = QboLimits()


class Throttle:
    """The sliding windows of one sandbox, per realm; ``admit`` says how long to wait, or None."""

    def __init__(self, limits: QboLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits, self.clock = limits, clock
        self._lock = threading.Lock()
        self._requests: dict[str, deque[float]] = {}
        self._batches: dict[str, deque[float]] = {}
        self.refused = 0  # how many requests were answered 429 (a benchmark reports it)

    def admit(self, realm: str, *, batch: bool) -> int | None:
        """Count the request and return None, or refuse it: the whole seconds to wait (Retry-After)."""
        with self._lock:
            now = self.clock()
            windows = [(self._requests.setdefault(realm, deque()), self.limits.requests_per_second, 1.0)]
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
