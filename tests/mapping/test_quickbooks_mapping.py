"""QuickBooks mapping: worked examples with amounts checked digit for digit."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest

from billbridge.billing.documents import DocumentLine, IncomingPayment, OutboundDocument
from billbridge.mapping.fields import MappingError
from billbridge.mapping.quickbooks import (
    CustomerSpec,
    amendments_in,
    customer_payload,
    customer_spec,
    document_payload,
    mirrored_from,
    note_key,
    payment_amended,
    payment_from_qbo,
    payment_payload,
    qbo_entity,
)

ITEMS = {"SEATS": "11", "SETUP": "12", "API-CALLS": "13"}


def line(ref: str, sku: str, qty: str, amount: str) -> DocumentLine:
    return DocumentLine(ref, sku, sku.title(), Decimal(qty), Decimal(amount), date(2026, 1, 1), date(2026, 1, 31))


def doc(
    number: str, currency: str, *lines: DocumentLine, doc_type: str = "invoice", applies_to: str | None = None
) -> OutboundDocument:
    return OutboundDocument(
        number=number,
        doc_type=doc_type,  # type: ignore[arg-type]
        version=2,
        entity_ref="us-inc",
        customer_ref="cust-7",
        customer_name="Globex Corp",
        customer_email="ap@globex.test",
        contract_ref="ct-9",
        currency=currency,
        billing_date=date(2026, 1, 1),
        due_date=date(2026, 1, 31),
        total=sum((ln.amount for ln in lines), Decimal(0)),
        auto_charge=False,
        lines=lines,
        applies_to=applies_to,
    )


def test_usd_invoice_lines_carry_qty_and_unit_price_only_when_exact() -> None:
    invoice = doc(
        "US-INV-000042",
        "USD",
        line("a", "SEATS", "3", "89.97"),  # 3 x 29.99
        line("b", "SETUP", "1", "0.10"),
        line("c", "API-CALLS", "3", "10.00"),  # 3.333... per call: Amount only
    )
    payload = document_payload(invoice, customer_id="58", item_ids=ITEMS)
    assert qbo_entity(invoice) == "Invoice"
    assert payload["DocNumber"] == "US-INV-000042"
    assert payload["CustomerRef"] == {"value": "58"}
    assert payload["CurrencyRef"] == {"value": "USD"}
    assert (payload["TxnDate"], payload["DueDate"]) == ("2026-01-01", "2026-01-31")
    assert payload["BillEmail"] == {"Address": "ap@globex.test"}
    details = [(ln["Amount"], ln["SalesItemLineDetail"]) for ln in payload["Line"]]
    assert details[0] == (
        "89.97",
        {"ItemRef": {"value": "11"}, "ServiceDate": "2026-01-01", "Qty": "3", "UnitPrice": "29.99"},
    )
    assert details[1] == (
        "0.10",
        {"ItemRef": {"value": "12"}, "ServiceDate": "2026-01-01", "Qty": "1", "UnitPrice": "0.1"},
    )
    assert details[2] == ("10.00", {"ItemRef": {"value": "13"}, "ServiceDate": "2026-01-01"})
    # the body python-quickbooks would send holds the amounts as written, no float digits
    assert '"Amount": "89.97"' in json.dumps(payload)


def test_jpy_invoice_has_whole_yen() -> None:
    payload = document_payload(
        doc("JP-INV-000007", "JPY", line("a", "SEATS", "2", "15000")), customer_id="3", item_ids=ITEMS
    )
    assert payload["CurrencyRef"] == {"value": "JPY"}
    assert payload["Line"][0]["Amount"] == "15000"
    assert payload["Line"][0]["SalesItemLineDetail"]["UnitPrice"] == "7500"
    with pytest.raises(ValueError, match="not rounded to JPY"):
        document_payload(
            doc("JP-INV-000008", "JPY", line("a", "SEATS", "1", "15000.5")), customer_id="3", item_ids=ITEMS
        )


def test_credit_note_becomes_a_credit_memo_with_positive_lines() -> None:
    credit = doc(
        "US-CN-000003",
        "USD",
        line("a", "SEATS", "-1", "-29.99"),
        line("b", "SETUP", "1", "5.00"),
        doc_type="credit_note",
        applies_to="US-INV-000042",
    )
    payload = document_payload(credit, customer_id="58", item_ids=ITEMS)
    assert qbo_entity(credit) == "CreditMemo"
    assert [ln["Amount"] for ln in payload["Line"]] == ["29.99", "-5.00"]
    assert payload["Line"][0]["SalesItemLineDetail"]["Qty"] == "-1"
    assert payload["Line"][0]["SalesItemLineDetail"]["UnitPrice"] == "-29.99"
    assert "DueDate" not in payload
    assert payload["CustomerMemo"] == {"value": "Credit for US-INV-000042"}


def test_doc_number_longer_than_quickbooks_allows_is_refused() -> None:
    with pytest.raises(ValueError, match="21 characters"):
        document_payload(
            doc("US-INV-0000000000000042", "USD", line("a", "SEATS", "1", "1.00")), customer_id="1", item_ids=ITEMS
        )


def test_customer_payload_names_currency_and_email() -> None:
    spec = customer_spec(doc("US-INV-1", "EUR", line("a", "SEATS", "1", "1.00")))
    assert customer_payload(spec) == {
        "DisplayName": "Globex Corp",
        "CurrencyRef": {"value": "EUR"},
        "PrimaryEmailAddr": {"Address": "ap@globex.test"},
    }


def test_payment_maps_links_back_to_our_numbers() -> None:
    raw = json.loads(
        """{"Id": "77", "SyncToken": "1", "TxnDate": "2026-02-03", "TotalAmt": 150.10, "UnappliedAmt": 20.00,
        "CurrencyRef": {"value": "USD"}, "CustomerRef": {"value": "58"}, "PaymentRefNum": "CHK-1001",
        "Line": [{"Amount": 100.05, "LinkedTxn": [{"TxnId": "130", "TxnType": "Invoice"}]},
                 {"Amount": 30.05, "LinkedTxn": [{"TxnId": "131", "TxnType": "Invoice"}]},
                 {"Amount": 0.00, "LinkedTxn": [{"TxnId": "999", "TxnType": "Invoice"}]}]}""",
        parse_float=Decimal,
    )
    payment = payment_from_qbo(raw, {"130": "US-INV-000042", "131": "US-INV-000043"})
    assert payment.payment_ref == "77"
    assert payment.amount == Decimal("150.10")
    assert payment.received_on == date(2026, 2, 3)
    assert payment.invoice_numbers == ("US-INV-000042", "US-INV-000043")
    assert payment.invoice_amounts == (Decimal("100.05"), Decimal("30.05"))
    assert sum(payment.invoice_amounts) + Decimal(payment.extra["unapplied"]) == payment.amount
    assert payment.reference == "CHK-1001" and payment.memo is None
    assert payment_from_qbo({**raw, "PrivateNote": "inv US-INV-000044"}, {}).memo == "inv US-INV-000044"
    assert payment.extra["unknown_invoice_ids"] == "999"
    assert payment.source_version == "1"


def test_payment_amounts_parsed_as_float_are_refused() -> None:
    raw = {"Id": "1", "TxnDate": "2026-02-03", "TotalAmt": 0.1, "CustomerRef": {"value": "5"}, "Line": []}
    with pytest.raises(MappingError, match="TotalAmt: .*parse_float=Decimal"):
        payment_from_qbo(raw, {})


def test_a_stripe_payment_becomes_a_quickbooks_payment_applied_to_invoices() -> None:
    stripe = IncomingPayment(
        source="stripe",
        payment_ref="ch_3MtwBwLkdIwHu7ix28a3tqPa",
        currency="EUR",
        amount=Decimal("120.00"),
        received_on=date(2026, 2, 1),
        customer_ref="cust-7",
        invoice_numbers=("EU-INV-000001", "EU-INV-000002"),
        invoice_amounts=(Decimal("70.00"), Decimal("30.00")),
    )
    payload = payment_payload(stripe, customer_id="58", invoice_ids={"EU-INV-000001": "130", "EU-INV-000002": "131"})
    assert payload == {
        "CustomerRef": {"value": "58"},
        "TotalAmt": "120.00",  # 20.00 stays unapplied: a customer credit in QuickBooks
        "CurrencyRef": {"value": "EUR"},
        "TxnDate": "2026-02-01",
        "PaymentRefNum": "wBwLkdIwHu7ix28a3tqPa",  # the last 21 characters QuickBooks keeps
        "PrivateNote": "billbridge stripe ch_3MtwBwLkdIwHu7ix28a3tqPa",
        "Line": [
            {"Amount": "70.00", "LinkedTxn": [{"TxnId": "130", "TxnType": "Invoice"}]},
            {"Amount": "30.00", "LinkedTxn": [{"TxnId": "131", "TxnType": "Invoice"}]},
        ],
    }


def _entered(note: str = "billbridge stripe ch_1") -> dict[str, object]:
    """A Payment we entered, as QuickBooks returns it (amounts parsed as Decimal)."""
    return {
        "Id": "77",
        "SyncToken": "2",
        "TotalAmt": Decimal("150.00"),
        "PrivateNote": note,
        "Line": [
            {"Amount": Decimal("100.00"), "LinkedTxn": [{"TxnId": "11", "TxnType": "Invoice"}]},
            {"Amount": Decimal("30.00"), "LinkedTxn": [{"TxnId": "12", "TxnType": "Invoice"}]},
        ],
    }


def test_a_refund_comes_off_its_invoice_line_and_the_total_and_is_named_in_the_note() -> None:
    update = payment_amended(_entered(), "re_1", {"11": Decimal("-40.00")}, Decimal("-40.00"))
    assert update == {
        "Id": "77",
        "SyncToken": "2",
        "sparse": True,
        "TotalAmt": "110.00",
        "Line": [
            {"Amount": "60.00", "LinkedTxn": [{"TxnId": "11", "TxnType": "Invoice"}]},
            {"Amount": "30.00", "LinkedTxn": [{"TxnId": "12", "TxnType": "Invoice"}]},
        ],
        "PrivateNote": "billbridge stripe ch_1 amended re_1",
    }
    json.dumps(update)  # ready to send: no Decimal left in it
    second = payment_amended(
        _entered(update["PrivateNote"]) | update, "re_0", {"12": Decimal("-30.00")}, Decimal("-30.00")
    )
    assert second["Line"] == [{"Amount": "60.00", "LinkedTxn": [{"TxnId": "11", "TxnType": "Invoice"}]}]
    assert (second["TotalAmt"], second["PrivateNote"]) == ("80.00", "billbridge stripe ch_1 amended re_0,re_1")
    assert amendments_in(second["PrivateNote"]) == {"re_0", "re_1"} and amendments_in("billbridge stripe ch_1") == set()
    # Still ours for the lookup and for QuickBooks' payment pull.
    assert note_key(second["PrivateNote"]) == "billbridge stripe ch_1"
    assert mirrored_from(second["PrivateNote"]) == mirrored_from("billbridge stripe ch_1") == "stripe:ch_1"
    assert mirrored_from("billbridge stripe ch_1 something else") is None


def test_money_applied_by_hand_becomes_a_line_within_the_same_total() -> None:
    update = payment_amended(_entered(), "m7", {"13": Decimal("20.00")}, Decimal(0))
    assert update["TotalAmt"] == "150.00"  # it was unapplied on the payment: the total stays
    assert update["Line"][-1] == {"Amount": "20.00", "LinkedTxn": [{"TxnId": "13", "TxnType": "Invoice"}]}
    more = payment_amended(_entered(), "m8", {"12": Decimal("20.00")}, Decimal(0))
    assert more["Line"][1]["Amount"] == "50.00"
    with pytest.raises(ValueError, match="would apply 150.01 of a 150.00 payment"):
        payment_amended(_entered(), "m9", {"13": Decimal("20.01")}, Decimal(0))


@pytest.mark.parametrize(
    ("lines", "says"),
    [
        ({"11": Decimal("-100.01")}, "takes back more than invoice 11 got"),
        ({"13": Decimal("-1.00")}, "takes back from invoice 13, not on it"),
        ({"11": Decimal("0")}, "changes nothing"),
    ],
)
def test_a_change_the_payment_cannot_carry_is_refused(lines: dict[str, Decimal], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        payment_amended(_entered(), "re_1", lines, sum(lines.values(), Decimal(0)))


def test_customer_names_lose_their_colons_and_keep_the_original_in_notes() -> None:
    """Issue 19 item 2: Intuit's XSD forbids a colon in a customer name (it nests sub-customers)."""
    spec = CustomerSpec("C-1", "Globex: EMEA", None, "EUR")
    assert customer_payload(spec) == {
        "DisplayName": "Globex- EMEA",
        "CurrencyRef": {"value": "EUR"},
        "Notes": "Name in billbridge: Globex: EMEA",
    }
    assert len(customer_payload(CustomerSpec("C-2", "x" * 600, None, "EUR"))["DisplayName"]) == 500
