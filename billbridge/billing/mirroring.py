"""Entering payments received in one system (Stripe) in the books of another (QuickBooks): the decisions.

Pure. ``flows/mirror.py`` reads what these need (which of our invoices the books hold, which of our
payments were entered there, as what) and has the connector do what they decide:

- a payment recorded from its source is entered when it paid our invoices, a refund when it took
  money back from them and names the payment it refunds;
- a payment waits until every invoice it pays is in the books (pushed later, or parked there);
- new entries go first, then the changes to entries (a change may be to one entered in the same batch);
- a change (a refund or lost dispute taking money back, money a person applied by hand) waits until
  the payment it changes is entered; it changes that entry's lines by the invoices' amounts: a refund
  takes its total off the entry, an application by hand moves money that was unapplied there;
- each change is made once: a refund is keyed by its own ref, an application by its message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from billbridge.billing.documents import IncomingPayment

ZERO = Decimal(0)


@dataclass(frozen=True)
class Waiting:
    """Not yet: try again later, for this reason."""

    reason: str


@dataclass(frozen=True)
class Change:
    """A change to make to an entry in the books."""

    key: str  # made once by this key: the refund's ref, or the message's (an application by hand)
    entry: str  # the books' id of the entry (payment) it changes
    lines: dict[str, Decimal]  # the books' invoice id -> the amount its line changes by
    total_change: Decimal  # what the entry's total changes by (a refund: the lines' sum; an application: 0)
    made: Literal["refunded", "applied"]


def to_enter(amount: Decimal, applied: bool, refunds_a_payment: bool) -> bool:
    """Whether a payment just recorded from its source is entered in the other books: one that paid
    our invoices, or a refund that took money back from them and names the payment it refunds (a
    refund without one stays with its source)."""
    return applied and (amount > 0 or (amount < 0 and refunds_a_payment))


def waiting_for_invoices(payment: IncomingPayment, in_books: Mapping[str, str | None]) -> Waiting | None:
    """Why ``payment`` cannot be entered yet (an invoice it pays is not in the books), or None."""
    missing = [n for n in payment.invoice_numbers if not in_books.get(n)]
    if missing:
        return Waiting(f"invoice {', '.join(missing)} is not in QuickBooks yet")
    return None


def change(
    message_id: int,
    payment: IncomingPayment,
    changes: str,
    *,
    refund: bool,
    entered: Mapping[str, str],
    in_books: Mapping[str, str | None],
) -> Change | Waiting:
    """The change a message makes to the entry of our payment ``changes``: ``payment`` carries the
    invoices and amounts (negative for a refund); ``entered``: our payment ref -> its entry's id;
    ``in_books``: our invoice number -> the books' id."""
    entry = entered.get(changes)
    if entry is None:  # entered by a later delivery (or parked with an error): try again
        return Waiting(f"the payment {changes} is not in QuickBooks yet")
    lines = {str(in_books[n]): share for n, share in zip(payment.invoice_numbers, payment.invoice_amounts, strict=True)}
    return Change(
        key=payment.payment_ref if refund else f"m{message_id}",
        entry=entry,
        lines=lines,
        total_change=sum(lines.values(), ZERO) if refund else ZERO,  # applied: it was unapplied there
        made="refunded" if refund else "applied",
    )


Outcome = tuple[Literal["done", "existing", "retriable", "fatal"], str]
"""What became of a change: made (with what was made), made before, or failed (with the reason)."""


def change_outcome(made: str, status: str, retriable: bool, error: str | None) -> Outcome:
    """Read a change's result from the books: ``status`` failed / existing / anything else (made)."""
    if status == "failed":
        return ("retriable" if retriable else "fatal"), error or "refused"
    if status == "existing":
        return "existing", "existing"
    return "done", made


def entries_first(ids: Sequence[int], changing: Mapping[int, str]) -> tuple[list[int], list[int]]:
    """The batch's messages as (new entries, changes), in their order: entries are made first, as
    a change may be to one of them."""
    return [i for i in ids if i not in changing], [i for i in ids if i in changing]
