"""Partners and referral agreements from contract files: stored by ref, bad ones quarantined with the
field named, the others go on; accruals are stored once per agreement, event and kind."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from billbridge.billing.partner_fees import Accrual
from billbridge.flows.importing import import_document, import_file
from billbridge.mapping.contract_file import json_schema
from billbridge.store import quarantine
from billbridge.store.db import Store
from billbridge.store.partners import (
    close_statement,
    closed_through,
    load_accruals,
    load_agreements,
    load_partners,
    partner_summaries,
    save_accruals,
)
from tests.docs import REFERENCE

D = Decimal
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "contracts"


def partner(ref: str, kind: str = "referral", **terms: Any) -> dict[str, Any]:
    return {"partner_ref": ref, "name": ref.title(), "kind": kind, "entity_ref": "us", "currency": "USD", **terms}


def agreement(ref: str, partner_ref: str = "northwind", **terms: Any) -> dict[str, Any]:
    return {
        "agreement_ref": ref,
        "partner_ref": partner_ref,
        "currency": "USD",
        "percent": "20",
        "referrals": [{"customer_ref": "globex", "referred_on": "2026-01-10"}],
        **terms,
    }


def test_the_example_partners_import_and_read_back(store: Store) -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        summary = import_file(store, path)
        assert not summary.errors, summary.errors
    with store.read() as session:
        partners = load_partners(session)
        agreements = load_agreements(session, "northwind")
        listed = partner_summaries(session)
    assert set(partners) == {"northwind", "channel-one"}
    assert partners["channel-one"].discount_for("seats") == Decimal(30)
    assert partners["channel-one"].discount_for("platform") == Decimal(25)
    assert [a.agreement_ref for a in agreements] == ["northwind-2026"]
    assert agreements[0].flat_fee == Decimal("250.00")
    assert {p["partner_ref"]: p["agreements"] for p in listed} == {"channel-one": 0, "northwind": 1}


def test_bad_partner_records_name_record_and_field_and_the_rest_go_on(store: Store) -> None:
    doc = {
        **REFERENCE,
        "partners": [
            partner("northwind"),
            partner("reseller-co", kind="reseller", discount_percent="25"),
            partner("no-entity", entity_ref="nowhere"),
            partner("bad-discount", kind="referral", discount_percent="10"),
        ],
        "referral_agreements": [
            agreement("ok"),
            agreement("ghost-partner", partner_ref="nobody"),
            agreement("other-currency", currency="EUR"),
            agreement("to-a-reseller", partner_ref="reseller-co"),
            agreement("no-rule", percent=None),
            agreement("float", percent=0.2),
            agreement("both-rules", tiers={"model": "volume", "tiers": [{"up_to": None, "unit_price": "0.1"}]}),
            agreement("unknown-customer", referrals=[{"customer_ref": "nosuch", "referred_on": "2026-01-01"}]),
        ],
    }
    summary = import_document(store, doc)
    assert summary.counts["partners.created"] == 2
    assert summary.counts["referral_agreements.created"] == 2  # ok, and unknown-customer without its referral
    found = {(e.key, e.field) for e in summary.errors}
    assert found == {
        ("no-entity", "entity_ref"),
        ("bad-discount", "discount_percent"),
        ("ghost-partner", "partner_ref"),
        ("other-currency", "currency"),
        ("to-a-reseller", "partner_ref"),
        ("no-rule", "percent"),
        ("float", "percent"),
        ("both-rules", "tiers"),
        ("unknown-customer", "referrals[0].customer_ref"),
    }
    message = next(e.message for e in summary.errors if e.key == "other-currency")
    assert "EUR" in message and "USD" in message
    with store.read() as session:
        kept = {(e["record_type"], e["record_key"]) for e in quarantine.list_open(session)}
    assert ("referral_agreements", "ghost-partner") in kept
    assert ("partners", "no-entity") in kept
    assert ("referral_agreements", "unknown-customer") in kept  # it waits for the customer, visibly
    # The partner arrives: the agreement naming it goes in and leaves the quarantine.
    fixed = import_document(
        store,
        {"partners": [partner("nobody")], "referral_agreements": [agreement("ghost-partner", partner_ref="nobody")]},
    )
    assert not fixed.errors
    with store.read() as session:
        kept = {(e["record_type"], e["record_key"]) for e in quarantine.list_open(session)}
    assert ("referral_agreements", "ghost-partner") not in kept
    # The customer arrives (in a file of its own): the waiting referral is retried from the quarantine.
    customer = {"customer_ref": "nosuch", "name": "No Such", "entity_ref": REFERENCE["entities"][0]["entity_ref"]}
    arrived = import_document(store, {"customers": [customer]})
    assert not arrived.errors and arrived.counts["retried"] == 1
    with store.read() as session:
        kept = {(e["record_type"], e["record_key"]) for e in quarantine.list_open(session)}
        [stored] = [a for a in load_agreements(session) if a.agreement_ref == "unknown-customer"]
    assert ("referral_agreements", "unknown-customer") not in kept
    assert [r.customer_ref for r in stored.referrals] == ["nosuch"]


def test_one_unknown_customer_waits_alone_and_its_referral_joins_when_it_arrives(store: Store) -> None:
    """An agreement referring globex (known) and newco (not yet): stored with globex's referral, which
    earns meanwhile; newco's waits in quarantine, named, and joins when a later file brings newco."""
    doc = {
        **REFERENCE,
        "partners": [partner("northwind")],
        "referral_agreements": [
            agreement(
                "two",
                referrals=[
                    {"customer_ref": "globex", "referred_on": "2026-01-01"},
                    {"customer_ref": "newco", "referred_on": "2026-02-01"},
                ],
            )
        ],
    }
    summary = import_document(store, doc)
    assert [(e.key, e.field) for e in summary.errors] == [("two", "referrals[1].customer_ref")]
    with store.read() as session:
        [stored] = load_agreements(session)
        kept = {(e["record_type"], e["record_key"]) for e in quarantine.list_open(session)}
    assert [r.customer_ref for r in stored.referrals] == ["globex"]
    assert ("referral_agreements", "two") in kept
    newco = {"customer_ref": "newco", "name": "NewCo", "entity_ref": REFERENCE["entities"][0]["entity_ref"]}
    assert not import_document(store, {"customers": [newco]}).errors
    with store.read() as session:
        [stored] = load_agreements(session)
        kept = {(e["record_type"], e["record_key"]) for e in quarantine.list_open(session)}
    assert [r.customer_ref for r in stored.referrals] == ["globex", "newco"]
    assert ("referral_agreements", "two") not in kept


def test_the_schema_describes_partners_and_agreements() -> None:
    schema = json_schema()
    assert {"partners", "referral_agreements"} <= set(schema["properties"])
    assert "Partner" in schema["$defs"] and "ReferralAgreement" in schema["$defs"]


def test_accruals_are_stored_once_and_statements_close_once(store: Store) -> None:
    import_document(store, {**REFERENCE, "partners": [partner("northwind")], "referral_agreements": [agreement("a1")]})
    accrual = Accrual(
        "a1",
        "northwind",
        "pay-1",
        "fee",
        "globex",
        date(2026, 2, 3),
        "2026-02",
        "USD",
        Decimal("100"),
        Decimal("20.00"),
    )
    with store.write() as session:
        assert save_accruals(session, [accrual, accrual]) == 1
    with store.write() as session:
        assert save_accruals(session, [accrual]) == 0
        assert closed_through(session, "northwind") is None
        first = close_statement(session, "northwind", "2026-02", Decimal("20.00"))
        assert first[1] is True
        assert close_statement(session, "northwind", "2026-02", Decimal("20.00")) == (first[0], False)
        assert closed_through(session, "northwind") == "2026-02"
    with store.read() as session:
        assert load_accruals(session, partner_ref="northwind") == [accrual]
    from billbridge.flows.partner_fees import close_period

    assert close_period(store, "2026-01").closed == []  # before the closed February: nothing left to close
    assert [c["period"] for c in close_period(store, "2026-03").closed] == ["2026-03"]


def test_a_resellers_end_customer_contracts_are_invoiced_to_the_reseller(store: Store) -> None:
    """A reseller with three end customers (one on usage), 25% off: every document is addressed to the
    reseller, at its price and on its terms, and the contract keeps its end customer."""
    from billbridge.flows.invoice_generation import run_billing
    from billbridge.store.invoices import list_invoices
    from tests.docs import contract

    usage_line = {"line_ref": "api", "product_ref": "api", "charge": "usage", "billing_timing": "in_arrears"}
    doc = {
        **REFERENCE,
        "partners": [partner("channel-one", kind="reseller", discount_percent="25", payment_terms_days=45)],
        "contracts": [
            contract("R-globex", reseller_ref="channel-one"),
            contract("R-initech", customer="initech", reseller_ref="channel-one"),
            contract("R-hooli-usage", customer="initech", reseller_ref="channel-one", lines=[usage_line]),
            contract("R-unknown", reseller_ref="nobody"),
            contract("R-other-currency", customer="gulf", entity="kw", currency="KWD", reseller_ref="channel-one"),
            contract("direct"),
        ],
    }
    summary = import_document(store, doc)
    assert {(e.key, e.field) for e in summary.errors} == {
        ("R-unknown", "reseller_ref"),
        ("R-other-currency", "currency"),
    }
    assert summary.counts["contracts.created"] == 4
    run_billing(store, date(2026, 2, 1))
    with store.read() as session:
        first = [d for d in list_invoices(session) if d["billing_date"] == date(2026, 1, 1)]
    # One document for the reseller's cycle (its first contract's ref on the header), one sold directly.
    assert [(d["customer_ref"], d["contract_ref"]) for d in first] == [
        ("channel-one", "R-globex"),
        ("globex", "direct"),
    ]
    resold, direct = first
    assert D(str(resold["invoice_total"])) == D("1800.00")  # 2 x 1,200 less 25%
    assert D(str(direct["invoice_total"])) == D("1200.00")
    assert resold["due_date"] == date(2026, 2, 15)  # billed 2026-01-01, net 45
    again = import_document(store, doc)  # the reseller's terms are the stored terms: nothing changed
    assert again.counts["contracts.unchanged"] == 4
