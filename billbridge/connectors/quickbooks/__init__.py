"""QuickBooks Online through python-quickbooks and intuit-oauth."""

from __future__ import annotations

from billbridge.connectors.quickbooks.client import QuickBooksConfig, classify_quickbooks
from billbridge.connectors.quickbooks.connector import (
    AmendmentToRecord,
    PaymentPage,
    PaymentToRecord,
    PushResult,
    QuickBooksConnector,
    QuickBooksWriteError,
)
from billbridge.connectors.quickbooks.tokens import (
    FileTokenStore,
    InMemoryTokenStore,
    OAuthTokens,
    TokenKeeper,
    TokenStore,
)
from billbridge.connectors.quickbooks.webhooks import verify_webhook

__all__ = [
    "AmendmentToRecord",
    "FileTokenStore",
    "InMemoryTokenStore",
    "OAuthTokens",
    "PaymentPage",
    "PaymentToRecord",
    "PushResult",
    "QuickBooksConfig",
    "QuickBooksConnector",
    "QuickBooksWriteError",
    "TokenKeeper",
    "TokenStore",
    "classify_quickbooks",
    "verify_webhook",
]
