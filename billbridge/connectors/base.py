"""The connector contract: what a source yields and what a writer returns, the same for every vendor.

A source (``DealSource``) pulls deals bundled with their lines, company and products in ``RecordPage``s (``billbridge.records``); a writer
takes vendor payloads and answers one ``PushResult`` per write. Connectors know their vendor's
payloads and HTTP, nothing of billbridge's canonical model or documents (``mapping/`` translates).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any, Literal, Protocol

from billbridge.connectors.paging import Paginator
from billbridge.records import DealBundle, RecordPage

PushStatus = Literal["created", "existing", "updated", "deleted", "failed"]


@dataclass(frozen=True)
class Stream:
    """One incremental stream a connector pulls, declared as data (as singer-sdk streams and dlt
    resources declare themselves): the connector's pull reads its page size, paginator and lag
    window from here, so what a stream is can be read in one line."""

    name: str
    key: str  # the records' primary key
    cursor_field: str  # what the cursor follows (read inclusively, ``lag`` back)
    lag: timedelta  # each pull reads this much before the cursor again (late commits, lagging indexes)
    paginator: Paginator[Any, Any]
    page_size: int


class DealSource(Protocol):
    """A contract source (a CRM, Stripe subscriptions) as the sync flow sees it."""

    name: str

    def pull(self, cursor: str | None) -> Iterator[RecordPage[DealBundle]]: ...


@dataclass(frozen=True)
class PushResult:
    """The outcome of one write to a vendor: the one result type of every writer (QuickBooks documents
    and payments, Stripe invoices), so the push relay reads every target's outcome alike."""

    number: str  # what was written: our document number, payment ref or change ref
    doc_type: str
    # updated: a record of ours replaced by a newer version (a reclosed month's entry); deleted: a record of
    # ours removed because nothing stands behind it any more (a month reclosed to nothing)
    status: PushStatus
    external_id: str | None = None  # the vendor's id, to store as an external reference
    sync_token: str | None = None  # the vendor's version of the record, where it keeps one
    error: str | None = None
    retriable: bool = False  # failed, but trying again later may work (throttled, down, outcome unknown)
    vendor_status: str | None = None  # the record's state at the vendor after the write (Stripe: open, paid)
    amount_due: Decimal | None = None  # what the vendor says is owed on it, where it says (to check against ours)
    url: str | None = None  # where a person sees it at the vendor (Stripe's hosted invoice page)
    sent_to: tuple[str, ...] = ()  # whom the vendor e-mailed it to, when it says (Stripe: the customer's e-mail)


class WebhookRefused(ValueError):
    """A webhook delivery that is forged, malformed or outside the replay window; ``code`` says which."""

    def __init__(self, message: str, code: str = "bad_signature") -> None:
        super().__init__(message)
        self.code = code
