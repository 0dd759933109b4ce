"""A local QuickBooks Online emulator (Accounting API v3 + Intuit OAuth 2.0) for tests, benchmarks and the demo."""

from __future__ import annotations

from billbridge.sandbox.quickbooks.app import build_app
from billbridge.sandbox.quickbooks.company import QboCompany, TokenPolicy, sign_webhook
from billbridge.sandbox.quickbooks.running import RunningQuickBooks, seed_items, start_quickbooks

__all__ = [
    "QboCompany",
    "RunningQuickBooks",
    "TokenPolicy",
    "build_app",
    "seed_items",
    "sign_webhook",
    "start_quickbooks",
]
