"""The page of payments every payment stream yields, mapped (one type for all vendors)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from billbridge.billing.documents import IncomingPayment
from billbridge.mapping.fields import Refused


@dataclass(frozen=True)
class PaymentPage:
    """Payments one pull read, mapped: the one page type of every payment stream (QuickBooks
    payments; Stripe charges, refunds and disputes)."""

    payments: list[IncomingPayment]
    cursor: str | None  # save after the page is safely stored; hand back to the pull next time
    refused: list[Refused] = field(default_factory=list)  # records the mapping could not read (to quarantine)
    records: list[dict[str, Any]] = field(default_factory=list)  # the vendor records they came from, where kept
    api_calls: int = 0
    stream: str = "payments"  # whose cursor the page advances (reconciliation names it from the source's streams)
