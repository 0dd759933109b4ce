"""Invoice planning: what a contract should have billed by a date, minus what it has already billed.

Every charge belongs to a *slot*: a line's billing period (recurring and usage lines), the day of a
one-time fee or of an installment, or a period's minimum-commitment true-up. Under the contract's
version timeline each slot has expected *spans* (a day range billed with one set of terms). Billed
invoice lines cover spans too, with a sign (charge +1, credit -1). Planning compares the two day by
day and emits only the difference: nothing on a rerun, and for an amendment a credit of the unused
old terms plus a charge of the new ones, never a rewrite of an invoice already generated.

New items go on the invoice of their slot's billing date or, when that invoice exists already,
on the next billing date up to ``as_of`` that has none (one invoice per contract and billing date).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Literal

from pydantic import BaseModel

from billbridge.billing.currency import round_money, split_evenly
from billbridge.billing.model import Contract, ContractLine, Discount
from billbridge.billing.periods import Period, add_cycles, cycle_index, periods, prorate
from billbridge.billing.usage_periods import UsageQuery, usage_label

ONE_DAY = timedelta(days=1)
HUNDRED = Decimal(100)
ZERO = Decimal(0)
MINIMUM_LINE = "minimum_commitment"
DISCOUNT_LINE = "contract_discount"
CREDIT_PREFIX = "Credit: "

ItemKind = Literal["recurring", "usage", "one_time", "installments", "minimum", "discount"]
UsageLookup = Callable[[UsageQuery], Decimal]
"""The aggregate a usage line's query measures (see ``billing.usage_periods``)."""


@dataclass(frozen=True, slots=True)
class Version:
    """A contract version with prices resolved, applying from ``effective_date`` (the first: from the start)."""

    version_no: int
    effective_date: date
    contract: Contract


@dataclass(frozen=True, slots=True)
class BilledItem:
    """An invoice line already generated, as planning needs it. Ends are exclusive."""

    line_ref: str
    kind: str
    slot_start: date
    slot_end: date
    slot_days: int
    span_start: date
    span_end: date
    terms_hash: str
    sign: int
    amount: Decimal
    discount: Decimal
    billed_amount: Decimal
    billing_date: date
    product_ref: str = ""
    description: str = ""
    quantity: Decimal = Decimal(1)


@dataclass(frozen=True, slots=True)
class DraftLine:
    """An invoice line to create. ``amount``/``discount`` are per full slot at full precision;
    ``billed_amount`` is the rounded amount of the span (negative for a credit)."""

    line_ref: str
    kind: str
    product_ref: str
    description: str
    slot_start: date
    slot_end: date
    slot_days: int
    span_start: date
    span_end: date
    quantity: Decimal
    amount: Decimal
    discount: Decimal
    billed_amount: Decimal
    terms_hash: str
    sign: int
    version_no: int

    @property
    def billed_days(self) -> int:
        return (self.span_end - self.span_start).days


@dataclass(frozen=True, slots=True)
class InvoiceDraft:
    contract_ref: str
    doc_type: Literal["invoice", "credit_note"]
    billing_date: date
    due_date: date
    currency: str
    version_no: int
    lines: tuple[DraftLine, ...]
    subtotal: Decimal
    discount_total: Decimal
    invoice_total: Decimal
    # A credit note: the billing date of the contract's invoice it credits (its credit lines all take
    # back what that one invoice billed), None when they credit several or the planner cannot tell.
    credits: date | None = None


@dataclass
class Plan:
    """Planning result: invoices to create and adjustments waiting for a later billing date."""

    invoices: list[InvoiceDraft] = field(default_factory=list)
    pending: list[DraftLine] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Terms:
    """What one line bills over a span: the same hash means the same money."""

    terms_hash: str
    product_ref: str
    description: str
    quantity: Decimal
    amount: Decimal
    discount: Decimal
    version_no: int


@dataclass(frozen=True, slots=True)
class _Span:
    start: date
    end: date
    terms: _Terms | None


@dataclass(frozen=True, slots=True)
class _Slot:
    line_ref: str
    kind: str
    start: date
    end: date
    slot_days: int
    billing_date: date
    spans: tuple[_Span, ...]


def _digest(*parts: object) -> str:
    """A short stable fingerprint of the parts (str() of each, unit-separator joined)."""
    raw = "\x1f".join(map(str, parts))
    return hashlib.blake2b(raw.encode(), digest_size=10).hexdigest()


def _json(model: BaseModel) -> str:
    """``model.model_dump_json()``, the same text, without the keyword handling of pydantic's wrapper
    (once per line of every contract planned)."""
    return model.__pydantic_serializer__.to_json(model).decode()


def _line_discount(discount: Discount | None, gross: Decimal) -> Decimal:
    if discount is None or gross <= 0:
        return ZERO
    if discount.percent is not None:
        return gross * discount.percent / HUNDRED
    assert discount.amount is not None
    return min(discount.amount, gross)


class _Timeline:
    """The contract's versions, answering 'which terms apply to this line on this day'."""

    def __init__(self, versions: Sequence[Version]) -> None:
        if not versions:
            raise ValueError("a contract needs at least one version")
        self.versions = sorted(versions, key=lambda v: (v.effective_date, v.version_no))
        self.current = self.versions[-1].contract
        self._dates = [v.effective_date for v in self.versions]
        self._lines: dict[int, dict[str, ContractLine]] = {}  # per version (by position), first line of a ref
        self._cache: dict[tuple[int, str, int, Decimal | None], _Terms] = {}
        self._schedules: dict[date, list[Period]] = {}
        self._points: dict[str, list[date]] = {}

    def schedule(self, as_of: date) -> list[Period]:
        """The current terms' billing periods whose service starts on or before ``as_of``."""
        found = self._schedules.get(as_of)
        if found is None:
            found = self._schedules[as_of] = _schedule(self.current, as_of)
        return found

    def _index_at(self, day: date) -> int:
        """The position of the version in force on ``day``: the last one effective by then (the first
        version applies before its own date too)."""
        return bisect_right(self._dates, day, 1) - 1 if len(self._dates) > 1 else 0

    def version_at(self, day: date) -> Version:
        return self.versions[self._index_at(day)]

    def line_at(self, line_ref: str, day: date) -> tuple[Version, ContractLine] | None:
        index = self._index_at(day)
        version = self.versions[index]
        contract = version.contract
        end = contract.contract_end_date
        if day < contract.contract_start_date or (end is not None and day > end):
            return None
        lines = self._lines.get(index)
        if lines is None:
            lines = self._lines[index] = {}
            for each in contract.lines:
                lines.setdefault(each.line_ref, each)
        line = lines.get(line_ref)
        if line is None:
            return None
        if (line.start_date and day < line.start_date) or (line.end_date and day > line.end_date):
            return None
        return version, line

    def terms_at(self, line_ref: str, day: date, usage_quantity: Decimal | None = None) -> _Terms | None:
        found = self.line_at(line_ref, day)
        if found is None:
            return None
        version, line = found
        step_index = -1
        for i, step in enumerate(line.ramps):
            if step.start_date <= day:
                step_index = i
        key = (version.version_no, line_ref, step_index, usage_quantity)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self._terms(version, line, step_index, usage_quantity)
        return cached

    @staticmethod
    def _terms(version: Version, line: ContractLine, step_index: int, usage_quantity: Decimal | None) -> _Terms:
        pricing, quantity = line.pricing, line.quantity
        if step_index >= 0:
            step = line.ramps[step_index]
            pricing = step.pricing or pricing
            quantity = step.quantity if step.quantity is not None else quantity
        if usage_quantity is not None:
            quantity = usage_quantity
        if pricing is None:
            raise ValueError(f"line {line.line_ref!r} has no resolved pricing")
        gross = pricing.amount_for(quantity)
        discount = _line_discount(line.discount, gross)
        description = line.description or line.product_ref
        if usage_quantity is not None:
            description = f"{description}: {usage_label(line.usage_aggregation, line.usage_property)} {usage_quantity}"
            if line.prepaid_amount:  # the prepaid part of the rated amount is not billed again
                prepaid = min(line.prepaid_amount, gross - discount)
                discount += prepaid
                description += f", less {prepaid} prepaid"
        terms_hash = _digest(
            line.charge,
            line.product_ref,
            _json(pricing),
            quantity,
            _json(line.discount) if line.discount else "",
            line.installments,
            line.prepaid_amount or "",
        )
        return _Terms(terms_hash, line.product_ref, description, quantity, gross, discount, version.version_no)

    def breakpoints(self, line_ref: str, start: date, end: date) -> list[date]:
        """Days in (start, end) where the line's terms may change, with ``start`` and ``end``."""
        if start > end:
            return []
        points = self._points.get(line_ref)
        if points is None:  # the line's days of change over the whole contract, found once
            found: set[date] = set()
            for version in self.versions:
                found.add(version.effective_date)
                for line in version.contract.lines:
                    if line.line_ref != line_ref:
                        continue
                    if line.start_date:
                        found.add(line.start_date)
                    if line.end_date:
                        found.add(line.end_date + ONE_DAY)
                    found.update(step.start_date for step in line.ramps)
            points = self._points[line_ref] = sorted(found)
        inner = points[bisect_right(points, start) : bisect_left(points, end)]
        return [start, *inner, end] if start < end else [start]

    def change_days(self, line_ref: str) -> list[date]:
        """Every day the line's terms may change on (sorted): what :meth:`breakpoints` looks inside a range for."""
        found = self._points.get(line_ref)
        if found is None:
            self.breakpoints(line_ref, date.min, date.min)
            found = self._points[line_ref]
        return found

    def line_refs(self) -> dict[str, ContractLine]:
        """Every line ever in the contract (latest definition wins), so a removed line is credited."""
        found: dict[str, ContractLine] = {}
        for version in self.versions:
            for line in version.contract.lines:
                found[line.line_ref] = line
        return found


def _service_end(contract: Contract) -> date | None:
    return contract.contract_end_date + ONE_DAY if contract.contract_end_date else None


def _recurring_spans(timeline: _Timeline, line_ref: str, start: date, end: date) -> tuple[_Span, ...]:
    points = timeline.breakpoints(line_ref, start, end)
    spans: list[_Span] = []
    for a, b in pairwise(points):
        terms = timeline.terms_at(line_ref, a)
        if spans and spans[-1].terms == terms and spans[-1].end == a:
            spans[-1] = _Span(spans[-1].start, b, terms)
        else:
            spans.append(_Span(a, b, terms))
    return tuple(spans)


def _schedule(contract: Contract, as_of: date) -> list[Period]:
    """The contract's billing periods whose service starts on or before ``as_of``."""
    return periods(
        contract.anchor,
        contract.cycle_length,
        contract.cycle_unit,
        contract.contract_start_date,
        _service_end(contract),
        as_of + ONE_DAY,
    )


def _expected_slots(timeline: _Timeline, as_of: date, usage: UsageLookup) -> list[_Slot]:
    slots: list[_Slot] = []
    for line_ref, line in timeline.line_refs().items():
        slots += _line_slots(timeline, line_ref, line, as_of, usage)
    return slots


def _line_slots(timeline: _Timeline, line_ref: str, line: ContractLine, as_of: date, usage: UsageLookup) -> list[_Slot]:
    """One line's expected slots by ``as_of``."""
    contract = timeline.current
    schedule = timeline.schedule(as_of)
    slots: list[_Slot] = []
    timing = line.billing_timing or contract.billing_timing
    if line.charge == "recurring":
        for p in schedule:
            billing_date = p.start if timing == "in_advance" else p.end
            if billing_date > as_of:
                continue
            spans = _recurring_spans(timeline, line_ref, p.start, p.end)
            slots.append(_Slot(line_ref, "recurring", p.start, p.end, p.full_days, billing_date, spans))
    elif line.charge == "usage":
        slots += [_usage_slot(timeline, line_ref, line, p, usage, p.end) for p in schedule if p.end <= as_of]
    elif line.charge == "one_time":
        day = line.billing_date or line.start_date or contract.contract_start_date
        if day <= as_of:
            terms = timeline.terms_at(line_ref, day)
            slots.append(_Slot(line_ref, "one_time", day, day + ONE_DAY, 1, day, (_Span(day, day + ONE_DAY, terms),)))
    else:
        slots.extend(_installment_slots(timeline, line_ref, line, as_of))
    return slots


def _usage_slot(
    timeline: _Timeline, line_ref: str, line: ContractLine, p: Period, usage: UsageLookup, until: date
) -> _Slot:
    """A usage line's slot of the period ``p``, rated on the usage of its days before ``until`` (the
    period's end when it is billed): no terms when the line is not in force on the period's last day."""
    last_day = p.end - ONE_DAY
    terms = None
    if timeline.line_at(line_ref, last_day) is not None:
        quantity = usage(UsageQuery(line.product_ref, line.usage_aggregation, p.start, until, line.usage_property))
        terms = timeline.terms_at(line_ref, last_day, usage_quantity=quantity)
    return _Slot(line_ref, "usage", p.start, p.end, p.days, p.end, (_Span(p.start, p.end, terms),))


def usage_to_date(versions: Sequence[Version], through: date, usage: UsageLookup) -> list[DraftLine]:
    """Per usage line and billing period started by ``through``: the line the planner bills for it,
    rated on the usage of its days through ``through`` (an ended period: all of it; the open one: what
    was consumed so far). A line not in force on a period's last day bills nothing for it (no line).
    Revenue recognition values usage consumed but not yet invoiced at this, with the planner's own
    slot, rating and rounding."""
    timeline = _Timeline(versions)
    if timeline.current.billed_by != "billbridge":
        return []
    currency = timeline.current.currency
    out = []
    for line_ref, line in timeline.line_refs().items():
        if line.charge != "usage":
            continue
        for p in timeline.schedule(through):
            slot = _usage_slot(timeline, line_ref, line, p, usage, min(p.end, through + ONE_DAY))
            span = slot.spans[0]
            if span.terms is not None:
                piece = _Piece(span.start, span.end, 1, span.terms, slot.end, slot.slot_days)
                out.append(_draft_line(slot, piece, currency))
    return out


def _installment_slots(timeline: _Timeline, line_ref: str, line: ContractLine, as_of: date) -> list[_Slot]:
    """An installments line: its amount split over ``installments`` billing dates, remainder on the last."""
    contract = timeline.current
    first = max(line.start_date or contract.contract_start_date, contract.contract_start_date)
    terms = timeline.terms_at(line_ref, first)
    if terms is None or line.installments is None:
        return []
    net = terms.amount - terms.discount
    parts = split_evenly(round_money(net, contract.currency), line.installments, contract.currency)
    k = _first_cycle_after(contract, first)
    days = [first] + [
        add_cycles(contract.anchor, k + i, contract.cycle_length, contract.cycle_unit)
        for i in range(line.installments - 1)
    ]
    slots = []
    for i, (day, part) in enumerate(zip(days, parts, strict=True)):
        if day > as_of:
            break
        part_terms = _Terms(
            terms_hash=_digest(terms.terms_hash, i, str(part)),
            product_ref=terms.product_ref,
            description=f"{terms.description} (installment {i + 1} of {line.installments})",
            quantity=terms.quantity,
            amount=part,
            discount=ZERO,
            version_no=terms.version_no,
        )
        slots.append(
            _Slot(line_ref, "installments", day, day + ONE_DAY, 1, day, (_Span(day, day + ONE_DAY, part_terms),))
        )
    return slots


def _first_cycle_after(contract: Contract, day: date) -> int:
    """Index of the first cycle boundary strictly after ``day``."""
    return cycle_index(contract.anchor, contract.cycle_length, contract.cycle_unit, day) + 1


@dataclass(frozen=True, slots=True)
class _Piece:
    """A day range to bill (sign +1) or credit (sign -1) with one set of terms over a slot of ``slot_days``."""

    start: date
    end: date
    sign: int
    terms: _Terms
    slot_end: date
    slot_days: int


def _diff(slot: _Slot, billed: Iterable[BilledItem]) -> list[_Piece]:
    """Day ranges where billed coverage differs from the expected terms.

    Coverage is counted per (terms, slot length): the same terms over a period of another length
    (the cycle was amended) are different money per day.
    """
    billed = list(billed)
    if not billed:  # nothing billed yet: the expected spans are the difference
        return [_Piece(s.start, s.end, 1, s.terms, slot.end, slot.slot_days) for s in slot.spans if s.terms is not None]
    points = {slot.start, slot.end}
    for span in slot.spans:
        points.update((span.start, span.end))
    for item in billed:
        points.update((item.span_start, item.span_end))
    edges = sorted(points)
    out: list[_Piece] = []
    for a, b in pairwise(edges):
        expected = next((s.terms for s in slot.spans if s.start <= a < s.end), None)
        coverage: dict[tuple[str, int], int] = defaultdict(int)
        known: dict[tuple[str, int], tuple[_Terms, date]] = {}
        if expected is not None:
            known[(expected.terms_hash, slot.slot_days)] = (expected, slot.end)
        for item in billed:
            if item.span_start <= a < item.span_end:
                key = (item.terms_hash, item.slot_days)
                coverage[key] += item.sign
                known.setdefault(key, (_terms_of(item), item.slot_end))
        wanted = {(expected.terms_hash, slot.slot_days): 1} if expected else {}
        for key in sorted(set(coverage) | set(wanted)):
            delta = wanted.get(key, 0) - coverage.get(key, 0)
            if delta == 0:
                continue
            terms, slot_end = known[key]
            last = out[-1] if out else None
            if last and last.end == a and last.sign == delta and (last.terms.terms_hash, last.slot_days) == key:
                out[-1] = _Piece(last.start, b, delta, last.terms, last.slot_end, last.slot_days)
            else:
                out.append(_Piece(a, b, delta, terms, slot_end, key[1]))
    return out


def _terms_of(item: BilledItem) -> _Terms:
    return _Terms(
        terms_hash=item.terms_hash,
        product_ref=item.product_ref,
        description=item.description.removeprefix(CREDIT_PREFIX),
        quantity=item.quantity,
        amount=item.amount,
        discount=item.discount,
        version_no=0,
    )


def _draft_line(slot: _Slot, piece: _Piece, currency: str) -> DraftLine:
    terms, sign = piece.terms, piece.sign
    days = (piece.end - piece.start).days
    net = terms.amount - terms.discount
    if days != piece.slot_days:
        net = prorate(net, days, piece.slot_days)
    description = terms.description if sign > 0 else f"{CREDIT_PREFIX}{terms.description}"
    return DraftLine(  # by position: a line per slot of every contract, keywords cost a fifth more
        slot.line_ref, slot.kind, terms.product_ref, description, slot.start, piece.slot_end, piece.slot_days,
        piece.start, piece.end, terms.quantity, terms.amount, terms.discount,
        round_money(net, currency) * sign, terms.terms_hash, sign, terms.version_no,
    )  # fmt: skip


def _floor(timeline: _Timeline, p: Period) -> Decimal | None:
    """The minimum a billing period commits to (its terms' ``minimum_commitment``, prorated by day and
    rounded; None without one): what its true-up measures its recurring and usage charges against."""
    minimum = timeline.version_at(p.end - ONE_DAY).contract.minimum_commitment
    if minimum is None:
        return None
    return round_money(prorate(minimum, p.days, p.full_days), timeline.current.currency)


def commitment_periods(versions: Sequence[Version], through: date) -> list[tuple[date, date, Decimal, int]]:
    """Per billing period starting by ``through`` that commits to a minimum: (start, end (exclusive), the
    floor, the version whose terms set it). Revenue recognition treats the floor as fixed consideration of
    the period, with the true-up :func:`plan_invoices` bills once the period has ended."""
    timeline = _Timeline(versions)
    if timeline.current.billed_by != "billbridge" or all(v.contract.minimum_commitment is None for v in versions):
        return []
    out = []
    for p in timeline.schedule(through):
        floor = _floor(timeline, p)
        if floor is not None:
            out.append((p.start, p.end, floor, timeline.version_at(p.end - ONE_DAY).version_no))
    return out


def _minimum_slots(
    timeline: _Timeline, as_of: date, billed: Sequence[BilledItem], new: Sequence[DraftLine]
) -> list[_Slot]:
    """True-up slots: per ended period, what the minimum commitment asks beyond what was billed."""
    contract = timeline.current
    currency = contract.currency
    slots: list[_Slot] = []
    if all(v.contract.minimum_commitment is None for v in timeline.versions):
        return slots
    for p in timeline.schedule(as_of):
        if p.end > as_of:
            continue
        floor = _floor(timeline, p)
        if floor is None:
            continue
        in_period: list[BilledItem | DraftLine] = [*billed, *new]
        actual = sum(
            (
                x.billed_amount
                for x in in_period
                if x.kind in ("recurring", "usage") and p.start <= x.slot_start < p.end
            ),
            ZERO,
        )
        shortfall = max(ZERO, floor - actual)
        terms = None
        if shortfall > 0:
            terms = _Terms(
                terms_hash=_digest("minimum", str(shortfall)),
                product_ref="",
                description=f"Minimum commitment true-up ({floor} {currency})",
                quantity=Decimal(1),
                amount=shortfall,
                discount=ZERO,
                version_no=timeline.version_at(p.end - ONE_DAY).version_no,
            )
        slots.append(_Slot(MINIMUM_LINE, "minimum", p.start, p.end, p.days, p.end, (_Span(p.start, p.end, terms),)))
    return slots


def _contract_discount_line(
    discount: Discount | None, lines: Sequence[DraftLine], currency: str, billing_date: date, version_no: int
) -> DraftLine | None:
    """The contract-level discount of one invoice.

    It applies to the charges, not to a minimum-commitment true-up (the commitment is measured
    before discounts). An amount discount is per full billing period: prorated like the recurring
    charges on the invoice, and never more than the charges.
    """
    if discount is None:  # most documents: nothing to add up
        return None
    charges = [line for line in lines if line.kind != "minimum"]
    subtotal = sum((line.billed_amount for line in charges), ZERO)
    if subtotal == 0:
        return None
    if discount.percent is not None:
        amount = -round_money(subtotal * discount.percent / HUNDRED, currency)
        label = f"Discount {discount.percent.normalize()}%"
    else:
        assert discount.amount is not None
        if subtotal <= 0:
            return None
        recurring = [line for line in charges if line.kind == "recurring" and line.sign > 0]
        full = sum((line.amount - line.discount for line in recurring), ZERO)
        billed = sum((line.billed_amount for line in recurring), ZERO)
        share = min(Decimal(1), billed / full) if recurring and full > 0 else Decimal(1)
        amount = -min(round_money(discount.amount * share, currency), subtotal)
        label = "Discount"
    if amount == 0:
        return None
    return DraftLine(
        line_ref=DISCOUNT_LINE,
        kind="discount",
        product_ref="",
        description=label,
        slot_start=billing_date,
        slot_end=billing_date + ONE_DAY,
        slot_days=1,
        span_start=billing_date,
        span_end=billing_date + ONE_DAY,
        quantity=Decimal(1),
        amount=amount,
        discount=ZERO,
        billed_amount=amount,
        terms_hash=_digest("discount", str(amount)),
        sign=1 if amount > 0 else -1,
        version_no=version_no,
    )


def plan_invoices(
    contract_ref: str,
    versions: Sequence[Version],
    as_of: date,
    billed: Sequence[BilledItem] = (),
    invoiced_dates: Iterable[date] = (),
    usage: UsageLookup | None = None,
) -> Plan:
    """Invoices (and credit notes) a contract needs by ``as_of``, given what is billed already.

    A contract another system invoices (``billed_by``, e.g. a Stripe subscription: Stripe bills and
    collects it) plans nothing: it is stored for reporting, and its payments are matched by
    reconciliation. A contract whose versions change who bills it is refused, as neither side
    could settle the switch."""
    billers = {version.contract.billed_by for version in versions}
    if len(billers) > 1:
        raise ValueError(f"its versions are billed by different systems ({', '.join(sorted(billers))})")
    if billers and billers != {"billbridge"}:
        return Plan()
    timeline = _Timeline(versions)
    contract = timeline.current
    currency = contract.currency
    usage_lookup: UsageLookup = usage or (lambda _query: ZERO)
    invoiced = set(invoiced_dates)

    billed_by_slot: dict[tuple[str, str, date], list[BilledItem]] = defaultdict(list)
    for item in billed:
        if item.kind != "discount":
            billed_by_slot[(item.line_ref, item.kind, item.slot_start)].append(item)

    # A credit line (by identity: the lines live in ``new`` until the plan is built) -> the billing
    # date of the invoice whose charge it takes back.
    credited: dict[int, date | None] = {}

    def diff_all(slots: list[_Slot]) -> list[tuple[date, DraftLine]]:
        found = []
        for slot in slots:
            items = billed_by_slot.pop((slot.line_ref, slot.kind, slot.start), [])
            for piece in _diff(slot, items):
                line = _draft_line(slot, piece, currency)
                if line.billed_amount != 0 or piece.sign > 0:
                    found.append((slot.billing_date, line))
                    if piece.sign < 0:
                        credited[id(line)] = _credited_date(piece, items)
        return found

    new = diff_all(_expected_slots(timeline, as_of, usage_lookup))
    new += diff_all(_minimum_slots(timeline, as_of, billed, [line for _, line in new]))
    # Billed slots the current terms no longer have at all (a cancellation, a removed line). Slots
    # billed on invoices after ``as_of`` are simply outside this plan's horizon.
    service_end = _service_end(contract)
    for (line_ref, kind, slot_start), items in billed_by_slot.items():
        first = min(items, key=lambda item: item.billing_date)
        if first.billing_date > as_of:
            continue
        natural = min(first.billing_date, service_end) if service_end else first.billing_date
        orphan = _Slot(line_ref, kind, slot_start, first.slot_end, first.slot_days, natural, ())
        for piece in _diff(orphan, items):
            line = _draft_line(orphan, piece, currency)
            new.append((natural, line))
            if piece.sign < 0:
                credited[id(line)] = _credited_date(piece, items)

    billing_dates = sorted({d for d, _ in new} | _boundary_dates(timeline, as_of))
    ended = service_end is not None and service_end <= as_of
    plan = Plan()
    by_target: dict[date, list[DraftLine]] = defaultdict(list)
    for natural, line in new:
        target = _first_open(billing_dates, natural, as_of, invoiced)
        if target is None and ended and as_of not in invoiced:
            target = as_of  # the contract has no billing date left: settle on a document dated today
        if target is None:
            plan.pending.append(line)
        else:
            by_target[target].append(line)

    net_days = timedelta(days=contract.payment_terms_days)
    for billing_date in sorted(by_target):
        lines = by_target[billing_date]
        version = timeline.version_at(billing_date)
        subtotal = sum((line.billed_amount for line in lines), ZERO)
        discount_line = _contract_discount_line(
            version.contract.discount, lines, currency, billing_date, version.version_no
        )
        total = subtotal  # the same additions as summing the lines with the discount line last
        if discount_line is not None:
            lines = [*lines, discount_line]
            total = subtotal + discount_line.billed_amount
        plan.invoices.append(
            InvoiceDraft(  # by position, in field order (a document per contract planned)
                contract_ref,
                "credit_note" if total < 0 else "invoice",  # doc_type
                billing_date,
                billing_date + net_days,  # due_date
                currency,
                version.version_no,
                tuple(lines),
                subtotal,
                discount_line.billed_amount if discount_line else ZERO,  # discount_total
                total,  # invoice_total
                _credits(lines, credited) if total < 0 else None,  # credits
            )
        )
    return plan


def _credited_date(piece: _Piece, billed: Sequence[BilledItem]) -> date | None:
    """The billing date of the invoice whose charge a credit piece takes back: the charged item
    covering its first day (None when none does)."""
    for item in billed:
        if item.sign > 0 and item.span_start <= piece.start < item.span_end:
            return item.billing_date
    return None


def _credits(lines: Sequence[DraftLine], credited: Mapping[int, date | None]) -> date | None:
    """The one invoice (by billing date) a credit note's credit lines all take back from, or None."""
    dates = {credited[id(line)] for line in lines if id(line) in credited}
    return dates.pop() if len(dates) == 1 else None


def _first_open(billing_dates: Sequence[date], natural: date, as_of: date, invoiced: set[date]) -> date | None:
    """The first of the sorted ``billing_dates`` from ``natural`` to ``as_of`` not invoiced already."""
    for i in range(bisect_left(billing_dates, natural), len(billing_dates)):
        day = billing_dates[i]
        if day > as_of:
            return None
        if day not in invoiced:
            return day
    return None


def _boundary_dates(timeline: _Timeline, as_of: date) -> set[date]:
    """Billing dates an adjustment may wait for: period starts and the day after service ends."""
    dates = {p.start for p in timeline.schedule(as_of)}
    end = _service_end(timeline.current)
    if end is not None and end <= as_of:
        dates.add(end)
    return dates


def as_billed(draft: InvoiceDraft) -> list[BilledItem]:
    """The billed items a saved draft amounts to (what the store reads back for the next plan)."""
    return [
        BilledItem(
            line_ref=line.line_ref,
            kind=line.kind,
            slot_start=line.slot_start,
            slot_end=line.slot_end,
            slot_days=line.slot_days,
            span_start=line.span_start,
            span_end=line.span_end,
            terms_hash=line.terms_hash,
            sign=line.sign,
            amount=line.amount,
            discount=line.discount,
            billed_amount=line.billed_amount,
            billing_date=draft.billing_date,
            product_ref=line.product_ref,
            description=line.description,
            quantity=line.quantity,
        )
        for line in draft.lines
    ]


def fresh_lines(version: Version, as_of: date) -> list[DraftLine]:
    """The lines :func:`plan_invoices` plans for one version with nothing billed yet, by ``as_of``,
    minimum-commitment true-ups left out (variable consideration), contract discounts in; per line in
    period order. The same lines as the planner's, without its per-slot machinery (slots, spans,
    pieces, the comparison with what was billed): revenue recognition values every contract's whole
    term this way. A line whose terms never change (no ramps, no dates of its own) is priced once."""
    contract = version.contract
    if contract.billed_by != "billbridge":
        return []
    if len({line.line_ref for line in contract.lines}) != len(contract.lines):  # a ref twice: the planner's rules
        plan = plan_invoices("", [version], as_of)
        lines = [line for draft in plan.invoices for line in draft.lines] + plan.pending
        return [line for line in lines if line.kind != "minimum"]
    timeline = _Timeline([version])
    currency = contract.currency
    schedule = timeline.schedule(as_of)
    start, end = contract.contract_start_date, contract.contract_end_date
    by_date: dict[date, list[DraftLine]] = defaultdict(list)
    out: list[DraftLine] = []
    billed_of: dict[tuple[str, Decimal, Decimal, int, int], Decimal] = {}
    discounted = contract.discount is not None

    def add(billing_date: date, line: DraftLine) -> None:
        out.append(line)
        if discounted:  # each document's contract discount needs its lines
            by_date[billing_date].append(line)

    def draft(
        line_ref: str, kind: str, slot: tuple[date, date, int], span: tuple[date, date], terms: _Terms
    ) -> DraftLine:
        days = (span[1] - span[0]).days
        key = (terms.terms_hash, terms.amount, terms.discount, days, slot[2])
        billed = billed_of.get(key)
        if billed is None:  # the same terms over as many days of as long a period bill the same
            net = terms.amount - terms.discount
            if days != slot[2]:
                net = prorate(net, days, slot[2])
            billed = billed_of[key] = round_money(net, currency)
        return DraftLine(
            line_ref, kind, terms.product_ref, terms.description, slot[0], slot[1], slot[2], span[0], span[1],
            terms.quantity, terms.amount, terms.discount, billed, terms.terms_hash, 1, terms.version_no,
        )  # fmt: skip

    for line_ref, line in timeline.line_refs().items():
        timing = line.billing_timing or contract.billing_timing
        if line.charge == "recurring":
            steady = not line.ramps and line.start_date is None and line.end_date is None
            terms: _Terms | None = None
            for p in schedule:
                billing_date = p.start if timing == "in_advance" else p.end
                if billing_date > as_of:
                    continue
                if steady and p.start >= start and (end is None or p.end - ONE_DAY <= end):
                    if terms is None:
                        terms = timeline.terms_at(line_ref, p.start)
                    if terms is not None:
                        add(
                            billing_date,
                            draft(line_ref, "recurring", (p.start, p.end, p.full_days), (p.start, p.end), terms),
                        )
                    continue
                for span in _recurring_spans(timeline, line_ref, p.start, p.end):
                    if span.terms is not None:
                        slot = (p.start, p.end, p.full_days)
                        add(billing_date, draft(line_ref, "recurring", slot, (span.start, span.end), span.terms))
        elif line.charge == "usage":
            for p in schedule:
                if p.end > as_of:
                    continue
                last_day = p.end - ONE_DAY
                if timeline.line_at(line_ref, last_day) is None:
                    continue
                usage_terms = timeline.terms_at(line_ref, last_day, usage_quantity=ZERO)
                if usage_terms is not None:
                    add(p.end, draft(line_ref, "usage", (p.start, p.end, p.days), (p.start, p.end), usage_terms))
        elif line.charge == "one_time":
            day = line.billing_date or line.start_date or contract.contract_start_date
            once = timeline.terms_at(line_ref, day) if day <= as_of else None
            if once is not None:
                add(day, draft(line_ref, "one_time", (day, day + ONE_DAY, 1), (day, day + ONE_DAY), once))
        else:
            for each in _installment_slots(timeline, line_ref, line, as_of):
                part = each.spans[0]
                assert part.terms is not None
                add(
                    each.billing_date,
                    draft(line_ref, "installments", (each.start, each.end, 1), (part.start, part.end), part.terms),
                )
    if contract.discount is not None:
        for billing_date in sorted(by_date):
            found = _contract_discount_line(
                contract.discount, by_date[billing_date], currency, billing_date, version.version_no
            )
            if found is not None:
                out.append(found)
    return out


def _no_usage(_query: UsageQuery) -> Decimal:
    return ZERO


def planned_lines(versions: Sequence[Version], as_of: date, billed: Sequence[BilledItem] = ()) -> list[DraftLine]:
    """The lines :func:`plan_invoices` plans for ``versions`` against ``billed`` by ``as_of`` with no billing
    date taken yet (each line on its own billing date, nothing pending), minimum-commitment true-ups left out
    (variable consideration), contract discounts in, no usage. Revenue recognition values an amended
    contract's term this way: the planner's comparison with what was billed (``_diff``) runs only for the
    slots something was billed for; every other slot is drafted as :func:`fresh_lines` drafts (each distinct
    amount prorated and rounded once) and no invoice drafts are made."""
    billers = {version.contract.billed_by for version in versions}
    if len(billers) > 1:
        raise ValueError(f"its versions are billed by different systems ({', '.join(sorted(billers))})")
    if billers and billers != {"billbridge"}:
        return []
    timeline = _Timeline(versions)
    contract = timeline.current
    currency = contract.currency
    billed_by_slot: dict[tuple[str, str, date], list[BilledItem]] = defaultdict(list)
    for item in billed:
        if item.kind not in ("discount", "minimum"):  # true-ups are not planned here, so neither compared
            billed_by_slot[(item.line_ref, item.kind, item.slot_start)].append(item)
    discounted = any(v.contract.discount is not None for v in timeline.versions)
    by_date: dict[date, list[DraftLine]] = defaultdict(list)
    out: list[DraftLine] = []
    amounts: dict[tuple[str, Decimal, Decimal, int, int], Decimal] = {}

    def add(billing_date: date, line: DraftLine) -> None:
        out.append(line)
        if discounted:  # each document's contract discount needs its lines
            by_date[billing_date].append(line)

    def planned(slot: _Slot) -> None:
        """A slot as the planner plans it: compared with what was billed for it, if anything was."""
        items = billed_by_slot.pop((slot.line_ref, slot.kind, slot.start), None)
        if items is not None:
            for piece in _diff(slot, items):
                line = _draft_line(slot, piece, currency)
                if line.billed_amount != 0 or piece.sign > 0:
                    add(slot.billing_date, line)
            return
        for span in slot.spans:  # nothing billed: the expected spans are the difference (as ``_diff`` says)
            if span.terms is not None:
                whole = (slot.start, slot.end, slot.slot_days)
                fresh(slot.line_ref, slot.kind, whole, span.start, span.end, span.terms, slot.billing_date)

    def fresh(
        line_ref: str, kind: str, slot: tuple[date, date, int], start: date, end: date, terms: _Terms, billing: date
    ) -> None:
        days = (end - start).days
        key = (terms.terms_hash, terms.amount, terms.discount, days, slot[2])
        amount = amounts.get(key)
        if amount is None:  # the same terms over as many days of as long a period bill the same
            net = terms.amount - terms.discount
            if days != slot[2]:
                net = prorate(net, days, slot[2])
            amount = amounts[key] = round_money(net, currency)
        add(
            billing,
            DraftLine(
                line_ref, kind, terms.product_ref, terms.description, slot[0], slot[1], slot[2], start, end,
                terms.quantity, terms.amount, terms.discount, amount, terms.terms_hash, 1, terms.version_no,
            ),
        )  # fmt: skip

    schedule = timeline.schedule(as_of)
    for line_ref, line in timeline.line_refs().items():
        if line.charge != "recurring":
            for slot in _line_slots(timeline, line_ref, line, as_of, _no_usage):
                planned(slot)
            continue
        timing = line.billing_timing or contract.billing_timing
        breaks = timeline.change_days(line_ref)
        # Days on which the line's terms may change (``terms_at`` is the same on every day between two):
        # its breakpoints and each version's term.
        changes = sorted(
            {*breaks, *(v.contract.contract_start_date for v in timeline.versions)}
            | {v.contract.contract_end_date + ONE_DAY for v in timeline.versions if v.contract.contract_end_date}
        )
        terms: _Terms | None = None
        valid = (date.max, date.min)  # the days ``terms`` holds for
        for p in schedule:
            billing_date = p.start if timing == "in_advance" else p.end
            if billing_date > as_of:
                continue
            if (line_ref, "recurring", p.start) in billed_by_slot or bisect_right(breaks, p.start) < bisect_left(
                breaks, p.end
            ):  # billed, or its terms may change inside the period: the planner's spans
                spans = _recurring_spans(timeline, line_ref, p.start, p.end)
                planned(_Slot(line_ref, "recurring", p.start, p.end, p.full_days, billing_date, spans))
                continue
            if not valid[0] <= p.start < valid[1]:  # one span over the period, on its first day's terms
                terms = timeline.terms_at(line_ref, p.start)
                k = bisect_right(changes, p.start)
                valid = (changes[k - 1] if k else date.min, changes[k] if k < len(changes) else date.max)
            if terms is not None:
                fresh(line_ref, "recurring", (p.start, p.end, p.full_days), p.start, p.end, terms, billing_date)
    service_end = _service_end(contract)
    for (line_ref, kind, slot_start), items in billed_by_slot.items():  # slots the terms no longer have
        first = min(items, key=lambda item: item.billing_date)
        if first.billing_date > as_of:
            continue
        natural = min(first.billing_date, service_end) if service_end else first.billing_date
        orphan = _Slot(line_ref, kind, slot_start, first.slot_end, first.slot_days, natural, ())
        for piece in _diff(orphan, items):
            add(natural, _draft_line(orphan, piece, currency))
    for billing_date in sorted(by_date):
        version = timeline.version_at(billing_date)
        found = _contract_discount_line(
            version.contract.discount, by_date[billing_date], currency, billing_date, version.version_no
        )
        if found is not None:
            out.append(found)
    return out
