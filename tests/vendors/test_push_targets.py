"""Push targets are the registry's: which documents each takes, and Stripe's writer answering with
``PushResult``s like QuickBooks' (a refused write is a failed result, never an exception)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from billbridge.billing.documents import DocumentLine, OutboundDocument, push_targets
from billbridge.connectors.errors import RetryPolicy
from billbridge.sandbox.faults import Fault
from billbridge.sandbox.server import SandboxServer
from billbridge.sandbox.stripe import StripeSandbox
from billbridge.vendors.registry import document_targets, push_target
from billbridge.vendors.stripe import Stripe, StripeDocuments

KEY = "sk_test_push_targets"


def _doc(
    number: str = "US-INV-000001", *, version: int = 1, auto_charge: bool = True, customer: str = "sf-ACC1"
) -> OutboundDocument:
    line = DocumentLine(
        f"{number}-L1", "SEATS", "Seats", Decimal(1), Decimal("100.00"), date(2026, 1, 1), date(2026, 1, 31)
    )
    return OutboundDocument(
        number, "invoice", version, "us-inc", customer, "Globex", "ap@globex.test", "sf-OPP1", "USD",
        date(2026, 1, 1), date(2026, 1, 31), Decimal("100.00"), auto_charge, (line,),
    )  # fmt: skip


def test_each_target_takes_the_documents_the_registry_says() -> None:
    route = push_targets(document_targets(["stripe", "quickbooks"]))
    invoice = _doc(auto_charge=False)
    assert route(invoice) == ["quickbooks"]  # the ledger takes every document (targets in the registry order)
    assert route(replace(invoice, auto_charge=True)) == ["stripe", "quickbooks"]  # Stripe charges it
    assert route(replace(invoice, channel="stripe")) == ["stripe", "quickbooks"]  # Stripe e-mails it
    assert route(replace(invoice, doc_type="credit_note", auto_charge=True)) == ["quickbooks"]
    assert push_targets(document_targets(["stripe"]))(invoice) == []
    assert (push_target("stripe").batch, push_target("quickbooks").batch) == (20, 300)
    assert push_target("stripe").collects and push_target("quickbooks").mirrors


def test_a_target_that_is_not_one_is_refused_naming_the_setting() -> None:
    with pytest.raises(
        ValueError, match="push_targets: unknown push target 'hubspot' \\(expected stripe, quickbooks\\)"
    ):
        document_targets(["quickbooks", "hubspot"])


@pytest.fixture
def stripe_url() -> Iterator[tuple[StripeSandbox, str]]:
    sb = StripeSandbox((KEY,))
    with SandboxServer(sb.app, name="stripe") as server:
        yield sb, server.url


def _writer(url: str, attempts: int = 3) -> StripeDocuments:
    return StripeDocuments(Stripe(KEY, base_url=url, policy=RetryPolicy(attempts=attempts), sleep=lambda _: None))


def test_stripe_answers_every_document_with_a_push_result(stripe_url: tuple[StripeSandbox, str]) -> None:
    sb, url = stripe_url
    writer = _writer(url)
    first = writer.push_documents([_doc("US-INV-000001"), _doc("US-INV-000002")], look_up_first=False)
    assert [(r.number, r.status) for r in first] == [("US-INV-000001", "created"), ("US-INV-000002", "created")]
    assert sb.faults.total_calls("customers/search") == 1  # the customer is ensured once per run, not per invoice

    # another version of a pushed invoice: a failed (fatal) result naming it, the next document still written
    results = writer.push_documents([_doc("US-INV-000001", version=2), _doc("US-INV-000003")], look_up_first=True)
    assert (results[0].status, results[0].retriable) == ("failed", False)
    assert "holds version 1, not 2" in (results[0].error or "")
    assert (results[1].number, results[1].status) == ("US-INV-000003", "created")

    # Stripe down past the retries: a failed result that may be retried
    sb.faults.add(Fault(kind="server_error", path="^/v1/invoices", times=None))
    [down] = _writer(url).push_documents([_doc("US-INV-000004", customer="sf-ACC2")], look_up_first=False)
    assert (down.status, down.retriable) == ("failed", True) and down.error
