"""Billing contacts from contract files: stored per customer, bad addresses left out naming the record
and field (the customer kept), a customer without a contact listed and its messages kept waiting visibly."""

from __future__ import annotations

from datetime import date

from billbridge.flows.importing import import_document
from billbridge.mapping.contract_file import json_schema
from billbridge.store import messages, quarantine
from billbridge.store.db import Store
from billbridge.store.models import Customer
from tests.docs import REFERENCE


def _doc(*customers: dict[str, object]) -> dict[str, object]:
    return {"entities": REFERENCE["entities"], "customers": list(customers)}


def _customer_id(store: Store, ref: str) -> int:
    with store.read() as session:
        found = session.query(Customer.id).filter(Customer.customer_ref == ref).scalar()
    assert found is not None
    return int(found)


GLOBEX = {
    "customer_ref": "globex",
    "name": "Globex",
    "entity_ref": "us",
    "contacts": [
        {"email": "ap@globex.example", "language": "de", "opt_out": ["reminder"]},
        {"email": "cfo@globex.example", "role": "cc"},
    ],
}


def test_contacts_are_stored_in_order_and_a_second_import_changes_nothing(store: Store) -> None:
    first = import_document(store, _doc(GLOBEX))
    assert not first.errors and first.counts["customers.created"] == 1
    again = import_document(store, _doc(GLOBEX))
    assert again.counts["customers.unchanged"] == 1
    cid = _customer_id(store, "globex")
    with store.read() as session:
        contacts = messages.contacts_of(session, [cid])[cid]
    assert [(c.email, c.role, c.language, c.opt_out) for c in contacts] == [
        ("ap@globex.example", "to", "de", ["reminder"]),
        ("cfo@globex.example", "cc", "en", []),
    ]
    changed = {**GLOBEX, "contacts": [{"email": "billing@globex.example"}]}
    assert import_document(store, _doc(changed)).counts["customers.updated"] == 1
    with store.read() as session:
        assert [c.email for c in messages.contacts_of(session, [cid])[cid]] == ["billing@globex.example"]


def test_a_malformed_address_drops_that_contact_naming_record_and_field_and_the_customer_stays(
    store: Store,
) -> None:
    bad = {**GLOBEX, "customer_ref": "bad", "contacts": [{"email": "ap at globex"}]}
    mixed = {**GLOBEX, "customer_ref": "mixed", "contacts": [{"email": "ar@@mixed"}, {"email": "ok@mixed.example"}]}
    summary = import_document(store, _doc(bad, mixed, {**GLOBEX, "customer_ref": "good"}))
    assert summary.counts["customers.created"] == 3  # billing does not stop for an e-mail address
    assert [(e.key, e.field) for e in summary.errors] == [("bad", "contacts[0].email"), ("mixed", "contacts[0].email")]
    assert "malformed e-mail address 'ap at globex'" in summary.errors[0].message
    assert "the contact is left out" in summary.errors[0].message
    ids = {ref: _customer_id(store, ref) for ref in ("bad", "mixed")}
    with store.write() as session:
        contacts = messages.contacts_of(session, ids.values())
        assert contacts[ids["bad"]] == [] and [c.email for c in contacts[ids["mixed"]]] == ["ok@mixed.example"]
        made = [messages.MessageDraft(f"test:{ref}", "invoice", cid, date(2026, 3, 1)) for ref, cid in ids.items()]
        assert messages.create(session, made) == {"invoice.queued": 1, "invoice.waiting_contact": 1}
        assert [w["customer_ref"] for w in messages.overview(session)["waiting_for_contact"]] == ["bad"]
        kept = {(e["record_key"], e["field"]) for e in quarantine.list_open(session)}
    assert kept == {("bad", "contacts[0].email"), ("mixed", "contacts[0].email")}  # visible until corrected


def test_the_customer_email_stands_in_and_a_customer_without_any_is_listed(store: Store) -> None:
    import_document(
        store,
        _doc(
            {"customer_ref": "plain", "name": "Plain", "entity_ref": "us", "email": "ar@plain.example"},
            {"customer_ref": "nobody", "name": "Nobody", "entity_ref": "us"},
            {"customer_ref": "typo", "name": "Typo", "entity_ref": "us", "email": "ar@@typo"},
        ),
    )
    ids = {ref: _customer_id(store, ref) for ref in ("plain", "nobody", "typo")}
    with store.write() as session:
        contacts = messages.contacts_of(session, ids.values())
        assert [c.email for c in contacts[ids["plain"]]] == ["ar@plain.example"]
        assert contacts[ids["nobody"]] == [] and contacts[ids["typo"]] == []
        counts = messages.create(
            session,
            [messages.MessageDraft(f"test:{ref}", "invoice", cid, date(2026, 3, 1)) for ref, cid in ids.items()],
        )
        assert counts == {"invoice.queued": 1, "invoice.waiting_contact": 2}
        overview = messages.overview(session)
    assert overview["customers_without_contact"] == ["nobody", "typo"]
    assert [w["customer_ref"] for w in overview["waiting_for_contact"]] == ["nobody", "typo"]
    # A contact arriving later releases the waiting message, once.
    import_document(
        store, _doc({"customer_ref": "nobody", "name": "Nobody", "entity_ref": "us", "email": "x@n.example"})
    )
    with store.write() as session:
        assert messages.release_waiting(session) == 1
        assert messages.release_waiting(session) == 0
        [row] = messages.listing(session, customer_ref="nobody")
    assert row["state"] == "queued" and row["recipients"] == {"to": ["x@n.example"], "cc": []}


def test_the_json_schema_describes_contacts_and_entity_messaging() -> None:
    schema = json_schema()
    contact = schema["$defs"]["BillingContact"]
    assert contact["properties"]["opt_out"]["items"]["enum"] == [
        "invoice",
        "reminder",
        "receipt",
        "dunning",
        "statement",
    ]
    assert "reminder_days" in schema["$defs"]["EntityMessaging"]["properties"]


def test_a_source_that_says_nothing_of_contacts_keeps_the_stored_ones(store: Store) -> None:
    import_document(store, _doc(GLOBEX))
    without = {k: v for k, v in GLOBEX.items() if k != "contacts"}  # as a CRM sync upserts it
    assert import_document(store, _doc(without)).counts["customers.unchanged"] == 1
    cid = _customer_id(store, "globex")
    with store.read() as session:
        assert len(messages.contacts_of(session, [cid])[cid]) == 2
    cleared = import_document(store, _doc({**without, "contacts": []}))  # an explicit empty list clears them
    assert cleared.counts["customers.updated"] == 1
    with store.read() as session:
        assert messages.contacts_of(session, [cid])[cid] == []
