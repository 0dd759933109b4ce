"""Pacing under a vendor's published rate limit: a thread-safe sliding window shared by a client's calls."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class Pacer:
    """Allow at most ``calls`` calls in any ``per_seconds`` window; ``wait()`` blocks until one is free."""

    def __init__(
        self,
        calls: int,
        per_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if calls < 1 or per_seconds <= 0:
            raise ValueError("a pace needs at least one call per positive window")
        self.calls, self.per_seconds = calls, per_seconds
        self._clock, self._sleep = clock, sleep
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def wait(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                while self._sent and now - self._sent[0] >= self.per_seconds:
                    self._sent.popleft()
                if len(self._sent) < self.calls:
                    self._sent.append(now)
                    return
                pause = self.per_seconds - (now - self._sent[0])
            self._sleep(pause)


class Pacers:
    """Pacers shared by what a vendor counts against: one ``Pacer`` per key (and pace), so every client
    of this process talking to the same realm with the same app waits in the same window, where a
    pacer per client would let two clients together go over the limit."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._clock, self._sleep = clock, sleep
        self._pacers: dict[tuple[object, ...], Pacer] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...], calls: int, per_seconds: float) -> Pacer:
        """The pacer of ``key`` at ``calls`` per ``per_seconds``, made on first use."""
        with self._lock:
            found = self._pacers.get((*key, calls, per_seconds))
            if found is None:
                found = Pacer(calls, per_seconds, clock=self._clock, sleep=self._sleep)
                self._pacers[(*key, calls, per_seconds)] = found
            return found


SHARED = Pacers()  # the process's pacers: clients of one vendor account share them
