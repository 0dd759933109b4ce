"""One QuickBooks company's connection: the python-quickbooks client on the shared ``VendorClient``.

Every HTTP call goes through ``VendorClient.call`` with ``classify_quickbooks``: counted, paced (the
request pace, or the batch pace for batch calls), retried; a 401 refreshes the token once through
the ``TokenKeeper`` and rebuilds the python-quickbooks client (its OAuth session holds the old
token). Readers (``readers.py``) and writers (``writers.py``) build on this class.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Self, TypeVar

from billbridge.connectors.client import VendorClient
from billbridge.connectors.errors import Classified, RetryPolicy
from billbridge.connectors.pacing import SHARED, Pacer, Pacers
from billbridge.connectors.quickbooks.client import (
    VENDOR,
    OAuthClient,
    QuickBooksClient,
    QuickBooksConfig,
    classify_quickbooks,
)
from billbridge.connectors.quickbooks.tokens import IssuedTokens, TokenKeeper, TokenStore

T = TypeVar("T")
# Intuit counts a request when it arrives, we when we send it: a window this much longer than the
# vendor's keeps a late arrival of one call and a prompt one of a later call from meeting in one window
# (0.05 s still met a 429 now and then on a loaded machine; 10 calls per 1.2 s is 8.3 a second at worst).
PACE_MARGIN_SECONDS = 0.2


def quote(value: str) -> str:
    """A string literal of QuickBooks' query language (backslash escapes a quote)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _seconds(value: object) -> float | None:
    """A token answer's number of seconds, or None when absent or unreadable."""
    try:
        return float(value) if value is not None and not isinstance(value, bool) else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class QuickBooksConnection(VendorClient):
    """One QuickBooks company, seen through python-quickbooks; no store, no canonical models."""

    vendor = VENDOR

    def __init__(
        self,
        config: QuickBooksConfig,
        tokens: TokenStore,
        *,
        worker: str | None = None,
        policy: RetryPolicy | None = None,
        pacer: Pacer | None = None,
        batch_pacer: Pacer | None = None,
        sleep: Callable[[float], None] | None = None,
        pacers: Pacers = SHARED,
    ) -> None:
        # Intuit counts requests per realm and app (client id), batch calls per realm whatever the app:
        # connections of this process to the same service share those windows (``pacers``).
        service = (VENDOR, config.api_url_v3, config.realm_id)
        pace = pacer or pacers.get(
            (*service, "app", config.client_id), config.requests_per_second, 1 + PACE_MARGIN_SECONDS
        )
        super().__init__(policy=policy, pacer=pace, sleep=sleep)
        self.config = config
        self.batch_pacer = batch_pacer or pacers.get(
            (*service, "batch"), config.batches_per_minute, 60 + PACE_MARGIN_SECONDS
        )
        self._auth = OAuthClient(config)
        self.keeper = TokenKeeper(tokens, self._spend, worker=worker or uuid.uuid4().hex)
        self._client: QuickBooksClient | None = None
        self._access: str | None = None

    def close(self) -> None:
        """Close the HTTP sessions (the OAuth client's and the API client's)."""
        if self._client is not None:
            self._client.session.close()
            self._client = None
        self._auth.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def classify(self, exc: BaseException) -> Classified | None:
        return classify_quickbooks(exc)

    def before_attempt(self, pacer: Pacer | None) -> None:
        """A batch call waits for a slot of the batch pace and of the request pace: Intuit counts it
        against both (120 batch calls a minute, and 10 requests of any kind a second)."""
        if pacer is not None and pacer is not self.pacer:
            pacer.wait()
        if self.pacer is not None:
            self.pacer.wait()

    def _spend(self, refresh_token: str) -> IssuedTokens:
        def refresh() -> IssuedTokens:
            # intuit-oauth sets every member of the token answer as an attribute; clear last answer's
            self._auth.x_refresh_token_expires_in = None
            self._auth.x_refresh_token_hard_expires_in = None
            self._auth.refresh(refresh_token=refresh_token)
            return IssuedTokens(
                self._auth.access_token,
                self._auth.refresh_token,
                float(self._auth.expires_in),
                _seconds(self._auth.x_refresh_token_expires_in),
                _seconds(self._auth.x_refresh_token_hard_expires_in),
            )

        return self.retried(refresh, what="token refresh", refresh=False)

    def _qb(self) -> QuickBooksClient:
        if self._client is None:
            tokens = self.keeper.current()
            self._auth.access_token, self._auth.refresh_token = tokens.access_token, tokens.refresh_token
            self._client, self._access = QuickBooksClient.connect(self.config, self._auth), tokens.access_token
        return self._client

    @property
    def can_refresh(self) -> bool:
        return True

    def refresh(self) -> None:
        self.keeper.refresh(stale_access=self._access)
        if self._client is not None:
            self._client.session.close()
        self._client = None  # its OAuth2Session carries the old access token

    def _call(self, call: Callable[[QuickBooksClient], T], pacer: Pacer | None = None, what: str = "call") -> T:
        return self.call(lambda: call(self._qb()), what=what, pacer=pacer)

    def _url(self, qb: QuickBooksClient, endpoint: str) -> str:
        return f"{qb.api_url}/company/{self.config.realm_id}/{endpoint}"

    def _poster(self, endpoint: str, body: str, request_id: str) -> Callable[[QuickBooksClient], dict[str, Any]]:
        def post(qb: QuickBooksClient) -> dict[str, Any]:
            return dict(qb.make_request("POST", self._url(qb, endpoint), body, request_id=request_id))

        return post
