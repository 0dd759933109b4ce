"""Salesforce through simple-salesforce: opportunities with their line items, accounts and price book.

``connect(settings)`` builds the configured ``SalesforceSource`` (BILLBRIDGE_SALESFORCE_* settings);
``SalesforceSource(SalesforceClient(SalesforceSettings(...)), columns=...)`` builds one explicitly.
"""

from __future__ import annotations

from typing import Any

from billbridge.connectors.salesforce.client import SalesforceClient, classify_salesforce
from billbridge.connectors.salesforce.settings import SalesforceSettings
from billbridge.connectors.salesforce.source import Cursor, SalesforceSource
from billbridge.mapping.salesforce import DEFAULT_FIELDS


def connect(settings: Any = None, **overrides: Any) -> SalesforceSource:
    """The Salesforce source from BILLBRIDGE_SALESFORCE_* settings (``overrides`` win), selecting the
    default custom fields of ``mapping.salesforce``. ``settings`` (the app's) is not needed."""
    return SalesforceSource(SalesforceClient(SalesforceSettings(**overrides)), columns=DEFAULT_FIELDS.columns())


__all__ = ["Cursor", "SalesforceClient", "SalesforceSettings", "SalesforceSource", "classify_salesforce", "connect"]
