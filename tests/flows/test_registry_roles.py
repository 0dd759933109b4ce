"""The flows decide by the registry's declarations, not by vendor names: change a declaration and the
behaviour follows (which documents a target takes, where payments are mirrored, what a webhook event
asks for, which actions events can ask for)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from billbridge.billing.documents import DocumentLine, OutboundDocument, push_targets
from billbridge.errors import NotConfigured
from billbridge.flows.messages import pay_link
from billbridge.flows.mirror import mirror_targets
from billbridge.flows.webhooks import ACTIONS, decide
from billbridge.settings import QuickBooksSettings, Settings, StripeSettings
from billbridge.store.webhooks import ClaimedEvent
from billbridge.vendors.registry import VENDORS, PayLink, PushTarget, TokenVault, Vendor, document_targets


def _doc(*, auto_charge: bool) -> OutboundDocument:
    line = DocumentLine("INV-1-L1", "SEATS", "Seats", Decimal(1), Decimal(100), date(2026, 1, 1), date(2026, 1, 31))
    return OutboundDocument(
        "INV-1", "invoice", 1, "us-inc", "sf-ACC1", "Globex", None, "sf-OPP1", "USD",
        date(2026, 1, 1), date(2026, 1, 31), Decimal(100), auto_charge, (line,),
    )  # fmt: skip


def _redeclared_push(monkeypatch: pytest.MonkeyPatch, name: str, **changes: object) -> None:
    vendor = VENDORS[name]
    assert vendor.push is not None
    push: PushTarget = replace(vendor.push, **changes)  # type: ignore[arg-type]
    monkeypatch.setitem(VENDORS, name, replace(vendor, push=push))


def test_which_documents_a_target_takes_is_its_declaration(monkeypatch: pytest.MonkeyPatch) -> None:
    route = push_targets(document_targets(["quickbooks", "stripe"]))
    assert route(_doc(auto_charge=False)) == ["quickbooks"]
    _redeclared_push(monkeypatch, "quickbooks", takes=lambda document: document.doc_type == "credit_note")
    _redeclared_push(monkeypatch, "stripe", takes=lambda document: True)
    route = push_targets(document_targets(["quickbooks", "stripe"]))
    assert route(_doc(auto_charge=False)) == ["stripe"]


def test_payments_are_mirrored_into_the_targets_that_declare_it(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(push_targets=["quickbooks", "stripe"])
    assert mirror_targets(settings, "stripe") == ("quickbooks",)
    assert mirror_targets(settings, "quickbooks") == ()  # never into the source itself
    _redeclared_push(monkeypatch, "quickbooks", mirrors=False)
    _redeclared_push(monkeypatch, "stripe", mirrors=True)
    assert mirror_targets(settings, "stripe") == ()
    assert mirror_targets(settings, "quickbooks") == ("stripe",)


def _event(source: str, event_type: str, payload: str = "{}") -> ClaimedEvent:
    return ClaimedEvent(1, source, "evt_1", event_type, None, payload, 1)


def test_what_a_webhook_event_asks_for_is_its_vendors_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert decide(_event("stripe", "charge.succeeded"), settings) == ("reconcile:stripe", "a payment succeeded")
    assert decide(_event("stripe", "customer.subscription.updated"), settings) == (
        None,
        "Stripe subscriptions are not a contract source here (crm_sources)",
    )
    stripe = VENDORS["stripe"]
    assert stripe.webhook is not None
    rules = (("charge.", None, "charges are read elsewhere here"),)
    monkeypatch.setitem(VENDORS, "stripe", replace(stripe, webhook=replace(stripe.webhook, rules=rules)))
    assert decide(_event("stripe", "charge.succeeded"), settings) == (None, "charges are read elsewhere here")
    assert decide(_event("hubspot", "deal.created"), settings) == (None, "hubspot sends no webhooks billbridge reads")


def test_another_quickbooks_company_is_ignored_by_the_webhooks_declaration() -> None:
    settings = Settings(quickbooks=QuickBooksSettings(client_id="c", client_secret="s", realm_id="42"))
    payment = '{"realmId": "7", "name": "Payment"}'
    assert decide(_event("quickbooks", "Payment.Update", payment), settings) == (
        None,
        "company 7 is not the configured one (42)",
    )
    ours = '{"realmId": "42", "name": "Payment"}'
    assert decide(_event("quickbooks", "Payment.Update", ours), settings)[0] == "reconcile:quickbooks"


def test_the_actions_events_can_ask_for_come_from_the_registrys_roles() -> None:
    assert sorted(ACTIONS) == ["reconcile:quickbooks", "reconcile:stripe", "sync:stripe"]
    assert {name: action.vendor for name, action in ACTIONS.items()} == {
        "reconcile:stripe": "stripe",
        "reconcile:quickbooks": "quickbooks",
        "sync:stripe": "stripe",
    }


def _invoice(doc_type: str = "invoice", **held: str) -> dict[str, object]:
    """A message context's invoice as ``store.messages`` gives it: ``<vendor>_invoice`` per vendor holding it."""
    return {"invoice": {"doc_type": doc_type, **{f"{name}_invoice": ref for name, ref in held.items()}}}


def test_the_pay_link_is_asked_of_the_vendors_that_declare_one_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    builds: list[str] = []

    def page_of(site: str) -> Callable[[Settings, TokenVault], PayLink]:
        def build(settings: Settings, tokens: TokenVault) -> PayLink:
            builds.append(site)
            return lambda invoice_id: f"https://{site}/pay/{invoice_id}"

        return build

    def unconfigured(settings: Settings, tokens: TokenVault) -> PayLink:
        builds.append("unconfigured")
        raise NotConfigured("not set up here")

    monkeypatch.setitem(VENDORS, "stripe", replace(VENDORS["stripe"], pay_link=unconfigured))
    monkeypatch.setitem(VENDORS, "quickbooks", replace(VENDORS["quickbooks"], pay_link=None))
    monkeypatch.setitem(VENDORS, "acme", Vendor("acme", pay_link=page_of("acme.example")))
    link = pay_link(None, Settings())
    # Stripe holds it but is not configured: the next declaring vendor holding it answers; QuickBooks declares none
    assert link(_invoice(stripe="in_1", quickbooks="7", acme="A1")) == "https://acme.example/pay/A1"
    assert link(_invoice(stripe="in_2", acme="A2")) == "https://acme.example/pay/A2"
    assert link(_invoice(quickbooks="8")) is None
    assert link(_invoice("credit_note", acme="A3")) is None  # a credit note is not paid
    assert link({"invoice": None}) is None
    assert builds == ["unconfigured", "acme.example"]  # each built once, when first needed
    monkeypatch.setitem(VENDORS, "stripe", replace(VENDORS["stripe"], pay_link=page_of("stripe.example")))
    # the first declaring vendor holding the invoice answers, in the registry's order
    assert pay_link(None, Settings())(_invoice(stripe="in_1", acme="A1")) == "https://stripe.example/pay/in_1"


def test_the_declared_pay_links_give_none_where_their_vendor_cannot_be_built() -> None:
    """Stripe and QuickBooks as declared: Stripe without an API key, and QuickBooks without a store to
    keep its tokens, give no link (and call nothing)."""
    quickbooks = QuickBooksSettings(client_id="c", client_secret="s", realm_id="42")
    link = pay_link(None, Settings(stripe=StripeSettings(), quickbooks=quickbooks))
    assert link(_invoice(stripe="in_1")) is None
    assert link(_invoice(quickbooks="7")) is None
