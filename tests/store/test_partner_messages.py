"""Migration 0024: a message belongs to a customer or to a partner (its fee statement), exactly one of
them; downgrading drops the partner statements (they have no customer) and keeps the others."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from billbridge.billing.partner_fees import PartnerBill, statement_details
from billbridge.flows.importing import import_document
from billbridge.store import messages, outbox
from billbridge.store.db import Store
from billbridge.store.message_models import CustomerMessage
from billbridge.store.models import Customer
from billbridge.store.partner_models import Partner
from tests.docs import REFERENCE
from tests.store.migrating import down_and_up

DAY = date(2026, 12, 1)


def _partner_and_customer(store: Store) -> tuple[int, int]:
    partner = {"partner_ref": "nw", "name": "NW", "kind": "referral", "entity_ref": "us", "currency": "USD"}
    document = {
        **{k: REFERENCE[k] for k in ("entities", "customers")},
        "partners": [{**partner, "email": "a@nw.example"}],
    }
    assert not import_document(store, document).errors
    with store.read() as session:
        partner_id = session.scalar(select(Partner.id))
        customer_id = session.scalar(select(Customer.id))
    assert partner_id is not None and customer_id is not None
    return partner_id, customer_id


def _row(key: str, **party: Any) -> dict[str, Any]:
    return {
        "event_key": key,
        "message_id": f"<{key}@x>",
        "kind": "invoice",
        "channel": "email",
        "state": "sent",
        "recipients": {"to": [], "cc": []},
        "language": "en",
        "as_of": DAY,
        "details": {},
        "attempts": 0,
        **party,
    }


def test_a_message_has_a_customer_or_a_partner_never_both_nor_neither(store: Store) -> None:
    partner_id, customer_id = _partner_and_customer(store)
    for party in ({}, {"customer_id": customer_id, "partner_id": partner_id}):
        with pytest.raises(IntegrityError), store.write() as session:
            session.execute(insert(CustomerMessage).values(**_row("bad", **party)))
    with store.write() as session:
        session.execute(insert(CustomerMessage).values(**_row("customer", customer_id=customer_id)))
        session.execute(insert(CustomerMessage).values(**_row("partner", partner_id=partner_id)))


def test_downgrading_0024_drops_the_partner_statements_and_keeps_the_customers_messages(store: Store) -> None:
    partner_id, customer_id = _partner_and_customer(store)
    bill = PartnerBill(1, "nw", "NW", None, "USD", "2026-11", "PF-2026-11-1", DAY, DAY, (), Decimal(0))
    with store.write() as session:
        session.execute(insert(CustomerMessage).values(**_row("customer", customer_id=customer_id)))
        details = statement_details(bill, [], 30, billed=False)
        assert messages.create_partner_statement(session, "nw", "2026-11", DAY, details) == "queued"
    down_and_up(store, "0023")
    with store.read() as session:
        assert [m["event_key"] for m in messages.listing(session)] == ["customer"]
        assert outbox.pending(session, topic=messages.TOPIC) == []  # the statement's row went with it
