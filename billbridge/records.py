"""Vendor records as connectors pull them and mapping reads them: deals bundled with what mapping
them needs, and the records of other streams, in pages. Neutral ground: connectors produce these and mapping consumes them, and neither
imports the other; this module imports nothing of billbridge.

A connector pulls with an opaque cursor (None: from the beginning) and yields ``RecordPage``s (deals
as ``RecordPage[DealBundle]``); the flow stores a page and only then saves ``page.cursor``, so a crash
repeats at most one page.
Records stay in the vendor's shapes (plain dicts as the SDK returns them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class DealBundle:
    deal: dict[str, Any]  # the vendor's deal (Opportunity fields / deal properties with its id)
    lines: list[dict[str, Any]]  # its line items
    company: dict[str, Any] | None  # its account / company
    products: dict[str, dict[str, Any]]  # vendor product id -> product (with its prices) for the lines
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)  # vendor price id -> price, where lines name prices
    changed_at: int | None = None  # epoch seconds of the last change, where the deal itself does not say
    labelled: dict[str, list[str]] = field(default_factory=dict)  # association label -> company ids (HubSpot)
    contacts: list[dict[str, Any]] | None = (
        None  # its billing contacts, where the source reads them (None: it does not)
    )


@dataclass(frozen=True)
class RecordPage(Generic[R]):
    """One page of a stream's records in the vendor's shapes: the one page type of every vendor stream
    (CRM deals as ``DealBundle``s, QuickBooks payments, Stripe charges, refunds, dispute events,
    subscriptions)."""

    records: list[R]
    cursor: str | None = None  # save after the page is stored; None on a page that must not move the cursor
    related: Mapping[str, Any] = field(default_factory=dict)  # what mapping needs that the records do not hold
    deleted_ids: list[str] = field(default_factory=list)  # records deleted or archived since the cursor
    api_calls: int = 0  # vendor calls this page cost (for summaries and benchmarks)
