"""Stripe as billbridge uses it: the connector with ``mapping.stripe`` translating both ways
(documents to invoice params and lines, charges, refunds and disputes to payments).

Every write carries a deterministic Idempotency-Key. Stripe replays a key's first answer for 24 hours;
past that (or after a crash between Stripe accepting a document and us recording its id) the invoice
is looked up by its ``billbridge_number`` metadata before it is created again. The lookup lists the
customer's invoices rather than using search, because Stripe's search is eventually consistent
("data is searchable in less than a minute", docs.stripe.com/search) and would miss a fresh invoice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, Literal

import stripe

from billbridge.billing.documents import IncomingPayment, OutboundDocument
from billbridge.connectors.base import PushResult
from billbridge.connectors.errors import ErrorKind, RetryPolicy, VendorError
from billbridge.connectors.stripe import readers
from billbridge.connectors.stripe.client import (
    ADD_LINES_CHUNK,
    ChargeOutcome,
    StripeConflict,
    StripeConnector,
)
from billbridge.connectors.stripe.common import content_key, plain
from billbridge.errors import NotConfigured
from billbridge.mapping import stripe as mapping
from billbridge.mapping.fields import map_each, record_id
from billbridge.settings import Settings
from billbridge.vendors.contract import PaymentPage


def connect(settings: Settings) -> Stripe:
    """The configured Stripe account (``settings.stripe``)."""
    if settings.stripe is None:
        raise NotConfigured("Stripe is not configured (BILLBRIDGE_STRIPE__API_KEY, ...)")
    return Stripe(
        settings.stripe.key(), base_url=settings.stripe.base_url, policy=RetryPolicy.of(settings.stripe.retry)
    )


class Stripe(StripeConnector):
    """One Stripe account as a push target, a collector and a payment source."""

    def payment_streams(self) -> dict[str, Callable[[str | None], Iterator[PaymentPage]]]:
        """Charges, refunds and disputes: three streams, each with its own cursor, read in this order."""
        return {"payments": self.pull_payments, "refunds": self.pull_refunds, "disputes": self.pull_disputes}

    def close(self) -> None:
        """Nothing to close (the SDK's HTTP client is shared)."""

    # customers

    def ensure_customer(
        self,
        customer_ref: str,
        name: str,
        email: str | None,
        *,
        customer_id: str | None = None,
        entity_ref: str | None = None,
    ) -> str:
        """The Stripe customer of ``customer_ref``: the known id (updated if name/email changed), one found
        by metadata, or a new one. Returns its id."""
        fields: dict[str, Any] = {"name": name, "email": email or ""}
        meta = {mapping.METADATA_CUSTOMER: customer_ref}
        if entity_ref:
            meta["billbridge_entity"] = entity_ref
        if customer_id is None:
            customer_id = self.find_customer(customer_ref)
        if customer_id is not None:
            current = plain(self.call(lambda: self.api.customers.retrieve(customer_id)))
            if (current.get("name"), current.get("email") or "") != (name, email or ""):
                update = {**fields, "metadata": meta}
                key = content_key(f"billbridge-customer-{customer_ref}-update", update)
                self.call(lambda: self.api.customers.update(customer_id, update, self._options(key)))
            return customer_id
        create = {**fields, "metadata": meta}
        key = content_key(f"billbridge-customer-{customer_ref}-create", create)
        created = self.call(lambda: self.api.customers.create(create, self._options(key)))
        return str(created.id)

    def find_customer(self, customer_ref: str) -> str | None:
        """Best effort (search lags behind writes): the newest customer carrying our ref in metadata."""
        query = f"metadata['{mapping.METADATA_CUSTOMER}']:'{customer_ref}'"
        found = self.call(lambda: self.api.customers.search({"query": query, "limit": 1}))
        return str(found.data[0].id) if found.data else None

    # invoices

    def push_invoice(self, doc: OutboundDocument, customer_id: str, *, look_up: bool = True) -> PushResult:
        """Create (or complete) the document's invoice: draft, lines, finalize; ``created``, or ``existing``
        when an earlier attempt's invoice was found and completed. ``look_up=False`` skips the search for
        an earlier attempt when the caller knows there was none (saves one call). A vendor failure raises
        ``VendorError``, another version of the document at Stripe ``StripeConflict``."""
        params = mapping.invoice_params(doc, customer_id)
        lines = mapping.invoice_lines(doc)
        invoice = self.find_invoice(doc, customer_id) if look_up else None
        created = invoice is None
        if invoice is None:
            key = doc.idempotency_key("invoice-create")
            invoice = plain(self.call(lambda: self.api.invoices.create(params, self._options(key))))
        version = invoice["metadata"].get(mapping.METADATA_VERSION)
        if version != str(doc.version):
            raise StripeConflict(
                f"{doc.number}: Stripe invoice {invoice['id']} holds version {version}, not {doc.version}"
            )
        if invoice["status"] == "draft":
            self._add_missing_lines(doc, invoice, lines)
            key = doc.idempotency_key("finalize")
            invoice = plain(
                self.call(
                    lambda: self.api.invoices.finalize_invoice(
                        invoice["id"], {"auto_advance": False}, self._options(key)
                    )
                )
            )
        return PushResult(
            doc.number,
            doc.doc_type,
            "created" if created else "existing",
            external_id=str(invoice["id"]),
            vendor_status=invoice["status"],
            amount_due=mapping.from_minor(invoice["amount_due"], doc.currency),
            url=invoice.get("hosted_invoice_url"),
        )

    def _add_missing_lines(self, doc: OutboundDocument, invoice: dict[str, Any], lines: list[dict[str, Any]]) -> None:
        """Add the lines in fixed chunks, each under its own key; chunks already on the draft are skipped."""
        present = {line["metadata"].get(mapping.METADATA_LINE) for line in self._invoice_lines(invoice)}
        for start in range(0, len(lines), ADD_LINES_CHUNK):
            chunk = lines[start : start + ADD_LINES_CHUNK]
            refs = {line["metadata"][mapping.METADATA_LINE] for line in chunk}
            if refs <= present:
                continue
            if refs & present:
                raise StripeConflict(f"{doc.number}: draft {invoice['id']} holds part of a line chunk")
            key = doc.idempotency_key(f"add-lines-{start // ADD_LINES_CHUNK}")
            self.call(partial(self.api.invoices.add_lines, invoice["id"], {"lines": chunk}, self._options(key)))

    def find_invoice(self, doc: OutboundDocument, customer_id: str) -> dict[str, Any] | None:
        """The customer's invoice whose metadata carries this document number (any status but void)."""
        for invoice in self.paged(lambda p: self.api.invoices.list(p), {"customer": customer_id}):
            meta = invoice.get("metadata") or {}
            if meta.get(mapping.METADATA_NUMBER) == doc.number and invoice["status"] != "void":
                return invoice
        return None

    def charge_invoice(self, invoice_id: str, key: str) -> ChargeOutcome:
        """Collect an open invoice with the customer's default payment method.

        A decline is an outcome (the invoice stays open); Stripe remembers it under ``key``, so a new
        attempt needs a new key (e.g. ``doc.idempotency_key(f"charge-{attempt}")``).
        """

        def pay() -> dict[str, Any] | stripe.CardError:
            try:
                return plain(self.api.invoices.pay(invoice_id, {"off_session": True}, self._options(key)))
            except stripe.CardError as exc:
                return exc

        try:
            result = self.call(pay)
        except VendorError as exc:
            cause = exc.__cause__
            # Stripe refuses to pay an invoice that is no longer open without a documented code: read it
            # (paid by an earlier attempt whose answer was lost is "paid"; void and the like are conflicts)
            if isinstance(cause, stripe.InvalidRequestError) and cause.http_status == 400:
                result = self.retrieve_invoice(invoice_id)
            else:
                raise
        if isinstance(result, stripe.CardError):
            error = result.error
            return ChargeOutcome(
                status="declined",
                invoice_id=invoice_id,
                decline_code=getattr(error, "decline_code", None) or result.code,
                message=result.user_message or str(result),
                charge_id=getattr(error, "charge", None),
            )
        if result["status"] not in ("paid", "open"):
            raise StripeConflict(f"invoice {invoice_id} is {result['status']}: nothing to collect")
        currency = str(result["currency"]).upper()
        status: Literal["paid", "pending"] = "paid" if result["status"] == "paid" else "pending"
        return ChargeOutcome(status, invoice_id, mapping.from_minor(result["amount_paid"], currency))

    # payments

    def pull_payments(self, cursor: str | None) -> Iterator[PaymentPage]:
        """Pages of succeeded charges since ``cursor`` as IncomingPayments (save ``page.cursor`` after storing)."""
        for page in readers.charge_records(self, cursor):
            payments, refused = map_each(page.records, partial(_charge_payment, page.related), record_id)
            yield PaymentPage(payments, page.cursor, refused=refused, records=page.records, api_calls=page.api_calls)

    def pull_refunds(self, cursor: str | None) -> Iterator[PaymentPage]:
        """Pages of refunds since ``cursor`` as negative IncomingPayments (their own cursor)."""
        for page in readers.refund_records(self, cursor):
            payments, refused = map_each(page.records, partial(_refund_payment, page.related), record_id)
            yield PaymentPage(payments, page.cursor, refused=refused, records=page.records, api_calls=page.api_calls)

    def pull_disputes(self, cursor: str | None) -> Iterator[PaymentPage]:
        """Disputes' withdrawals and reinstatements since ``cursor`` as payments (their own cursor)."""
        page = readers.dispute_records(self, cursor)
        events, invoices = page.records, page.related
        payments, refused = map_each(
            reversed(events),
            lambda e: mapping.payment_from_dispute(
                e["type"],
                e["data"]["object"],
                invoices.get(str(e["data"]["object"].get("payment_intent"))),
                int(e["created"]),
            ),
            lambda e: f"{record_id(e['data']['object'])}:{mapping.DISPUTE_MOVES[e['type']][0]}",
        )
        disputes = [e["data"]["object"] for e in events]
        # Withdrawals first, in a page of their own: a reinstatement pays an invoice its withdrawal reopened.
        withdrawals = [p for p in payments if p.amount < 0]
        yield PaymentPage(withdrawals, None, refused=refused, records=disputes, api_calls=page.api_calls)
        yield PaymentPage([p for p in payments if p.amount >= 0], page.cursor)


class StripeDocuments:
    """Stripe as a push target for one run: each invoice written on its own (customer, invoice, lines,
    finalize; Stripe has no batch), every write under the document's idempotency key, and each refusal
    a failed ``PushResult`` (a vendor failure retriable when it says so; another version of the
    document at Stripe, or a document Stripe cannot take, fatal), never an exception."""

    def __init__(self, stripe: Stripe) -> None:
        self.stripe = stripe
        # Customers ensured in this run, by what was ensured: each is searched (and checked) once per run,
        # not once per invoice (that was two calls of five per invoice).
        self.customers: dict[tuple[str, str, str | None, str], str] = {}
        self.renamed_customers: dict[str, tuple[str, str]] = {}  # Stripe takes any name: none renamed

    def push_documents(
        self,
        docs: Sequence[OutboundDocument],
        *,
        look_up_first: bool = True,
        recorded_customers: Mapping[str, str] | None = None,
    ) -> list[PushResult]:
        """One result per document, in order; ``look_up_first`` finds an earlier attempt's invoice first.
        Customers are found by their metadata (``recorded_customers`` is not needed)."""
        return [self.push_document(doc, look_up=look_up_first) for doc in docs]

    def push_document(self, doc: OutboundDocument, *, look_up: bool) -> PushResult:
        try:
            who = (doc.customer_ref, doc.customer_name, doc.customer_email, doc.entity_ref)
            customer = self.customers.get(who)
            if customer is None:
                customer = self.customers[who] = self.stripe.ensure_customer(
                    doc.customer_ref, doc.customer_name, doc.customer_email, entity_ref=doc.entity_ref
                )
            return self.stripe.push_invoice(doc, customer, look_up=look_up)
        except VendorError as exc:
            retriable = exc.classified.kind == ErrorKind.RETRIABLE
            return PushResult(doc.number, doc.doc_type, "failed", error=exc.classified.reason, retriable=retriable)
        except (StripeConflict, ValueError) as exc:
            return PushResult(doc.number, doc.doc_type, "failed", error=str(exc))

    def close(self) -> None:
        self.stripe.close()


def _charge_payment(invoices: Mapping[str, dict[str, Any]], charge: dict[str, Any]) -> IncomingPayment:
    txn = charge.get("balance_transaction")
    invoice = invoices.get(str(charge.get("payment_intent")))
    return mapping.payment_from_charge(charge, txn if isinstance(txn, dict) else None, invoice)


def _refund_payment(invoices: Mapping[str, dict[str, Any]], refund: dict[str, Any]) -> IncomingPayment:
    return mapping.payment_from_refund(refund, invoices.get(str(refund.get("payment_intent"))))
