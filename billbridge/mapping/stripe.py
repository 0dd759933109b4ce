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

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from billbridge.billing.currency import MINOR_UNITS
from billbridge.billing.documents import IncomingPayment, OutboundDocument
from billbridge.billing.model import Contract, ContractLine, Customer, Product
from billbridge.billing.pricing import Pricing
from billbridge.mapping.crm import MappingError

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


def _epoch(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _day(epoch: int) -> date:
    return datetime.fromtimestamp(epoch, UTC).date()


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
        params["collection_method"] = "send_invoice"
        params["due_date"] = _epoch(doc.due_date)
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
    currency = str(charge["currency"]).upper()
    fee = from_minor(balance_transaction["fee"], currency) if balance_transaction else Decimal(0)
    meta = (invoice or {}).get("metadata") or {}
    card = (charge.get("payment_method_details") or {}).get("card") or {}
    extra = {"charge": str(charge["id"])}
    for key in ("payment_intent", "customer"):
        if charge.get(key):
            extra[key] = str(charge[key])
    if invoice:
        extra["invoice"] = str(invoice["id"])
    subscription = subscription_of(invoice)
    if subscription is not None:
        extra["stripe_subscription"] = subscription
    if charge.get("amount_refunded"):
        extra["amount_refunded"] = str(from_minor(charge["amount_refunded"], currency))
    number = meta.get(METADATA_NUMBER)
    customer_ref = meta.get(METADATA_CUSTOMER)
    if customer_ref is None and subscription is not None and charge.get("customer"):
        customer_ref = f"{SUBSCRIPTION_REF_PREFIX}{charge['customer']}"  # as map_subscription names the customer
    return IncomingPayment(
        source="stripe",
        payment_ref=str(charge["id"]),
        currency=currency,
        amount=from_minor(charge["amount_captured"] or charge["amount"], currency),
        received_on=_day(int(charge["created"])),
        customer_ref=customer_ref,
        invoice_numbers=(number,) if number else (),
        fee=fee,
        method=(charge.get("payment_method_details") or {}).get("type"),
        reference=f"{card.get('brand')} ****{card.get('last4')}" if card.get("last4") else None,
        extra=extra,
        memo=charge.get("description") or None,
    )


def subscription_of(invoice: Mapping[str, Any] | None) -> str | None:
    """The subscription an invoice bills, when Stripe made it for one (``parent.subscription_details``;
    older API versions: ``subscription``)."""
    if not invoice:
        return None
    details = ((invoice.get("parent") or {}).get("subscription_details")) or {}
    found = details.get("subscription") or invoice.get("subscription")
    return str(found) if found else None


def payment_from_refund(refund: Mapping[str, Any], invoice: Mapping[str, Any] | None) -> IncomingPayment:
    """A refund as a negative payment against the invoice its charge paid (``extra['refund_of']``)."""
    currency = str(refund["currency"]).upper()
    meta = (invoice or {}).get("metadata") or {}
    number = meta.get(METADATA_NUMBER)
    extra = {"refund_of": str(refund["charge"]), "status": str(refund.get("status"))}
    if invoice:
        extra["invoice"] = str(invoice["id"])
    return IncomingPayment(
        source="stripe",
        payment_ref=str(refund["id"]),
        currency=currency,
        amount=-from_minor(refund["amount"], currency),
        received_on=_day(int(refund["created"])),
        customer_ref=meta.get(METADATA_CUSTOMER),
        invoice_numbers=(number,) if number else (),
        method="refund",
        reference=refund.get("reason"),
        extra=extra,
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
    currency = str(dispute["currency"]).upper()
    meta = (invoice or {}).get("metadata") or {}
    number = meta.get(METADATA_NUMBER)
    txns = [t for t in dispute.get("balance_transactions") or [] if isinstance(t, dict)]
    fee = sum((int(t.get("fee") or 0) for t in txns if int(t.get("amount") or 0) < 0), 0) if sign < 0 else 0
    extra = {"dispute": str(dispute["id"]), "refund_of": str(dispute["charge"]), "status": str(dispute.get("status"))}
    if invoice:
        extra["invoice"] = str(invoice["id"])
    return IncomingPayment(
        source="stripe",
        payment_ref=f"{dispute['id']}:{move}",
        currency=currency,
        amount=sign * from_minor(dispute["amount"], currency),
        received_on=_day(at),
        customer_ref=meta.get(METADATA_CUSTOMER),
        invoice_numbers=(number,) if number else (),
        fee=from_minor(fee, currency),
        method="dispute",
        reference=f"dispute {move}: {dispute.get('reason')}",
        extra=extra,
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
    sub_id = str(sub.get("id"))

    def err(field_name: str, message: str) -> MappingError:
        return MappingError(f"subscription {sub_id}: {field_name}", message)

    if sub.get("status") in config.skip_statuses:
        return None
    currency = str(sub.get("currency") or "").upper()
    if currency not in MINOR_UNITS:
        raise err("currency", f"unknown currency {sub.get('currency')!r}")
    meta = sub.get("metadata") or {}
    entity_ref = meta.get("billbridge_entity") or config.entity_by_currency.get(currency)
    if entity_ref is None:
        raise err("metadata.billbridge_entity", f"no legal entity given and none configured for {currency}")
    customer_id = customer.get("id") if customer else sub.get("customer")
    if not isinstance(customer_id, str):
        raise err("customer", "no customer")
    if customer and customer.get("deleted"):
        raise err("customer", f"customer {customer_id} was deleted in Stripe: nobody to report the contract under")
    items = ((sub.get("items") or {}).get("data")) or []
    if not items:
        raise err("items", "the subscription has no items")
    if (sub.get("items") or {}).get("has_more"):
        raise err("items", "more items than one page holds (fetch them all before mapping)")
    if sub.get("discounts") or any(item.get("discounts") for item in items):
        raise err("discounts", "coupons and discounts on subscriptions are not mapped; bill it by hand or remove them")
    start = _day(int(sub["start_date"]))
    if sub.get("trial_end"):  # nothing is billed during a free trial: the contract bills from its end
        start = max(start, _day(int(sub["trial_end"])))
    end_at = (
        sub.get("ended_at") or sub.get("cancel_at") or (_period_end(sub) if sub.get("cancel_at_period_end") else None)
    )
    end = max(start, _day(int(end_at) - 1)) if end_at else None
    effective = max(start, _day(int(changed_at))) if changed_at else None
    if effective is not None and end is not None:
        effective = min(effective, end)
    cycles = set()
    lines = []
    for index, item in enumerate(items):
        line, cycle = _item_line(item, index, currency, prices, products, config, err)
        lines.append(line)
        cycles.add(cycle)
    if len(cycles) != 1:
        raise err("items.data[].price.recurring", f"items bill on different cycles: {sorted(cycles)}")
    length, unit = cycles.pop()
    anchor = sub.get("billing_cycle_anchor")
    anchor_day = _day(int(anchor)) if anchor else None
    ref = config.ref_prefix
    cust = customer or {}
    try:
        mapped_customer = Customer(
            customer_ref=f"{ref}{customer_id}",
            name=cust.get("name") or customer_id,
            entity_ref=entity_ref,
            email=cust.get("email"),
        )
        contract = Contract(
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
            payment_terms_days=int(sub.get("days_until_due") or 0),
            auto_charge=sub.get("collection_method") == "charge_automatically",
            effective_date=effective,
            billed_by="stripe",
            lines=lines,
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise err(".".join(str(p) for p in first["loc"]) or "(subscription)", first["msg"]) from exc
    used = {
        line.product_ref: Product(product_ref=line.product_ref, name=line.description or line.product_ref)
        for line in lines
    }
    return MappedSubscription(mapped_customer, contract, list(used.values()))


def _period_end(sub: Mapping[str, Any]) -> int | None:
    """The current period's end: on the items since API 2025-03-31 (the earliest, as Stripe cancels
    mixed intervals at the earliest), on the subscription before."""
    ends = [
        int(i["current_period_end"]) for i in (sub.get("items") or {}).get("data") or [] if i.get("current_period_end")
    ]
    if ends:
        return min(ends)
    end = sub.get("current_period_end")
    return int(end) if end else None


def _item_line(
    item: Mapping[str, Any],
    index: int,
    currency: str,
    prices: Mapping[str, Mapping[str, Any]],
    products: Mapping[str, Mapping[str, Any]],
    config: StripeSubscriptionMapping,
    err: Any,
) -> tuple[ContractLine, tuple[int, str]]:
    where = f"items.data[{index}]"
    embedded = item.get("price") or {}
    price = prices.get(str(embedded.get("id"))) or embedded
    if str(price.get("currency", "")).upper() != currency:
        raise err(f"{where}.price.currency", f"{price.get('currency')!r} differs from the subscription's {currency}")
    recurring = price.get("recurring") or {}
    interval, count = recurring.get("interval"), recurring.get("interval_count") or 1
    if interval not in INTERVALS:
        raise err(f"{where}.price.recurring.interval", f"not a recurring price (interval {interval!r})")
    product_id = price.get("product")
    product = products.get(str(product_id)) or (product_id if isinstance(product_id, Mapping) else {})
    sku = (product.get("metadata") or {}).get(config.product_ref_metadata)
    product_ref = sku or product.get("id") or product_id
    metered = recurring.get("usage_type") == "metered"
    if metered and not sku:
        raise err(
            f"{where}.price.product.metadata.{config.product_ref_metadata}",
            f"metered price {price.get('id')} without a usage product: set the Stripe product's metadata "
            f"{config.product_ref_metadata!r} to the usage_product_ref its usage events name",
        )
    pricing = price_pricing(price, currency, f"{where}.price", err)
    quantity = Decimal(1) if metered else Decimal(str(item.get("quantity") if item.get("quantity") is not None else 1))
    try:
        line = ContractLine(
            line_ref=str(item["id"]),
            product_ref=str(product_ref),
            charge="usage" if metered else "recurring",
            description=product.get("name") or price.get("nickname"),
            quantity=quantity,
            pricing=pricing,
        )
    except ValidationError as exc:
        raise err(where, exc.errors(include_url=False)[0]["msg"]) from exc
    return line, (int(count), str(interval))


def price_pricing(price: Mapping[str, Any], currency: str, where: str, err: Any) -> Any:
    """A Stripe price as canonical pricing: per_unit, package (transform_quantity), graduated or volume tiers."""
    scheme = price.get("billing_scheme")
    if scheme == "tiered":
        mode = price.get("tiers_mode")
        if mode not in ("graduated", "volume"):
            raise err(f"{where}.tiers_mode", f"unknown tiers mode {mode!r}")
        tiers = price.get("tiers")
        if not tiers:
            raise err(f"{where}.tiers", "tiered price without tiers (expand[]=tiers when fetching it)")
        rows = [
            {
                "up_to": str(t["up_to"]) if t.get("up_to") not in (None, "inf") else None,
                "unit_price": str(from_minor(_amount(t, "unit_amount"), currency)),
                "flat_fee": str(from_minor(_amount(t, "flat_amount"), currency)),
            }
            for t in tiers
        ]
        return _validate({"model": mode, "tiers": rows}, f"{where}.tiers", err)
    if scheme != "per_unit":
        raise err(f"{where}.billing_scheme", f"unknown billing scheme {scheme!r}")
    unit = from_minor(_amount(price, "unit_amount"), currency)
    transform = price.get("transform_quantity")
    if transform:
        if transform.get("round") != "up":
            raise err(f"{where}.transform_quantity.round", "only whole packages rounded up map to package pricing")
        package = {"model": "package", "package_size": str(transform["divide_by"]), "package_price": str(unit)}
        return _validate(package, f"{where}.transform_quantity", err)
    return _validate({"model": "per_unit", "unit_price": str(unit)}, f"{where}.unit_amount", err)


def _amount(obj: Mapping[str, Any], name: str) -> str:
    """Prefer Stripe's ``*_decimal`` string (sub-cent prices) over the integer field."""
    decimal = obj.get(f"{name}_decimal")
    if decimal is not None:
        return str(decimal)
    return str(obj.get(name) or 0)


def _validate(data: dict[str, Any], where: str, err: Any) -> Any:
    try:
        return _PRICING.validate_python(data)
    except ValidationError as exc:
        raise err(where, exc.errors(include_url=False)[0]["msg"]) from exc
