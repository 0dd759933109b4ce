"""Repository functions on both backends: exact money, lifecycle, payments, references, cursors, outbox."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, inspect, select
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from billbridge.billing.documents import push_targets
from billbridge.billing.lifecycle import InvalidTransition, is_late
from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.store import cursors, external_refs, outbox
from billbridge.store.db import Store
from billbridge.store.invoices import get_invoice
from billbridge.store.models import Base, Customer, ExternalRef, Invoice, Payment, PaymentAllocation
from billbridge.store.outbound_documents import set_status
from billbridge.store.payments import PaymentIn, record_payment, record_payments
from tests.billing.test_engine_properties import contracts
from tests.docs import contract, document

NO_PUSH = push_targets({})


def test_migrations_create_every_table(store: Store) -> None:
    tables = set(inspect(store.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_migrations_match_the_models(store: Store) -> None:
    """A model change without its Alembic migration fails here, on each backend."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_money_survives_the_round_trip_exactly(store: Store) -> None:
    amounts = [Decimal("0.1"), Decimal("0.001"), Decimal("123456789012345.678"), Decimal("-0.30")]
    with store.write() as session:
        for i, amount in enumerate(amounts):
            session.add(
                Payment(
                    payment_ref=f"p{i}",
                    currency="KWD",
                    amount=amount,
                    unapplied_amount=amount,
                    received_on=date(2026, 1, 1),
                )
            )
    with store.read() as session:
        stored = list(session.scalars(select(Payment.amount).order_by(Payment.id)))
    assert stored == amounts and all(isinstance(a, Decimal) for a in stored)
    with pytest.raises(StatementError, match="money columns take Decimal, not float"), store.write() as session:
        session.add(
            Payment(
                payment_ref="float",
                currency="USD",
                amount=0.1,
                unapplied_amount=Decimal(0),
                received_on=date(2026, 1, 1),
            )
        )
        session.flush()


def _one_invoice(store: Store) -> str:
    import_document(store, document(contract("C-1", payment_terms_days=14)))
    run_billing(store, date(2026, 1, 1))
    return "US-INV-1"


def pay(session: Session, ref: str, currency: str, amount: str, day: date, allocation: tuple[str, str]) -> bool:
    number, share = allocation
    return record_payment(
        session,
        payment_ref=ref,
        currency=currency,
        amount=Decimal(amount),
        received_on=day,
        allocations=[(number, Decimal(share))],
    )


def test_lifecycle_and_payments(store: Store) -> None:
    number = _one_invoice(store)
    with store.write() as session, pytest.raises(InvalidTransition, match="send it first"):
        pay(session, "early", "USD", "1.00", date(2026, 1, 2), (number, "1.00"))
    for status in ("under_review", "approved", "sent"):
        with store.write() as session:
            set_status(session, number, status, NO_PUSH)
    with store.write() as session, pytest.raises(InvalidTransition, match="cannot go from sent to draft"):
        set_status(session, number, "draft", NO_PUSH)

    with store.write() as session:
        assert pay(session, "pi_1", "USD", "500.00", date(2026, 1, 10), (number, "500.00"))
    with store.write() as session:  # the same payment delivered again counts once
        assert not pay(session, "pi_1", "USD", "500.00", date(2026, 1, 10), (number, "500.00"))
    with store.read() as session:
        doc = get_invoice(session, number)
    assert doc is not None and (doc["status"], doc["amount_paid"]) == ("partially_paid", Decimal("500.00"))
    assert is_late(doc["status"], doc["due_date"], doc["invoice_total"], doc["amount_paid"], date(2026, 1, 16))
    assert not is_late(doc["status"], doc["due_date"], doc["invoice_total"], doc["amount_paid"], date(2026, 1, 15))

    with store.write() as session, pytest.raises(InvalidTransition, match="credit note"):
        set_status(session, number, "void", NO_PUSH)
    with store.write() as session, pytest.raises(ValueError, match="cannot settle"):
        pay(session, "eur", "EUR", "700.00", date(2026, 1, 11), (number, "700.00"))
    with store.write() as session:  # overpayment: the rest stays unapplied on the payment
        pay(session, "pi_2", "USD", "800.00", date(2026, 1, 12), (number, "700.00"))
    with store.read() as session:
        doc = get_invoice(session, number)
        unapplied = session.scalar(select(Payment.unapplied_amount).where(Payment.payment_ref == "pi_2"))
    assert doc is not None and (doc["status"], doc["amount_paid"], unapplied) == (
        "paid",
        Decimal("1200.00"),
        Decimal("100.00"),
    )
    assert not is_late(doc["status"], doc["due_date"], doc["invoice_total"], doc["amount_paid"], date(2026, 3, 1))


def test_external_refs_are_unique_per_system_type_and_record(store: Store) -> None:
    with store.write() as session:
        external_refs.link(session, "quickbooks", "invoice", 1, "QB-77")
        external_refs.link(session, "quickbooks", "invoice", 1, "QB-77", version="2")  # same link again: fine
        external_refs.link(session, "stripe", "invoice", 1, "in_123")
    with store.read() as session:
        assert external_refs.get_external_id(session, "quickbooks", "invoice", 1) == "QB-77"
        assert external_refs.get_internal_id(session, "stripe", "invoice", "in_123") == 1
    with store.write() as session, pytest.raises(ValueError, match="already linked"):
        external_refs.link(session, "quickbooks", "invoice", 1, "QB-78")
    with pytest.raises(IntegrityError), store.write() as session:  # another record may not claim QB-77
        external_refs.link(session, "quickbooks", "invoice", 2, "QB-77")
        session.flush()


def test_cursors_and_outbox(store: Store) -> None:
    with store.write() as session:
        cursors.set_cursor(session, "hubspot", "deals", "2026-01-01T00:00:00Z")
        cursors.set_cursor(session, "hubspot", "deals", "2026-01-02T00:00:00Z")
        assert outbox.enqueue(
            session,
            topic="invoice.push",
            aggregate_type="invoice",
            aggregate_id=1,
            dedupe_key="invoice:1:v1",
            payload={"n": 1},
        )
        assert not outbox.enqueue(
            session,
            topic="invoice.push",
            aggregate_type="invoice",
            aggregate_id=1,
            dedupe_key="invoice:1:v1",
            payload={"n": 1},
        )
        outbox.enqueue(
            session,
            topic="invoice.push",
            aggregate_type="invoice",
            aggregate_id=2,
            dedupe_key="invoice:2:v1",
            payload={"n": 2},
        )
    with store.read() as session:
        assert cursors.get_cursor(session, "hubspot", "deals") == "2026-01-02T00:00:00Z"
    with store.write() as session:
        first, second = outbox.claim(session, topic="invoice.push", limit=10)
        outbox.mark_delivered(session, first.id)
        outbox.mark_failed(session, second.id, "HTTP 503 from QuickBooks", retry_in=timedelta(minutes=5))
    with store.write() as session:
        assert outbox.claim(session, topic="invoice.push", limit=10) == []  # delivered, and the other waits
        [waiting] = outbox.pending(session)
        assert (waiting["aggregate_id"], waiting["attempts"], waiting["last_error"]) == (
            2,
            1,
            "HTTP 503 from QuickBooks",
        )
        later = outbox.claim(session, topic="invoice.push", limit=10, now=waiting_time())
        assert [m.aggregate_id for m in later] == [2]


def waiting_time():
    from billbridge.store.models import utcnow

    return utcnow() + timedelta(minutes=6)


def test_contracts_stored_before_billed_by_existed_keep_their_hash() -> None:
    """A field with a default must not make every stored contract look changed (a re-import would
    add a version to each); the literal is the hash the code computed before ``billed_by``."""
    from billbridge.billing.model import Contract
    from billbridge.store.contracts import legacy_content_hash as content_hash

    terms = {
        "contract_ref": "C-1",
        "customer_ref": "cust",
        "entity_ref": "us-inc",
        "currency": "USD",
        "contract_start_date": "2026-01-01",
        "lines": [
            {
                "line_ref": "seats",
                "product_ref": "seats",
                "quantity": "2",
                "pricing": {"model": "per_unit", "unit_price": "49.00"},
            }
        ],
    }
    before = "3d52800a14141d16aea60e91d479c75917915650092b5f2f02c15858ca0bcdd3"
    assert content_hash(Contract.model_validate(terms)) == before
    assert content_hash(Contract.model_validate({**terms, "billed_by": "stripe"})) != before


def test_versions_stored_with_the_legacy_hash_are_still_recognised(store: Store) -> None:
    """Versions stored before the hash took pydantic's JSON keep their sorted-keys hash: importing
    the same terms again changes nothing, changed terms still make a new version."""
    from sqlalchemy import update

    from billbridge.billing.model import Contract
    from billbridge.store.contracts import HASH_V2, legacy_content_hash
    from billbridge.store.models import ContractVersion

    first = contract("K-legacy")
    assert import_document(store, document(first)).counts["contracts.created"] == 1
    with store.write() as session:
        [(terms, digest)] = session.execute(select(ContractVersion.terms, ContractVersion.content_hash)).all()
        assert digest.startswith(HASH_V2) and len(digest) == 64
        old = legacy_content_hash(Contract.model_validate_json(terms))
        session.execute(update(ContractVersion).values(content_hash=old))
    again = import_document(store, document(first))
    assert (again.counts["contracts.unchanged"], again.counts["contracts.updated"]) == (1, 0)
    changed = contract("K-legacy", payment_terms_days=45, effective_date="2026-03-01")
    assert import_document(store, document(changed)).counts["contracts.updated"] == 1
    with store.read() as session:
        digests = list(session.scalars(select(ContractVersion.content_hash).order_by(ContractVersion.version_no)))
    assert digests[0] == old and digests[1].startswith(HASH_V2)


def test_external_refs_linked_a_batch_at_once_keep_the_same_rules(store: Store) -> None:
    with store.write() as session:
        external_refs.link(session, "quickbooks", "invoice", 1, "QB-1")
        external_refs.link_many(
            session,
            [
                ("quickbooks", "invoice", 1, "QB-1", "3"),  # linked before: same id, new version
                ("quickbooks", "invoice", 2, "QB-2", None),
                ("quickbooks", "credit_note", 2, "QB-9", None),  # another type, same internal id
                ("stripe", "invoice", 2, "in_2", None),
                ("stripe", "invoice", 2, "in_2", None),  # twice in one batch: once
            ],
        )
    with store.read() as session:
        assert external_refs.get_external_id(session, "quickbooks", "invoice", 2) == "QB-2"
        assert external_refs.get_external_id(session, "quickbooks", "credit_note", 2) == "QB-9"
        assert external_refs.get_internal_id(session, "stripe", "invoice", "in_2") == 2
        assert session.scalar(select(func.count()).select_from(ExternalRef)) == 4
        version = session.scalar(select(ExternalRef.version).where(ExternalRef.external_id == "QB-1"))
        assert version == "3"
    with store.write() as session, pytest.raises(ValueError, match="already linked to quickbooks id QB-1, not QB-5"):
        external_refs.link_many(
            session, [("quickbooks", "invoice", 3, "QB-3", None), ("quickbooks", "invoice", 1, "QB-5", None)]
        )
    with store.write() as session, pytest.raises(ValueError, match="cannot be linked to stripe ids in_7 and in_8"):
        external_refs.link_many(
            session, [("stripe", "invoice", 7, "in_7", None), ("stripe", "invoice", 7, "in_8", None)]
        )
    with pytest.raises(IntegrityError), store.write() as session:  # another record may not claim QB-2
        external_refs.link_many(session, [("quickbooks", "invoice", 4, "QB-2", None)])
    with store.read() as session:
        assert (
            external_refs.get_external_id(session, "quickbooks", "invoice", 3) is None
        )  # the failed batch left nothing


def test_outbox_messages_enqueued_and_delivered_a_batch_at_once(store: Store) -> None:
    def message(n: int) -> dict[str, object]:
        return {
            "topic": "collect.stripe",
            "aggregate_type": "invoice",
            "aggregate_id": n,
            "dedupe_key": f"collect.stripe:{n}",
            "payload": {"n": n},
        }

    with store.write() as session:
        outbox.enqueue(session, **message(1))  # type: ignore[arg-type]
        assert outbox.enqueue_many(session, [message(1), message(2), message(3), message(3)]) == 2
    with store.write() as session:
        claimed = outbox.claim(session, topic="collect.stripe", limit=10)
        assert [m.aggregate_id for m in claimed] == [1, 2, 3]
        outbox.mark_delivered_many(session, [claimed[0].id, claimed[2].id])
    with store.read() as session:
        assert [p["aggregate_id"] for p in outbox.pending(session)] == [2]


def test_a_batch_of_payments_links_customers_and_allocations(store: Store) -> None:
    """Payment customer ids and allocation payment ids are looked up by the database inside the
    inserts: known customer, unknown one and none; two payments of one invoice in one batch."""
    import_document(store, document(contract("C-1"), contract("C-2", customer="initech")))
    run_billing(store, date(2026, 1, 1))
    with store.write() as session:
        for number in ("US-INV-1", "US-INV-2"):
            for status in ("approved", "sent"):
                set_status(session, number, status, NO_PUSH)
    day = date(2026, 1, 5)
    batch = [
        PaymentIn("a", "USD", Decimal("700.00"), day, (("US-INV-1", Decimal("700.00")),), "globex"),
        PaymentIn("b", "USD", Decimal("600.00"), day, (("US-INV-1", Decimal("500.00")),), "nobody-we-know"),
        PaymentIn("c", "USD", Decimal("1200.00"), day, (("US-INV-2", Decimal("1200.00")),)),
        PaymentIn("d", "USD", Decimal("5.00"), day, (), "initech", "check", "no. 12"),
        PaymentIn("a", "USD", Decimal("700.00"), day, (("US-INV-1", Decimal("700.00")),), "globex"),
    ]
    with store.write() as session:
        assert record_payments(session, batch) == [True, True, True, True, False]
    with store.write() as session:  # a batch the caller checked: recorded as given
        assert record_payments(session, [PaymentIn("e", "USD", Decimal("1.00"), day)], refs_checked=True) == [True]
    with store.read() as session:
        payments = session.execute(
            select(Payment.payment_ref, Customer.customer_ref, Payment.unapplied_amount, Payment.method)
            .outerjoin(Customer, Customer.id == Payment.customer_id)
            .order_by(Payment.payment_ref)
        ).all()
        allocations = session.execute(
            select(Payment.payment_ref, Invoice.number, PaymentAllocation.amount)
            .join(Payment, Payment.id == PaymentAllocation.payment_id)
            .join(Invoice, Invoice.id == PaymentAllocation.invoice_id)
            .order_by(Payment.payment_ref)
        ).all()
        invoices = {n: get_invoice(session, n) for n in ("US-INV-1", "US-INV-2")}
    assert [tuple(p) for p in payments] == [
        ("a", "globex", Decimal("0.00"), None),
        ("b", None, Decimal("100.00"), None),
        ("c", None, Decimal("0.00"), None),
        ("d", "initech", Decimal("5.00"), "check"),
        ("e", None, Decimal("1.00"), None),
    ]
    assert [tuple(a) for a in allocations] == [
        ("a", "US-INV-1", Decimal("700.00")),
        ("b", "US-INV-1", Decimal("500.00")),
        ("c", "US-INV-2", Decimal("1200.00")),
    ]
    assert {n: (d["status"], d["amount_paid"]) for n, d in invoices.items() if d} == {
        "US-INV-1": ("paid", Decimal("1200.00")),
        "US-INV-2": ("paid", Decimal("1200.00")),
    }


@settings(max_examples=80, deadline=None)
@given(
    data=st.data(),
    billed_by=st.sampled_from(["billbridge", "stripe"]),
    description=st.none()
    | st.text(max_size=30)
    | st.just(',"billed_by":"billbridge"')
    | st.just(',"recognition":null,"ssp":null}'),
)
def test_the_content_hash_is_the_hash_of_the_terms_dumped_without_their_default_biller(
    data: st.DataObject, billed_by: str, description: str | None
) -> None:
    """content_hash takes the stored terms text and drops the default biller, and lines' unset
    recognition and SSP, by text: the same as dumping the contract without them, whatever the contract
    (a description holding the very text included)."""
    import hashlib

    from billbridge.store.contracts import HASH_V2, content_hash, terms_json

    drawn = data.draw(contracts("USD"))
    lines = [line.model_copy(update={"description": description}) for line in drawn.lines]
    contract = drawn.model_copy(update={"billed_by": billed_by, "lines": lines})
    exclude: dict[str, Any] = {"effective_date": True, "lines": {"__all__": {"recognition": True, "ssp": True}}}
    if billed_by == "billbridge":
        exclude["billed_by"] = True
    if contract.reseller_ref is None:  # a contract sold directly hashes as before resellers existed
        exclude["reseller_ref"] = True
    if contract.distributor_ref is None:  # likewise one without a distributor
        exclude["distributor_ref"] = True
    expected = hashlib.sha256(contract.model_dump_json(exclude=exclude).encode()).hexdigest()
    assert content_hash(contract) == content_hash(contract, terms_json(contract)) == HASH_V2 + expected[:62]
