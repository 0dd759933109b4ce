"""QuickBooks Online through python-quickbooks and intuit-oauth: ``connection.py`` (the client on the
shared base), ``readers.py`` (queries, look-ups, payments changed) and ``writers.py`` (batched creates
and updates, find-or-create), all in QuickBooks' own payloads."""

from __future__ import annotations

from billbridge.connectors.quickbooks.client import QuickBooksConfig, classify_quickbooks
from billbridge.connectors.quickbooks.readers import QuickBooksReader
from billbridge.connectors.quickbooks.tokens import (
    FileTokenStore,
    InMemoryTokenStore,
    OAuthTokens,
    TokenKeeper,
    TokenStore,
)
from billbridge.connectors.quickbooks.webhooks import verify_webhook
from billbridge.connectors.quickbooks.writers import QuickBooksConnector, QuickBooksWriteError, Write, Written

__all__ = [
    "FileTokenStore",
    "InMemoryTokenStore",
    "OAuthTokens",
    "QuickBooksConfig",
    "QuickBooksConnector",
    "QuickBooksReader",
    "QuickBooksWriteError",
    "TokenKeeper",
    "TokenStore",
    "Write",
    "Written",
    "classify_quickbooks",
    "verify_webhook",
]
