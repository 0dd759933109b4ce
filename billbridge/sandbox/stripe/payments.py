"""Sandbox handlers for invoice items, invoices (create, add lines, finalize, pay, void, mark
uncollectible), payment intents, charges, refunds, balance transactions, invoice payments and events."""

from __future__ import annotations

import contextlib
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from billbridge.sandbox.stripe.catalog import listing, metadata, required, search, to_int
from billbridge.sandbox.stripe.state import TEMPLATES, StripeApiError, StripeState, invalid, page
from billbridge.sandbox.stripe.views import view

# The sandbox's processing fee, in the style of Stripe's US card pricing: 2.9% + 30 cents.
FEE_RATE = Decimal("0.029")
FEE_FIXED_TWO_DECIMAL = 30  # minor units of a two-decimal currency; scaled by 10 for three decimals
ZERO_DECIMAL = frozenset(
    ["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"]
)  # docs.stripe.com/currencies#zero-decimal
THREE_DECIMAL = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])  # docs.stripe.com/currencies#three-decimal
PAYOUT_DELAY_SECONDS = 2 * 86400
INVOICE_ITEMS_MAX = 250  # per invoice (Stripe changelog 2016-02-22)
_DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
}


def processing_fee(amount: int, currency: str) -> int:
    """2.9% of the amount (half-up to the minor unit) plus the fixed part."""
    fixed = 0 if currency in ZERO_DECIMAL else FEE_FIXED_TWO_DECIMAL * (10 if currency in THREE_DECIMAL else 1)
    return int((Decimal(amount) * FEE_RATE).quantize(Decimal(1), rounding=ROUND_HALF_UP)) + fixed


# invoices


def create_invoice(state: StripeState, params: dict[str, Any]) -> dict[str, Any]:
    customer = state.get("customer", required(params, "customer"), "customer")
    method = params.get("collection_method") or "charge_automatically"
    due_date = to_int(params, "due_date")
    days = to_int(params, "days_until_due")
    if method == "send_invoice" and due_date is None and days is None:
        raise invalid("Missing required param: days_until_due or due_date for send_invoice.", "days_until_due")
    now = state.now()
    invoice = state.new(
        "invoice",
        customer=customer["id"],
        customer_email=customer["email"],
        customer_name=customer["name"],
        customer_address=None,
        customer_shipping=None,
        currency=str(params.get("currency") or customer.get("currency") or "usd").lower(),
        collection_method=method,
        auto_advance=params.get("auto_advance") == "true",
        description=params.get("description"),
        due_date=due_date if due_date is not None else (now + days * 86400 if days is not None else None),
        default_payment_method=params.get("default_payment_method"),
        metadata=metadata(params),
        billing_reason="manual",
        effective_at=None,
        from_invoice=None,
        last_finalization_error=None,
        next_payment_attempt=None,
        webhooks_delivered_at=None,
        shipping_cost=None,
        shipping_details=None,
        amount_overpaid=0,
        parent=None,
        period_start=now,
        period_end=now,
        status="draft",
        status_transitions={"finalized_at": None, "marked_uncollectible_at": None, "paid_at": None, "voided_at": None},
        _lines=[],
    )
    _totals(state, invoice)
    state.emit("invoice.created", invoice, view(state, invoice))
    return view(state, invoice)


def _totals(state: StripeState, invoice: dict[str, Any]) -> None:
    total = sum(state.get("line_item", i)["amount"] for i in invoice["_lines"])
    paid = invoice["amount_paid"]
    invoice.update(
        subtotal=total,
        subtotal_excluding_tax=total,
        total=total,
        total_excluding_tax=total,
        amount_due=max(total, 0),
        amount_remaining=max(total, 0) - paid,
        amount_shipping=0,
    )


def _draft(state: StripeState, invoice_id: str, param: str = "id") -> dict[str, Any]:
    invoice = state.get("invoice", invoice_id, param)
    if invoice["status"] != "draft":
        raise invalid(
            f"You can only modify draft invoices; invoice {invoice_id} is {invoice['status']}.",
            param,
            "invoice_not_editable",
        )
    return invoice


def _add_line(state: StripeState, invoice: dict[str, Any], raw: dict[str, Any], customer: str) -> dict[str, Any]:
    if len(invoice["_lines"]) >= INVOICE_ITEMS_MAX:
        raise invalid(f"An invoice can hold at most {INVOICE_ITEMS_MAX} invoice items.", "lines")
    amount = to_int(raw, "amount")
    if amount is None:
        raise invalid("Missing required param: amount.", "amount", "parameter_missing")
    currency = str(raw.get("currency") or invoice["currency"]).lower()
    if currency != invoice["currency"]:
        raise invalid(f"The invoice is in {invoice['currency']}, the item in {currency}.", "currency")
    if currency in THREE_DECIMAL and amount % 10:  # docs.stripe.com/currencies#three-decimal
        raise invalid(
            f"Amounts in {currency.upper()} must be rounded to the nearest ten (got {amount}).",
            "amount",
            "invalid_amount",
        )
    period = raw.get("period") or {}
    period = {"start": to_int(period, "start", state.now()), "end": to_int(period, "end", state.now())}
    meta = metadata(raw)
    item = state.new(
        "invoiceitem",
        amount=amount,
        currency=currency,
        customer=customer,
        description=raw.get("description"),
        invoice=invoice["id"],
        metadata=meta,
        period=period,
        quantity=1,
        quantity_decimal="1",
        net_amount=amount,
        parent=None,
        pricing={"type": "price_details", "unit_amount_decimal": str(amount)},
        date=state.now(),
    )
    line = state.new(
        "line_item",
        amount=amount,
        currency=currency,
        description=raw.get("description"),
        invoice=invoice["id"],
        metadata=meta,
        period=period,
        quantity=1,
        subtotal=amount,
        parent={
            "type": "invoice_item_details",
            "invoice_item_details": {
                "invoice_item": item["id"],
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": None,
            },
            "subscription_item_details": None,
        },
        pricing={"type": "price_details", "unit_amount_decimal": str(amount)},
    )
    invoice["_lines"].append(line["id"])
    _totals(state, invoice)
    return item


def create_invoice_item(state: StripeState, params: dict[str, Any]) -> dict[str, Any]:
    customer = state.get("customer", required(params, "customer"), "customer")
    # Items without an invoice would wait as "pending items"; the connector always names its invoice.
    invoice = _draft(state, required(params, "invoice"), "invoice")
    item = _add_line(state, invoice, params, customer["id"])
    state.emit("invoiceitem.created", item, view(state, item))
    return view(state, item)


def add_lines(state: StripeState, params: dict[str, Any], invoice_id: str) -> dict[str, Any]:
    """POST /v1/invoices/{id}/add_lines: several lines in one call (all or none)."""
    invoice = _draft(state, invoice_id)
    lines = required(params, "lines")
    for raw in lines:
        _add_line(state, invoice, raw, invoice["customer"])
    invoice["metadata"] = metadata({"metadata": params.get("invoice_metadata") or {}}, invoice["metadata"])
    state.emit("invoice.updated", invoice, view(state, invoice))
    return view(state, invoice)


def finalize_invoice(state: StripeState, params: dict[str, Any], invoice_id: str) -> dict[str, Any]:
    invoice = _draft(state, invoice_id)
    customer = state.get("customer", invoice["customer"])
    now = state.now()
    sequence = customer["next_invoice_sequence"]
    customer["next_invoice_sequence"] = sequence + 1
    invoice.update(
        number=f"{customer['invoice_prefix']}-{sequence:04d}",
        status="open",
        effective_at=now,
        hosted_invoice_url=f"https://invoice.stripe.sandbox/i/{invoice['id']}",
        invoice_pdf=f"https://pay.stripe.sandbox/invoice/{invoice['id']}/pdf",
    )
    invoice["status_transitions"]["finalized_at"] = now
    if "auto_advance" in params:
        invoice["auto_advance"] = params["auto_advance"] == "true"
    if invoice["amount_due"] == 0:  # Stripe marks a zero invoice paid when it is finalized
        invoice["status"] = "paid"
        invoice["status_transitions"]["paid_at"] = now
    else:
        _default_payment(state, invoice, customer)
    state.emit("invoice.finalized", invoice, view(state, invoice))
    return view(state, invoice)


def _default_payment(state: StripeState, invoice: dict[str, Any], customer: dict[str, Any]) -> None:
    """ "Stripe automatically creates a default InvoicePayment when the invoice is finalized" (API reference,
    invoice_payment.is_default), with the payment intent every collection attempt then reuses."""
    intent = state.new(
        "payment_intent",
        amount=invoice["amount_due"],
        amount_details=None,
        automatic_payment_methods=None,
        canceled_at=None,
        client_secret=None,
        currency=invoice["currency"],
        customer=customer["id"],
        description=f"Payment for Invoice {invoice['number']}",
        last_payment_error=None,
        next_action=None,
        payment_method=None,
        payment_method_configuration_details=None,
        processing=None,
        shipping=None,
        transfer_data=None,
        managed_payments=None,
        status="requires_payment_method",
    )
    payment = state.new(
        "invoice_payment",
        amount_paid=None,
        amount_requested=invoice["amount_due"],
        currency=invoice["currency"],
        invoice=invoice["id"],
        is_default=True,
        payment={"type": "payment_intent", "payment_intent": intent["id"]},
        status="open",
        status_transitions={"canceled_at": None, "paid_at": None},
    )
    invoice["_payment"] = payment["id"]


def _open(state: StripeState, invoice_id: str) -> dict[str, Any]:
    invoice = state.get("invoice", invoice_id)
    # Stripe answers these with an invalid_request_error and no documented code (there is no
    # "invoice_not_open" among docs.stripe.com/error-codes): clients must read the invoice to know.
    if invoice["status"] == "paid":
        raise invalid("Invoice is already paid")
    if invoice["status"] != "open":
        raise invalid(f"You can only pass in open invoices. This invoice is {invoice['status']}.")
    return invoice


def void_invoice(state: StripeState, params: dict[str, Any], invoice_id: str) -> dict[str, Any]:
    invoice = _open(state, invoice_id)
    invoice["status"] = "void"
    invoice["status_transitions"]["voided_at"] = state.now()
    invoice["amount_remaining"] = 0
    state.emit("invoice.voided", invoice, view(state, invoice))
    return view(state, invoice)


def send_invoice(state: StripeState, params: dict[str, Any], invoice_id: str) -> dict[str, Any]:
    """``POST /v1/invoices/{id}/send``: Stripe e-mails a finalized ``send_invoice`` invoice (open, or
    paid, without mention of the payment) to its customer's e-mail with the hosted invoice page, and
    emits ``invoice.sent`` (in test mode the event only: Stripe mails nobody). The sandbox records
    each "mail" in ``state.sent_emails``."""
    invoice = state.get("invoice", invoice_id)
    if invoice["collection_method"] != "send_invoice":
        raise invalid("You can only manually send an invoice if its collection method is 'send_invoice'.")
    if invoice["status"] not in ("open", "paid"):
        raise invalid(f"You can only send invoices that are open or paid. This invoice is {invoice['status']}.")
    customer = state.get("customer", invoice["customer"], "customer")
    if not customer.get("email"):
        raise invalid("The customer has no email address to send the invoice to.", "customer")
    shown = view(state, invoice)
    state.sent_emails.append(
        {
            "invoice": invoice["id"],
            "number": invoice["number"],
            "to": customer["email"],
            "hosted_invoice_url": invoice["hosted_invoice_url"],
            "event": state.emit("invoice.sent", invoice, shown)["id"],
        }
    )
    return shown


def mark_uncollectible(state: StripeState, params: dict[str, Any], invoice_id: str) -> dict[str, Any]:
    invoice = _open(state, invoice_id)
    invoice["status"] = "uncollectible"
    invoice["status_transitions"]["marked_uncollectible_at"] = state.now()
    state.emit("invoice.marked_uncollectible", invoice, view(state, invoice))
    return view(state, invoice)


def pay_invoice(state: StripeState, params: dict[str, Any], invoice_id: str) -> dict[str, Any]:
    """Charge the open invoice's remaining amount to a payment method; a decline answers 402 card_error
    and leaves the invoice open (Stripe remembers the 402 under the Idempotency-Key too)."""
    invoice = _open(state, invoice_id)
    customer = state.get("customer", invoice["customer"])
    pm_id = (
        params.get("payment_method")
        or invoice["default_payment_method"]
        or customer["invoice_settings"]["default_payment_method"]
    )
    if not pm_id:
        raise invalid(
            "Cannot charge a customer that has no default payment method.", "payment_method", "resource_missing"
        )
    pm = state.get("payment_method", pm_id, "payment_method")
    amount = invoice["amount_remaining"]
    decline = pm.get("_decline")
    payment = state.get("invoice_payment", invoice["_payment"])
    intent = state.get("payment_intent", payment["payment"]["payment_intent"])
    intent.update(payment_method=pm_id, status="processing", last_payment_error=None)
    charge = _charge(state, intent, pm, decline)
    intent["latest_charge"] = charge["id"]
    invoice["attempt_count"] += 1
    invoice["attempted"] = True
    if decline:
        error = {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": decline,
            "message": _DECLINE_MESSAGES[decline],
            "charge": charge["id"],
            "payment_intent": view(state, intent),
            "doc_url": "https://stripe.com/docs/error-codes/card-declined",
        }
        intent.update(status="requires_payment_method", last_payment_error=dict(error, payment_intent=None))
        error["payment_intent"] = view(state, intent)
        state.emit("charge.failed", charge, view(state, charge))
        state.emit("payment_intent.payment_failed", intent, view(state, intent))
        state.emit("invoice.payment_failed", invoice, view(state, invoice))
        raise StripeApiError(402, error)
    now = state.now()
    intent.update(status="succeeded", amount_received=amount)
    payment.update(status="paid", amount_paid=amount)
    payment["status_transitions"]["paid_at"] = now
    invoice.update(status="paid", amount_paid=invoice["amount_paid"] + amount, amount_remaining=0)
    invoice["status_transitions"]["paid_at"] = now
    state.emit("charge.succeeded", charge, view(state, charge))
    state.emit("payment_intent.succeeded", intent, view(state, intent))
    state.emit("invoice_payment.paid", payment, view(state, payment))
    state.emit("invoice.paid", invoice, view(state, invoice))
    if pm.get("_dispute"):  # Stripe's test card 4000 0000 0000 0259: a dispute follows the payment
        open_dispute(state, charge["id"])
    return view(state, invoice)


def _charge(state: StripeState, intent: dict[str, Any], pm: dict[str, Any], decline: str | None) -> dict[str, Any]:
    amount, currency = intent["amount"], intent["currency"]
    card = dict(_card_details(pm))
    charge = state.new(
        "charge",
        amount=amount,
        amount_captured=0 if decline else amount,
        balance_transaction=None,
        billing_details=pm["billing_details"],
        captured=not decline,
        currency=currency,
        customer=intent["customer"],
        description=intent["description"],
        failure_code="card_declined" if decline else None,
        failure_message=_DECLINE_MESSAGES[decline] if decline else None,
        fraud_details={},
        outcome={
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "declined_by_network" if decline else "approved_by_network",
            "reason": decline,
            "seller_message": "The bank returned the decline code." if decline else "Payment complete.",
            "type": "issuer_declined" if decline else "authorized",
        },
        paid=not decline,
        payment_intent=intent["id"],
        payment_method=pm["id"],
        payment_method_details={"card": card, "type": "card"},
        receipt_url=None,
        shipping=None,
        source=None,
        transfer_data=None,
        status="failed" if decline else "succeeded",
    )
    if not decline:
        fee = processing_fee(amount, currency)
        txn = _balance_transaction(state, amount, fee, currency, charge["id"], "charge", intent["description"])
        charge["balance_transaction"] = txn["id"]
    return charge


def _card_details(pm: dict[str, Any]) -> dict[str, Any]:
    details = dict(TEMPLATES["charge"]["payment_method_details"]["card"])
    details.update(brand=pm["card"]["brand"], last4=pm["card"]["last4"], network=pm["card"]["brand"])
    details.update(fingerprint=pm["card"]["fingerprint"], wallet=None, installments=None)
    return details


def _balance_transaction(
    state: StripeState, amount: int, fee: int, currency: str, source: str, kind: str, description: str | None
) -> dict[str, Any]:
    fee_details = (
        [
            {
                "amount": fee,
                "application": None,
                "currency": currency,
                "description": "Stripe processing fees",
                "type": "stripe_fee",
            }
        ]
        if fee
        else []
    )
    return state.new(
        "balance_transaction",
        amount=amount,
        available_on=state.now() + PAYOUT_DELAY_SECONDS,
        currency=currency,
        description=description,
        fee=fee,
        fee_details=fee_details,
        net=amount - fee,
        reporting_category=kind,
        source=source,
        status="pending",
        type=kind,
    )


def get_invoice(state: StripeState, params: dict[str, Any], invoice_id: str) -> dict[str, Any]:
    return view(state, state.get("invoice", invoice_id))


def list_invoices(state: StripeState, params: dict[str, Any]) -> dict[str, Any]:
    return listing(
        state, "invoice", params, "/v1/invoices", customer=params.get("customer"), status=params.get("status")
    )


def search_invoices(state: StripeState, params: dict[str, Any]) -> dict[str, Any]:
    return search(state, "invoice", params, "/v1/invoices/search")


def list_invoice_lines(state: StripeState, params: dict[str, Any], invoice_id: str) -> dict[str, Any]:
    invoice = state.get("invoice", invoice_id)
    lines = [state.get("line_item", i) for i in invoice["_lines"]]
    chosen, envelope = page(lines, params, f"/v1/invoices/{invoice_id}/lines")
    return {**envelope, "data": [view(state, o) for o in chosen]}


# payments


def list_charges(state: StripeState, params: dict[str, Any]) -> dict[str, Any]:
    return listing(
        state,
        "charge",
        params,
        "/v1/charges",
        customer=params.get("customer"),
        payment_intent=params.get("payment_intent"),
    )


def get_charge(state: StripeState, params: dict[str, Any], charge_id: str) -> dict[str, Any]:
    return view(state, state.get("charge", charge_id))


def get_payment_intent(state: StripeState, params: dict[str, Any], intent_id: str) -> dict[str, Any]:
    return view(state, state.get("payment_intent", intent_id))


def get_balance_transaction(state: StripeState, params: dict[str, Any], txn_id: str) -> dict[str, Any]:
    return view(state, state.get("balance_transaction", txn_id))


def list_invoice_payments(state: StripeState, params: dict[str, Any]) -> dict[str, Any]:
    items = state.all("invoice_payment")
    if invoice := params.get("invoice"):
        items = [p for p in items if p["invoice"] == invoice]
    if intent := (params.get("payment") or {}).get("payment_intent"):
        items = [p for p in items if p["payment"].get("payment_intent") == intent]
    if status := params.get("status"):
        items = [p for p in items if p["status"] == status]
    chosen, envelope = page(items, params, "/v1/invoice_payments")
    return {**envelope, "data": [view(state, o) for o in chosen]}


def create_refund(state: StripeState, params: dict[str, Any]) -> dict[str, Any]:
    if charge_id := params.get("charge"):
        charge = state.get("charge", charge_id, "charge")
    else:
        intent = state.get("payment_intent", required(params, "payment_intent"), "payment_intent")
        charge = state.get("charge", intent["latest_charge"], "payment_intent")
    left = charge["amount_captured"] - charge["amount_refunded"]
    amount = to_int(params, "amount", left) or 0
    if not 0 < amount <= left:
        raise invalid(f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})", "amount")
    txn = _balance_transaction(state, -amount, 0, charge["currency"], "", "refund", "REFUND FOR CHARGE")
    refund = state.new(
        "refund",
        amount=amount,
        balance_transaction=txn["id"],
        charge=charge["id"],
        currency=charge["currency"],
        customer=charge["customer"],
        destination_details=None,
        metadata=metadata(params),
        payment_intent=charge["payment_intent"],
        payment_method=charge["payment_method"],
        reason=params.get("reason"),
        status="succeeded",
    )
    txn["source"] = refund["id"]
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] == charge["amount_captured"]
    state.emit("charge.refunded", charge, view(state, charge))
    state.emit("refund.created", refund, view(state, refund))
    return view(state, refund)


# subscription invoices: what Stripe's billing does at each renewal of a subscription


def bill_subscription(state: StripeState, sub_id: str) -> dict[str, Any]:
    """Stripe invoices a subscription period: an invoice whose parent is the subscription, a line per
    item (unit price x quantity), finalized and, for charge_automatically, paid with the customer's
    default payment method (a decline leaves it open, as at renewal). Tiered prices are not emulated."""
    sub = state.get("subscription", sub_id)
    invoice = state.get(
        "invoice", create_invoice(state, {"customer": sub["customer"], "currency": sub["currency"]})["id"]
    )
    invoice.update(
        billing_reason="subscription_cycle",
        collection_method=sub["collection_method"],
        parent={
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"metadata": dict(sub["metadata"]), "subscription": sub["id"]},
        },
    )
    lines = []
    for item_id in sub["_items"]:
        item = state.get("subscription_item", item_id)
        price = state.get("price", item["price"])
        if price.get("unit_amount") is None:
            raise invalid(f"the sandbox does not bill {price.get('billing_scheme')} prices", "items")
        lines.append({"amount": str(int(price["unit_amount"]) * int(item["quantity"])), "description": price["id"]})
    add_lines(state, {"lines": lines}, invoice["id"])
    finalize_invoice(state, {}, invoice["id"])
    if sub["collection_method"] == "charge_automatically" and invoice["status"] == "open":
        with contextlib.suppress(StripeApiError):  # declined: the invoice stays open, for Stripe's retries
            pay_invoice(state, {}, invoice["id"])
    return view(state, invoice)


# disputes (docs.stripe.com/disputes): the disputed amount and a dispute fee leave the balance when
# the dispute opens; if the business wins, the amount comes back (the fee does not).

DISPUTE_FEE_TWO_DECIMAL = 1500  # USD 15.00 per dispute


def open_dispute(state: StripeState, charge_id: str, reason: str = "fraudulent") -> dict[str, Any]:
    """The cardholder disputes a succeeded charge: funds withdrawn at once, evidence due in 3 weeks."""
    charge = state.get("charge", charge_id, "charge")
    amount, currency = charge["amount_captured"] - charge["amount_refunded"], charge["currency"]
    fee = 0 if currency in ZERO_DECIMAL else DISPUTE_FEE_TWO_DECIMAL * (10 if currency in THREE_DECIMAL else 1)
    dispute = state.new(
        "dispute",
        amount=amount,
        charge=charge["id"],
        currency=currency,
        payment_intent=charge["payment_intent"],
        reason=reason,
        status="needs_response",
        is_charge_refundable=False,
        balance_transactions=[],
    )
    dispute["evidence_details"]["due_by"] = state.now() + 21 * 86400
    txn = _balance_transaction(
        state, -amount, fee, currency, dispute["id"], "adjustment", f"Chargeback withdrawal for {charge['id']}"
    )
    txn["reporting_category"] = "dispute"
    dispute["balance_transactions"].append(view(state, txn))
    charge["disputed"] = True
    state.emit("charge.dispute.created", dispute, view(state, dispute))
    state.emit("charge.dispute.funds_withdrawn", dispute, view(state, dispute))
    return view(state, dispute)


def close_dispute(state: StripeState, dispute_id: str, *, won: bool) -> dict[str, Any]:
    """The card network decides: won reinstates the disputed amount, lost keeps it withdrawn."""
    dispute = state.get("dispute", dispute_id)
    dispute["status"] = "won" if won else "lost"
    if won:
        txn = _balance_transaction(
            state,
            dispute["amount"],
            0,
            dispute["currency"],
            dispute["id"],
            "adjustment",
            f"Chargeback reversal for {dispute['charge']}",
        )
        txn["reporting_category"] = "dispute_reversal"
        dispute["balance_transactions"].append(view(state, txn))
        state.emit("charge.dispute.funds_reinstated", dispute, view(state, dispute))
    state.emit("charge.dispute.closed", dispute, view(state, dispute))
    return view(state, dispute)


def list_disputes(state: StripeState, params: dict[str, Any]) -> dict[str, Any]:
    return listing(
        state,
        "dispute",
        params,
        "/v1/disputes",
        charge=params.get("charge"),
        payment_intent=params.get("payment_intent"),
    )


def get_dispute(state: StripeState, params: dict[str, Any], dispute_id: str) -> dict[str, Any]:
    return view(state, state.get("dispute", dispute_id))


def list_refunds(state: StripeState, params: dict[str, Any]) -> dict[str, Any]:
    return listing(state, "refund", params, "/v1/refunds", charge=params.get("charge"))


def list_events(state: StripeState, params: dict[str, Any]) -> dict[str, Any]:
    items = state.all("event")
    if params.get("types"):  # exact event names only: the wildcard belongs to ``type``
        items = [e for e in items if e["type"] in params["types"]]
    elif params.get("type"):
        items = [e for e in items if _type_matches(e["type"], params["type"])]
    chosen, envelope = page(items, params, "/v1/events")
    return {**envelope, "data": [view(state, o) for o in chosen]}


def _type_matches(event_type: str, wanted: str) -> bool:
    """Stripe's ``type`` filter takes a trailing ``*`` wildcard (``customer.subscription.*``)."""
    return event_type.startswith(wanted[:-1]) if wanted.endswith("*") else event_type == wanted
