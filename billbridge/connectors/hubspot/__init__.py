"""HubSpot CRM connector (hubspot-api-client): deals with their line items, companies and products."""

from __future__ import annotations

from billbridge.connectors.hubspot.client import HubSpotClient
from billbridge.connectors.hubspot.errors import classify_hubspot
from billbridge.connectors.hubspot.source import SEARCH_RESULT_CAP, HubSpotCursor, HubSpotSource, connect
from billbridge.settings import HubSpotSettings

__all__ = [
    "SEARCH_RESULT_CAP",
    "HubSpotClient",
    "HubSpotCursor",
    "HubSpotSettings",
    "HubSpotSource",
    "classify_hubspot",
    "connect",
]
