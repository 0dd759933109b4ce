"""Partners against the rest of the store (issue 17 review): a reseller is invoiced as a customer under
its partner ref, so that customer record is its own: a reseller never takes over a customer of the same
ref, a plain customers record never renames or moves a reseller's bill-to record, and a reseller's kind
and distributor are checked against what is sold through it. Refused records are named with their field
and the other records of the file go on."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from billbridge.flows.importing import import_document
from billbridge.store import quarantine
from billbridge.store.db import Store
from billbridge.store.models import Contract, Customer, LegalEntity
from billbridge.store.partners import load_partners
from tests.docs import REFERENCE, contract

ENTITIES = [
    *REFERENCE["entities"],
    {"entity_ref": "eu", "name": "Acme B.V.", "currency": "EUR", "invoice_prefix": "EU-INV-"},
]
WORLD = {**REFERENCE, "entities": ENTITIES}


def partner(ref: str, kind: str = "reseller", entity: str = "us", **terms: Any) -> dict[str, Any]:
    currency = "EUR" if entity == "eu" else "USD"
    base = {"partner_ref": ref, "name": f"{ref} (partner)", "kind": kind, "entity_ref": entity, "currency": currency}
    return {**base, **terms}


def customer_row(store: Store, ref: str) -> tuple[str, str]:
    """(name, entity ref) of the stored customer."""
    with store.read() as session:
        row = session.execute(
            select(Customer.name, LegalEntity.entity_ref)
            .join(LegalEntity, LegalEntity.id == Customer.entity_id)
            .where(Customer.customer_ref == ref)
        ).one()
    return (row.name, row.entity_ref)


def errors(summary: Any) -> list[tuple[str, str]]:
    return [(e.record, e.field) for e in summary.errors]


def test_a_reseller_never_takes_over_a_customer_of_the_same_ref(store: Store) -> None:
    """Globex is a customer in us with a USD contract; a reseller named globex in eu is refused (it
    would rename Globex and move it to eu, its contract left in us); another reseller goes in, and so
    does Initech as a reseller under its own name and entity (the same party, buying and reselling)."""
    assert not import_document(store, {**WORLD, "contracts": [contract("G-1")]}).errors
    same_party = {**partner("initech"), "name": "Initech"}  # the same name and entity: a customer that resells
    batch = [partner("globex", entity="eu"), partner("channel-one"), same_party]
    summary = import_document(store, {"partners": batch})
    assert errors(summary) == [("partners[0] (globex)", "partner_ref")]
    assert "customer 'Globex'" in summary.errors[0].message
    assert customer_row(store, "globex") == ("Globex", "us")
    assert customer_row(store, "channel-one") == ("channel-one (partner)", "us")
    with store.read() as session:
        assert set(load_partners(session)) == {"channel-one", "initech"}
        kept = {(e["record_type"], e["record_key"], e["field"]) for e in quarantine.list_open(session)}
    assert ("partners", "globex", "partner_ref") in kept
    # A referral partner of that ref is no bill-to party: it shares nothing and goes in, but it may
    # not become a reseller later and take the customer over either.
    assert not import_document(store, {"partners": [partner("globex", kind="referral")]}).errors
    later = import_document(store, {"partners": [partner("globex", kind="both")]})
    assert errors(later) == [("partners[0] (globex)", "partner_ref")]
    assert customer_row(store, "globex") == ("Globex", "us")


def test_a_customers_record_never_renames_or_moves_a_resellers_bill_to_record(store: Store) -> None:
    """Reseller resel in us: a customers record resel (renamed, in eu) is refused; one repeating the
    bill-to record as it is, and the file's other customers, go in; the reseller's own update does too."""
    assert not import_document(store, {**WORLD, "partners": [partner("resel")]}).errors
    moved = {"customer_ref": "resel", "name": "Someone Else", "entity_ref": "eu"}
    other = {"customer_ref": "hooli", "name": "Hooli", "entity_ref": "us"}
    summary = import_document(store, {"customers": [other, moved]})
    assert errors(summary) == [("customers[1] (resel)", "customer_ref")]
    assert "reseller resel" in summary.errors[0].message
    assert customer_row(store, "resel") == ("resel (partner)", "us")
    assert customer_row(store, "hooli") == ("Hooli", "us")
    # One at a time (the record-by-record path) is refused alike.
    alone = import_document(store, {"customers": [{**moved, "entity_ref": "us"}]})
    assert errors(alone) == [("customers[0] (resel)", "customer_ref")]
    same = {"customer_ref": "resel", "name": "resel (partner)", "entity_ref": "us"}
    assert not import_document(store, {"customers": [same]}).errors
    renamed = {**partner("resel"), "name": "Resel Ltd"}
    assert not import_document(store, {"partners": [renamed]}).errors
    assert customer_row(store, "resel") == ("Resel Ltd", "us")


def test_a_reseller_invoiced_in_its_entity_cannot_move(store: Store) -> None:
    """A reseller with a contract sold through it in us may not move to eu (its bill-to record would
    leave the contract's entity); one with nothing sold yet may."""
    doc = {
        **WORLD,
        "partners": [partner("resel"), partner("fresh")],
        "contracts": [contract("R-1", reseller_ref="resel")],
    }
    assert not import_document(store, doc).errors
    summary = import_document(store, {"partners": [partner("resel", entity="eu"), partner("fresh", entity="eu")]})
    assert errors(summary) == [("partners[0] (resel)", "entity_ref")]
    assert customer_row(store, "resel") == ("resel (partner)", "us")
    assert customer_row(store, "fresh") == ("fresh (partner)", "eu")
    with store.read() as session:
        assert session.scalar(select(func.count(Contract.id))) == 1


def test_a_resellers_kind_stays_while_contracts_are_sold_through_it(store: Store) -> None:
    """resel bills R-1 (active): re-imported as a referral partner it is refused (kind) and stays a
    reseller; distri, R-2's distributor through reseller-a, alike; fresh, with nothing sold, may change."""
    doc = {
        **WORLD,
        "partners": [
            partner("resel"),
            partner("fresh"),
            partner("distri"),
            partner("reseller-a", distributor_ref="distri"),
        ],
        "contracts": [contract("R-1", reseller_ref="resel"), contract("R-2", reseller_ref="reseller-a")],
    }
    assert not import_document(store, doc).errors
    summary = import_document(
        store,
        {
            "partners": [
                partner("resel", kind="referral"),
                partner("fresh", kind="referral"),
                partner("distri", kind="referral"),
            ]
        },
    )
    assert errors(summary) == [("partners[0] (resel)", "kind"), ("partners[2] (distri)", "kind")]
    assert "R-1" in summary.errors[0].message and "R-2" in summary.errors[1].message
    with store.read() as session:
        kinds = {ref: p.kind for ref, p in load_partners(session).items()}
    assert kinds == {"resel": "reseller", "fresh": "referral", "distri": "reseller", "reseller-a": "reseller"}
    assert not import_document(store, {"partners": [partner("resel", kind="both")]}).errors  # it still sells


def test_a_distributor_that_names_nobody_waits_for_it(store: Store) -> None:
    """orphan sells through nobody, who is not known: orphan is quarantined (distributor_ref, waiting
    for the partner), fine goes on; when nobody arrives, orphan is retried and stored. A reseller listed
    before its distributor in one file goes in."""
    doc = {**WORLD, "partners": [partner("orphan", distributor_ref="nobody"), partner("fine")]}
    summary = import_document(store, doc)
    assert errors(summary) == [("partners[0] (orphan)", "distributor_ref")]
    assert "nobody" in summary.errors[0].message
    with store.read() as session:
        [held] = quarantine.list_open(session)
        assert set(load_partners(session)) == {"fine"}
    assert (held["record_key"], held["field"], held["waiting_for"]) == ("orphan", "distributor_ref", "partners:nobody")
    arrived = import_document(store, {"partners": [partner("nobody")]})
    assert not arrived.errors and arrived.counts["retried"] == 1
    with store.read() as session:
        assert set(load_partners(session)) == {"fine", "nobody", "orphan"}
        assert quarantine.list_open(session) == []
    referral = import_document(
        store, {"partners": [partner("ref-only", kind="referral"), partner("via", distributor_ref="ref-only")]}
    )
    assert errors(referral) == [("partners[1] (via)", "distributor_ref")]
    in_one_file = import_document(
        store, {"partners": [partner("reseller-b", distributor_ref="distri-b"), partner("distri-b")]}
    )
    assert not in_one_file.errors
