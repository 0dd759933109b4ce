"""A page of received payments: what is looked up and what becomes of each payment (worked examples)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from billbridge.billing import reconciliation
from billbridge.billing.documents import IncomingPayment
from billbridge.billing.matching import Match, OpenInvoice, PaidInvoice, settle

D = Decimal
DUE = date(2026, 11, 30)


def pay(ref: str, amount: str, *numbers: str, customer: str | None = "globex", **flags: str) -> IncomingPayment:
    return IncomingPayment("quickbooks", ref, "USD", D(amount), date(2026, 11, 22), customer, numbers, **flags)  # type: ignore[arg-type]


def open_(number: str, amount: str, customer: str = "globex") -> OpenInvoice:
    return OpenInvoice(number, customer, "USD", D(amount), DUE)


def decide(payments: list[IncomingPayment], invoices: list[OpenInvoice], **kw: object) -> reconciliation.PageDecision:
    refs = [f"quickbooks:{p.payment_ref}" for p in payments]
    seen: set[str] = set(kw.pop("seen", set()))  # type: ignore[arg-type]
    versions: dict[str, str | None] = kw.pop("versions", {})  # type: ignore[assignment]
    paid: dict[str, PaidInvoice] = kw.pop("paid", {})  # type: ignore[assignment]
    return reconciliation.decide(refs, payments, seen, versions, invoices, paid, reconciliation.lookups(payments))


def test_lookups_name_linked_written_and_customer_invoices() -> None:
    wanted = reconciliation.lookups(
        [
            pay("1", "10", "INV-1"),
            pay("2", "10", "INV-1"),
            IncomingPayment("stripe", "3", "USD", D(5), DUE, "acme", reference="for INV-7"),
            pay("4", "-3", "INV-9"),
        ]
    )
    assert wanted.numbers == {"INV-1": 2, "INV-7": 1, "INV-9": 1}
    assert (wanted.customer_refs, wanted.refunded, wanted.unlinked) == (["acme"], ["INV-9"], True)


def test_two_payments_of_one_invoice_in_a_page_share_its_balance() -> None:
    decision = decide([pay("1", "60", "INV-1"), pay("2", "60", "INV-1")], [open_("INV-1", "100")])
    assert [d.match.allocations for d in decision.to_record] == [(("INV-1", D(60)),), (("INV-1", D(40)),)]
    assert decision.outcomes == {"matched": 1, "partly_matched": 1}
    assert decision.unmatched == [("quickbooks:2", "20 USD more than the invoices named were open for")]


def test_seen_changed_mirrored_and_deleted_payments() -> None:
    payments = [
        pay("1", "10", "INV-1", source_version="0"),  # recorded at version 0: seen before
        pay("2", "10", "INV-1", source_version="2"),  # recorded at version 1: changed
        pay("3", "10", "INV-1", mirrored_from="stripe:ch_1"),  # our own entry of a Stripe payment
        pay("4", "0", deleted_at="2026-11-30T10:00:00Z"),  # deleted, never recorded: nothing to undo
        pay("5", "0", source_version="deleted", deleted_at="2026-11-30T10:00:00Z"),  # deleted after recording
    ]
    decision = decide(
        payments,
        [open_("INV-1", "100")],
        seen={"quickbooks:1", "quickbooks:2", "quickbooks:5"},
        versions={"quickbooks:1": "0", "quickbooks:2": "1", "quickbooks:5": "3"},
    )
    assert decision.to_record == []
    assert decision.outcomes == {"seen_before": 1, "mirrored": 1}
    assert list(decision.changed) == ["quickbooks:2", "quickbooks:5"]


def test_the_versions_read_are_those_of_recorded_payments_carrying_one() -> None:
    payments = [pay("1", "10", source_version="4"), pay("2", "10"), pay("3", "10", source_version="1")]
    refs = ["q:1", "q:2", "q:3"]
    assert reconciliation.needs_version(refs, payments, {"q:1", "q:2"}) == ["q:1"]


def test_rematch_of_changed_payments() -> None:
    assert reconciliation.rematch(pay("1", "0", deleted_at="x"), []) is None
    assert reconciliation.rematch(pay("1", "0", "INV-1"), [open_("INV-1", "5")]) == Match((), D(0))
    assert reconciliation.rematch(pay("1", "5", "INV-1"), [open_("INV-1", "5")]) == Match((("INV-1", D(5)),), D(0))
    assert reconciliation.rematch_numbers(pay("1", "5", "INV-1", reference="and INV-2")) == ("INV-1", "INV-2")


def test_decisions_read_typed_flags_never_extra() -> None:
    """What reconciliation decides on is typed: the same words in ``extra`` decide nothing."""
    in_extra = IncomingPayment(
        "stripe", "ch_9", "USD", D(5), DUE, None, extra={"stripe_subscription": "sub_1", "deleted": "t"}
    )
    typed = IncomingPayment("stripe", "ch_9", "USD", D(5), DUE, None, subscription="sub_1")
    assert not in_extra.deleted and in_extra.subscription is None
    assert settle(typed, {}, {}, {})[1] == "billed_by_stripe"
    assert settle(in_extra, {}, {}, {})[1] == "unmatched"
