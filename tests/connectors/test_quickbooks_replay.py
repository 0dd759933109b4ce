"""The QuickBooks connector against recorded exchanges with the strict sandbox (fast tier, no server):
OpenID discovery, the token refresh, look-ups, batches (with their deterministic requestids), queries
paged by start position and sparse updates must be asked as recorded, and what the connector makes
of the answers is checked here. Re-record with ``python -m tests.connectors.record_cassettes``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from billbridge.vendors.quickbooks import QuickBooks
from tests.connectors.cassettes import REPLAY_URL, replaying
from tests.connectors.scenarios import (
    QUICKBOOKS_SCENARIOS,
    QuickBooksSide,
    quickbooks_connector,
    quickbooks_documents,
    quickbooks_partner_bills,
)

Replay = Callable[[str], Any]


@pytest.fixture
def replay() -> Iterator[Replay]:
    """Run a recorded scenario against its cassette; every recorded exchange must be asked for, once."""
    https = REPLAY_URL.replace("http:", "https:")

    def run(name: str) -> Any:
        scenario: Callable[[QuickBooks, QuickBooksSide | None], Any] = QUICKBOOKS_SCENARIOS[name]
        with replaying("quickbooks", name) as cassette:
            got = scenario(quickbooks_connector(f"{https}/v3", f"{https}/.well-known/openid_configuration"), None)
            assert cassette.all_played
        return got

    yield run


def test_a_push_and_its_repeat_replay_from_the_cassette(replay: Replay) -> None:
    first, again = replay("push_twice")
    numbers = [d.number for d in quickbooks_documents()]
    assert [(r.number, r.status) for r in first] == [(n, "created") for n in numbers]
    assert [(r.number, r.status) for r in again] == [(n, "existing") for n in numbers]
    assert [r.external_id for r in again] == [r.external_id for r in first] and all(r.external_id for r in first)


def test_payments_are_read_in_pages_linked_to_our_numbers_and_a_card_payment_recorded_once(replay: Replay) -> None:
    got = replay("payments")
    assert set(got["pushed"]) == {f"US-INV-{i:06d}" for i in range(1, 7)} | {"US-CN-000001"}
    first, again = got["recorded"]
    assert [r.status for r in first] == ["created"]
    assert [(r.status, r.external_id) for r in again] == [("existing", first[0].external_id)]  # looked up
    pages = got["pages"]
    assert [len(p.payments) for p in pages] == [2, 1]  # start positions 1 and 3, two to a page
    cheque, single, card = [p for page in pages for p in page.payments]
    assert (cheque.invoice_numbers, cheque.invoice_amounts) == (
        ("US-INV-000001", "US-INV-000003"),
        (Decimal("50.00"), Decimal("10.00")),
    )
    assert (cheque.amount, cheque.extra["unapplied"], cheque.reference) == (Decimal("75.00"), "15.00", "CHK-7")
    assert (single.invoice_numbers, single.amount) == (("US-INV-000002",), Decimal("92.02"))
    assert (card.invoice_numbers, card.amount) == (("US-INV-000003", "US-INV-000005"), Decimal("70.00"))
    assert pages[0].cursor <= pages[1].cursor


def test_a_months_journal_entry_is_posted_once_then_replaced_by_a_sparse_update(replay: Replay) -> None:
    got = replay("journal_entries")
    [first], [again], [replaced], [wrong] = got["first"], got["again"], got["replaced"], got["wrong"]
    assert (first.status, first.number, first.doc_type) == ("created", "REV202611-USD-US-INC", "journal_entry")
    assert (again.status, again.external_id) == ("existing", first.external_id)
    assert (replaced.status, replaced.external_id, replaced.sync_token) == ("updated", first.external_id, "1")
    assert wrong.status == "failed" and not wrong.retriable
    assert wrong.error == (
        "us-inc revenue_accounts: account 999 (revenue_by_product.api) is not in the QuickBooks chart of accounts"
    )


def test_partner_bills_and_a_vendor_credit_are_pushed_once_and_rates_read(replay: Replay) -> None:
    got = replay("bills_and_rates")
    bill, credit = quickbooks_partner_bills()
    assert [(r.number, r.doc_type, r.status) for r in got["first"]] == [
        (bill.number, bill.doc_type, "created"),
        (credit.number, credit.doc_type, "created"),
    ]
    assert [(r.status, r.external_id) for r in got["again"]] == [("existing", r.external_id) for r in got["first"]]
    assert got["paid"] == {}  # nothing paid on them yet
    assert got["prefs"] == ("USD", True)
    assert got["rate"] == Decimal("1.0825")


def test_an_invoice_is_mailed_to_every_contact_with_the_cc_ones_in_bill_email_cc_once(replay: Replay) -> None:
    """The cc addresses set by a sparse update before the send, the to addresses comma separated in
    sendTo; asked again, the invoice is found sent (EmailStatus) and nothing is posted."""
    got = replay("send_invoice")
    assert (got["sent"].status, got["again"].status) == ("created", "existing")
    assert got["sent"].external_id == got["again"].external_id


def test_customers_and_items_are_looked_up_an_inactive_one_reactivated_and_a_vendors_name_suffixed(
    replay: Replay,
) -> None:
    """A later run finds what the first made; the inactive "Customer 1" is made active again (one
    update), not made twice; "Customer 0", a Vendor's name, is made and found as "Customer 0 (cust-0)"."""
    got = replay("customer_names")
    customers, items = got["ensured"]
    assert got["found"] == (customers, items)  # looked up by a new connector: nothing made twice
    assert set(customers) == {"cust-0", "cust-1"} and set(items) == {"SEATS", "API-CALLS"}
    assert got["renamed"] == {"cust-0": (customers["cust-0"], "Customer 0 (cust-0)")}
    by_name = {c["DisplayName"]: c for c in got["customers"]}
    assert by_name.keys() == {"Customer 1", "Customer 0 (cust-0)"}  # the Vendor's name never taken
    sleeping = by_name["Customer 1"]
    assert (sleeping["Id"], sleeping["Active"], sleeping["SyncToken"]) == (customers["cust-1"], True, "1")
    assert by_name["Customer 0 (cust-0)"]["Id"] == customers["cust-0"]
    first, later = got["pushed"]
    assert [r.status for r in [*first, *later]] == ["created"] * 4
    docs = {d.number: d.customer_ref for d in quickbooks_documents(4)}
    assert {i["DocNumber"]: i["CustomerRef"]["value"] for i in got["invoices"]} == {
        n: customers[ref] for n, ref in docs.items()
    }


def test_a_taken_doc_number_6140_is_looked_up_and_reported_existing(replay: Replay) -> None:
    got = replay("doc_number_taken")
    assert [r.status for r in got["first"]] == ["created"] * 3
    again = got["again"]
    assert [r.status for r in again] == ["existing"] * 3 + ["created"] * 2
    assert [r.external_id for r in again[:3]] == [r.external_id for r in got["first"]]
    assert len({r.external_id for r in again}) == 5 and all(r.external_id for r in again)


def test_a_jpy_invoice_and_a_credit_memo_are_pushed_once(replay: Replay) -> None:
    got = replay("credit_memo_and_yen")
    assert [(r.number, r.doc_type, r.status) for r in got["first"]] == [
        ("US-INV-000900", "invoice", "created"),
        ("US-CN-000001", "credit_note", "created"),
    ]
    assert [(r.status, r.external_id) for r in got["again"]] == [("existing", r.external_id) for r in got["first"]]
    [invoice], [memo] = got["invoices"], got["memos"]
    assert (invoice["CurrencyRef"]["value"], Decimal(invoice["TotalAmt"])) == ("JPY", Decimal(15000))
    assert (memo["DocNumber"], memo["TotalAmt"], memo["Id"]) == (
        "US-CN-000001",
        Decimal("29.99"),
        got["first"][1].external_id,
    )


def test_journal_accounts_missing_or_of_the_wrong_type_and_a_persons_entry_stop_the_post(replay: Replay) -> None:
    got = replay("journal_problems")
    [wrong], [taken] = got["wrong"], got["taken"]
    assert wrong.status == "failed" and not wrong.retriable
    assert wrong.error == (
        f"us-inc revenue_accounts: account {got['office']} 'Office' is Expense; contract_asset needs Other Asset or "
        "Other Current Asset; account 999 (revenue_by_product.api) is not in the QuickBooks chart of accounts"
    )
    assert taken.status == "failed" and "was not made by billbridge" in (taken.error or "")
    assert [e["PrivateNote"] for e in got["entries"]] == ["accrual by hand"]  # never overwritten


def test_a_partners_vendor_takes_a_suffixed_name_and_a_vendor_whose_names_are_both_taken_fails(
    replay: Replay,
) -> None:
    got = replay("vendor_names")
    bill, credit = quickbooks_partner_bills()
    (made, refused), [later] = got["first"], got["credit"]
    assert (made.number, made.status, later.status) == (bill.number, "created", "created")
    assert (refused.number, refused.status) == (credit.number, "failed")
    assert "'Contoso Partners' and 'Contoso Partners (contoso)'" in (refused.error or "")
    assert "a customer or an employee" in (refused.error or "") and "an inactive vendor" in (refused.error or "")
    [vendor] = got["vendors"]  # one Vendor, under the name no customer holds; none for contoso
    assert vendor["DisplayName"] == "Northwind Advisors (northwind)"
    [stored_bill], [stored_credit] = got["bills"], got["credits"]
    assert stored_bill["VendorRef"]["value"] == stored_credit["VendorRef"]["value"] == vendor["Id"]
    assert (stored_bill["Id"], stored_bill["TotalAmt"]) == (made.external_id, Decimal("452.00"))
    assert (stored_credit["Id"], stored_credit["TotalAmt"]) == (later.external_id, Decimal("45.00"))


def test_a_document_with_an_unknown_or_refused_customer_fails_alone(replay: Replay) -> None:
    got = replay("refused_documents")
    unknown, nameless = got["unknown"], got["nameless"]
    assert [r.status for r in unknown] == ["created", "failed", "created"]
    assert (unknown[1].error or "").startswith("2500") and not unknown[1].retriable
    assert [r.status for r in nameless] == ["created", "failed", "created"]
    assert "customer or item not in QuickBooks" in (nameless[1].error or "") and not nameless[1].retriable
    created = [r for r in [*unknown, *nameless] if r.status == "created"]
    assert [(i["DocNumber"], i["Id"]) for i in got["invoices"]] == [(r.number, r.external_id) for r in created]


def test_with_revenue_recognition_items_post_to_deferred_revenue(replay: Replay) -> None:
    """SEATS, found with the income account "1", is moved to deferred revenue (SyncToken 1); API-CALLS
    is made with it; the invoices are created."""
    got = replay("deferred_items")
    assert [r.status for r in got["pushed"]] == ["created", "created"]
    items = {i["Name"]: i for i in got["items"]}
    assert {name: i["IncomeAccountRef"]["value"] for name, i in items.items()} == {
        "SEATS": got["deferred"],
        "API-CALLS": got["deferred"],
    }
    assert (items["SEATS"]["SyncToken"], items["API-CALLS"]["SyncToken"]) == ("1", "0")
