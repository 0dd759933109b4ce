"""Monitors: a contract, product, invoice or usage-aggregate value watched per customer and day.

A monitor names what it watches (one contract, every contract of a customer, or every contract of
its legal entity; or a usage product's aggregate) and an *item*. The items follow the seed's
vocabulary: the billing period's ``start_date``, ``end_date`` (its last day), ``cycle_length``,
``cycle_unit``, ``cycle_start_date``, ``contract_start_date`` (and ``contract_end_date``); a
product line's items, which depend on how the line is charged and priced (:data:`LINE_ITEMS`); the
current period's ``invoice_total``; a contract's ``minimum_commitment``.

Evaluation is pure: the value on a day is what the contract versions effective by then, the
invoices dated by then and the usage of the days up to it say, so a backfill gives the numbers a
daily run would have given. A customer's value over several contracts adds numbers up and takes the
earliest date. The increment is the change over the previous day (days, for dates).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Context, Decimal, localcontext
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from billbridge.billing.currency import round_money, split_evenly
from billbridge.billing.engine import Version, _recurring_spans, _Timeline  # the engine's own reading of terms
from billbridge.billing.model import Aggregation, Contract, ContractLine, Ref
from billbridge.billing.periods import Period, add_cycles, cycle_index, prorate
from billbridge.billing.pricing import LIMIT, PLACES, PerUnitPrice, _no_float
from billbridge.billing.usage_periods import DailyUsage, UsageQuery, aggregate

ONE_DAY = timedelta(days=1)
_CTX = Context(prec=34)

Value = Decimal | date | str
ValueKind = Literal["number", "date", "text"]
Source = Literal["contract", "usage_aggregate"]

PERIOD_ITEMS: dict[str, ValueKind] = {
    "start_date": "date",
    "end_date": "date",
    "cycle_length": "number",
    "cycle_unit": "text",
    "cycle_start_date": "date",
    "contract_start_date": "date",
    "contract_end_date": "date",
}
"""The billing period in force on the day, and the contract's dates."""

CONTRACT_ITEMS: dict[str, ValueKind] = {"invoice_total": "number", "minimum_commitment": "number"}
"""Contract-wide money: the current period's invoices (drafted or issued), the minimum commitment."""

LINE_ITEM_KINDS: dict[str, ValueKind] = {
    "amount": "number",
    "billed_amount": "number",
    "billed_days": "number",
    "quantity": "number",
    "unit_price": "number",
    "usage_quantity": "number",
    "billing_date": "date",
    "installments": "number",
    "installment_amount": "number",
}

_RECURRING = ("amount", "billed_amount", "billed_days")
LINE_ITEMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("recurring", "flat"): _RECURRING,
    ("recurring", "per_unit"): (*_RECURRING, "quantity", "unit_price"),
    ("recurring", "graduated"): (*_RECURRING, "quantity"),
    ("recurring", "volume"): (*_RECURRING, "quantity"),
    ("recurring", "package"): (*_RECURRING, "quantity"),
    ("usage", "*"): ("amount", "usage_quantity", "billed_amount"),
    ("one_time", "*"): ("amount", "billing_date"),
    ("installments", "*"): ("amount", "installments", "installment_amount"),
}
"""A product line's items by (charge, pricing model); ``*``: whatever the pricing model.

- recurring: ``amount`` is the full-period price of the line's quantity (after ramps), before
  discounts; ``billed_amount`` what the period bills for it (prorated by day over the terms in force
  on each day of the period known by then, discount off, rounded once); ``billed_days`` the period's
  days the line is in service. Per-unit lines add ``quantity`` and ``unit_price``, tiered and package
  lines ``quantity``. A volume-priced usage line, as the seed's, has ``amount``.
- usage: ``usage_quantity`` is the period's aggregate up to the day, ``amount`` its rated price,
  ``billed_amount`` that less discount and prepaid amount, rounded.
- one_time: ``amount`` and ``billing_date``. installments: the whole ``amount``, ``installments``
  and the regular ``installment_amount`` (the last one takes the rounding remainder).
- a minimum commitment is the contract item ``minimum_commitment``.
"""

ITEM_KINDS: dict[str, ValueKind] = {**PERIOD_ITEMS, **CONTRACT_ITEMS, **LINE_ITEM_KINDS}

Signed = Annotated[Decimal, _no_float("values"), Field(gt=-LIMIT, lt=LIMIT, decimal_places=PLACES)]
ConditionKind = Literal[
    "above",
    "below",
    "increment_above",
    "increment_below",
    "increment_percent_above",
    "increment_percent_below",
    "within_days",
]
_NUMBER_CONDITIONS = {
    "above",
    "below",
    "increment_above",
    "increment_below",
    "increment_percent_above",
    "increment_percent_below",
}
_DATE_CONDITIONS = {"within_days"}
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Model):
    """When an alert fires: the value above or below ``value``; the increment over the previous day
    above or below ``value`` (or by more than ``value`` percent of the previous value); a date
    within ``value`` days from the day (``end_date`` within 30 days: a renewal is near)."""

    when: ConditionKind
    value: Signed

    @model_validator(mode="after")
    def _whole_days(self) -> Condition:
        if self.when == "within_days" and (self.value < 0 or self.value != self.value.to_integral_value()):
            raise ValueError("within_days needs a whole number of days >= 0")
        return self

    @property
    def key(self) -> str:
        """The condition as text: names it in alerts (unique per monitor and customer and day)."""
        return f"{self.when}:{self.value.normalize():f}"


class ContractWatch(_Model):
    """What a contract monitor watches: one contract (``contract_ref``), every contract of a customer
    (``customer_ref``) or every contract of the entity (neither: a portfolio monitor, shown per
    customer); and the item, of a line (named by ``line_ref`` or by its ``product_ref``) for line items."""

    contract_ref: Ref | None = None
    customer_ref: Ref | None = None
    item: str
    line_ref: Ref | None = None
    product_ref: Ref | None = None

    @field_validator("item")
    @classmethod
    def _known_item(cls, item: str) -> str:
        if item not in ITEM_KINDS:
            raise ValueError(f"unknown item {item!r}; items are {', '.join(ITEM_KINDS)}")
        return item

    @model_validator(mode="after")
    def _consistent(self) -> ContractWatch:
        if self.contract_ref and self.customer_ref:
            raise ValueError("name contract_ref or customer_ref, not both")
        if self.item in LINE_ITEM_KINDS and not (self.line_ref or self.product_ref):
            raise ValueError(f"{self.item} is an item of a product line: name its line_ref or product_ref")
        if self.item not in LINE_ITEM_KINDS and (self.line_ref or self.product_ref):
            raise ValueError(f"{self.item} is an item of the contract, not of a line: drop line_ref and product_ref")
        return self

    def matches(self, line: ContractLine) -> bool:
        return (self.line_ref is None or line.line_ref == self.line_ref) and (
            self.product_ref is None or line.product_ref == self.product_ref
        )


class UsageWatch(_Model):
    """What a usage-aggregate monitor watches: a usage product's aggregate (``aggregation``, or as the
    customer's contract line declares it, else sum) over the current billing period (of the customer's
    contract billing that usage; a calendar month without one) or a rolling window of ``window_days``
    ending on the day."""

    product_ref: Ref
    customer_ref: Ref | None = None
    aggregation: Aggregation | None = None
    usage_property: Ref | None = Field(default=None, description="distinct: the property whose values count")
    window: Literal["billing_period", "rolling"] = "billing_period"
    window_days: int | None = Field(default=None, ge=1, le=366)

    @model_validator(mode="after")
    def _consistent(self) -> UsageWatch:
        if (self.window == "rolling") != (self.window_days is not None):
            raise ValueError("window_days is needed with window rolling, and only there")
        if self.aggregation == "distinct" and self.usage_property is None:
            raise ValueError("usage_property is needed with aggregation distinct")
        if self.usage_property is not None and self.aggregation not in ("distinct", None):
            raise ValueError("usage_property is only for aggregation distinct")
        return self


class MonitorDefinition(_Model):
    """A monitor as a file or an API body names it (its JSON Schema: ``billbridge monitors schema``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="billbridge monitor")

    name: Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    source: Source
    entity_ref: Ref
    contract: ContractWatch | None = None
    usage: UsageWatch | None = None
    conditions: list[Condition] = Field(default_factory=list, max_length=20)
    webhook_url: Annotated[str, StringConstraints(max_length=2000)] | None = Field(
        default=None, description="Where alerts are POSTed, signed (HMAC-SHA256 of timestamp and body)"
    )

    @field_validator("webhook_url")
    @classmethod
    def _http(cls, url: str | None) -> str | None:
        if url is not None and not re.match(r"^https?://[^\s/]+(/\S*)?$", url):
            raise ValueError("webhook_url must be an http:// or https:// URL")
        return url

    @model_validator(mode="after")
    def _consistent(self) -> MonitorDefinition:
        if self.source == "contract" and (self.contract is None or self.usage is not None):
            raise ValueError("a contract monitor needs contract (and no usage)")
        if self.source == "usage_aggregate" and (self.usage is None or self.contract is not None):
            raise ValueError("a usage_aggregate monitor needs usage (and no contract)")
        kind = self.kind
        for i, condition in enumerate(self.conditions):
            fits = _NUMBER_CONDITIONS if kind == "number" else _DATE_CONDITIONS if kind == "date" else set()
            if condition.when not in fits:
                shown = ", ".join(sorted(fits)) or "none"
                raise ValueError(f"conditions[{i}]: {condition.when} does not apply to a {kind} (applies: {shown})")
        keys = [c.key for c in self.conditions]
        if len(keys) != len(set(keys)):
            raise ValueError("conditions repeat")
        return self

    @property
    def kind(self) -> ValueKind:
        return ITEM_KINDS[self.contract.item] if self.contract is not None else "number"

    @property
    def customer_ref(self) -> str | None:
        """The one customer a monitor is limited to by its definition (a contract's is the store's)."""
        watch = self.contract or self.usage
        return watch.customer_ref if watch is not None else None


def line_items(line: ContractLine) -> tuple[str, ...]:
    """The items a line offers, by its charge and pricing model."""
    model = line.pricing.model if line.pricing is not None else "flat"
    return LINE_ITEMS.get((line.charge, model)) or LINE_ITEMS[(line.charge, "*")]


def check_against_lines(watch: ContractWatch, lines: Iterable[ContractLine], where: str) -> str | None:
    """None when the watched lines have the item; else why not, listing the items they do have.
    ``lines``: the current lines of the contracts watched; ``where`` names them in the message."""
    if watch.item not in LINE_ITEM_KINDS:
        return None
    chosen = [line for line in lines if watch.matches(line)]
    selector = f"line {watch.line_ref}" if watch.line_ref else f"a line of product {watch.product_ref}"
    if not chosen:
        return None if where == "any contract" else f"{where} has no {selector}"
    for line in chosen:
        offered = line_items(line)
        if watch.item not in offered:
            model = line.pricing.model if line.pricing is not None else "flat"
            return (
                f"item {watch.item!r} is not an item of {line.charge} line {line.line_ref} priced {model} "
                f"(of {where}); its items are {', '.join(offered)}"
            )
    return None


@dataclass(frozen=True, slots=True)
class InvoiceFact:
    """An invoice or credit note of a contract that was not voided, as ``invoice_total`` reads it."""

    billing_date: date
    total: Decimal


UsageLookup = Callable[[UsageQuery], Decimal]


def known_versions(versions: Sequence[Version], day: date) -> list[Version]:
    """The versions a contract had by ``day``: the first, and every one effective by then."""
    ordered = sorted(versions, key=lambda v: (v.effective_date, v.version_no))
    return ordered[:1] + [v for v in ordered[1:] if v.effective_date <= day]


def current_period(contract: Contract, day: date) -> Period | None:
    """The billing period holding ``day``, or None when the contract does not serve that day."""
    end = contract.contract_end_date
    if day < contract.contract_start_date or (end is not None and day > end):
        return None
    anchor, length, unit = contract.anchor, contract.cycle_length, contract.cycle_unit
    k = cycle_index(anchor, length, unit, day)
    full_start, full_end = add_cycles(anchor, k, length, unit), add_cycles(anchor, k + 1, length, unit)
    service_end = end + ONE_DAY if end else None
    last = full_end if service_end is None else min(full_end, service_end)
    return Period(max(full_start, contract.contract_start_date), last, full_start, full_end)


DAY_BOUND = frozenset({"invoice_total", "usage_quantity"})
"""Items that may change on any day (invoices and usage are dated); the others change only where the
terms or the period do."""


class ContractSeries:
    """One contract's values day after day: the timeline of the versions known by a day is built once
    per set of versions, and an item that changes only where the terms or the period change is
    computed once per stretch of days between such changes (a 90-day backfill computes a handful)."""

    def __init__(self, versions: Sequence[Version]) -> None:
        self.versions = sorted(versions, key=lambda v: (v.effective_date, v.version_no))
        self._effective = [v.effective_date for v in self.versions]
        self._timelines: dict[int, _Timeline] = {}
        self._stable: dict[tuple[object, ...], object] = {}
        self._changes = sorted(self._change_days())
        self._last_period: tuple[Contract, Period] | None = None
        self._usage_lines: dict[tuple[object, ...], bool] = {}

    def _change_days(self) -> set[date]:
        days: set[date] = set()
        for version in self.versions:
            contract = version.contract
            days.update((version.effective_date, contract.contract_start_date))
            if contract.contract_end_date:
                days.add(contract.contract_end_date + ONE_DAY)
            for line in contract.lines:
                days.update(step.start_date for step in line.ramps)
                if line.start_date:
                    days.add(line.start_date)
                if line.end_date:
                    days.add(line.end_date + ONE_DAY)
        return days

    def _period(self, contract: Contract, day: date) -> Period | None:
        """:func:`current_period`, reused while the day stays in the same cycle of the same terms."""
        last = self._last_period
        if last is not None and last[0] is contract and last[1].full_start <= day < last[1].full_end:
            end = contract.contract_end_date
            return last[1] if end is None or day <= end else None
        found = current_period(contract, day)
        if found is not None:
            self._last_period = (contract, found)
        return found

    def _reads_usage(self, watch: ContractWatch, contract: Contract) -> bool:
        """Whether the item is priced from usage (it may change any day)."""
        key = (watch.item, watch.line_ref, watch.product_ref, id(contract))
        found = self._usage_lines.get(key)
        if found is None:
            found = self._usage_lines[key] = watch.item in ("amount", "billed_amount") and any(
                line.charge == "usage" for line in contract.lines if watch.matches(line)
            )
        return found

    def _timeline(self, known: int) -> _Timeline:
        """The timeline of the first ``known`` versions (those known by a day are always a prefix:
        the first, then every one effective by then, in effective-date order)."""
        found = self._timelines.get(known)
        if found is None:
            found = self._timelines[known] = _Timeline(self.versions[:known])
        return found

    def value(
        self,
        watch: ContractWatch,
        day: date,
        invoices: Sequence[InvoiceFact] = (),
        usage: UsageLookup | None = None,
    ) -> Value | None:
        """The item's value on ``day`` (None: the contract or line does not serve it)."""
        if not self.versions:
            return None
        known = max(1, bisect_right(self._effective, day))
        contract = self.versions[known - 1].contract  # the version in force: the latest one known
        period = self._period(contract, day)
        if period is None:
            return None
        if watch.item in DAY_BOUND or self._reads_usage(watch, contract):
            return _evaluate(self._timeline(known), contract, period, watch, day, invoices, usage)
        # what is evaluated, not which monitor asks: monitors watching the same item share it
        key = (watch.item, watch.line_ref, watch.product_ref, bisect_right(self._changes, day), period.start)
        found = self._stable.get(key, _UNSET)
        if found is _UNSET:
            found = self._stable[key] = _evaluate(self._timeline(known), contract, period, watch, day, invoices, usage)
        return found  # type: ignore[return-value]


_UNSET = object()


def contract_value(
    versions: Sequence[Version],
    watch: ContractWatch,
    day: date,
    invoices: Sequence[InvoiceFact] = (),
    usage: UsageLookup | None = None,
) -> Value | None:
    """The item's value for one contract on ``day`` (None: the contract or line does not serve it)."""
    return ContractSeries(versions).value(watch, day, invoices, usage)


def _evaluate(
    timeline: _Timeline,
    contract: Contract,
    period: Period,
    watch: ContractWatch,
    day: date,
    invoices: Sequence[InvoiceFact],
    usage: UsageLookup | None,
) -> Value | None:
    item = watch.item
    if item in PERIOD_ITEMS:
        return _period_item(contract, period, item)
    if item == "invoice_total":
        return sum((i.total for i in invoices if period.start <= i.billing_date <= day), Decimal(0))
    if item == "minimum_commitment":
        return contract.minimum_commitment
    values = [
        _line_item(timeline, contract, period, line, item, day, usage) for line in contract.lines if watch.matches(line)
    ]
    return combine(ITEM_KINDS[item], values)


def _period_item(contract: Contract, period: Period, item: str) -> Value | None:
    match item:
        case "start_date":
            return period.start
        case "end_date":
            return period.end - ONE_DAY
        case "cycle_length":
            return Decimal(contract.cycle_length)
        case "cycle_unit":
            return contract.cycle_unit
        case "cycle_start_date":
            return contract.anchor
        case "contract_start_date":
            return contract.contract_start_date
    return contract.contract_end_date


def _line_item(
    timeline: _Timeline,
    contract: Contract,
    period: Period,
    line: ContractLine,
    item: str,
    day: date,
    usage: UsageLookup | None,
) -> Value | None:
    if item not in line_items(line):
        return None
    if line.charge == "usage":
        if timeline.terms_at(line.line_ref, day) is None:
            return None
        query = UsageQuery(line.product_ref, line.usage_aggregation, period.start, day + ONE_DAY, line.usage_property)
        quantity = usage(query) if usage is not None else Decimal(0)
        terms = timeline.terms_at(line.line_ref, day, usage_quantity=quantity)
        assert terms is not None
        if item == "usage_quantity":
            return quantity
        return terms.amount if item == "amount" else round_money(terms.amount - terms.discount, contract.currency)
    if line.charge == "one_time" and item == "billing_date":
        return line.billing_date or line.start_date or contract.contract_start_date
    terms = timeline.terms_at(line.line_ref, day)
    if terms is None:
        return None
    match item:
        case "amount":
            return terms.amount
        case "quantity":
            return terms.quantity
        case "unit_price":
            pricing = line.pricing
            for step in line.ramps:
                if step.start_date <= day and step.pricing is not None:
                    pricing = step.pricing
            return pricing.unit_price if isinstance(pricing, PerUnitPrice) else None
        case "installments":
            return Decimal(line.installments or 1)
        case "installment_amount":
            return split_evenly(
                round_money(terms.amount, contract.currency), line.installments or 1, contract.currency
            )[0]
    spans = [s for s in _recurring_spans(timeline, line.line_ref, period.start, period.end) if s.terms is not None]
    if item == "billed_days":
        return Decimal(sum((s.end - s.start).days for s in spans))
    with localcontext(_CTX):
        billed = sum(
            (
                prorate(s.terms.amount - s.terms.discount, (s.end - s.start).days, period.full_days)
                for s in spans
                if s.terms is not None
            ),
            Decimal(0),
        )
    return round_money(billed, contract.currency)


def combine(kind: ValueKind, values: Iterable[Value | None]) -> Value | None:
    """One value of several (a customer's contracts, a contract's lines): numbers add up, dates take
    the earliest, texts the distinct ones in order, comma separated."""
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return present[0] if present else None
    if kind == "number":
        with localcontext(_CTX):
            return sum((v for v in present if isinstance(v, Decimal)), Decimal(0))
    if kind == "date":
        return min(v for v in present if isinstance(v, date))
    return ",".join(sorted({str(v) for v in present}))


def usage_window(watch: UsageWatch, day: date, period: Period | None) -> tuple[date, date]:
    """The days ``[start, end)`` a usage monitor aggregates on ``day``: the rolling window, or the
    billing period so far (a calendar month without a contract)."""
    end = day + ONE_DAY
    if watch.window == "rolling":
        assert watch.window_days is not None
        return end - timedelta(days=watch.window_days), end
    return (period.start if period is not None else day.replace(day=1)), end


def usage_value(
    watch: UsageWatch,
    day: date,
    per_day: Mapping[date, DailyUsage],
    *,
    period: Period | None = None,
    declared: str | None = None,
) -> Decimal:
    """A customer's aggregate on ``day``; ``declared``: the aggregation their contract line declares."""
    start, end = usage_window(watch, day, period)
    aggregation = watch.aggregation or declared or "sum"
    return aggregate(per_day, UsageQuery(watch.product_ref, aggregation, start, end, watch.usage_property))


def increment(kind: ValueKind, value: Value | None, previous: Value | None) -> Decimal | None:
    """The change over the previous day: a difference of numbers, days between dates; None for texts
    and when either day has no value."""
    if value is None or previous is None:
        return None
    if isinstance(value, Decimal) and isinstance(previous, Decimal):
        with localcontext(_CTX):
            return value - previous
    if isinstance(value, date) and isinstance(previous, date):
        return Decimal((value - previous).days)
    return None


def holds(condition: Condition, day: date, value: Value | None, previous: Value | None) -> bool:
    """Whether ``condition`` holds on ``day`` for this value (and the previous day's)."""
    if value is None:
        return False
    when, limit = condition.when, condition.value
    if when == "within_days":
        return isinstance(value, date) and 0 <= (value - day).days <= limit
    if not isinstance(value, Decimal):
        return False
    if when == "above":
        return value > limit
    if when == "below":
        return value < limit
    change = increment("number", value, previous)
    if change is None:
        return False
    if when == "increment_above":
        return change > limit
    if when == "increment_below":
        return change < limit
    assert isinstance(previous, Decimal)
    if previous == 0:
        return False
    with localcontext(_CTX):
        percent = change / abs(previous) * 100
    return percent > limit if when == "increment_percent_above" else percent < limit


def crossings(
    conditions: Sequence[Condition], day: date, values: Mapping[date, Value | None], *, fresh: bool = False
) -> list[Condition]:
    """The conditions that start to hold on ``day``: they hold on it and did not the day before
    (``values`` has the day and the two before it). ``fresh``: the monitor never looked at this
    customer before the day, so a condition holding already is news (a new monitor's first day)."""
    before, yesterday = day - 2 * ONE_DAY, day - ONE_DAY
    return [
        c
        for c in conditions
        if holds(c, day, values.get(day), values.get(yesterday))
        and (fresh or not holds(c, yesterday, values.get(yesterday), values.get(before)))
    ]


def to_text(value: Value) -> str:
    """A value as stored and shown: a plain decimal, an ISO date, or the text."""
    if isinstance(value, Decimal):
        return f"{value:f}"
    return value.isoformat() if isinstance(value, date) else value


def from_text(kind: ValueKind, text: str) -> Value:
    if kind == "number":
        return Decimal(text)
    return date.fromisoformat(text) if kind == "date" else text
