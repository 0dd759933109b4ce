"""The one lag-window cursor incremental pulls share.

Vendors stamp a record when its transaction starts, or index it a little after the write, so a pull
that starts exactly at the newest stamp it delivered may miss a record committed late with an older
stamp. Every incremental stream therefore reads again from ``lag`` before the newest stamp
(inclusive) and skips what it already delivered at the same stamp: ``LagWindow`` keeps the newest
stamp and the (key, stamp) pairs delivered within the lag of it, which is all a cursor must carry.
Each connector encodes the window in its own cursor text (small, and readable by the runs before).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

M = TypeVar("M", int, datetime)  # a stamp: epoch milliseconds, or an aware datetime


@dataclass
class LagWindow(Generic[M]):
    """The newest stamp delivered and what was delivered within ``lag`` of it (``lag``: milliseconds
    for int stamps, a timedelta for datetimes)."""

    lag: Any  # int | timedelta, matching M
    newest: M | None = None
    seen: dict[str, M] = field(default_factory=dict)  # record key -> its stamp when delivered

    def start(self) -> M | None:
        """Where the next pull starts (inclusive): ``lag`` before the newest stamp; None: from the start."""
        if self.newest is None:
            return None
        start: M = self.newest - self.lag
        return start

    def start_from(self, floor: M) -> M | None:
        """``start()``, never before ``floor`` (a vendor refusing bounds before its epoch)."""
        start = self.start()
        return None if start is None else max(floor, start)

    def delivered(self, key: str, stamp: M) -> bool:
        """Whether this record was delivered already at this very stamp (read again in the window)."""
        return self.seen.get(key) == stamp

    def deliver(self, key: str, stamp: M) -> None:
        """Note a delivered record; what falls out of the window as the newest stamp moves is forgotten."""
        self.advance(stamp)
        self.seen[key] = stamp

    def advance(self, stamp: M) -> None:
        """Note a stamp read without keeping its record (cursors that carry only the newest stamp, whose
        consumers dedupe by key); what falls out of the window as the newest stamp moves is forgotten."""
        if self.newest is None or stamp > self.newest:
            self.newest = stamp
            horizon = stamp - self.lag
            self.seen = {k: s for k, s in self.seen.items() if s >= horizon}

    def recent(self) -> dict[str, M]:
        """The deliveries within the window: what a cursor keeps."""
        horizon = self.start()
        return {k: s for k, s in self.seen.items() if horizon is None or s >= horizon}


def lag_ms(lag: timedelta) -> int:
    """A lag as milliseconds, for windows over epoch-millisecond stamps."""
    return int(lag / timedelta(milliseconds=1))


def lag_seconds(lag: timedelta) -> int:
    """A lag as whole seconds, for windows over epoch-second stamps (Stripe's ``created``)."""
    return int(lag.total_seconds())


def epoch_window(lag: timedelta, cursor: str | None) -> LagWindow[int]:
    """The window of a cursor that is the newest epoch-second stamp as text (None or "": none yet)."""
    return LagWindow(lag_seconds(lag), int(cursor) if cursor else None)
