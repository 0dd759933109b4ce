"""OAuth token rotation that two workers can share without ever spending the same refresh token.

Intuit rotates the refresh token on refresh: the answer carries a new one and the old one soon
stops working. Whoever spends a refresh token must therefore be the only one doing so, and must
persist the new one before anybody else needs it. ``TokenStore`` is the persistence contract
(load + compare-and-swap on a version number; the lead backs it with a database row); the
``TokenKeeper`` takes a short lease through the store before spending, so a second worker that
also got a 401 waits and then adopts the tokens the first one stored.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

LEASE_SECONDS = 30.0  # longest a refresh call may hold the lease before another worker may take over
EXPIRY_MARGIN_SECONDS = 60.0  # refresh an access token this long before it runs out
REFRESH_WAIT_SECONDS = 60.0  # how long a worker waits for another one's refresh before giving up


@dataclass(frozen=True)
class OAuthTokens:
    refresh_token: str
    access_token: str | None = None
    access_expires_at: float | None = None  # epoch seconds
    version: int = 0  # bumped by every successful compare_and_swap
    leased_by: str | None = None  # the worker refreshing right now
    lease_until: float | None = None
    # When the refresh token stops working (epoch seconds): unused for 100 days (rolling, renewed by
    # every refresh), and at the latest at the authorisation's hard expiry (reported since 2025)
    refresh_expires_at: float | None = None
    refresh_hard_expires_at: float | None = None

    def access_valid(self, now: float) -> bool:
        return self.access_token is not None and (
            self.access_expires_at is None or now < self.access_expires_at - EXPIRY_MARGIN_SECONDS
        )


@dataclass(frozen=True)
class IssuedTokens:
    """What a refresh returned."""

    access_token: str
    refresh_token: str
    expires_in: float
    refresh_expires_in: float | None = None  # x_refresh_token_expires_in: the rolling expiry
    refresh_hard_expires_in: float | None = None  # x_refresh_token_hard_expires_in: the hard one


class TokenStore(Protocol):
    """Persistent tokens of one QuickBooks connection."""

    def load(self) -> OAuthTokens: ...

    def compare_and_swap(self, expected_version: int, new: OAuthTokens) -> bool:
        """Store ``new`` (with version ``expected_version + 1``) only if the stored version is still ``expected_version``."""
        ...


class InMemoryTokenStore:
    """For tests and single-process use."""

    def __init__(self, tokens: OAuthTokens) -> None:
        self._tokens, self._lock = tokens, threading.Lock()

    def load(self) -> OAuthTokens:
        with self._lock:
            return self._tokens

    def compare_and_swap(self, expected_version: int, new: OAuthTokens) -> bool:
        with self._lock:
            if self._tokens.version != expected_version:
                return False
            self._tokens = replace(new, version=expected_version + 1)
            return True


class FileTokenStore:
    """A JSON file guarded by an exclusive ``flock`` on a side lock file: safe across threads and processes."""

    def __init__(self, path: Path, initial: OAuthTokens | None = None) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_suffix(self.path.suffix + ".lock")
        if initial is not None and not self.path.exists():
            with self._locked():
                self._write(initial)

    def _locked(self) -> _FileLock:
        return _FileLock(self._lock_path)

    def _read(self) -> OAuthTokens:
        return OAuthTokens(**json.loads(self.path.read_text()))

    def _write(self, tokens: OAuthTokens) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tokens-")
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(tokens), out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)  # readers see the old file or the new one, never half of one

    def load(self) -> OAuthTokens:
        with self._locked():
            return self._read()

    def compare_and_swap(self, expected_version: int, new: OAuthTokens) -> bool:
        with self._locked():
            if self._read().version != expected_version:
                return False
            self._write(replace(new, version=expected_version + 1))
            return True


class _FileLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1

    def __enter__(self) -> None:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


class TokenRefreshTimeout(RuntimeError):
    """Another worker held the refresh lease for longer than we were willing to wait."""


class TokenKeeper:
    """Hands out a valid access token; refreshes under a lease so a refresh token is spent once."""

    def __init__(
        self,
        store: TokenStore,
        spend: Callable[[str], IssuedTokens],
        *,
        worker: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        lease_seconds: float = LEASE_SECONDS,
        wait_seconds: float = REFRESH_WAIT_SECONDS,
    ) -> None:
        self.store, self._spend, self.worker = store, spend, worker
        self._clock, self._sleep = clock, sleep
        self.lease_seconds, self.wait_seconds = lease_seconds, wait_seconds

    def current(self) -> OAuthTokens:
        tokens = self.store.load()
        return tokens if tokens.access_valid(self._clock()) else self.refresh(stale_access=tokens.access_token)

    def refresh(self, stale_access: str | None) -> OAuthTokens:
        """New tokens, unless another worker already replaced ``stale_access``: then theirs."""
        deadline = self._clock() + self.wait_seconds
        while True:
            now = self._clock()
            tokens = self.store.load()
            if tokens.access_token != stale_access and tokens.access_valid(now):
                return tokens
            leased_elsewhere = tokens.leased_by not in (None, self.worker) and (tokens.lease_until or 0) > now
            if not leased_elsewhere:
                lease = replace(tokens, leased_by=self.worker, lease_until=now + self.lease_seconds)
                if self.store.compare_and_swap(tokens.version, lease):
                    return self._spend_under_lease(replace(lease, version=tokens.version + 1))
            if now > deadline:
                raise TokenRefreshTimeout(
                    f"another worker held the QuickBooks refresh lease for over {self.wait_seconds}s"
                )
            self._sleep(0.05)

    def _spend_under_lease(self, lease: OAuthTokens) -> OAuthTokens:
        try:
            issued = self._spend(lease.refresh_token)
        except BaseException:
            self.store.compare_and_swap(lease.version, replace(lease, leased_by=None, lease_until=None))
            raise
        now = self._clock()
        fresh = OAuthTokens(
            issued.refresh_token,
            issued.access_token,
            now + issued.expires_in,
            refresh_expires_at=now + issued.refresh_expires_in if issued.refresh_expires_in is not None else None,
            # an answer without it keeps what an earlier one said: the hard expiry belongs to the authorisation
            refresh_hard_expires_at=(
                now + issued.refresh_hard_expires_in
                if issued.refresh_hard_expires_in is not None
                else lease.refresh_hard_expires_at
            ),
        )
        if not self.store.compare_and_swap(lease.version, fresh):
            # Our lease ran out and someone else refreshed meanwhile: keep what is stored (the newer chain).
            return self.store.load()
        return replace(fresh, version=lease.version + 1)
