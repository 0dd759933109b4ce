"""Per-process caches of what every usage request looks up: API keys, customer and product ids,
and the usage terms of contracts.

Keys and ids live ``ttl`` seconds (``api_cache_seconds``; 0 turns caching off), so a revoked key
or a moved customer reaches a running server within that time; a key revoked by this very process
is refused at once (``store.api_keys.revocations``). Customer and product ids are renewed a window
at a time (:class:`_Window`): every ``ttl`` seconds the refs asked for in the last minute are read
again in one query, instead of each ref missing on its own when its entry expires (with 1,000
customers and a 5-second TTL, a fifth to two fifths of single events had paid a read connection
and a query for their customer id). Usage terms are kept until a
contract changes: every ``ttl`` seconds one cheap query reads the highest contract version id
(terms only change by adding a version), and a new one empties that cache. Idempotency and
invoices are never cached: they are always read from the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Generic, TypeVar

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from billbridge.store import api_keys
from billbridge.store import usage as usage_repo
from billbridge.store.api_keys import Principal, authenticate, hash_token

K = TypeVar("K")
V = TypeVar("V")
MAX_ENTRIES = 100_000


class _Ttl(Generic[K, V]):
    """A dict whose entries expire; cleared whole when it grows past MAX_ENTRIES."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._data: dict[K, tuple[float, V]] = {}

    def get_many(self, keys: Iterable[K], load: Callable[[list[K]], dict[K, V]]) -> dict[K, V]:
        """Cached values of ``keys``; the missing or expired ones come from ``load`` (which may
        leave some out: those are not cached, so an unknown ref is looked up again next time)."""
        now = time.monotonic()
        found: dict[K, V] = {}
        missing: list[K] = []
        for key in keys:
            entry = self._data.get(key)
            if entry is not None and entry[0] > now:
                found[key] = entry[1]
            else:
                missing.append(key)
        if missing:
            loaded = load(missing)
            found.update(loaded)
            if self.ttl > 0:
                if len(self._data) + len(loaded) > MAX_ENTRIES:
                    self._data.clear()
                expires = now + self.ttl
                self._data.update((key, (expires, value)) for key, value in loaded.items())
        return found


LOAD_CHUNK = 5_000
"""Refs per query when a window's refs are read again (well under SQLite's and PostgreSQL's
limits on bound parameters)."""


KEEP_WINDOWS = 12
"""A key not asked for during this many windows (a minute at the default 5 s) is dropped at the
next renewal instead of being read again."""


class _Window(Generic[K, V]):
    """A cache renewed whole every ``ttl`` seconds: when a window ends, the keys asked for during
    the last KEEP_WINDOWS windows are loaded again in one call (with the keys of the call that found
    it ended); the others are dropped. A value served was loaded at most ``ttl`` seconds before; a
    key missing within a window is loaded on its own. ``ttl`` 0: no cache, every call loads."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._data: dict[K, V] = {}
        self._asked: dict[K, int] = {}  # key -> the last window it was asked for in
        self._window = 0
        self._until = float("-inf")

    def get_many(self, keys: Iterable[K], load: Callable[[list[K]], dict[K, V]]) -> dict[K, V]:
        """Values of ``keys``; ``load`` may leave keys out (unknown ones: never cached)."""
        wanted = set(keys)
        if self.ttl <= 0:
            return load(list(wanted)) if wanted else {}
        now = self._clock()
        if now >= self._until:  # a new window: the recent windows' keys come back in one load
            self._window += 1
            oldest = self._window - KEEP_WINDOWS
            self._asked = {key: w for key, w in self._asked.items() if w >= oldest}
            missing = list(self._asked.keys() | wanted)
            self._data = {}
            self._until = now + self.ttl
        else:
            missing = [key for key in wanted if key not in self._data]
        found = {key: self._data[key] for key in wanted if key in self._data}
        if missing:
            loaded = load(missing)
            if len(self._data) + len(loaded) > MAX_ENTRIES:
                self._data.clear()
                self._asked.clear()
            self._data.update(loaded)
            found.update((key, loaded[key]) for key in wanted if key in loaded)
        window = self._window
        self._asked.update((key, window) for key in found)
        return found


def _chunked(load: Callable[[list[K]], dict[K, V]]) -> Callable[[list[K]], dict[K, V]]:
    """``load`` called on LOAD_CHUNK keys at a time."""

    def chunks(keys: list[K]) -> dict[K, V]:
        out: dict[K, V] = {}
        for start in range(0, len(keys), LOAD_CHUNK):
            out.update(load(keys[start : start + LOAD_CHUNK]))
        return out

    return chunks


class Lookups:
    """The caches of one API process."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.principals: _Ttl[str, Principal] = _Ttl(ttl)
        self.customers: _Window[str, tuple[int, int]] = _Window(ttl)
        self.products: _Window[str, int] = _Window(ttl)
        self.contracts: _Ttl[int, dict[int, list[usage_repo.UsageContract]]] = _Ttl(float("inf") if ttl > 0 else 0)
        self._stamp = -1
        self._stamp_checked = float("-inf")
        self._revocations = api_keys.revocations()

    def principal(self, session_factory: Callable[[], AbstractContextManager[Session]], token: str) -> Principal | None:
        def load(hashes: list[str]) -> dict[str, Principal]:
            with session_factory() as session:
                found = authenticate(session, token)
            return {hashes[0]: found} if found is not None else {}

        revocations = api_keys.revocations()
        if revocations != self._revocations:  # this process revoked a key: no cached key is trusted
            self.principals = _Ttl(self.ttl)
            self._revocations = revocations
        digest = hash_token(token)
        found = self.principals.get_many([digest], load).get(digest)
        if api_keys.revocations() != revocations:  # one committed while this key was read: not kept
            self.principals = _Ttl(self.ttl)
        return found

    # ``connection`` is called only when something must be read: with warm caches, no connection.

    def customer_ids(self, connection: Callable[[], Connection], refs: Iterable[str]) -> dict[str, tuple[int, int]]:
        return self.customers.get_many(
            refs, _chunked(lambda missing: usage_repo.customers_by_ref(connection(), missing))
        )

    def product_ids(self, connection: Callable[[], Connection], refs: Iterable[str]) -> dict[str, int]:
        return self.products.get_many(refs, _chunked(lambda missing: usage_repo.products_by_ref(connection(), missing)))

    def usage_contracts(
        self, connection: Callable[[], Connection], customer_ids: Iterable[int]
    ) -> dict[int, dict[int, list[usage_repo.UsageContract]]]:
        """customer id -> usage product id -> contracts billing it (see store.usage.usage_contracts)."""
        now = time.monotonic()
        if now - self._stamp_checked >= self.ttl:
            stamp = usage_repo.contracts_stamp(connection())
            if stamp != self._stamp:
                self.contracts = _Ttl(self.contracts.ttl)
                self._stamp = stamp
            self._stamp_checked = now
        return self.contracts.get_many(
            set(customer_ids), lambda missing: usage_repo.usage_contracts(connection(), missing)
        )
