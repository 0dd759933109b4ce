"""Per-process caches of what every usage request looks up: API keys, customer and product ids,
and the usage terms of contracts.

Keys and ids live ``ttl`` seconds (``api_cache_seconds``; 0 turns caching off), so a revoked key
or a moved customer reaches a running server within that time; a key revoked by this very process
is refused at once (``store.api_keys.revocations``). Usage terms are kept until a
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


class Lookups:
    """The caches of one API process."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.principals: _Ttl[str, Principal] = _Ttl(ttl)
        self.customers: _Ttl[str, tuple[int, int]] = _Ttl(ttl)
        self.products: _Ttl[str, int] = _Ttl(ttl)
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
        return self.customers.get_many(set(refs), lambda missing: usage_repo.customers_by_ref(connection(), missing))

    def product_ids(self, connection: Callable[[], Connection], refs: Iterable[str]) -> dict[str, int]:
        return self.products.get_many(set(refs), lambda missing: usage_repo.products_by_ref(connection(), missing))

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
