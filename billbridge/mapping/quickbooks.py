"""OutboundDocument -> QuickBooks Invoice / CreditMemo payloads, and QuickBooks Payments -> IncomingPayment.

Pure functions. Amounts leave as decimal strings (``"1234.50"``), the way python-quickbooks'
``DecimalEncoder`` writes a Decimal, so no binary float ever stands between our ledger and theirs;
they come back as Decimals (the client parses JSON numbers with ``parse_float=Decimal``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Context, Decimal
from typing import Any, Literal

from billbridge.billing.currency import round_money
from billbridge.billing.documents import DocumentLine, IncomingPayment, OutboundDocument
from billbridge.billing.partner_fees import PartnerBill
from billbridge.mapping.fields import iso_date, number, objects, parse, read, required_text, text

QboEntity = Literal["Invoice", "CreditMemo"]
DOC_NUMBER_MAX = 21  # QuickBooks' DocNumber holds at most 21 characters
DISPLAY_NAME_MAX = 500
NOTES_MAX = 1024  # Intuit's XSD: Customer.Notes, "Max. length: 1024 characters"
PAYMENT_REF_MAX = 21  # QuickBooks' PaymentRefNum holds at most 21 characters
UNIT_PRICE_MAX_PLACES = 7  # UnitPrice precision we trust QuickBooks to keep; beyond it we send Amount only
_EXACT = Context(prec=50)

_ENTITY_OF: dict[str, QboEntity] = {"invoice": "Invoice", "credit_note": "CreditMemo"}


@dataclass(frozen=True)
class CustomerSpec:
    """What QuickBooks needs to know about one of our customers."""

    customer_ref: str
    display_name: str
    email: str | None
    currency: str


def qbo_entity(doc: OutboundDocument) -> QboEntity:
    return _ENTITY_OF[doc.doc_type]


def customer_spec(doc: OutboundDocument) -> CustomerSpec:
    return CustomerSpec(doc.customer_ref, doc.customer_name, doc.customer_email, doc.currency)


def display_name(name: str) -> str:
    """A valid QuickBooks customer name: Intuit's XSD forbids a colon (it separates a sub-customer
    from its parent), so each becomes a hyphen; within DISPLAY_NAME_MAX characters."""
    return name.replace(":", "-")[:DISPLAY_NAME_MAX]


def clash_name(spec: CustomerSpec) -> str:
    """The customer's name when a vendor or an employee holds its plain one (DisplayName is unique
    across the three in QuickBooks): the name with our customer reference as a suffix, the same on
    every run, so a later run finds the customer by it."""
    suffix = f" ({display_name(spec.customer_ref)})"
    return display_name(spec.display_name)[: DISPLAY_NAME_MAX - len(suffix)] + suffix


def customer_payload(spec: CustomerSpec, *, name: str | None = None) -> dict[str, Any]:
    """The customer as QuickBooks takes it (``name``: the DisplayName to use, by default the valid
    form of its own); a name that had to change keeps its original in Notes, which QuickBooks shows
    on the customer."""
    name = name or display_name(spec.display_name)
    payload: dict[str, Any] = {"DisplayName": name, "CurrencyRef": {"value": spec.currency}}
    if name != spec.display_name:
        payload["Notes"] = f"Name in billbridge: {spec.display_name}"[:NOTES_MAX]
    if spec.email:
        payload["PrimaryEmailAddr"] = {"Address": spec.email}
    return payload


def vendor_clash_name(bill: PartnerBill) -> str:
    """The partner's Vendor name when a customer or an employee holds its plain one (DisplayName is
    unique across the three: a partner of kind ``both`` is our customer under its name as a reseller):
    the name with the partner ref as a suffix, the same on every run, so a later run finds it."""
    suffix = f" ({display_name(bill.partner_ref)})"
    return display_name(bill.partner_name)[: DISPLAY_NAME_MAX - len(suffix)] + suffix


def vendor_payload(bill: PartnerBill, *, name: str | None = None) -> dict[str, Any]:
    """The partner as a QuickBooks Vendor (``name``: the DisplayName to use, by default the valid form of
    its own; ``vendor_clash_name`` when a customer or an employee holds that); a name that had to change
    keeps the original in Notes."""
    name = name or display_name(bill.partner_name)
    payload: dict[str, Any] = {
        "DisplayName": name,
        "CompanyName": bill.partner_name[:100],
        "CurrencyRef": {"value": bill.currency},
        "AcctNum": bill.partner_ref[:100],  # the account number the vendor knows us by: our partner ref
    }
    if name != bill.partner_name:
        payload["Notes"] = f"Name in billbridge: {bill.partner_name}"[:NOTES_MAX]
    if bill.email:
        payload["PrimaryEmailAddr"] = {"Address": bill.email}
    return payload


def expense_account_payload(name: str) -> dict[str, Any]:
    """The expense account partner fees post to (looked up by Name, made when missing)."""
    return {"Name": name, "AccountType": "Expense", "AccountSubType": "OtherMiscellaneousServiceCost"}


def bill_payload(bill: PartnerBill, *, vendor_id: str, account_id: str) -> dict[str, Any]:
    """A statement as a QuickBooks Bill, or a negative one as a VendorCredit for its opposite (both are
    Intuit's PurchaseByVendor: lines may not be negative): one expense line per referred customer (one
    line for the total when customers' fees have both signs), DocNumber the statement's number."""
    if bill.total == 0:
        raise ValueError(f"statement {bill.number}: nothing to bill or credit (total 0)")
    sign = -1 if bill.credit else 1
    parts = [
        (f"Referral fees {bill.months}: {line.customer_ref}", sign * line.fees) for line in bill.lines if line.fees
    ]
    if any(amount < 0 for _, amount in parts):
        parts = [(f"Referral fees {bill.months} ({len(bill.lines)} customers)", sign * bill.total)]
    lines = [
        {
            "Amount": _text(round_money(amount, bill.currency)),
            "Description": description[:4000],
            "DetailType": "AccountBasedExpenseLineDetail",
            "AccountBasedExpenseLineDetail": {"AccountRef": {"value": account_id}},
        }
        for description, amount in parts
    ]
    payload: dict[str, Any] = {
        "VendorRef": {"value": vendor_id},
        "DocNumber": bill.number,
        "TxnDate": bill.bill_date.isoformat(),
        "CurrencyRef": {"value": bill.currency},
        "PrivateNote": f"billbridge partner statement {bill.partner_ref} {bill.months}"[:NOTES_MAX],
        "Line": lines,
    }
    if not bill.credit:  # a VendorCredit has no due date (the XSD's DueDate is Bill's own)
        payload["DueDate"] = bill.due_date.isoformat()
    return payload


def bill_entity(bill: PartnerBill) -> str:
    """The QuickBooks entity a statement becomes: a Bill, or a VendorCredit when it is negative."""
    return "VendorCredit" if bill.credit else "Bill"


PASS_THROUGH_ITEM = "{sku} (pass-through)"
"""The item a product's ``recognition: none`` lines post through when revenue recognition is on: its income
account is the pass-through account, so what they bill never lands in deferred revenue."""


def item_name(line: DocumentLine, pass_through_items: bool = False) -> str:
    """The QuickBooks item (by Name) a document line posts through: the product's SKU, or with
    ``pass_through_items`` the product's pass-through item for a ``recognition: none`` line."""
    if pass_through_items and line.pass_through:
        return PASS_THROUGH_ITEM.format(sku=line.product_ref)
    return line.product_ref


def item_payload(sku: str, description: str, income_account_id: str) -> dict[str, Any]:
    """A Service item named by our SKU (Item names are unique in a QuickBooks company)."""
    return {
        "Name": sku,
        "Description": description,
        "Type": "Service",
        "IncomeAccountRef": {"value": income_account_id},
    }


def _unit_price(amount: Decimal, quantity: Decimal) -> Decimal | None:
    """``amount / quantity`` when it is exact in a few places (QuickBooks checks Qty x UnitPrice == Amount)."""
    if quantity == 0:
        return None
    unit = _EXACT.divide(amount, quantity).normalize(_EXACT)
    exponent = unit.as_tuple().exponent
    if not isinstance(exponent, int) or -exponent > UNIT_PRICE_MAX_PLACES or _EXACT.multiply(unit, quantity) != amount:
        return None
    return unit


def _text(value: Decimal) -> str:
    return format(value, "f")


def document_payload(
    doc: OutboundDocument, *, customer_id: str, item_ids: Mapping[str, str], pass_through_items: bool = False
) -> dict[str, Any]:
    """The Invoice or CreditMemo body for ``doc``: DocNumber is our number, so a lookup finds it again.
    ``item_ids``: QuickBooks item Ids by ``item_name`` (``pass_through_items``: pass-through lines apart).

    A credit note's lines are credits on a CreditMemo, which QuickBooks writes with positive amounts:
    our negative credit lines flip sign.
    """
    if len(doc.number) > DOC_NUMBER_MAX:
        raise ValueError(f"{doc.number}: QuickBooks DocNumber holds at most {DOC_NUMBER_MAX} characters")
    sign = -1 if doc.doc_type == "credit_note" else 1
    lines = []
    for line in doc.lines:
        amount = round_money(sign * line.amount, doc.currency)
        if amount != sign * line.amount:
            raise ValueError(f"{doc.number} line {line.line_ref}: {line.amount} is not rounded to {doc.currency}")
        detail: dict[str, Any] = {
            "ItemRef": {"value": item_ids[item_name(line, pass_through_items)]},
            "ServiceDate": line.start_date.isoformat(),
        }
        unit = _unit_price(amount, line.quantity)
        if unit is not None:
            detail["Qty"] = _text(line.quantity)
            detail["UnitPrice"] = _text(unit)
        lines.append(
            {
                "DetailType": "SalesItemLineDetail",
                "Amount": _text(amount),
                "Description": f"{line.description} ({line.start_date.isoformat()} - {line.end_date.isoformat()})",
                "SalesItemLineDetail": detail,
            }
        )
    payload: dict[str, Any] = {
        "DocNumber": doc.number,
        "CustomerRef": {"value": customer_id},
        "CurrencyRef": {"value": doc.currency},
        "TxnDate": doc.billing_date.isoformat(),
        "Line": lines,
        "PrivateNote": f"billbridge {doc.number} v{doc.version} contract {doc.contract_ref}",
    }
    if doc.doc_type == "invoice":
        payload["DueDate"] = doc.due_date.isoformat()
        if doc.customer_email:
            payload["BillEmail"] = {"Address": doc.customer_email}
    elif doc.applies_to:
        payload["CustomerMemo"] = {"value": f"Credit for {doc.applies_to}"}
    return payload


def _amount(value: Any) -> Decimal:
    if isinstance(value, float | bool):
        raise TypeError(f"QuickBooks amount arrived as {type(value).__name__}; parse JSON with parse_float=Decimal")
    return number(value)


def linked_invoice_ids(payment: Any) -> set[str]:
    """The QuickBooks Invoice Ids a Payment's lines link to (those it can read: ``payment_from_qbo``
    refuses a payment whose links it cannot read)."""
    lines = payment.get("Line") if isinstance(payment, Mapping) else None
    return {
        str(link["TxnId"])
        for line in (lines if isinstance(lines, list) else [])
        if isinstance(line, Mapping) and isinstance(line.get("LinkedTxn"), list)
        for link in line["LinkedTxn"]
        if isinstance(link, Mapping) and link.get("TxnType") == "Invoice" and type(link.get("TxnId")) in (str, int)
    }


def payment_from_qbo(payment: Mapping[str, Any], doc_numbers: Mapping[str, str]) -> IncomingPayment:
    """A QuickBooks Payment as an IncomingPayment; ``doc_numbers`` maps invoice Ids to our DocNumbers.
    A value it cannot read is a MappingError naming the field (the payment is quarantined)."""
    numbers: list[str] = []
    amounts: list[Decimal] = []
    unknown: list[str] = []
    for index, line in enumerate(read(payment, "Line", objects, default=[])):
        for link in read(line, "LinkedTxn", objects, default=[], name=f"Line[{index}].LinkedTxn"):
            if link.get("TxnType") != "Invoice":
                continue
            txn = read(link, "TxnId", required_text, name=f"Line[{index}].LinkedTxn.TxnId")
            number = doc_numbers.get(txn)
            if number is None:
                unknown.append(txn)
                continue
            numbers.append(number)
            amounts.append(read(line, "Amount", _amount, name=f"Line[{index}].Amount"))
    note = read(payment, "PrivateNote", text, default=None)
    extra = {
        "qbo_customer_id": read(payment, "CustomerRef.value", required_text),
        "unapplied": _text(read(payment, "UnappliedAmt", _amount, default=Decimal(0))),
    }
    if unknown:
        extra["unknown_invoice_ids"] = ",".join(unknown)
    return IncomingPayment(
        source="quickbooks",
        payment_ref=read(payment, "Id", required_text),
        currency=read(payment, "CurrencyRef.value", text, default=None) or "",
        amount=read(payment, "TotalAmt", _amount),
        received_on=read(payment, "TxnDate", iso_date),
        customer_ref=None,  # QuickBooks carries its own customer id; the store maps it back through external refs
        invoice_numbers=tuple(numbers),
        invoice_amounts=tuple(amounts),
        method=read(payment, "PaymentMethodRef.name", text, default=None)
        or read(payment, "PaymentMethodRef.value", text, default=None),
        reference=read(payment, "PaymentRefNum", text, default=None) or note,
        extra=extra,
        memo=note,
        # changes on every edit: dedupe by (payment_ref, source_version)
        source_version=read(payment, "SyncToken", text, default=None),
        mirrored_from=mirrored_from(note),
    )


DELETED = "deleted"  # the version of a payment deleted in QuickBooks (its SyncTokens are numbers)


def payment_deleted(tombstone: Mapping[str, Any]) -> IncomingPayment:
    """A Payment deleted in QuickBooks, as change data capture reports it (Id, status "Deleted",
    when): a payment of nothing at version ``deleted``, so what the recorded one applied is taken back."""
    when = read(tombstone, "MetaData.LastUpdatedTime", text, default=None) or ""
    return IncomingPayment(
        source="quickbooks",
        payment_ref=read(tombstone, "Id", required_text),
        currency="",
        amount=Decimal(0),
        received_on=parse("MetaData.LastUpdatedTime", iso_date, when) if when else date.today(),
        customer_ref=None,
        source_version=DELETED,
        deleted_at=when,
    )


def payment_note(payment: IncomingPayment) -> str:
    """The PrivateNote that marks a payment we recorded, so a lookup can find it again."""
    return f"billbridge {payment.source} {payment.payment_ref}"


AMENDED_WORD = "amended"  # in a PrivateNote, after the payment_note: the changes made to the payment since


def note_key(note: object) -> str:
    """The ``payment_note`` a PrivateNote starts with (what finds the payment again), without the
    changes listed after it."""
    return " ".join(note.split(" ")[:3]) if isinstance(note, str) else ""


def mirrored_from(note: object) -> str | None:
    """``source:ref`` of the payment a QuickBooks Payment mirrors (its ``payment_note``), else None."""
    parts = note.split(" ") if isinstance(note, str) else []
    shaped = len(parts) == 3 or (len(parts) == 5 and parts[3] == AMENDED_WORD)
    if shaped and parts[0] == "billbridge" and parts[1] != "quickbooks" and parts[2]:
        return f"{parts[1]}:{parts[2]}"
    return None


def amendments_in(note: object) -> set[str]:
    """The changes a Payment we entered says it carries (``payment_amended``)."""
    parts = note.split(" ") if isinstance(note, str) else []
    return set(parts[4].split(",")) if len(parts) == 5 and parts[3] == AMENDED_WORD else set()


def payment_amended(
    record: Mapping[str, Any], change_ref: str, lines: Mapping[str, Decimal], total_change: Decimal
) -> dict[str, Any]:
    """The sparse update making a change to a Payment we entered (``record`` as QuickBooks has it):
    ``lines`` maps QuickBooks Invoice Ids to what changes in the amount applied to each (a refund
    takes back: negative; money applied by hand: positive, a new line if the invoice has none), and
    the total changes by ``total_change`` (a refund: what it took back; an application: nothing,
    the money was unapplied on the payment). A line left at zero goes. The PrivateNote gains the
    change's ref: it says, to whoever reads the payment next, that this change is on it (a retry
    after a lost answer must not make it twice). Raises ValueError for a change the payment cannot
    carry (the caller checks ``amendments_in`` first)."""
    ident = record.get("Id")
    left = {str(k): v for k, v in lines.items() if v != 0}
    if not left:
        raise ValueError(f"payment {ident}: change {change_ref} changes nothing")
    out = []
    for line in record.get("Line", []):
        invoices = [str(link["TxnId"]) for link in line.get("LinkedTxn", []) if link.get("TxnType") == "Invoice"]
        amount = _amount(line["Amount"])
        if len(invoices) == 1 and invoices[0] in left:
            amount += left.pop(invoices[0])
            if amount < 0:
                raise ValueError(f"payment {ident}: change {change_ref} takes back more than invoice {invoices[0]} got")
            if amount == 0:
                continue
        out.append({**line, "Amount": _text(amount)})
    for invoice, change in left.items():
        if change < 0:
            raise ValueError(f"payment {ident}: change {change_ref} takes back from invoice {invoice}, not on it")
        out.append({"Amount": _text(change), "LinkedTxn": [{"TxnId": invoice, "TxnType": "Invoice"}]})
    total = _amount(record["TotalAmt"]) + total_change
    applied = sum((_amount(line["Amount"]) for line in out), Decimal(0))
    if total < 0 or applied > total:
        raise ValueError(f"payment {ident}: change {change_ref} would apply {applied} of a {total} payment")
    note = record.get("PrivateNote")
    changes = ",".join(sorted(amendments_in(note) | {change_ref}))
    return {
        "Id": ident,
        "SyncToken": record.get("SyncToken"),
        "sparse": True,
        "TotalAmt": _text(total),
        "Line": out,
        "PrivateNote": f"{note_key(note)} {AMENDED_WORD} {changes}",
    }


def payment_payload(payment: IncomingPayment, *, customer_id: str, invoice_ids: Mapping[str, str]) -> dict[str, Any]:
    """A QuickBooks Payment for a payment collected elsewhere (Stripe), applied to our invoices there.

    ``invoice_ids`` maps our invoice numbers to QuickBooks Invoice Ids; what is not applied stays
    unapplied on the customer (QuickBooks' UnappliedAmt, a customer credit).
    """
    if len(payment.invoice_amounts) != len(payment.invoice_numbers):
        raise ValueError(f"{payment.payment_ref}: one applied amount per linked invoice is needed")
    lines = [
        {"Amount": _text(amount), "LinkedTxn": [{"TxnId": invoice_ids[number], "TxnType": "Invoice"}]}
        for number, amount in zip(payment.invoice_numbers, payment.invoice_amounts, strict=True)
    ]
    return {
        "CustomerRef": {"value": customer_id},
        "TotalAmt": _text(payment.amount),
        "CurrencyRef": {"value": payment.currency},
        "TxnDate": payment.received_on.isoformat(),
        "PaymentRefNum": payment.payment_ref[-PAYMENT_REF_MAX:],
        "PrivateNote": payment_note(payment),
        "Line": lines,
    }
