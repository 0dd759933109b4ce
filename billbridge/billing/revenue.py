"""Revenue recognition (ASC 606 / IFRS 15): performance obligations, allocation, schedules, balances.

Definitions, as this module applies them:

- **Performance obligation**: a contract line of a version (a distinct good or service), satisfied as its
  ``recognition`` says (``ContractLine.recognition_method``): ``ratable`` over its service period, per
  day; ``point_in_time`` on delivery (the line's start, else the contract's; a recurring line delivered
  at a point in time: each billing period's delivery at the period's start); ``usage`` in the period the
  usage happened; ``none``: a pass-through item, neither billed nor recognised here.
- **Transaction price**: the fixed consideration of the contract over its term: what the billing
  engine's planner bills for recurring, one-time and installment charges with line and contract
  discounts and ramps (usage is variable consideration). An evergreen
  contract is month-to-month (either side may stop it): its term runs to the end of the billing period
  holding ``through``.
- **Standalone selling price (SSP)**: see :class:`billbridge.billing.model.Ssp`; over an obligation it is
  the SSP per unit and full period times its quantity and full periods (``standalone_price``).
- **Allocation**: the transaction price split over the obligations in proportion to their SSPs
  (ASC 606-10-32-29, IFRS 15.74), exact to the minor unit by the largest-remainder method.
- **Minimum commitment**: fixed consideration. Per commitment period, the floor beyond what the
  period's recurring charges bill is an obligation of its own (``MINIMUM_LINE``), recognised ratably over
  the period's days; the period's usage fills it first and only usage above it is revenue (in the month
  consumed); the true-up invoice only bills (it relieves the contract asset).
- **Variable consideration** (usage) is allocated entirely to the distinct period it
  is earned in (ASC 606-10-32-40, the variable-consideration exception). Usage measured by a sum or a
  count (``usage_aggregation`` sum or count) is recognised in the months it was consumed: each billed
  amount over its billing period's months in proportion to the quantity (sum) or events (count) of each
  month (largest remainder, exact), and usage consumed but not yet invoiced (the open period, a late
  event of a billed one) is recognised too, valued as the billing engine would bill it
  (``engine.usage_to_date``), a contract asset until its invoice; when the invoice comes, the period
  recognises exactly what was billed. A period with no recorded usage and a peak, last-value or
  distinct-count line (a level over the period, not a quantity consumed day by day) are recognised over
  the period's days, and only once billed.
- **Schedule**: per obligation per day; a ratable amount A over N days recognises A/N a day at full
  precision, rounded to the minor unit cumulatively (through day d: round(A*d/N)), so every day and every
  month is exact, the rounding remainder is carried forward and the last day closes A exactly.
- **Billed versus recognised**: documents (invoices and credit notes) bill on their billing date. Per
  contract, billed to date - recognised to date = deferred revenue - contract asset (unbilled
  receivable): one of the two is zero on any day.
- **Modifications** (a new contract version from its effective date E), ASC 606-10-25-12/13 and IFRS
  15.20-21: when the version only adds lines, priced at their SSP, and leaves every other term as it was,
  the added lines are a separate contract (allocated alone; the rest goes on unchanged). Otherwise the
  remaining goods are distinct from those delivered, and the modification is a termination of the old
  contract and the creation of a new one: the consideration not yet recognised (the transaction price
  of the modified contract less what was recognised before E) is reallocated prospectively over the
  obligations that remain from E. An early termination (an earlier end date, and the credit note the
  billing engine issues for it) reduces what is left the same way. Consideration left when no
  obligation remains is recognised on E (``ADJUSTMENT_LINE``).

Money is Decimal throughout and stays in the contract's currency; nothing here reads a clock or a store.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Context, Decimal, localcontext
from typing import Literal, NamedTuple

from billbridge.billing.currency import allocate, minor_unit, round_money
from billbridge.billing.engine import (
    MINIMUM_LINE,
    BilledItem,
    DraftLine,
    Version,
    commitment_periods,
    fresh_lines,
    planned_lines,
    usage_to_date,
)
from billbridge.billing.model import Contract, ContractLine, Recognition, Ssp
from billbridge.billing.periods import periods
from billbridge.billing.usage_periods import UsageQuery

ONE_DAY = timedelta(days=1)
ZERO = Decimal(0)
ADJUSTMENT_LINE = "contract_adjustment"
"""Where consideration goes when it changes after every obligation is satisfied (recognised on the day)."""
FIXED_KINDS = frozenset({"recurring", "one_time", "installments", "discount"})
VARIABLE_KINDS = frozenset({"usage", "minimum"})
_FAR = date(9000, 1, 1)  # plans run to here: a fixed term ends the schedule long before
_CTX = Context(prec=34)

Treatment = Literal["original", "separate_contract", "prospective", "adjustment"]
Key = tuple[str, date, date]
"""(line_ref, booked month, month): a line's amount in a month, by the month it was booked. An obligation is
booked in the month of the version that allocated it (a month-to-month period: the month it starts);
variable consideration in the month of the document billing it."""


def month_of(day: date) -> date:
    return day.replace(day=1)


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def month_end(month: date) -> date:
    return next_month(month) - ONE_DAY


# --- allocation ---------------------------------------------------------------------------------


def allocate_by_ssp(price: Decimal, ssps: Sequence[Decimal], currency: str, where: str = "") -> list[Decimal]:
    """``price`` (a whole number of minor units) split in proportion to ``ssps``, summing to it exactly.

    Largest remainder: each part rounded toward zero, the units left over to the largest dropped
    fractions, earlier obligations first on a tie. Obligations whose SSPs are all zero share equally.
    ``where`` (the lines and version being allocated) leads the error, so it names what could not be."""
    if not ssps:
        raise ValueError(f"{where + ': ' if where else ''}{price} {currency} and nothing to allocate it to")
    weights = list(ssps) if any(s > 0 for s in ssps) else [Decimal(1)] * len(ssps)
    return allocate(price, [max(w, ZERO) for w in weights], currency)


@dataclass(frozen=True)
class LineValue:
    """A line's fixed consideration under one version's terms, over its whole service.

    ``list_value`` before discounts, ``net_value`` after line discounts (what its charges bill),
    ``periods`` the full billing periods it covers (1 for a one-time or installments line)."""

    list_value: Decimal
    net_value: Decimal
    periods: Decimal
    quantity: Decimal


def standalone_price(ssp: Ssp | None, value: LineValue) -> Decimal:
    """The SSP of an obligation over its service (full precision).

    ``list`` (or none): its list value. ``fixed``: amount x quantity x full periods. ``range``: its own
    net price when the unit price per period (net / (quantity x periods)) lies within [low, high],
    else the nearest bound x quantity x full periods. A line of quantity 0 is valued at its list value."""
    if ssp is None or ssp.kind == "list":
        return value.list_value
    units = value.quantity * value.periods
    if units <= 0:
        return value.list_value
    with localcontext(_CTX):
        if ssp.kind == "fixed":
            assert ssp.amount is not None
            return ssp.amount * units
        assert ssp.low is not None and ssp.high is not None
        unit_price = value.net_value / units
        if ssp.low <= unit_price <= ssp.high:
            return value.net_value
        return (ssp.low if unit_price < ssp.low else ssp.high) * units


# --- schedules ----------------------------------------------------------------------------------


def _through(amount: Decimal, total_days: int, elapsed: int, currency: str) -> Decimal:
    """What a ratable amount over ``total_days`` has recognised after ``elapsed`` days (cumulative rounding)."""
    if elapsed <= 0:
        return ZERO
    if elapsed >= total_days:
        return amount
    with localcontext(_CTX):
        return round_money(amount * elapsed / total_days, currency)


def daily_amounts(amount: Decimal, start: date, end: date, currency: str, where: str = "") -> list[Decimal]:
    """A ratable ``amount`` over the days ``start`` to ``end`` (inclusive), one exact amount a day.
    ``where`` (the line and version) leads the error."""
    days = (end - start).days + 1
    if days < 1:
        raise ValueError(f"{where + ': ' if where else ''}the service ends ({end}) before it starts ({start})")
    cum = [_through(amount, days, d, currency) for d in range(days + 1)]
    return [cum[d + 1] - cum[d] for d in range(days)]


def monthly_amounts(
    amount: Decimal,
    start: date,
    end: date,
    currency: str,
    keep_from: date | None = None,
    keep_to: date | None = None,
) -> dict[date, Decimal]:
    """The daily schedule of ``amount`` over ``start``..``end`` summed per month (first day as key),
    keeping only the days ``keep_from``..``keep_to`` (a modification cuts an obligation's schedule).

    A month's sum is what the days through its last day recognised less what the days before its first
    did (cumulative rounding), so no per-day amount is made. An amount of whole minor units at the
    currency's exponent (every allocated part is) is computed in integers: round half up of U*d/N is
    (2*|U|*d + N) // (2N), exactly what rounding the Decimal quotient gives; others take the Decimal way."""
    days = (end - start).days + 1
    first = max(start, keep_from) if keep_from else start
    last = min(end, keep_to) if keep_to else end
    places = minor_unit(currency)
    sign, _, exponent = amount.as_tuple()
    if exponent != -places or days < 1:
        return _monthly_decimal(amount, start, days, first, last, currency)
    units = int(abs(amount).scaleb(places, _CTX))
    twice, twice_days = 2 * units, 2 * days
    out: dict[date, Decimal] = {}
    day = first
    done = (first - start).days  # days recognised before ``day``
    before = (twice * done + days) // twice_days if done > 0 else 0
    while day <= last:
        chunk_end = min(month_end(day), last)
        elapsed = (chunk_end - start).days + 1
        through = units if elapsed >= days else (twice * elapsed + days) // twice_days
        value = through - before
        out[day.replace(day=1)] = Decimal(-value if sign else value).scaleb(exponent, _CTX)
        before = through
        day = chunk_end + ONE_DAY
    return out


def _monthly_decimal(
    amount: Decimal, start: date, days: int, first: date, last: date, currency: str
) -> dict[date, Decimal]:
    """:func:`monthly_amounts` in Decimal: an amount not at the currency's exponent."""
    out: dict[date, Decimal] = {}
    day = first
    while day <= last:
        chunk_end = min(month_end(day), last)
        value = _through(amount, days, (chunk_end - start).days + 1, currency) - _through(
            amount, days, (day - start).days, currency
        )
        out[month_of(day)] = out.get(month_of(day), ZERO) + value
        day = chunk_end + ONE_DAY
    return out


# --- obligations --------------------------------------------------------------------------------


class Obligation(NamedTuple):
    """A performance obligation as allocated by one version (``version_no``). A named tuple, not a
    dataclass: a rebuild makes hundreds of thousands (one per billing period of a month-to-month line),
    and a frozen dataclass costs several times as much to make.

    Ratable: recognised per day over ``start``..``end``, of which the days ``window_from``..``window_to``
    are its own (a later modification takes the rest). Point in time: ``deliveries`` (day, amount)."""

    line_ref: str
    product_ref: str
    description: str
    method: Recognition
    version_no: int
    treatment: Treatment
    start: date
    end: date
    ssp: Decimal
    price: Decimal
    allocated: Decimal
    window_from: date
    window_to: date
    booked: date
    deliveries: tuple[tuple[date, Decimal], ...] = ()
    period: bool = False  # one billing period of a month-to-month line

    def schedule(self, currency: str) -> dict[date, Decimal]:
        """Its recognised amounts per month within its window."""
        if self.method == "ratable":
            start, end = self.start, self.end
            if (
                start <= end
                and start.month == end.month
                and start.year == end.year
                and self.window_from <= start
                and self.window_to >= end
            ):  # all its days in one month (a weekly period, a calendar month): the whole amount there
                return {start.replace(day=1): self.allocated}
            return monthly_amounts(self.allocated, self.start, self.end, currency, self.window_from, self.window_to)
        out: dict[date, Decimal] = defaultdict(lambda: ZERO)
        for day, amount in self.deliveries:
            if self.window_from <= day <= self.window_to:
                out[month_of(day)] += amount
        return dict(out)

    def recognised_before(self, day: date, currency: str) -> Decimal:
        """What it has recognised on the days before ``day``."""
        last = min(self.window_to, day - ONE_DAY)
        if last < self.window_from:
            return ZERO
        if self.method == "ratable":
            total = (self.end - self.start).days + 1
            return _through(self.allocated, total, (last - self.start).days + 1, currency) - _through(
                self.allocated, total, (self.window_from - self.start).days, currency
            )
        return sum((a for d, a in self.deliveries if self.window_from <= d <= last), ZERO)

    def cut(self, day: date) -> Obligation:
        """The same obligation with its window ending before ``day`` (a prospective modification)."""
        return self._replace(window_to=min(self.window_to, day - ONE_DAY))


@dataclass
class ContractRevenue:
    """One contract's revenue: its obligations, and per (line_ref, month) what was billed and recognised."""

    contract_ref: str
    entity_ref: str
    customer_ref: str
    currency: str
    obligations: list[Obligation] = field(default_factory=list)
    recognised: dict[Key, Decimal] = field(default_factory=dict)
    billed: dict[Key, Decimal] = field(default_factory=dict)

    def months(self) -> list[date]:
        return sorted({k[2] for k in self.recognised} | {k[2] for k in self.billed})

    def add(self, into: dict[Key, Decimal], key: Key, amount: Decimal) -> None:
        into[key] = into.get(key, ZERO) + amount

    def balances(self) -> list[MonthBalance]:
        """Per month: billed, recognised, and the closing deferred revenue and contract asset."""
        billed: dict[date, Decimal] = defaultdict(lambda: ZERO)
        recognised: dict[date, Decimal] = defaultdict(lambda: ZERO)
        for (_, _, m), a in self.billed.items():
            billed[m] += a
        for (_, _, m), a in self.recognised.items():
            recognised[m] += a
        return month_balances(billed, recognised)


@dataclass(frozen=True)
class MonthBalance:
    """One month of a contract (or of a sum of contracts' nets): what was billed and recognised in it,
    and the balances at its end: deferred revenue (billed, not yet recognised) and contract asset
    (recognised, not yet billed). billed - recognised to date = deferred - contract_asset."""

    month: date
    billed: Decimal
    recognised: Decimal
    deferred: Decimal
    contract_asset: Decimal


def month_balances(billed: Mapping[date, Decimal], recognised: Mapping[date, Decimal]) -> list[MonthBalance]:
    """Closing balances month by month from one contract's billed and recognised amounts."""
    net = ZERO
    out = []
    for m in sorted(set(billed) | set(recognised)):
        b, r = billed.get(m, ZERO), recognised.get(m, ZERO)
        net += b - r
        out.append(MonthBalance(m, b, r, max(net, ZERO), max(-net, ZERO)))
    return out


# --- the contract -------------------------------------------------------------------------------


def recognise(
    contract_ref: str,
    versions: Sequence[Version],
    billed: Iterable[BilledItem],
    through: date,
    usage: UsageByProduct | None = None,
) -> ContractRevenue:
    """The revenue of one contract from its versions and what it billed (see the module's definitions).

    ``through``: the day up to which an evergreen contract's term is known (a fixed term ignores it) and
    usage is counted. ``usage``: the customer's usage of the products of the contract's usage lines
    through ``through`` (None: not known, usage is recognised as billed, over its periods' days)."""
    versions = sorted(versions, key=lambda v: (v.effective_date, v.version_no))
    if not versions:
        raise ValueError("a contract needs a version")
    current = versions[-1].contract
    currency = current.currency
    out = ContractRevenue(contract_ref, current.entity_ref, current.customer_ref, currency)
    horizon = _horizon(current, through)
    methods = _methods(versions)
    billed = list(billed)

    for item in billed:
        if methods.get(item.line_ref) == "none" or item.billed_amount == 0:
            continue
        booked = month_of(item.billing_date)
        out.add(out.billed, (item.line_ref, booked, booked), item.billed_amount)
    committed = (
        commitment_periods(versions, horizon)
        if any(v.contract.minimum_commitment is not None for v in versions)
        else []
    )
    per_slot: dict[date, list[Key]] | None = defaultdict(list) if committed else None
    _recognise_usage(out, versions, billed, methods, usage, through, per_slot)

    obligations = _allocate_versions(contract_ref, versions, horizon, methods, billed)
    floors = _minimum_obligations(contract_ref, versions, horizon, billed, committed, currency) if committed else []
    obligations += floors
    out.obligations = obligations
    recognised = out.recognised
    for ob in obligations:
        line_ref, booked = ob.line_ref, ob.booked
        start, end = ob.start, ob.end
        if (  # a period inside one month, wholly its own: the whole amount there (as ob.schedule says)
            ob.period
            and start.month == end.month
            and start.year == end.year
            and ob.window_from <= start
            and ob.window_to >= end
            and ob.allocated
        ):
            key = (line_ref, booked, start.replace(day=1))
            recognised[key] = recognised.get(key, ZERO) + ob.allocated
            continue
        for m, a in ob.schedule(currency).items():
            if a:
                key = (line_ref, booked, m)
                recognised[key] = recognised.get(key, ZERO) + a
    if floors and per_slot is not None:
        _absorb(out, floors, per_slot)
    return out


# --- minimum commitments ------------------------------------------------------------------------


def _minimum_obligations(
    contract_ref: str,
    versions: Sequence[Version],
    horizon: date,
    billed: Sequence[BilledItem],
    committed: Sequence[tuple[date, date, Decimal, int]],
    currency: str,
) -> list[Obligation]:
    """A guaranteed minimum is fixed consideration: per commitment period, the floor beyond what its
    recurring charges bill (billed, or planned) is an obligation of its own, recognised ratably over the
    period's days (``MINIMUM_LINE``). The period's usage fills it first (:func:`_absorb`); usage beyond
    it is variable consideration, recognised in the month consumed. The true-up invoice bills what usage
    left of it, relieving the contract asset the floor made."""
    recurring: dict[date, Decimal] = defaultdict(lambda: ZERO)

    def period_of(day: date) -> date | None:
        for start, end, _, _ in committed:
            if start <= day < end:
                return start
        return None

    charges = [(x.kind, x.slot_start, x.billed_amount) for x in billed]
    charges += [(x.kind, x.slot_start, x.billed_amount) for x in _plan_lines(contract_ref, versions, horizon, billed)]
    for kind, slot_start, amount in charges:
        if kind == "recurring" and (p := period_of(slot_start)) is not None:
            recurring[p] += amount
    committed_to = {v.version_no: _usage_product(v.contract) for v in versions}
    out = []
    for start, end, floor, version_no in committed:
        guaranteed = floor - recurring.get(start, ZERO)
        if guaranteed <= 0:
            continue
        last = end - ONE_DAY
        out.append(
            Obligation(
                MINIMUM_LINE,
                committed_to.get(version_no, ""),
                f"Minimum commitment ({floor} {currency}) beyond recurring charges",
                "ratable",
                version_no,
                "original",
                start,
                last,
                guaranteed,
                guaranteed,
                guaranteed,
                start,
                date.max,
                month_of(start),
                (),
                True,
            )
        )
    return out


def _usage_product(contract: Contract) -> str:
    """The usage product a contract's minimum commits to: its usage lines' one product ("" when its
    lines name none or several). The floor is consideration for that usage, so its revenue is that
    product's (the journal posts it to the product's account, as the usage it stands in for)."""
    found = {line.product_ref for line in contract.lines if line.charge == "usage"}
    return found.pop() if len(found) == 1 else ""


def _absorb(out: ContractRevenue, floors: Sequence[Obligation], per_slot: Mapping[date, Sequence[Key]]) -> None:
    """Take from the usage a commitment period recognised what its floor recognises already: the usage of
    the period up to the floor, earliest month first (so only usage above the minimum adds revenue, in the
    month it was consumed). ``per_slot``: the keys of the usage recognised per billing period start."""
    recognised = out.recognised
    for floor in floors:
        keys = sorted(
            {key for start, found in per_slot.items() if floor.start <= start <= floor.end for key in found},
            key=lambda k: (k[2], k[1], k[0]),
        )
        used = sum((recognised.get(k, ZERO) for k in keys), ZERO)
        left = min(max(used, ZERO), floor.allocated)
        for key in keys:
            if left <= 0:
                break
            amount = recognised.get(key, ZERO)
            if amount <= 0:
                continue
            take = min(amount, left)
            recognised[key] = amount - take
            left -= take


# --- usage ----------------------------------------------------------------------------------------


class UsageBucket(NamedTuple):
    """A product's usage over the days ``start`` to ``end`` (exclusive): the sum of its quantities and
    its number of events. The store reads a month per bucket, cut where billing periods split months."""

    start: date
    end: date
    total: Decimal
    events: int


UsageByProduct = Mapping[str, Sequence[UsageBucket]]
"""A contract's customer's usage, per usage product_ref, in buckets that do not overlap."""

_MEASURES = {"sum": lambda b: b.total, "count": lambda b: Decimal(b.events)}
"""What a month of usage consumed, per aggregation that adds up over days (a peak, a last value or
distinct values do not: their lines are recognised over the period's days)."""


def _measured(
    buckets: Sequence[UsageBucket], aggregation: str, start: date, end: date, product_ref: str
) -> dict[date, Decimal]:
    """The usage of ``product_ref`` that ``aggregation`` measures in the days ``start``..``end``
    (exclusive), per month."""
    measure = _MEASURES[aggregation]
    out: dict[date, Decimal] = {}
    for b in buckets:
        if b.end <= start or b.start >= end:
            continue
        if b.start < start or b.end > end:
            raise ValueError(
                f"usage of {product_ref!r} read from {b.start} to {b.end} does not fit the period {start} to {end}"
            )
        m = month_of(b.start)
        out[m] = out.get(m, ZERO) + measure(b)
    return out


def _lookup(usage: UsageByProduct) -> Callable[[UsageQuery], Decimal]:
    """The billing engine's usage lookup over the buckets (sum and count; nothing else is valued)."""

    def lookup(query: UsageQuery) -> Decimal:
        if query.aggregation not in _MEASURES:
            return ZERO
        product = query.product_ref
        return sum(_measured(usage.get(product, ()), query.aggregation, query.start, query.end, product).values(), ZERO)

    return lookup


def _spread(
    amount: Decimal, weights: Mapping[date, Decimal], start: date, end: date, currency: str
) -> dict[date, Decimal]:
    """``amount`` over the months of ``weights`` in proportion to them (largest remainder, exact). With
    nothing consumed (no recorded usage: nothing to be proportional to) it falls back to an even spread
    over the days ``start``..``end`` (exclusive), as a period is recognised when its usage is unknown."""
    months = sorted(m for m, w in weights.items() if w > 0)
    if not months:
        return monthly_amounts(amount, start, end - ONE_DAY, currency)
    return dict(zip(months, allocate(amount, [weights[m] for m in months], currency), strict=True))


def _recognise_usage(
    out: ContractRevenue,
    versions: Sequence[Version],
    billed: Sequence[BilledItem],
    methods: Mapping[str, Recognition],
    usage: UsageByProduct | None,
    through: date,
    per_slot: dict[date, list[Key]] | None = None,
) -> None:
    """Variable consideration into ``out.recognised`` (see the module's definitions).

    ``per_slot`` (a contract committing to a minimum): collects the keys of the usage recognised per
    billing period start, and the minimum true-ups are not recognised here (the floor is, ratably: see
    :func:`_minimum_obligations`); they only bill.

    A usage line measured by a sum or a count, with ``usage`` known: per billing period started by
    ``through`` (a slot), what the engine bills for it on the usage so far (``usage_to_date``), in the
    months consumed. Its billed items are recognised in their booked months, the difference (consumed,
    not yet billed: the open period, a late event; or billed beyond it, to be credited) in the month of
    the period's billing date (its invoice's, in arrears). A slot the terms no longer bill (a removed
    line, a changed cycle) is credited by the engine: its items cancel. Anything else variable (a
    minimum true-up of a contract without commitment periods, another aggregation) is recognised over its
    billed span's days."""
    currency = out.currency
    lines: dict[str, ContractLine] = {}
    for version in versions:
        for line in version.contract.lines:
            lines[line.line_ref] = line
    measured = {
        ref: line
        for ref, line in lines.items()
        if usage is not None
        and line.charge == "usage"
        and line.usage_aggregation in _MEASURES
        and methods.get(ref) != "none"
    }
    slots: dict[tuple[str, date], DraftLine] = {}
    if measured:
        assert usage is not None
        for d in usage_to_date(versions, through, _lookup(usage)):
            if d.line_ref in measured:
                slots[(d.line_ref, d.slot_start)] = d
    weights: dict[tuple[str, date], dict[date, Decimal]] = {}

    def weights_of(key: tuple[str, date], slot: DraftLine) -> dict[date, Decimal]:
        found = weights.get(key)
        if found is None:
            line = measured[key[0]]
            assert usage is not None
            end = min(slot.slot_end, through + ONE_DAY)
            found = weights[key] = _measured(
                usage.get(line.product_ref, ()), line.usage_aggregation, slot.slot_start, end, line.product_ref
            )
        return found

    billed_of: dict[tuple[str, date], Decimal] = defaultdict(lambda: ZERO)
    for item in billed:
        if item.kind not in VARIABLE_KINDS or methods.get(item.line_ref) == "none" or item.billed_amount == 0:
            continue
        if per_slot is not None and item.kind == "minimum":
            continue  # billed against the floor recognised ratably
        booked = month_of(item.billing_date)
        if item.line_ref in measured:
            key = (item.line_ref, item.slot_start)
            slot = slots.get(key)
            if slot is None:
                continue  # no longer billed: the engine credits it, so it recognises nothing
            billed_of[key] += item.billed_amount
            spread = _spread(item.billed_amount, weights_of(key, slot), slot.slot_start, slot.slot_end, currency)
        elif item.span_end > item.span_start:
            spread = monthly_amounts(item.billed_amount, item.span_start, item.span_end - ONE_DAY, currency)
        else:
            continue
        for m, a in spread.items():
            out.add(out.recognised, (item.line_ref, booked, m), a)
            if per_slot is not None:
                per_slot[item.slot_start].append((item.line_ref, booked, m))
    for key, slot in slots.items():
        unbilled = slot.billed_amount - billed_of.get(key, ZERO)
        if unbilled:
            booked = month_of(slot.slot_end)
            for m, a in _spread(unbilled, weights_of(key, slot), slot.slot_start, slot.slot_end, currency).items():
                out.add(out.recognised, (key[0], booked, m), a)
                if per_slot is not None:
                    per_slot[slot.slot_start].append((key[0], booked, m))


def usage_splits(versions: Sequence[Version], billed: Iterable[BilledItem], through: date) -> set[int]:
    """The days of the month, other than the first, on which a billing period of this contract (or a
    billed usage item) starts or ends while it has a usage line: where its usage must be read apart
    (a month of usage read whole would straddle a period). Empty for periods that follow the months."""
    if not any(line.charge == "usage" for v in versions for line in v.contract.lines):
        return set()
    contract = max(versions, key=lambda v: (v.effective_date, v.version_no)).contract
    end = contract.contract_end_date + ONE_DAY if contract.contract_end_date else None
    found = periods(
        contract.anchor,
        contract.cycle_length,
        contract.cycle_unit,
        contract.contract_start_date,
        end,
        through + ONE_DAY,
    )
    days = {d.day for p in found for d in (p.start, p.end)}
    days |= {d.day for item in billed if item.kind == "usage" for d in (item.span_start, item.span_end)}
    return days - {1}


def _horizon(contract: Contract, through: date) -> date:
    """The last day of the term: the contract's end, or the end of the billing period holding ``through``."""
    if contract.contract_end_date is not None:
        return contract.contract_end_date
    day = max(through, contract.contract_start_date)
    found = periods(
        contract.anchor, contract.cycle_length, contract.cycle_unit, contract.contract_start_date, None, day + ONE_DAY
    )
    return found[-1].end - ONE_DAY if found else day


def _methods(versions: Sequence[Version]) -> dict[str, Recognition]:
    """Each line's recognition, as its latest version says."""
    out: dict[str, Recognition] = {MINIMUM_LINE: "usage"}
    for version in versions:
        for line in version.contract.lines:
            out[line.line_ref] = line.recognition_method
    return out


def _fixed(contract: Contract, horizon: date) -> Contract:
    """The terms as the planner should value them: billed by billbridge, ending at the horizon."""
    return contract.model_copy(
        update={"billed_by": "billbridge", "contract_end_date": contract.contract_end_date or horizon}
    )


def _plan_lines(
    contract_ref: str, versions: Sequence[Version], horizon: date, billed: Sequence[BilledItem] = ()
) -> list[DraftLine]:
    """What the planner bills for these versions over the whole term, beyond ``billed``."""
    valued = [Version(v.version_no, v.effective_date, _fixed(v.contract, horizon)) for v in versions]
    if len(valued) == 1 and not billed:  # the same lines, without the planner's comparison machinery
        return fresh_lines(valued[0], _FAR)
    return planned_lines(valued, _FAR, billed)  # the planner's lines, drafted without its invoices


def _transaction_price(lines: Iterable[DraftLine], methods: Mapping[str, Recognition]) -> Decimal:
    return sum(
        (
            line.billed_amount
            for line in lines
            if line.kind in FIXED_KINDS and methods.get(line.line_ref) not in ("none", "usage")
        ),
        ZERO,
    )


class _Candidate(NamedTuple):
    line: ContractLine
    method: Recognition
    start: date
    end: date
    value: LineValue
    deliveries: tuple[tuple[date, Decimal], ...]  # point in time: (day, weight)
    period: bool = False  # a month-to-month period: booked when it starts


def _candidates(
    contract_ref: str, version: Version, horizon: date, planned: Sequence[DraftLine] | None = None
) -> list[_Candidate]:
    """The obligations a version's terms make, valued over their whole service (its lines on their own).
    ``planned``: the plan of these terms alone, when the caller has it."""
    contract = version.contract
    start_of = contract.contract_start_date
    end = contract.contract_end_date or horizon  # each version valued over its own term
    if planned is None:
        planned = _plan_lines(contract_ref, [Version(version.version_no, start_of, contract)], horizon)
    pieces: dict[str, list[DraftLine]] = defaultdict(list)
    for piece in planned:
        pieces[piece.line_ref].append(piece)
    found = []
    for line in contract.lines:
        method = line.recognition_method
        if method in ("none", "usage") or line.charge == "usage":
            continue
        own = pieces.get(line.line_ref, [])
        first = max(line.start_date or start_of, start_of)
        last = min(line.end_date or end, end)
        if last < first:
            continue
        if method == "ratable" and line.charge == "recurring" and contract.contract_end_date is None:
            # Month-to-month: each billing period is its own contract term, valued at its own charges.
            by_period: dict[date, list[DraftLine]] = defaultdict(list)
            for p in own:
                by_period[p.slot_start].append(p)
            values: dict[tuple[Decimal, Decimal, int, int], LineValue] = {}
            for slot in sorted(by_period):
                ps = by_period[slot]
                if len(ps) == 1:  # one piece: periods of as many days at the same charge are worth the same
                    p = ps[0]
                    key = (p.amount, p.billed_amount, (p.span_end - p.span_start).days, p.slot_days)
                    value = values.get(key)
                    if value is None:
                        value = values[key] = _value(line, ps)
                    found.append(_Candidate(line, method, p.span_start, p.span_end - ONE_DAY, value, (), period=True))
                    continue
                first_day, last_day = min(p.span_start for p in ps), max(p.span_end for p in ps) - ONE_DAY
                found.append(_Candidate(line, method, first_day, last_day, _value(line, ps), (), period=True))
            continue
        value = _value(line, own)  # (a month-to-month line is valued per period above)
        net = value.net_value
        if method == "ratable":
            deliveries: tuple[tuple[date, Decimal], ...] = ()
        elif line.charge == "recurring":
            deliveries = tuple((p.span_start, p.billed_amount) for p in own)
        else:
            deliveries = ((first, net),)
        found.append(_Candidate(line, method, first, last, value, deliveries))
    return found


def _value(line: ContractLine, pieces: Sequence[DraftLine]) -> LineValue:
    """A line's value from its planned charges (a one-time or installments line: its price, once)."""
    net = sum((p.billed_amount for p in pieces), ZERO)
    if line.charge == "recurring":
        gross, full = ZERO, ZERO
        add, multiply, divide = _CTX.add, _CTX.multiply, _CTX.divide  # at 34 digits, no context switch
        for p in pieces:
            days = (p.span_end - p.span_start).days
            if days == p.slot_days:  # a full period: no division
                gross = add(gross, p.amount)
                full = add(full, 1)
            else:
                gross = add(gross, divide(multiply(p.amount, days), p.slot_days))
                full = add(full, divide(Decimal(days), p.slot_days))
        return LineValue(gross, net, full, line.quantity)
    assert line.pricing is not None
    return LineValue(line.pricing.amount_for(line.quantity), net, Decimal(1), line.quantity)


def _remaining(candidate: _Candidate, day: date) -> tuple[LineValue, tuple[tuple[date, Decimal], ...]] | None:
    """A candidate's value from ``day`` on (None when it is satisfied before that day)."""
    value = candidate.value
    if candidate.method == "ratable":
        if candidate.end < day:
            return None
        total = (candidate.end - candidate.start).days + 1
        left = (candidate.end - max(day, candidate.start)).days + 1
        if left == total:
            return value, ()
        with localcontext(_CTX):
            share = Decimal(left) / total
            return LineValue(
                value.list_value * share, value.net_value * share, value.periods * share, value.quantity
            ), ()
    deliveries = tuple((d, w) for d, w in candidate.deliveries if d >= day)
    if not deliveries:
        return None
    if len(deliveries) == len(candidate.deliveries):
        return value, deliveries
    with localcontext(_CTX):
        share = Decimal(len(deliveries)) / len(candidate.deliveries)
        return LineValue(value.list_value * share, value.net_value * share, value.periods * share, value.quantity), (
            deliveries
        )


def _obligations(
    candidates: Sequence[tuple[_Candidate, LineValue, tuple[tuple[date, Decimal], ...]]],
    price: Decimal,
    version_no: int,
    treatment: Treatment,
    window_from: date,
    currency: str,
) -> list[Obligation]:
    places = -minor_unit(currency)

    def rounded(amount: Decimal) -> Decimal:  # most are billed amounts, rounded already
        exponent = amount.as_tuple().exponent
        return amount if exponent == places and amount else round_money(amount, currency)

    priced: dict[tuple[int, int], tuple[Decimal, Decimal, Decimal]] = {}  # shared values priced once
    ssps = []
    for c, value, _ in candidates:
        key = (id(c.line), id(value))
        found = priced.get(key)
        if found is None:
            ssp = standalone_price(c.line.ssp, value)
            found = priced[key] = (ssp, rounded(ssp), rounded(value.net_value))
        ssps.append(found)
    parts = allocate_by_ssp(price, [ssp for ssp, _, _ in ssps], currency, f"version {version_no}")
    out = []
    months: dict[date, date] = {}  # the month of each day (many periods start on the same days)
    for (c, _, deliveries), (_, ssp, net), part in zip(candidates, ssps, parts, strict=True):
        placed: tuple[tuple[date, Decimal], ...] = ()
        if deliveries:
            weights = [w for _, w in deliveries]
            # A delivery dated before the contract (a line added with an earlier start) happens on its first day.
            days = [max(d, window_from) for d, _ in deliveries]
            where = f"line {c.line.line_ref!r} of version {version_no}"
            placed = tuple(zip(days, allocate_by_ssp(part, weights, currency, where), strict=True))
        line = c.line
        start = c.start if c.start > window_from else window_from  # a reallocation spreads over the days left
        booked = months.get(start if c.period else window_from)
        if booked is None:
            day = start if c.period else window_from
            booked = months[day] = day.replace(day=1)
        out.append(
            Obligation(
                line.line_ref,
                line.product_ref,
                line.description or line.product_ref,
                c.method,
                version_no,
                treatment,
                start,
                c.end,
                ssp,
                net,
                part,
                start,
                date.max,
                booked,
                placed,
                c.period,
            )
        )
    return out


def _separate_lines(before: Contract, after: Contract, candidates: Sequence[_Candidate]) -> list[_Candidate] | None:
    """The added lines when a version only adds lines priced at their SSP (a separate contract), else None."""
    same_terms = before.model_dump(exclude={"lines", "effective_date"}) == after.model_dump(
        exclude={"lines", "effective_date"}
    )
    old = {line.line_ref: line for line in before.lines}
    new_refs = [line.line_ref for line in after.lines if line.line_ref not in old]
    if not same_terms or not new_refs or after.discount is not None:
        return None
    if any(line.line_ref in old and old[line.line_ref] != line for line in after.lines):
        return None
    if len(old) + len(new_refs) != len(after.lines):
        return None  # a line was removed
    added = [c for c in candidates if c.line.line_ref in new_refs]
    for c in added:
        if round_money(standalone_price(c.line.ssp, c.value), after.currency) != round_money(
            c.value.net_value, after.currency
        ):
            return None
    return added


def _final_price(
    contract_ref: str,
    versions: Sequence[Version],
    horizon: date,
    methods: Mapping[str, Recognition],
    billed: Sequence[BilledItem],
) -> Decimal:
    """The transaction price of the contract as it stands: the fixed charges billed so far (each credit
    and charge as rounded on its document) plus what the planner will still bill for its terms."""
    fixed = [item for item in billed if item.kind in FIXED_KINDS]
    so_far = sum((item.billed_amount for item in fixed if methods.get(item.line_ref) not in ("none", "usage")), ZERO)
    return so_far + _transaction_price(_plan_lines(contract_ref, versions, horizon, fixed), methods)


def _allocate_versions(
    contract_ref: str,
    versions: Sequence[Version],
    horizon: date,
    methods: Mapping[str, Recognition],
    billed: Sequence[BilledItem],
) -> list[Obligation]:
    currency = versions[-1].contract.currency
    done: list[Obligation] = []  # obligations whose window a modification closed
    active: list[Obligation] = []
    previous_price = ZERO
    for k, version in enumerate(versions):
        contract = version.contract
        day = contract.contract_start_date if k == 0 else version.effective_date
        planned = None
        if len(versions) == 1:
            # One version: what it billed is what its plan bills (nothing amended, nothing rounded
            # twice), so one plan gives both the price and the obligations.
            planned = _plan_lines(contract_ref, versions, horizon)
            price = _transaction_price(planned, methods)
        elif k == len(versions) - 1:
            price = _final_price(contract_ref, versions, horizon, methods, billed)
        else:  # as the contract stood until the next version
            so_far = _plan_lines(contract_ref, versions[: k + 1], horizon)
            price = _transaction_price(so_far, methods)
            if k == 0:  # the first version's terms alone are this very plan
                planned = so_far
        candidates = _candidates(contract_ref, version, horizon, planned)
        added = _separate_lines(versions[k - 1].contract, contract, candidates) if k else None
        if added is not None:
            remaining = [(c, *_whole(c)) for c in added]
            if remaining:
                active += _obligations(
                    remaining, price - previous_price, version.version_no, "separate_contract", day, currency
                )
            previous_price = price
            continue
        recognised = sum((ob.recognised_before(day, currency) for ob in done + active), ZERO)
        done += [ob.cut(day) for ob in active]
        left = price - recognised
        rest = [(c, *found) for c in candidates if (found := _remaining(c, day)) is not None]
        treatment: Treatment = "original" if k == 0 else "prospective"
        if rest:
            active = _obligations(rest, left, version.version_no, treatment, day, currency)
        else:
            active = []
            if left:
                active = [_adjustment(left, version.version_no, day)]
        previous_price = price
    return [ob for ob in done + active if ob.window_from <= ob.window_to]


def _whole(c: _Candidate) -> tuple[LineValue, tuple[tuple[date, Decimal], ...]]:
    return c.value, c.deliveries


def _adjustment(amount: Decimal, version_no: int, day: date) -> Obligation:
    return Obligation(
        line_ref=ADJUSTMENT_LINE,
        product_ref="",
        description="Consideration changed after every obligation was satisfied",
        method="point_in_time",
        version_no=version_no,
        treatment="adjustment",
        start=day,
        end=day,
        ssp=ZERO,
        price=amount,
        allocated=amount,
        window_from=day,
        window_to=date.max,
        booked=month_of(day),
        deliveries=((day, amount),),
    )


# --- period close -------------------------------------------------------------------------------


class Posted(NamedTuple):
    """A line's amount in a month (by booked month) as the books hold it; ``catch_up`` is the part of it
    that corrects closed months (a later change that touched them)."""

    line_ref: str
    booked: date
    month: date
    amount: Decimal
    catch_up: Decimal


def post_with_close(
    ideal: Mapping[Key, Decimal], closed_rows: Mapping[Key, Decimal], closed_months: Iterable[date]
) -> list[Posted]:
    """The rows to hold for the open months, given the amounts the closed months hold already.

    A closed month never changes: the difference between what it should hold now (``ideal``) and what
    it holds (``closed_rows``) lands in the first open month after it, as ``catch_up``."""
    closed = set(closed_months)
    if not closed:  # nothing closed: the rows are the ideal ones (no catch-up)
        return [Posted(k[0], k[1], k[2], a + ZERO, ZERO) for k, a in sorted(ideal.items()) if a]
    catch_up: dict[Key, Decimal] = defaultdict(lambda: ZERO)
    for key in set(ideal) | set(closed_rows):
        line_ref, booked, month = key
        if month not in closed:
            continue
        diff = ideal.get(key, ZERO) - closed_rows.get(key, ZERO)
        if diff:
            target = next_month(month)
            while target in closed:
                target = next_month(target)
            catch_up[(line_ref, booked, target)] += diff
    out = []
    for key in sorted({k for k in ideal if k[2] not in closed} | set(catch_up)):
        amount = ideal.get(key, ZERO) + catch_up.get(key, ZERO)
        if amount or catch_up.get(key):
            out.append(Posted(key[0], key[1], key[2], amount, catch_up.get(key, ZERO)))
    return out


# --- reports ------------------------------------------------------------------------------------


@dataclass
class WaterfallRow:
    """Revenue booked in ``booked`` (one currency): in total, per month it is recognised in, recognised
    through the report's last month, and what remains to recognise after it."""

    booked: date
    currency: str
    total: Decimal = ZERO
    by_month: dict[date, Decimal] = field(default_factory=dict)
    to_date: Decimal = ZERO

    @property
    def remaining(self) -> Decimal:
        return self.total - self.to_date


def waterfall(rows: Iterable[tuple[date, date, str, Decimal]], first: date, last: date) -> list[WaterfallRow]:
    """Stripe Revenue Recognition's waterfall: a row per booked month from ``first`` to ``last`` and
    currency, a column per month it is recognised in (``rows``: booked month, month, currency, recognised)."""
    out: dict[tuple[date, str], WaterfallRow] = {}
    for booked, month, currency, amount in rows:
        if not first <= booked <= last:
            continue
        row = out.setdefault((booked, currency), WaterfallRow(booked, currency))
        row.total += amount
        if month <= last:
            row.to_date += amount
            if month >= first:
                row.by_month[month] = row.by_month.get(month, ZERO) + amount
    return [out[k] for k in sorted(out)]


@dataclass
class Rollforward:
    """A month's movement of deferred revenue and contract assets in one currency.

    Deferred: opening + billed into it - recognised out of it = closing. Contract asset: opening +
    recognised before billing - billed against it = closing. Per contract the net position (billed -
    recognised) is deferred when positive, a contract asset when negative; a contract that crosses zero in
    the month moves through both."""

    currency: str
    opening_deferred: Decimal = ZERO
    billed_to_deferred: Decimal = ZERO
    recognised_from_deferred: Decimal = ZERO
    closing_deferred: Decimal = ZERO
    opening_asset: Decimal = ZERO
    recognised_to_asset: Decimal = ZERO
    billed_from_asset: Decimal = ZERO
    closing_asset: Decimal = ZERO

    @property
    def billed(self) -> Decimal:
        return self.billed_to_deferred + self.billed_from_asset

    @property
    def recognised(self) -> Decimal:
        return self.recognised_from_deferred + self.recognised_to_asset

    @property
    def balanced(self) -> bool:
        return (
            self.opening_deferred + self.billed_to_deferred - self.recognised_from_deferred == self.closing_deferred
            and self.opening_asset + self.recognised_to_asset - self.billed_from_asset == self.closing_asset
        )


ScheduleMove = tuple[int, date, str, Decimal, Decimal]
"""A schedule row as the month's reports read it: (contract id, month, currency, billed, recognised)."""


@dataclass(slots=True)
class Position:
    """One contract's schedule in one currency and month: its net position (billed - recognised: deferred
    revenue when positive, a contract asset when negative) at the month's start, what it billed and
    recognised in the month, and its closing position summed from every row through the month on its own
    (not from the movements, so a check of one against the other restates nothing)."""

    opening: Decimal = ZERO
    billed: Decimal = ZERO
    recognised: Decimal = ZERO
    closing: Decimal = ZERO


def month_positions(rows: Iterable[ScheduleMove], month: date) -> dict[tuple[int, str], Position]:
    """Per (contract id, currency) with a row through ``month``, its :class:`Position` in the month: what
    both the rollforward and its check against the documents start from."""
    out: dict[tuple[int, str], Position] = {}
    for contract_id, m, currency, b, r in rows:
        if m > month:
            continue
        key = (contract_id, currency)
        position = out.get(key)
        if position is None:
            position = out[key] = Position()
        if m < month:
            position.opening += b - r
        else:
            position.billed += b
            position.recognised += r
        position.closing += b - r
    return out


def rollforward(rows: Iterable[ScheduleMove], month: date) -> list[Rollforward]:
    """The rollforward of ``month`` from schedule rows (contract id, month, currency, billed, recognised).

    The closing balances are summed from every row through the month, independently of the movements,
    so ``balanced`` checks the schedule rather than restating it."""
    out: dict[str, Rollforward] = {}
    positions = month_positions(rows, month)
    for key in sorted(positions):
        position = positions[key]
        roll = out.setdefault(key[1], Rollforward(key[1]))
        start, b, r = position.opening, position.billed, position.recognised
        roll.opening_deferred += max(start, ZERO)
        roll.opening_asset += max(-start, ZERO)
        roll.closing_deferred += max(position.closing, ZERO)
        roll.closing_asset += max(-position.closing, ZERO)
        # Billing first settles a contract asset, then defers; recognition first draws on deferred revenue.
        end = start + b - r
        if start >= 0 and end >= 0:
            roll.billed_to_deferred += b
            roll.recognised_from_deferred += r
        elif start <= 0 and end <= 0:
            roll.billed_from_asset += b
            roll.recognised_to_asset += r
        elif start > 0:  # deferred revenue used up, then recognised ahead of billing
            roll.billed_to_deferred += b
            roll.recognised_from_deferred += start + b
            roll.recognised_to_asset += r - start - b
        else:  # a contract asset billed away, then billed ahead of recognition
            roll.recognised_to_asset += r
            roll.billed_from_asset += r - start
            roll.billed_to_deferred += b - (r - start)
    return [out[c] for c in sorted(out)]
