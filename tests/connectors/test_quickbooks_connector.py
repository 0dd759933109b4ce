"""The QuickBooks connector (python-quickbooks + intuit-oauth) with its mapping, against the sandbox over TLS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from billbridge.billing.documents import DocumentLine, IncomingPayment, OutboundDocument
from billbridge.connectors.errors import RetryPolicy, VendorError
from billbridge.connectors.pacing import Pacer, Pacers
from billbridge.connectors.quickbooks import (
    FileTokenStore,
    InMemoryTokenStore,
    OAuthTokens,
    QuickBooksConfig,
    TokenStore,
    verify_webhook,
)
from billbridge.connectors.quickbooks.connection import PACE_MARGIN_SECONDS
from billbridge.connectors.quickbooks.writers import Write
from billbridge.flows.credentials import StoredTokens
from billbridge.mapping.journal import AccountMapping, PeriodRevenue, journal_entry_payload
from billbridge.mapping.quickbooks import customer_spec
from billbridge.sandbox.quickbooks import RunningQuickBooks, start_quickbooks
from billbridge.secrets import Sealer
from billbridge.store import oauth_tokens
from billbridge.store.db import Store
from billbridge.vendors.quickbooks import AmendmentToRecord, PaymentToRecord, QuickBooks

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)
BATCH = r"/batch$"


@pytest.fixture
def qb() -> Iterator[RunningQuickBooks]:
    running = start_quickbooks(limits=None)  # the connectors below are unpaced; the limits' own tests are apart
    yield running
    running.stop()


def config(qb: RunningQuickBooks) -> QuickBooksConfig:
    return QuickBooksConfig(
        qb.client_id,
        qb.client_secret,
        qb.realm_id,
        api_url_v3=qb.api_url_v3,
        discovery_url=qb.discovery_url,
        ca_bundle=str(qb.ca_bundle),
    )


Connect = Callable[..., QuickBooks]


@pytest.fixture
def connect(qb: RunningQuickBooks) -> Iterator[Connect]:
    """Connectors to the sandbox with fast retries and no pacing; closed before the server stops."""
    opened: list[QuickBooks] = []

    def make(store: TokenStore | None = None, worker: str | None = None) -> QuickBooks:
        conn = QuickBooks(
            config(qb),
            store or InMemoryTokenStore(OAuthTokens(qb.refresh_token)),
            worker=worker,
            policy=FAST,
            pacer=Pacer(10_000, 1),
            batch_pacer=Pacer(10_000, 1),
        )
        opened.append(conn)
        return conn

    yield make
    for conn in opened:
        conn.close()  # idle keep-alive connections would hold the server's shutdown


def invoices(n: int, *, currency: str = "USD", start: int = 1) -> list[OutboundDocument]:
    docs = []
    for i in range(start, start + n):
        lines = (
            DocumentLine("seats", "SEATS", "Seats", Decimal(3), Decimal("89.97"), date(2026, 1, 1), date(2026, 1, 31)),
            DocumentLine(
                "calls",
                "API-CALLS",
                "API calls",
                Decimal(7),
                Decimal(i) + Decimal("0.05"),
                date(2026, 1, 1),
                date(2026, 1, 31),
            ),
        )
        docs.append(
            OutboundDocument(
                number=f"US-INV-{i:06d}",
                doc_type="invoice",
                version=1,
                entity_ref="us-inc",
                customer_ref=f"cust-{i % 4}",
                customer_name=f"Customer {i % 4}",
                customer_email=None,
                contract_ref=f"ct-{i}",
                currency=currency,
                billing_date=date(2026, 1, 1),
                due_date=date(2026, 1, 31),
                total=sum((ln.amount for ln in lines), Decimal(0)),
                auto_charge=False,
                lines=lines,
            )
        )
    return docs


def doc_numbers(qb: RunningQuickBooks, entity: str = "Invoice") -> Counter[str]:
    return Counter(r["DocNumber"] for r in qb.company.all(entity))


def prepared(
    qb: RunningQuickBooks, conn: QuickBooks, docs: list[OutboundDocument]
) -> tuple[dict[str, str], dict[str, str]]:
    customers = conn.ensure_customers(list({d.customer_ref: customer_spec(d) for d in docs}.values()))
    items = conn.ensure_items({ln.product_ref: ln.description for d in docs for ln in d.lines})
    qb.faults.reset_calls()
    return customers, items


def test_65_invoices_take_3_batches_and_a_second_push_creates_nothing(qb: RunningQuickBooks, connect: Connect) -> None:
    conn, docs = connect(), invoices(65)
    customers, items = prepared(qb, conn, docs)
    results = conn.push_documents(docs, customer_ids=customers, item_ids=items, look_up_first=False)
    assert [r.status for r in results] == ["created"] * 65
    assert qb.faults.total_calls(BATCH) == 3
    assert doc_numbers(qb) == Counter(d.number for d in docs)
    stored = {r["DocNumber"]: r for r in qb.company.all("Invoice")}
    assert stored["US-INV-000042"]["TotalAmt"] == Decimal("89.97") + Decimal("42.05")
    assert {r.external_id for r in results} == {r["Id"] for r in stored.values()}

    again = conn.push_documents(docs, customer_ids=customers, item_ids=items)
    assert [r.status for r in again] == ["existing"] * 65
    assert [r.external_id for r in again] == [r.external_id for r in results]
    assert qb.faults.total_calls(BATCH) == 3
    assert len(qb.company.all("Invoice")) == 65


def test_customers_and_items_are_looked_up_before_created(qb: RunningQuickBooks, connect: Connect) -> None:
    conn, docs = connect(), invoices(8)
    specs = list({d.customer_ref: customer_spec(d) for d in docs}.values())
    first = conn.ensure_customers(specs)
    assert conn.ensure_customers(specs) == first
    assert len(qb.company.all("Customer")) == 4
    skus = {"SEATS": "Seats", "API-CALLS": "API calls"}
    assert conn.ensure_items(skus) == conn.ensure_items(skus)
    assert sorted(i["Name"] for i in qb.company.all("Item")) == ["API-CALLS", "SEATS"]


@pytest.mark.slow
def test_a_name_another_run_took_since_the_look_up_is_looked_up_again_and_used(
    qb: RunningQuickBooks, connect: Connect
) -> None:
    """Two connectors look the same new customers and item up (QuickBooks holds both answers until
    both asked), find none, and both create: the second gets 6240 Duplicate Name Exists for each,
    looks them up again and uses the first one's. No document fails, nothing is made twice. (The two
    sets of customers differ: the same set would be one batch request, replayed by its requestid.)"""
    docs = invoices(8)  # customers cust-{1, 2, 3, 0, 1, ...}
    qb.faults.add(kind="hold_response", path="/query", times=2, delay=2)
    first, second = connect(), connect()
    results: dict[str, list[str]] = {}

    def push(name: str, conn: QuickBooks, batch: list[OutboundDocument]) -> None:
        results[name] = [r.status for r in conn.push_documents(batch, look_up_first=False)]

    threads = [
        threading.Thread(target=push, args=("first", first, docs[:3])),  # cust-1, cust-2, cust-3
        threading.Thread(target=push, args=("second", second, docs[3:6])),  # cust-0, cust-1, cust-2
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == {"first": ["created"] * 3, "second": ["created"] * 3}
    assert len(qb.company.all("Customer")) == 4 and len(qb.company.all("Item")) == 2
    shared = {"cust-1", "cust-2"}
    assert {k: first.customer_ids[k] for k in shared} == {k: second.customer_ids[k] for k in shared}
    assert doc_numbers(qb) == Counter(d.number for d in docs[:6])


def test_an_inactive_customer_of_the_name_is_made_active_again_and_used(
    qb: RunningQuickBooks, connect: Connect
) -> None:
    """Issue 19 item 1: queries return active customers only, while DisplayName is unique among inactive
    ones too: the look-up asks for both, and the inactive customer is reactivated, not created again."""
    docs = invoices(2)
    sleeping = qb.company.create("Customer", {"DisplayName": docs[0].customer_name, "Active": False})
    results = connect().push_documents(docs)
    assert [r.status for r in results] == ["created", "created"]
    assert qb.company.get("Customer", sleeping["Id"])["Active"] is True
    mine = next(i for i in qb.company.all("Invoice") if i["DocNumber"] == docs[0].number)
    assert mine["CustomerRef"]["value"] == sleeping["Id"]
    assert sorted(c["DisplayName"] for c in qb.company.all("Customer")) == ["Customer 1", "Customer 2"]


@pytest.mark.parametrize("holder", ["Vendor", "Employee"])
def test_a_name_a_vendor_or_employee_holds_gets_our_reference_as_a_suffix_every_run(
    qb: RunningQuickBooks, connect: Connect, holder: str
) -> None:
    """Issue 19 item 1: a vendor or an employee holding the customer's name is a 6240 that no customer
    look-up can resolve; the customer is made as "<name> (<our customer ref>)", and a later run (a new
    connector, nothing cached) finds it by that name instead of failing or making another."""
    docs = invoices(6)
    qb.company.create(holder, {"DisplayName": docs[0].customer_name})
    first = connect().push_documents(docs[:3])
    assert [r.status for r in first] == ["created"] * 3
    customers = {c["DisplayName"]: c["Id"] for c in qb.company.all("Customer")}
    assert f"{docs[0].customer_name} ({docs[0].customer_ref})" in customers
    again = connect().push_documents(docs[3:])
    assert [r.status for r in again] == ["created"] * 3
    now = {c["DisplayName"]: c["Id"] for c in qb.company.all("Customer")}
    assert now.keys() == customers.keys() | {docs[3].customer_name} and now.items() >= customers.items()
    assert docs[0].customer_name not in now  # the vendor's or employee's name was never taken again
    used = {i["DocNumber"]: i["CustomerRef"]["value"] for i in qb.company.all("Invoice")}
    suffixed = customers[f"{docs[0].customer_name} ({docs[0].customer_ref})"]
    assert [used[d.number] for d in docs if d.customer_ref == docs[0].customer_ref] == [suffixed, suffixed]


def test_a_connector_looks_up_each_customer_and_item_once(qb: RunningQuickBooks, connect: Connect) -> None:
    """A push run's later batches reuse the customers and items its first batches found or made."""
    conn, docs = connect(), invoices(60)  # 4 customers, 2 items
    assert [r.status for r in conn.push_documents(docs[:30], look_up_first=False)] == ["created"] * 30
    qb.faults.reset_calls()
    assert [r.status for r in conn.push_documents(docs[30:], look_up_first=False)] == ["created"] * 30
    assert qb.faults.total_calls() == qb.faults.total_calls(BATCH) == 1  # the documents' batch, nothing else
    assert len(qb.company.all("Customer")) == 4 and len(qb.company.all("Item")) == 2


def test_a_lost_batch_answer_is_replayed_by_requestid(qb: RunningQuickBooks, connect: Connect) -> None:
    conn, docs = connect(), invoices(20)
    customers, items = prepared(qb, conn, docs)
    qb.faults.add(kind="lost_response", path=BATCH, times=1)
    results = conn.push_documents(docs, customer_ids=customers, item_ids=items, look_up_first=False)
    assert [r.status for r in results] == ["created"] * 20
    assert qb.faults.total_calls(BATCH) == 2  # the retry carried the same requestid
    assert doc_numbers(qb) == Counter(d.number for d in docs)


def test_after_lost_answers_a_rerun_finds_the_documents_by_doc_number(qb: RunningQuickBooks, connect: Connect) -> None:
    conn, docs = connect(), invoices(35)
    customers, items = prepared(qb, conn, docs)
    qb.faults.add(kind="lost_response", path=BATCH, times=None)
    failed = conn.push_documents(docs[:30], customer_ids=customers, item_ids=items, look_up_first=False)
    assert {(r.status, r.retriable) for r in failed} == {("failed", True)}
    assert len(qb.company.all("Invoice")) == 30  # QuickBooks did create them; we never heard
    qb.faults.clear()
    rerun = conn.push_documents(docs, customer_ids=customers, item_ids=items)  # another batch shape: another requestid
    assert [r.status for r in rerun] == ["existing"] * 30 + ["created"] * 5
    assert doc_numbers(qb) == Counter(d.number for d in docs)
    assert all(n == 1 for n in doc_numbers(qb).values())


def test_a_taken_doc_number_6140_is_looked_up_and_reported_existing(qb: RunningQuickBooks, connect: Connect) -> None:
    """Issue 19 item 3: with duplicate-number checking on, QuickBooks refuses a taken DocNumber with 6140;
    after an uncertain create (a rerun without the look-up) that means "it exists", not a failure."""
    conn, docs = connect(), invoices(5)
    customers, items = prepared(qb, conn, docs)
    qb.faults.add(kind="lost_response", path=BATCH, times=None)
    conn.push_documents(docs[:3], customer_ids=customers, item_ids=items, look_up_first=False)
    qb.faults.clear()
    again = conn.push_documents(docs, customer_ids=customers, item_ids=items, look_up_first=False)
    assert [r.status for r in again] == ["existing"] * 3 + ["created"] * 2
    assert all(r.external_id for r in again)
    assert doc_numbers(qb) == Counter(d.number for d in docs)


def test_more_deleted_payments_than_one_change_data_capture_answer_are_all_found(
    qb: RunningQuickBooks, connect: Connect
) -> None:
    """Issue 19 item 5: change data capture answers at most 1,000 objects of an entity; a full answer is
    followed by another from its newest change until one is complete, so no deletion is missed."""
    since = (qb.company.now() - timedelta(seconds=1)).isoformat()
    with qb.company.lock:
        for n in range(1, 1251):
            stamp = qb.company._stamp()
            qb.company.deleted["Payment"].append(
                {"domain": "QBO", "status": "Deleted", "Id": str(90_000 + n), "MetaData": {"LastUpdatedTime": stamp}}
            )
    deleted = connect().deleted_payments(since)
    assert len(deleted) == len({p.payment_ref for p in deleted}) == 1250


def test_401_and_403_fault_shapes_are_summarised(qb: RunningQuickBooks, connect: Connect) -> None:
    """Issue 19 item 4: a 401's lowercase ``fault`` JSON and a 403's XML ``IntuitResponse`` both name
    Intuit's code in the error the connector reports."""
    from billbridge.connectors.quickbooks.client import _fault_summary

    qb.faults.add(kind="expired_auth", path="/query", times=None)  # the token endpoint keeps working
    with pytest.raises(VendorError, match="3200 message=AuthenticationFailed"):
        connect().query("SELECT * FROM Customer")
    qb.faults.clear()
    wrong_realm = connect()
    wrong_realm.config = replace(wrong_realm.config, realm_id="123")
    with pytest.raises(VendorError, match="3100 message=ApplicationAuthorizationFailed"):
        wrong_realm.query("SELECT * FROM Customer")
    assert _fault_summary(SimpleNamespace(text="{}", json=dict, reason="Forbidden")) == "Forbidden"


def test_a_429_storm_is_ridden_out(qb: RunningQuickBooks, connect: Connect) -> None:
    conn, docs = connect(), invoices(40)
    storm = qb.faults.add(kind="rate_limit", path=r"/(batch|query)$", times=3, retry_after=0)
    results = conn.push_documents(docs)
    assert [r.status for r in results] == ["created"] * 40
    assert storm.hits == 3
    assert doc_numbers(qb) == Counter(d.number for d in docs)


def test_credit_memo_and_jpy_invoice_are_accepted(qb: RunningQuickBooks, connect: Connect) -> None:
    conn = connect()
    jan = (date(2026, 1, 1), date(2026, 1, 31))
    yen = DocumentLine("a", "SEATS", "Seats", Decimal(2), Decimal(15000), *jan)
    jpy = replace(
        invoices(1, currency="JPY", start=900)[0],
        customer_ref="jp-1",
        customer_name="Kabushiki",
        lines=(yen,),
        total=Decimal(15000),
    )
    credit_line = DocumentLine("a", "SEATS", "Seats", Decimal(-1), Decimal("-29.99"), *jan)
    credit = replace(
        invoices(1)[0],
        number="US-CN-000001",
        doc_type="credit_note",
        lines=(credit_line,),
        total=Decimal("-29.99"),
        applies_to="US-INV-000001",
    )
    results = conn.push_documents([jpy, credit])
    assert [r.status for r in results] == ["created", "created"]
    assert qb.company.get("Invoice", results[0].external_id or "")["TotalAmt"] == Decimal(15000)
    memo = qb.company.get("CreditMemo", results[1].external_id or "")
    assert (memo["DocNumber"], memo["TotalAmt"]) == ("US-CN-000001", Decimal("29.99"))
    assert [r.status for r in conn.push_documents([jpy, credit])] == ["existing", "existing"]


def test_a_refused_document_fails_alone(qb: RunningQuickBooks, connect: Connect) -> None:
    conn, docs = connect(), invoices(3)
    customers, items = prepared(qb, conn, docs)
    customers[docs[1].customer_ref] = "999999"  # a customer QuickBooks does not know
    results = conn.push_documents(docs, customer_ids=customers, item_ids=items)
    assert [r.status for r in results] == ["created", "failed", "created"]
    assert results[1].error is not None and results[1].error.startswith("2500")
    assert not results[1].retriable


def test_a_customer_quickbooks_refuses_blocks_only_its_documents(qb: RunningQuickBooks, connect: Connect) -> None:
    docs = invoices(3)
    docs[1] = replace(docs[1], customer_ref="nameless", customer_name="")
    results = connect().push_documents(docs)
    assert [r.status for r in results] == ["created", "failed", "created"]
    assert "customer or item not in QuickBooks" in (results[1].error or "")
    assert doc_numbers(qb) == Counter([docs[0].number, docs[2].number])


def test_an_expired_access_token_is_refreshed_and_the_rotated_token_persisted(
    qb: RunningQuickBooks, connect: Connect
) -> None:
    store = InMemoryTokenStore(OAuthTokens(qb.refresh_token))
    conn = connect(store)
    conn.push_documents(invoices(5))
    before = store.load()
    qb.company.expire_access_tokens()
    results = conn.push_documents(invoices(5, start=6))
    assert [r.status for r in results] == ["created"] * 5
    after = store.load()
    assert after.refresh_token != before.refresh_token and after.access_token != before.access_token
    assert qb.company.refresh_tokens[before.refresh_token].superseded_at is not None
    assert qb.company.refresh_tokens[after.refresh_token].spent == 0  # the stored one is the live one
    assert qb.faults.total_calls(r"/tokens/bearer$") == 2


def together(workers: list[QuickBooks], call: Callable[[QuickBooks], object]) -> list[BaseException]:
    """Run ``call`` on every worker in its own thread, released at the same moment; the errors raised."""
    barrier, errors = threading.Barrier(len(workers)), []

    def work(conn: QuickBooks) -> None:
        try:
            barrier.wait()
            call(conn)
        except BaseException as exc:  # returned to the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return errors


def test_two_workers_never_spend_the_same_refresh_token(
    qb: RunningQuickBooks, connect: Connect, tmp_path: Path
) -> None:
    store = FileTokenStore(tmp_path / "qbo-tokens.json", OAuthTokens(qb.refresh_token))
    workers = [connect(store, worker=f"w{n}") for n in range(2)]
    for round_ in range(3):  # round 0: neither has an access token yet; then both hit an expired one
        qb.company.expire_access_tokens()
        assert together(workers, lambda conn: conn.query("SELECT COUNT(*) FROM Invoice")) == [], f"round {round_}"
    spent = [t.spent for t in qb.company.refresh_tokens.values()]
    assert max(spent) == 1
    assert sum(spent) == qb.faults.total_calls(r"/tokens/bearer$") == 3  # one refresh per expiry, shared
    live = store.load()
    assert qb.company.refresh_tokens[live.refresh_token].spent == 0 and live.leased_by is None


def test_workers_sharing_the_database_token_store_never_spend_the_same_refresh_token(
    qb: RunningQuickBooks, connect: Connect, store: Store, tmp_path: Path
) -> None:
    """The production token store: sealed rows with a version in SQLite or PostgreSQL, each worker
    with its own StoredTokens (as separate processes would have), racing on every expiry."""
    sealer = Sealer.from_settings(None, tmp_path)
    tokens = [StoredTokens(store, f"quickbooks:{qb.realm_id}", sealer, qb.refresh_token) for _ in range(3)]
    workers = [connect(t, worker=f"w{n}") for n, t in enumerate(tokens)]
    for round_ in range(3):
        qb.company.expire_access_tokens()
        assert together(workers, lambda conn: conn.query("SELECT COUNT(*) FROM Invoice")) == [], f"round {round_}"
    spent = [t.spent for t in qb.company.refresh_tokens.values()]
    assert max(spent) == 1
    assert sum(spent) == qb.faults.total_calls(r"/tokens/bearer$") == 3
    live = tokens[0].load()
    assert qb.company.refresh_tokens[live.refresh_token].spent == 0 and live.leased_by is None
    with store.read() as session:
        version, sealed = oauth_tokens.load(session, f"quickbooks:{qb.realm_id}") or (0, "")
    assert version == live.version and live.refresh_token not in sealed  # stored sealed, never in clear


def test_payments_come_back_linked_to_our_invoice_numbers(qb: RunningQuickBooks, connect: Connect) -> None:
    conn, docs = connect(), invoices(6)
    pushed = {r.number: r.external_id or "" for r in conn.push_documents(docs)}
    same_customer = [d.number for d in docs if d.customer_ref == docs[0].customer_ref]
    company = qb.company
    company.receive_payment(
        {pushed[same_customer[0]]: Decimal("50.00"), pushed[same_customer[1]]: Decimal("10.00")},
        amount=Decimal("75.00"),
        ref="CHK-7",
    )
    company.receive_payment({pushed["US-INV-000002"]: Decimal("92.02")})
    pages = list(conn.pull_payments(None, page_size=1))
    assert len(pages) == 2
    first, second = pages[0].payments[0], pages[1].payments[0]
    assert first.invoice_numbers == tuple(same_customer[:2])
    assert first.invoice_amounts == (Decimal("50.00"), Decimal("10.00"))
    assert (first.amount, first.extra["unapplied"], first.reference) == (Decimal("75.00"), "15.00", "CHK-7")
    assert (second.invoice_numbers, second.amount) == (("US-INV-000002",), Decimal("92.02"))
    assert pages[1].cursor >= pages[0].cursor
    assert company.get("Invoice", pushed["US-INV-000002"])["Balance"] == 0
    again = [p.payment_ref for page in conn.pull_payments(pages[-1].cursor) for p in page.payments]
    assert second.payment_ref in again  # the cursor bound is inclusive; the caller dedupes by payment_ref


def test_webhook_signatures_are_verified() -> None:
    payload = b'{"eventNotifications":[{"realmId":"1","dataChangeEvent":{"entities":[]}}]}'
    signature = base64.b64encode(hmac.new(b"verifier-123", payload, hashlib.sha256).digest()).decode()
    assert verify_webhook(payload, signature, "verifier-123")
    assert not verify_webhook(payload + b" ", signature, "verifier-123")
    assert not verify_webhook(payload, signature, "another-verifier")
    assert not verify_webhook(payload, "not base64!", "verifier-123")


def test_a_401_between_batches_refreshes_once_and_the_run_goes_on(qb: RunningQuickBooks, connect: Connect) -> None:
    store = InMemoryTokenStore(OAuthTokens(qb.refresh_token))
    conn, docs = connect(store), invoices(65)
    customers, items = prepared(qb, conn, docs)
    rotated_from = store.load().refresh_token
    qb.faults.add(kind="expired_auth", path=BATCH, after=1, times=1)
    results = conn.push_documents(docs, customer_ids=customers, item_ids=items, look_up_first=False)
    assert [r.status for r in results] == ["created"] * 65
    assert qb.faults.total_calls(BATCH) == 4  # the refused second batch went again after the refresh
    assert qb.faults.total_calls(r"/tokens/bearer$") == 1
    assert store.load().refresh_token != rotated_from


def test_file_token_store_compare_and_swap(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    first = FileTokenStore(path, OAuthTokens("rt-0"))
    assert first.compare_and_swap(0, OAuthTokens("rt-1", "at-1", 10.0))
    assert not first.compare_and_swap(0, OAuthTokens("rt-stale"))  # someone else already moved it on
    reopened = FileTokenStore(path, OAuthTokens("ignored: the file exists"))
    assert reopened.load() == OAuthTokens("rt-1", "at-1", 10.0, version=1)


def test_a_stripe_payment_is_recorded_against_its_invoices_once(qb: RunningQuickBooks, connect: Connect) -> None:
    conn, docs = connect(), invoices(8)
    pushed = {r.number: r.external_id or "" for r in conn.push_documents(docs)}
    paid = [d for d in docs if d.customer_ref == docs[0].customer_ref][:2]
    customer_id = qb.company.get("Invoice", pushed[paid[0].number])["CustomerRef"]["value"]
    stripe = IncomingPayment(
        source="stripe",
        payment_ref="ch_3MtwBwLkdIwHu7ix28a3tqPa",  # longer than PaymentRefNum holds
        currency="USD",
        amount=paid[0].total + Decimal("40.00"),
        received_on=date(2026, 2, 1),
        customer_ref=paid[0].customer_ref,
        invoice_numbers=(paid[0].number, paid[1].number),
        invoice_amounts=(paid[0].total, Decimal("40.00")),
    )
    record = PaymentToRecord(stripe, customer_id, {d.number: pushed[d.number] for d in paid})
    first = conn.record_payments([record])
    assert [r.status for r in first] == ["created"]
    assert qb.company.get("Invoice", pushed[paid[0].number])["Balance"] == 0
    assert qb.company.get("Invoice", pushed[paid[1].number])["Balance"] == paid[1].total - Decimal("40.00")
    again = conn.record_payments([record])
    assert [(r.status, r.external_id) for r in again] == [("existing", first[0].external_id)]
    assert len(qb.company.all("Payment")) == 1
    pulled = [p for page in conn.pull_payments(None) for p in page.payments]
    assert [(p.invoice_numbers, p.amount) for p in pulled] == [((paid[0].number, paid[1].number), stripe.amount)]


@pytest.mark.slow
def test_refunds_taken_off_one_payment_by_two_workers_at_once_both_land_once(
    qb: RunningQuickBooks, connect: Connect
) -> None:
    """Worker A reads the Payment, then its update is held up while worker B takes another refund off:
    A's update names the SyncToken it read and fails as stale (retriable); A's retry reads again and
    lands next to B's. A third try finds both on the payment and changes nothing."""
    conn_a, conn_b, docs = connect(), connect(), invoices(8)
    pushed = {r.number: r.external_id or "" for r in conn_a.push_documents(docs)}
    paid = [d for d in docs if d.customer_ref == docs[0].customer_ref][:2]
    customer_id = qb.company.get("Invoice", pushed[paid[0].number])["CustomerRef"]["value"]
    stripe = IncomingPayment(
        source="stripe",
        payment_ref="ch_refunded",
        currency="USD",
        amount=paid[0].total + paid[1].total,
        received_on=date(2026, 2, 1),
        customer_ref=paid[0].customer_ref,
        invoice_numbers=(paid[0].number, paid[1].number),
        invoice_amounts=(paid[0].total, paid[1].total),
    )
    (entered,) = conn_a.record_payments(
        [PaymentToRecord(stripe, customer_id, {d.number: pushed[d.number] for d in paid})]
    )
    payment_id = entered.external_id or ""
    first, second = pushed[paid[0].number], pushed[paid[1].number]
    refund_a = AmendmentToRecord("re_a", payment_id, {first: Decimal("-5.00")}, Decimal("-5.00"))
    whole = -paid[1].total  # all of the second invoice
    refund_b = AmendmentToRecord("re_b", payment_id, {second: whole}, whole)

    held = qb.faults.add(kind="slow", path="/batch$", times=1, delay=1.5)
    with ThreadPoolExecutor(1) as pool:
        late = pool.submit(conn_a.record_amendments, [refund_a])
        deadline = time.monotonic() + 10
        while not held.hits and time.monotonic() < deadline:  # A has read the payment; its update waits
            time.sleep(0.01)
        assert [r.status for r in conn_b.record_amendments([refund_b])] == ["created"]
        (stale,) = late.result()
    assert (stale.status, stale.retriable) == ("failed", True) and "5010" in (stale.error or "")
    assert [r.status for r in conn_a.record_amendments([refund_a])] == ["created"]
    assert [r.status for r in conn_a.record_amendments([refund_a, refund_b])] == ["existing", "existing"]

    payment = qb.company.get("Payment", payment_id)
    assert payment["TotalAmt"] == stripe.amount - Decimal("5.00") - paid[1].total
    assert payment["PrivateNote"] == "billbridge stripe ch_refunded amended re_a,re_b"
    assert qb.company.get("Invoice", first)["Balance"] == Decimal("5.00")
    assert qb.company.get("Invoice", second)["Balance"] == paid[1].total
    pulled = [p for page in conn_a.pull_payments(None) for p in page.payments]
    assert [p.mirrored_from for p in pulled] == ["stripe:ch_refunded"]  # still known as ours


# -- journal entries (issue 14): the month's recognised revenue, posted once ---------------------------


def chart(qb: RunningQuickBooks) -> AccountMapping:
    """A chart of accounts as a controller would set it up for revenue recognition."""
    made = {
        name: qb.company.create("Account", {"Name": name, "AccountType": kind})["Id"]
        for name, kind in (
            ("Deferred Revenue", "Other Current Liability"),
            ("Unbilled Receivables", "Other Current Asset"),
            ("Usage Revenue", "Income"),
        )
    }
    return AccountMapping(
        revenue="1",
        deferred_revenue=made["Deferred Revenue"],
        contract_asset=made["Unbilled Receivables"],
        revenue_by_recognition={"usage": made["Usage Revenue"]},
    )


def month_of_revenue(platform: str = "101.92", usage: str = "45.50", entity: str = "us-inc") -> PeriodRevenue:
    p, u = Decimal(platform), Decimal(usage)
    return PeriodRevenue(entity, "USD", date(2026, 11, 1), {("platform", "ratable"): p, ("api", "usage"): u}, p, u)


def entries(qb: RunningQuickBooks) -> list[dict[str, Any]]:
    return qb.company.all("JournalEntry")


def test_a_months_journal_entry_is_posted_once_and_a_rerun_finds_it(qb: RunningQuickBooks, connect: Connect) -> None:
    accounts = chart(qb)
    conn = connect()
    [first] = conn.post_journal_entries([(month_of_revenue(), accounts)])
    assert (first.status, first.number, first.doc_type) == ("created", "REV202611-USD-US-INC", "journal_entry")
    [entry] = entries(qb)
    assert entry["Id"] == first.external_id and entry["TotalAmt"] == Decimal("147.42")
    credits = {
        ln["JournalEntryLineDetail"]["AccountRef"]["value"]: ln["Amount"]
        for ln in entry["Line"]
        if ln["JournalEntryLineDetail"]["PostingType"] == "Credit"
    }
    assert credits == {"1": Decimal("101.92"), accounts.revenue_by_recognition["usage"]: Decimal("45.50")}
    [again] = connect().post_journal_entries([(month_of_revenue(), accounts)])  # a rerun after a lost answer
    assert (again.status, again.external_id) == ("existing", first.external_id)
    assert len(entries(qb)) == 1


def test_a_reclosed_month_replaces_its_entry_naming_the_sync_token(qb: RunningQuickBooks, connect: Connect) -> None:
    accounts = chart(qb)
    conn = connect()
    [first] = conn.post_journal_entries([(month_of_revenue(), accounts)])
    [other_entity] = conn.post_journal_entries([(month_of_revenue(entity="eu-bv"), accounts)])
    [replaced] = conn.post_journal_entries([(month_of_revenue(usage="60.00"), accounts)])
    assert (replaced.status, replaced.external_id, replaced.sync_token) == ("updated", first.external_id, "1")
    assert len(entries(qb)) == 2 and other_entity.external_id != first.external_id  # one per entity and month
    entry = qb.company.get("JournalEntry", first.external_id)
    assert entry["TotalAmt"] == Decimal("161.92")
    [same] = conn.post_journal_entries([(month_of_revenue(usage="60.00"), accounts)])
    assert same.status == "existing"


def test_accounts_that_are_missing_or_of_the_wrong_type_stop_the_entry_naming_them(
    qb: RunningQuickBooks, connect: Connect
) -> None:
    accounts = chart(qb)
    expense = qb.company.create("Account", {"Name": "Office", "AccountType": "Expense"})["Id"]
    wrong = accounts.model_copy(update={"contract_asset": expense, "revenue_by_product": {"api": "999"}})
    [result] = connect().post_journal_entries([(month_of_revenue(), wrong)])
    assert result.status == "failed" and not result.retriable
    assert result.error == (
        f"us-inc revenue_accounts: account {expense} 'Office' is Expense; contract_asset needs Other Asset or "
        "Other Current Asset; account 999 (revenue_by_product.api) is not in the QuickBooks chart of accounts"
    )
    assert entries(qb) == []


def test_a_doc_number_taken_by_a_persons_entry_is_never_overwritten(qb: RunningQuickBooks, connect: Connect) -> None:
    accounts = chart(qb)
    mine = journal_entry_payload(month_of_revenue(), accounts)
    assert mine is not None
    qb.company.create("JournalEntry", {**mine, "PrivateNote": "accrual by hand"})
    [result] = connect().post_journal_entries([(month_of_revenue(), accounts)])
    assert result.status == "failed" and "was not made by billbridge" in (result.error or "")
    assert [e["PrivateNote"] for e in entries(qb)] == ["accrual by hand"]


def test_with_revenue_recognition_invoice_items_post_to_deferred_revenue(qb: RunningQuickBooks) -> None:
    """Items made or found by the push take the deferred revenue account as their income account, so an
    invoice credits deferred revenue and the month's JournalEntry moves what was recognised to revenue."""
    deferred = chart(qb).deferred_revenue
    qb.company.create("Item", {"Name": "SEATS", "Type": "Service", "IncomeAccountRef": {"value": "1"}})
    conn = QuickBooks(
        replace(config(qb), income_account_id=deferred),
        InMemoryTokenStore(OAuthTokens(qb.refresh_token)),
        policy=FAST,
        pacer=Pacer(10_000, 1),
        batch_pacer=Pacer(10_000, 1),
        repoint_items=True,
    )
    try:
        results = conn.push_documents(invoices(2), look_up_first=False)
    finally:
        conn.close()
    assert [r.status for r in results] == ["created", "created"]
    items = {i["Name"]: i for i in qb.company.all("Item")}
    assert {name: i["IncomeAccountRef"]["value"] for name, i in items.items()} == {
        "SEATS": deferred,  # found with the income account "1": moved (SyncToken 1)
        "API-CALLS": deferred,  # made with it
    }
    assert items["SEATS"]["SyncToken"] == "1"


@pytest.mark.slow  # a sandbox at Intuit's limits
def test_at_intuits_limits_the_connector_is_never_throttled() -> None:
    """Issue 19 item 8: the connector paces at 10 requests a second (Intuit's 2025 limit) by default,
    so a sandbox enforcing that limit refuses none of 25 back-to-back queries (the old pace, 500 a
    minute, sent them at once: 15 would be refused); they take the two seconds the limit asks. Batch
    calls count against both limits: 12 in a row are not sent within one second either."""
    running = start_quickbooks()  # Intuit's limits on
    conn = QuickBooks(config(running), InMemoryTokenStore(OAuthTokens(running.refresh_token)), policy=FAST)
    try:
        conn.query("SELECT * FROM Item")  # connect (token refresh) before the clock starts
        started = time.monotonic()
        for _ in range(25):
            conn.query("SELECT * FROM Item")
        took = time.monotonic() - started
        started = time.monotonic()
        for n in range(12):
            item = {"Name": f"SKU-{n}", "Type": "Service", "IncomeAccountRef": {"value": "1"}}
            assert conn.batch([Write(f"item-{n}", "Item", item)])[f"item-{n}"].record is not None
        batches_took = time.monotonic() - started
    finally:
        conn.close()
        running.stop()
    assert running.throttle is not None and running.throttle.refused == 0
    assert took >= 1.9 and batches_took >= 0.9


def test_pacing_is_shared_per_realm_and_app_and_batches_per_realm(qb: RunningQuickBooks) -> None:
    """Issue 19 item 8: Intuit's 10 requests a second are per realm AND app (client id), its 120 batch
    calls a minute per realm: connectors of one app to one realm wait in one window, another app's
    connector has its own request window but the same batch window. The pacers' clock is a counter
    that only their sleeps move, so "within a second" does not depend on the machine's speed."""
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacers = Pacers(clock=lambda: now[0], sleep=sleep)
    other_id, other_secret, other_refresh = qb.company.connect_app()
    other_app = replace(config(qb), client_id=other_id, client_secret=other_secret)
    opened = [
        QuickBooks(config(qb), InMemoryTokenStore(OAuthTokens(qb.refresh_token)), policy=FAST, pacers=pacers),
        QuickBooks(config(qb), InMemoryTokenStore(OAuthTokens(qb.refresh_token)), policy=FAST, pacers=pacers),
        QuickBooks(other_app, InMemoryTokenStore(OAuthTokens(other_refresh)), policy=FAST, pacers=pacers),
    ]
    first, same_app, second_app = opened
    elsewhere = QuickBooks(
        replace(config(qb), realm_id="4620816365000000000"), InMemoryTokenStore(OAuthTokens("x")), pacers=pacers
    )
    try:
        assert first.pacer is same_app.pacer and first.pacer is not second_app.pacer
        assert first.batch_pacer is same_app.batch_pacer is second_app.batch_pacer
        assert elsewhere.pacer is not first.pacer and elsewhere.batch_pacer is not first.batch_pacer
        for conn in opened:
            conn.query("SELECT COUNT(*) FROM Item")  # connect (token refresh) first
        now[0] += 60.0  # every window empty again
        slept.clear()
        for n in range(10):  # the app's ten of the second, from two connectors
            (first if n % 2 else same_app).query("SELECT COUNT(*) FROM Item")
        second_app.query("SELECT COUNT(*) FROM Item")  # the other app: its own window
        assert slept == []
        first.query("SELECT COUNT(*) FROM Item")  # the app's eleventh waits for the second to pass
        assert slept == [pytest.approx(1 + PACE_MARGIN_SECONDS)]  # the whole window: nothing else moved the clock
    finally:
        for conn in [*opened, elsewhere]:
            conn.close()


def test_the_refresh_tokens_expiries_are_kept_beside_the_sealed_tokens(store: Store, tmp_path: Path) -> None:
    """Issue 19 item 7: the token answer's rolling and hard expiries are kept with the rotated tokens
    (in the clear: they are no secret), and a connection within 30 days of its hard expiry is warned of."""
    from datetime import UTC, datetime

    from billbridge.flows.credentials import credential_expiries
    from billbridge.sandbox.quickbooks import QboCompany, TokenPolicy

    running = start_quickbooks(company=QboCompany(tokens=TokenPolicy(hard_seconds=20 * 86400)), limits=None)
    key = f"quickbooks:{running.realm_id}"
    tokens = StoredTokens(store, key, Sealer.from_settings(None, tmp_path), running.refresh_token)
    conn = QuickBooks(config(running), tokens, policy=FAST)
    try:
        conn.query("SELECT COUNT(*) FROM Invoice")  # the first call refreshes
    finally:
        conn.close()
        running.stop()
    now = datetime.now(UTC)
    stored = tokens.load()
    assert stored.refresh_hard_expires_at is not None and stored.refresh_expires_at is not None
    assert abs(stored.refresh_hard_expires_at - (now.timestamp() + 20 * 86400)) < 60
    [expiry] = credential_expiries(store, now)
    assert expiry.connection == key and expiry.warn and expiry.days_left == 19
    assert expiry.hard_expires_at is not None and expiry.expires_at == expiry.hard_expires_at
    assert [e.warn for e in credential_expiries(store, now - timedelta(days=11))] == [False]
