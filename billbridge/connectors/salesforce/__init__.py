"""Salesforce through simple-salesforce: opportunities with their line items, accounts and price book.

``connect(settings)`` builds the configured ``SalesforceSource`` (``[salesforce]``, BILLBRIDGE_SALESFORCE__*);
``SalesforceSource(SalesforceClient(SalesforceSettings(...)), columns=...)`` builds one explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from billbridge.connectors.salesforce.client import SalesforceClient, classify_salesforce
from billbridge.connectors.salesforce.source import Cursor, SalesforceSource
from billbridge.settings import SalesforceSettings, Settings


def connect(
    settings: Settings | None = None, *, columns: Mapping[str, Sequence[str]] | None = None
) -> SalesforceSource:
    """The Salesforce source from ``settings.salesforce`` (read afresh when ``settings`` is None),
    selecting ``columns`` beyond the standard ones (the registry passes those its mapping reads)."""
    config = (settings or Settings()).vendor(SalesforceSettings)
    return SalesforceSource(SalesforceClient(config), columns=columns)


__all__ = ["Cursor", "SalesforceClient", "SalesforceSettings", "SalesforceSource", "classify_salesforce", "connect"]
