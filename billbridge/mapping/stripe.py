"""Stripe <-> canonical: outbound documents as invoice params, charges as incoming payments,
subscriptions (with items and prices) as contracts. Pure: no I/O.

Amounts: Stripe takes integers in the currency's smallest unit, by Stripe's own table
(docs.stripe.com/currencies), which is not quite ISO 4217's: MGA is zero-decimal at Stripe (ISO: 2)
and ISK is two-decimal in the API although only whole kronur may be charged (ISO: 0). Three-decimal
currencies (BHD, JOD, KWD, OMR, TND) are sent with three decimals but the last digit must be 0 for
payments, so an amount with a non-zero thousandth is refused here instead of being rounded: money
must stay exact, so the billing side has to round such documents to 0.01 first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from billbridge.billing.currency import MINOR_UNITS
from billbridge.billing.documents import IncomingPayment, OutboundDocument
from billbridge.billing.model import Contract, ContractLine, Customer, Product
from billbridge.billing.pricing import Pricing
from billbridge.mapping import fields
from billbridge.mapping.fields import (
    REQUIRED,
    MappingError,
    build,
    epoch_day,
    mapping,
    number,
    objects,
    read,
    text,
    whole,
)

STRIPE_ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)
STRIPE_THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
INVOICE_ITEMS_MAX = 250  # Stripe refuses more invoice items on one invoice (changelog 2016-02-22)
THREE_DECIMAL_STEP = 10  # Stripe: three-decimal amounts must end in 0 (rounded to the nearest ten)
METADATA_NUMBER = "billbridge_number"  # our document number: finds the invoice again after a lost response
METADATA_VERSION = "billbridge_version"
METADATA_CUSTOMER = "billbridge_customer"
SUBSCRIPTION_REF_PREFIX = "st-"  # refs of customers and contracts made from Stripe subscriptions
METADATA_CONTRACT = "billbridge_contract"
METADATA_LINE = "billbridge_line"
INTERVALS = {"day", "week", "month", "year"}
_PRICING: TypeAdapter[Pricing] = TypeAdapter(Pricing)


def stripe_exponent(currency: str) -> int:
    """Decimal places of a Stripe amount in ``currency`` (Stripe's table, see the module doc)."""
    code = currency.upper()
    if code not in MINOR_UNITS and code != "ISK":
        raise MappingError("currency", f"unknown currency {currency!r}")
    if code in STRIPE_ZERO_DECIMAL:
        return 0
    if code in STRIPE_THREE_DECIMAL:
        return 3
    return 2


def to_minor(amount: Decimal, currency: str, field_name: str = "amount") -> int:
    """An exact Decimal as Stripe's integer amount; refuses what Stripe would have to round."""
    exponent = stripe_exponent(currency)
    scaled = amount.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise MappingError(field_name, f"{amount} {currency} is not a whole number of Stripe minor units")
    units = int(scaled)
    if currency.upper() in STRIPE_THREE_DECIMAL and units % THREE_DECIMAL_STEP:
        raise MappingError(field_name, f"{amount} {currency}: Stripe takes three-decimal amounts only to 0.01")
    return units


def from_minor(units: int | str | Decimal, currency: str) -> Decimal:
    """Stripe's amount (an integer, or a ``*_decimal`` string) as a Decimal in major units."""
    try:
        value = Decimal(str(units))
    except InvalidOperation as exc:
        raise MappingError("amount", f"not a number: {units!r}") from exc
    return value.scaleb(-stripe_exponent(currency))


def minor_units(currency: str) -> Callable[[Any], Decimal]:
    """A parser of Stripe's integer amounts in ``currency`` (for ``fields.read``)."""
    return lambda value: Decimal(whole(value)).scaleb(-stripe_exponent(currency))


def _currency(value: Any) -> str:
    code = fields.required_text(value).upper()
    stripe_exponent(code)  # refuses an unknown one
    return code


def _epoch(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


# outbound documents


def invoice_params(doc: OutboundDocument, customer_id: str) -> dict[str, Any]:
    """``POST /v1/invoices`` params of a document: a draft that only ever holds the lines we add."""
    if doc.doc_type != "invoice":
        raise MappingError("doc_type", f"{doc.number}: Stripe credit notes are not pushed from here")
    params: dict[str, Any] = {
        "customer": customer_id,
        "currency": doc.currency.lower(),
        "auto_advance": False,  # we finalize and collect ourselves
        "pending_invoice_items_behavior": "exclude",
        "description": f"{doc.number} ({doc.contract_ref})",
        "metadata": document_metadata(doc),
    }
    if doc.auto_charge:
        params["collection_method"] = "charge_automatically"
    else:
        # Stripe e-mails it (the stripe channel): due the payment terms after it is sent, as Stripe's
        # own e-mail and hosted page say; counted from the billing date, as billbridge counts them
        params["collection_method"] = "send_invoice"
        params["days_until_due"] = max(0, (doc.due_date - doc.billing_date).days)
    return params


def document_metadata(doc: OutboundDocument) -> dict[str, str]:
    return {
        METADATA_NUMBER: doc.number,
        METADATA_VERSION: str(doc.version),
        METADATA_CUSTOMER: doc.customer_ref,
        METADATA_CONTRACT: doc.contract_ref,
    }


def invoice_lines(doc: OutboundDocument) -> list[dict[str, Any]]:
    """``add_lines`` entries: each line's rounded amount in minor units; they must add up to the total."""
    if len(doc.lines) > INVOICE_ITEMS_MAX:
        raise MappingError("lines", f"{doc.number}: {len(doc.lines)} lines, Stripe holds {INVOICE_ITEMS_MAX}")
    lines: list[dict[str, Any]] = []
    total_units = 0
    for index, line in enumerate(doc.lines):
        amount = to_minor(line.amount, doc.currency, f"lines[{index}].amount")
        total_units += amount
        lines.append(
            {
                "amount": amount,
                "description": line.description,
                "period": {"start": _epoch(line.start_date), "end": _epoch(line.end_date)},
                "metadata": {
                    METADATA_LINE: line.line_ref,
                    "billbridge_product": line.product_ref,
                    "billbridge_quantity": str(line.quantity),
                },
            }
        )
    total = to_minor(doc.total, doc.currency, "total")
    if total_units != total:
        raise MappingError("total", f"{doc.number}: lines add up to something other than the total {doc.total}")
    return lines


# payments


def payment_from_charge(
    charge: Mapping[str, Any], balance_transaction: Mapping[str, Any] | None, invoice: Mapping[str, Any] | None
) -> IncomingPayment:
    """A succeeded charge (with its balance transaction for the fee, and the invoice it paid, if any)."""
    currency = read(charge, "currency", _currency)
    fee = read(balance_transaction, "fee", minor_units(currency), default=Decimal(0), name="balance_transaction.fee")
    extra = {"charge": read(charge, "id", fields.required_text)}
    for key in ("payment_intent", "customer"):
        if value := read(charge, key, text, default=None):
            extra[key] = value
    invoice_id, number, customer_ref = _invoice_link(invoice)
    if invoice_id:
        extra["invoice"] = invoice_id
    subscription = subscription_of(invoice)
    if refunded := read(charge, "amount_refunded", minor_units(currency), default=Decimal(0)):
        extra["amount_refunded"] = str(refunded)
    if customer_ref is None and subscription is not None and "customer" in extra:
        customer_ref = f"{SUBSCRIPTION_REF_PREFIX}{extra['customer']}"  # as map_subscription names the customer
    last4 = read(charge, "payment_method_details.card.last4", text, default=None)
    brand = read(charge, "payment_method_details.card.brand", text, default=None)
    return IncomingPayment(
        source="stripe",
        payment_ref=extra["charge"],
        currency=currency,
        amount=read(charge, "amount_captured", minor_units(currency), default=None)
        or read(charge, "amount", minor_units(currency)),
        received_on=read(charge, "created", epoch_day),
        customer_ref=customer_ref,
        invoice_numbers=(number,) if number else (),
        fee=fee,
        method=read(charge, "payment_method_details.type", text, default=None),
        reference=f"{brand} ****{last4}" if last4 else None,
        extra=extra,
        memo=read(charge, "description", text, default=None),
        subscription=subscription,
    )


def _invoice_link(invoice: Mapping[str, Any] | None) -> tuple[str | None, str | None, str | None]:
    """The Stripe invoice a payment paid, as (its id, our number, our customer ref) from its metadata."""
    if not invoice:
        return None, None, None
    return (
        read(invoice, "id", fields.required_text, name="invoice.id"),
        read(invoice, f"metadata.{METADATA_NUMBER}", text, default=None, name=f"invoice.metadata.{METADATA_NUMBER}"),
        read(
            invoice, f"metadata.{METADATA_CUSTOMER}", text, default=None, name=f"invoice.metadata.{METADATA_CUSTOMER}"
        ),
    )


def subscription_of(invoice: Mapping[str, Any] | None) -> str | None:
    """The subscription an invoice bills, when Stripe made it for one (``parent.subscription_details``;
    older API versions: ``subscription``)."""
    if not invoice:
        return None
    found = read(
        invoice, "parent.subscription_details.subscription", text, default=None, name="invoice.parent.subscription"
    )
    return found or read(invoice, "subscription", text, default=None, name="invoice.subscription")


def payment_from_refund(refund: Mapping[str, Any], invoice: Mapping[str, Any] | None) -> IncomingPayment:
    """A refund as a negative payment against the invoice its charge paid (``refund_of``: the charge)."""
    currency = read(refund, "currency", _currency)
    invoice_id, number, customer_ref = _invoice_link(invoice)
    refund_of = read(refund, "charge", fields.required_text)
    extra = {"status": str(read(refund, "status", text, default=None))}
    if invoice_id:
        extra["invoice"] = invoice_id
    return IncomingPayment(
        source="stripe",
        payment_ref=read(refund, "id", fields.required_text),
        currency=currency,
        amount=-read(refund, "amount", minor_units(currency)),
        received_on=read(refund, "created", epoch_day),
        customer_ref=customer_ref,
        invoice_numbers=(number,) if number else (),
        method="refund",
        reference=read(refund, "reason", text, default=None),
        extra=extra,
        refund_of=refund_of,
    )


DISPUTE_MOVES = {
    "charge.dispute.funds_withdrawn": ("withdrawn", -1),
    "charge.dispute.funds_reinstated": ("reinstated", 1),
}
"""The dispute events that move money: withdrawn when it opens, reinstated when the business wins."""


def payment_from_dispute(
    event_type: str, dispute: Mapping[str, Any], invoice: Mapping[str, Any] | None, at: int
) -> IncomingPayment:
    """A dispute's money movement as a payment: the withdrawal negative (it takes back from the invoice
    the charge paid, like a refund), the reinstatement positive (it pays that invoice again). The
    dispute fee is the withdrawal's fee."""
    move, sign = DISPUTE_MOVES[event_type]
    currency = read(dispute, "currency", _currency)
    invoice_id, number, customer_ref = _invoice_link(invoice)
    fee = Decimal(0)
    if sign < 0:
        txns = read(dispute, "balance_transactions", objects, default=[])
        in_units = minor_units(currency)
        for index, txn in enumerate(txns):
            where = f"balance_transactions[{index}]"
            if read(txn, "amount", in_units, default=Decimal(0), name=f"{where}.amount") < 0:
                fee += read(txn, "fee", in_units, default=Decimal(0), name=f"{where}.fee")
    dispute_id = read(dispute, "id", fields.required_text)
    refund_of = read(dispute, "charge", fields.required_text)
    extra = {"dispute": dispute_id, "status": str(read(dispute, "status", text, default=None))}
    if invoice_id:
        extra["invoice"] = invoice_id
    return IncomingPayment(
        source="stripe",
        payment_ref=f"{dispute_id}:{move}",
        currency=currency,
        amount=sign * read(dispute, "amount", minor_units(currency)),
        received_on=fields.parse("created", epoch_day, at),
        customer_ref=customer_ref,
        invoice_numbers=(number,) if number else (),
        fee=fee,
        method="dispute",
        reference=f"dispute {move}: {read(dispute, 'reason', text, default=None)}",
        extra=extra,
        refund_of=refund_of,
    )


# subscriptions


class StripeSubscriptionMapping(BaseModel):
    """Per-installation mapping of Stripe subscriptions (documented defaults; override in billbridge.toml)."""

    model_config = ConfigDict(extra="forbid")

    ref_prefix: str = Field(default=SUBSCRIPTION_REF_PREFIX, description="Prefix of contract and customer refs")
    entity_by_currency: dict[str, str] = Field(
        default_factory=lambda: {"USD": "us-inc", "EUR": "eu-bv", "GBP": "uk-ltd", "JPY": "jp-kk"},
        description="Legal entity of a subscription that names none (metadata billbridge_entity), by currency",
    )
    product_ref_metadata: str = Field(default="sku", description="Product metadata key holding our SKU")
    skip_statuses: list[str] = Field(
        default_factory=lambda: ["incomplete", "incomplete_expired"], description="Never-started subscriptions"
    )


@dataclass(frozen=True)
class MappedSubscription:
    customer: Customer
    contract: Contract
    products: list[Product] = field(default_factory=list)  # the items' products (name only: no price book)


def map_subscription(
    sub: Mapping[str, Any],
    customer: Mapping[str, Any] | None,
    prices: Mapping[str, Mapping[str, Any]],
    products: Mapping[str, Mapping[str, Any]],
    config: StripeSubscriptionMapping,
    *,
    changed_at: int | None = None,
) -> MappedSubscription | None:
    """A subscription as a contract (None for one that never started); MappingError names the field.

    The contract is ``billed_by="stripe"``: Stripe invoices and collects subscriptions itself, so
    billbridge stores it for reporting (MRR/ARR, revenue) and never bills it (``billing.engine``).
    Each item's price is the line's own pricing, not a price-book entry. Service ends when Stripe
    says the subscription stops: ``ended_at`` once it has, else ``cancel_at`` (scheduled, also set
    for ``cancel_at_period_end``), else, for ``cancel_at_period_end`` alone, the current period end;
    the last day of service is the day before that instant. ``changed_at`` (epoch seconds: the
    newest event's time; Stripe keeps no modification time on a subscription) is the day changed
    terms apply from, as a new contract version.
    """
    sub_id = read(sub, "id", fields.required_text, name="subscription id")
    where = f"subscription {sub_id}: "

    def get(path: str, parser: Callable[[Any], Any] | None = None, default: Any = REQUIRED, record: Any = sub) -> Any:
        return read(record, path, parser, default=default, name=where + path)

    def err(field_name: str, message: str) -> MappingError:
        return MappingError(where + field_name, message)

    if get("status", text, None) in config.skip_statuses:
        return None
    currency = (get("currency", text, None) or "").upper()
    if currency not in MINOR_UNITS:
        raise err("currency", f"unknown currency {fields.shown(sub.get('currency'))}")
    entity_ref = get("metadata.billbridge_entity", text, None) or config.entity_by_currency.get(currency)
    if entity_ref is None:
        raise err("metadata.billbridge_entity", f"no legal entity given and none configured for {currency}")
    if customer:
        customer_id = read(customer, "id", fields.required_text, name=where + "customer.id")
    else:
        customer_id = get("customer", None, None)
    if not isinstance(customer_id, str):
        raise err("customer", "no customer")
    if customer and get("deleted", None, None, customer):
        raise err("customer", f"customer {customer_id} was deleted in Stripe: nobody to report the contract under")
    items = get("items.data", objects, [])
    if not items:
        raise err("items", "the subscription has no items")
    if get("items.has_more", None, None):
        raise err("items", "more items than one page holds (fetch them all before mapping)")
    if get("discounts", None, None) or any(item.get("discounts") for item in items):
        raise err("discounts", "coupons and discounts on subscriptions are not mapped; bill it by hand or remove them")
    start = get("start_date", epoch_day)
    if trial_end := get("trial_end", epoch_day, None):  # nothing is billed during a free trial: it bills from its end
        start = max(start, trial_end)
    end_at = get("ended_at", whole, None) or get("cancel_at", whole, None)
    if end_at is None and get("cancel_at_period_end", None, None):
        end_at = _period_end(sub, get)
    end = max(start, fields.parse(where + "ended_at", epoch_day, end_at - 1)) if end_at else None
    effective = max(start, fields.parse("changed_at", epoch_day, changed_at)) if changed_at else None
    if effective is not None and end is not None:
        effective = min(effective, end)
    cycles = set()
    lines = []
    for index, item in enumerate(items):
        line, cycle = _item_line(item, index, currency, prices, products, config, where)
        lines.append(line)
        cycles.add(cycle)
    if len(cycles) != 1:
        raise err("items.data[].price.recurring", f"items bill on different cycles: {sorted(cycles)}")
    length, unit = cycles.pop()
    anchor_day = get("billing_cycle_anchor", epoch_day, None)
    ref = config.ref_prefix
    mapped_customer = build(
        Customer,
        where + "customer",
        customer_ref=f"{ref}{customer_id}",
        name=(get("name", text, None, customer) if customer else None) or customer_id,
        entity_ref=entity_ref,
        email=get("email", text, None, customer) if customer else None,
    )
    contract = build(
        Contract,
        where.rstrip(": "),
        contract_ref=f"{ref}{sub_id}",
        customer_ref=mapped_customer.customer_ref,
        entity_ref=entity_ref,
        currency=currency,
        contract_start_date=start,
        contract_end_date=end,
        cycle_length=length,
        cycle_unit=unit,
        cycle_start_date=anchor_day if anchor_day and anchor_day != start else None,
        billing_timing="in_advance",
        payment_terms_days=get("days_until_due", whole, 0),
        auto_charge=get("collection_method", None, None) == "charge_automatically",
        effective_date=effective,
        billed_by="stripe",
        lines=lines,
    )
    used = {
        line.product_ref: build(
            Product, where + "items", product_ref=line.product_ref, name=line.description or line.product_ref
        )
        for line in lines
    }
    return MappedSubscription(mapped_customer, contract, list(used.values()))


def _period_end(sub: Mapping[str, Any], get: Callable[..., Any]) -> int | None:
    """The current period's end: on the items since API 2025-03-31 (the earliest, as Stripe cancels
    mixed intervals at the earliest), on the subscription before."""
    items = get("items.data", objects, [])
    ends = [
        read(item, "current_period_end", whole, default=None, name=f"items.data[{index}].current_period_end")
        for index, item in enumerate(items)
    ]
    found = [end for end in ends if end]
    if found:
        return min(found)
    end: int | None = get("current_period_end", whole, None)
    return end or None


def _item_line(
    item: Mapping[str, Any],
    index: int,
    currency: str,
    prices: Mapping[str, Mapping[str, Any]],
    products: Mapping[str, Mapping[str, Any]],
    config: StripeSubscriptionMapping,
    subscription: str,
) -> tuple[ContractLine, tuple[int, str]]:
    where = f"items.data[{index}]"

    def get(record: Any, path: str, parser: Callable[[Any], Any] | None = None, default: Any = None) -> Any:
        return read(record, path, parser, default=default, name=f"{subscription}{where}.{path}")

    def err(field_name: str, message: str) -> MappingError:
        return MappingError(f"{subscription}{field_name}", message)

    embedded = get(item, "price", mapping, {})
    price = prices.get(str(embedded.get("id"))) or embedded
    if (get(price, "currency", text) or "").upper() != currency:
        raise err(
            f"{where}.price.currency",
            f"{fields.shown(price.get('currency'))} differs from the subscription's {currency}",
        )
    interval = get(price, "recurring.interval", text)
    count = get(price, "recurring.interval_count", whole) or 1
    if interval not in INTERVALS:
        raise err(f"{where}.price.recurring.interval", f"not a recurring price (interval {fields.shown(interval)})")
    product_id = price.get("product")
    product = products.get(str(product_id)) or (product_id if isinstance(product_id, Mapping) else {})
    sku = get(product, f"metadata.{config.product_ref_metadata}", text)
    product_ref = sku or get(product, "id", text) or get(price, "product", text)
    metered = get(price, "recurring.usage_type", text) == "metered"
    if metered and not sku:
        raise err(
            f"{where}.price.product.metadata.{config.product_ref_metadata}",
            f"metered price {fields.shown(price.get('id'))} without a usage product: set the Stripe product's metadata "
            f"{config.product_ref_metadata!r} to the usage_product_ref its usage events name",
        )
    pricing = price_pricing(price, currency, f"{where}.price", subscription)
    quantity = Decimal(1) if metered else get(item, "quantity", number, Decimal(1))
    line = build(
        ContractLine,
        subscription + where,
        line_ref=get(item, "id", fields.required_text, REQUIRED),
        product_ref=product_ref,
        charge="usage" if metered else "recurring",
        description=get(product, "name", text) or get(price, "nickname", text),
        quantity=quantity,
        pricing=pricing,
    )
    return line, (count, interval)


def price_pricing(price: Mapping[str, Any], currency: str, where: str, prefix: str = "") -> Any:
    """A Stripe price as canonical pricing: per_unit, package (transform_quantity), graduated or volume
    tiers. Errors name the field as ``<prefix><where>.<path>``."""

    def get(record: Any, path: str, parser: Callable[[Any], Any] | None = None, default: Any = None) -> Any:
        return read(record, path, parser, default=default, name=f"{prefix}{where}.{path}")

    def err(field_name: str, message: str) -> MappingError:
        return MappingError(prefix + field_name, message)

    scheme = get(price, "billing_scheme", text)
    if scheme == "tiered":
        mode = get(price, "tiers_mode", text)
        if mode not in ("graduated", "volume"):
            raise err(f"{where}.tiers_mode", f"unknown tiers mode {fields.shown(mode)}")
        tiers = get(price, "tiers", objects)
        if not tiers:
            raise err(f"{where}.tiers", "tiered price without tiers (expand[]=tiers when fetching it)")
        rows = [
            {
                "up_to": None if t.get("up_to") in (None, "inf") else str(get(t, "up_to", whole)),
                "unit_price": str(_amount(t, "unit_amount", currency, get)),
                "flat_fee": str(_amount(t, "flat_amount", currency, get)),
            }
            for t in tiers
        ]
        return _validate({"model": mode, "tiers": rows}, prefix + f"{where}.tiers")
    if scheme != "per_unit":
        raise err(f"{where}.billing_scheme", f"unknown billing scheme {fields.shown(scheme)}")
    unit = _amount(price, "unit_amount", currency, get)
    transform = get(price, "transform_quantity", mapping)
    if transform:
        if get(transform, "round", text) != "up":
            raise err(f"{where}.transform_quantity.round", "only whole packages rounded up map to package pricing")
        package = {
            "model": "package",
            "package_size": str(get(transform, "divide_by", whole)),
            "package_price": str(unit),
        }
        return _validate(package, prefix + f"{where}.transform_quantity")
    return _validate({"model": "per_unit", "unit_price": str(unit)}, prefix + f"{where}.unit_amount")


def _amount(obj: Mapping[str, Any], name: str, currency: str, get: Callable[..., Any]) -> Decimal:
    """Prefer Stripe's ``*_decimal`` string (sub-cent prices) over the integer field."""
    units = get(obj, f"{name}_decimal", number) if obj.get(f"{name}_decimal") is not None else get(obj, name, number)
    return from_minor(units or 0, currency)


def _validate(data: dict[str, Any], field_name: str) -> Any:
    """Canonical pricing from ``data``; refused: a MappingError naming ``field_name``."""
    try:
        return _PRICING.validate_python(data)
    except ValueError as exc:
        raise MappingError(field_name, _first_message(exc)) from exc


def _first_message(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    return str(errors(include_url=False)[0]["msg"]) if callable(errors) else str(exc)
