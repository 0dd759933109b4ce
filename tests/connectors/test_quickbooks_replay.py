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
