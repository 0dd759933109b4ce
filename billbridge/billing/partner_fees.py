"""Referral fees: what a referral agreement earns on the events of the customers it referred, and each
partner's statement of a period. Pure: the store hands in the events and what was accrued before.

An event is what a referred customer paid (``collected``: a payment applied to an invoice, a refund
negative) or was invoiced (``billed``: an invoice, a credit note negative). The percentage (or the
tiers) is applied to the running total of the agreement's eligible base in the event's period, and
each event accrues the difference between the rounded fee of the total after it and what the period
accrued so far: a period's fees are exactly its rounded fee however many events it holds, and an
event that undoes another (a refund, a credit note, a payment deleted at its source) reverses the
fee it earned, in the period it happens (a closed period is never rewritten: it goes to the next).
A refund or credit note that names the invoice it undoes (``FeeEvent.against``) reverses only what
that invoice's events earned, whatever its own date: after the fee window it still reverses, and
undoing money paid before the referral (which earned nothing) reverses nothing.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from functools import lru_cache
from operator import itemgetter
from typing import Any, NamedTuple

from billbridge.billing.currency import _QUANTA, money_str, quantum, round_money
from billbridge.billing.model import FeeBasis, Referral, ReferralAgreement
from billbridge.billing.periods import add_cycles

_CTX = Context(prec=34)
_HALF_UP = Context(prec=34, rounding=ROUND_HALF_UP)  # its quantize rounds money as round_money does
ZERO = Decimal(0)
HUNDRED = Decimal(100)

FEE, FLAT_FEE = "fee", "flat_fee"


class FeeEvent(NamedTuple):
    """Money a customer paid or was invoiced; negative when it undoes earlier money. A later change of
    the same event (a payment edited at its source) comes again with the same ref and its new amount.
    A named tuple (immutable, and made several times faster than a frozen dataclass): the store hands
    in one per payment or invoice of every referred customer, each run."""

    event_ref: str
    customer_ref: str
    contract_ref: str | None
    occurred_on: date
    basis: FeeBasis
    currency: str
    amount: Decimal
    product_amounts: Mapping[str, Decimal] | None = None  # the amount per product, for per-product agreements
    # The invoice the money is on (``inv:US-INV-3``): a negative event (a refund, a credit note) undoes what
    # that invoice's events earned, whatever its own date, and no more. None: judged by its own date.
    against: str | None = None


class Accrual(NamedTuple):
    """A fee (or, negative, its reversal) one event earned under one agreement, on statement ``period``.
    A named tuple, as ``FeeEvent``: one is made per event that earns (a frozen dataclass's ``__init__``
    was half the fee math's time in ``bench_partner_fees.py``)."""

    agreement_ref: str
    partner_ref: str
    event_ref: str
    kind: str  # fee, flat_fee
    customer_ref: str
    occurred_on: date
    period: str  # YYYY-MM
    currency: str
    base: Decimal
    fee: Decimal
    # An event in another currency than the agreement's: its currency, the change of its amount in it this
    # accrual converted, and the rate used (kept: a later rate change moves only new events, and a change
    # of this event is converted at the rate it first accrued at). None for the agreement's own currency.
    source_currency: str | None = None
    source_amount: Decimal | None = None
    rate: Decimal | None = None


@dataclass(frozen=True)
class FeeProblem:
    """An event that could not accrue, with the field that stopped it; the others go on."""

    agreement_ref: str
    event_ref: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.agreement_ref}: event {self.event_ref}: {self.field}: {self.message}"


@dataclass
class Booked:
    """What an agreement accrued before this run: base per event, and base and fee per period (fee
    kind only), and the customers whose flat fee stands (earned and not reversed)."""

    event_base: dict[str, Decimal] = field(default_factory=dict)
    event_count: dict[str, int] = field(default_factory=dict)
    period_base: dict[str, Decimal] = field(default_factory=dict)
    period_fee: dict[str, Decimal] = field(default_factory=dict)
    flat_paid: set[str] = field(default_factory=set)
    flat_count: dict[str, int] = field(default_factory=dict)  # flat fee accruals (earned, reversed) per customer
    flat_periods: dict[str, dict[str, Decimal]] = field(default_factory=dict)  # customer -> period -> flat fees
    event_source: dict[str, Decimal] = field(default_factory=dict)  # event in another currency: its amount in it
    event_rate: dict[str, Decimal] = field(default_factory=dict)  # ... and the rate it first accrued at

    @classmethod
    def of(cls, accruals: Iterable[Accrual]) -> Booked:
        booked = cls()
        for accrual in accruals:
            booked.add(accrual)
        return booked

    def add(self, accrual: Accrual) -> None:
        if accrual.kind == FLAT_FEE:
            customer = accrual.customer_ref
            self.flat_count[customer] = self.flat_count.get(customer, 0) + 1
            periods = self.flat_periods.setdefault(customer, {})
            periods[accrual.period] = periods.get(accrual.period, ZERO) + accrual.fee
            if accrual.fee > 0:
                self.flat_paid.add(customer)
            else:
                self.flat_paid.discard(customer)
            return
        root = root_ref(accrual.event_ref)
        self.event_base[root] = self.event_base.get(root, ZERO) + accrual.base
        self.event_count[root] = self.event_count.get(root, 0) + 1
        self.period_base[accrual.period] = self.period_base.get(accrual.period, ZERO) + accrual.base
        self.period_fee[accrual.period] = self.period_fee.get(accrual.period, ZERO) + accrual.fee
        if accrual.rate is not None and accrual.source_amount is not None:
            self.event_source[root] = self.event_source.get(root, ZERO) + accrual.source_amount
            self.event_rate.setdefault(root, accrual.rate)


@dataclass
class FeeRun:
    accruals: list[Accrual] = field(default_factory=list)
    problems: list[FeeProblem] = field(default_factory=list)


def root_ref(event_ref: str) -> str:
    """The event an accrual belongs to: ``pay-1@2`` (the second change of pay-1) belongs to ``pay-1``."""
    return event_ref.split("@", 1)[0]


@lru_cache(maxsize=4096)
def period_of(day: date) -> str:
    """A day's statement period: its month, YYYY-MM (cached: a run dates many events alike)."""
    return f"{day.year:04d}-{day.month:02d}"


def next_period(period: str) -> str:
    year, month = (int(part) for part in period.split("-"))
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def booking_period(day: date, closed_through: str | None) -> str:
    """The statement an event dated ``day`` lands on: its month, or the first open one after a close."""
    period = period_of(day)
    if closed_through is not None and period <= closed_through:
        return next_period(closed_through)
    return period


def fee_on(agreement: ReferralAgreement, base: Decimal) -> Decimal:
    """The full-precision fee on a period's base: the percentage, or the tiers (graduated or volume) with
    amounts as fee per unit of base; symmetric for a negative base (more undone than earned)."""
    if base < 0:
        return -fee_on(agreement, -base)
    if agreement.tiers is not None:
        with localcontext(_CTX):
            return agreement.tiers.amount_for(base)
    if agreement.percent is not None:  # the context's own methods: no context switch per event
        return _CTX.divide(_CTX.multiply(base, agreement.percent), HUNDRED)
    return ZERO


def referral_for(agreement: ReferralAgreement, event: FeeEvent) -> Referral | None:
    """The referral of the agreement that covers the event's customer (and contract), if any."""
    for referral in agreement.referrals:
        if referral.customer_ref != event.customer_ref:
            continue
        if referral.contract_ref is not None and referral.contract_ref != event.contract_ref:
            continue
        if event.occurred_on < referral.referred_on:
            continue
        return referral
    return None


def referral_revenue(agreement: ReferralAgreement, events: Iterable[FeeEvent]) -> list[Decimal]:
    """Per referral of the agreement (in its order), the revenue of the events it covers (as
    ``referral_for`` attributes them) in the agreement's currency, the base its fee is on (a
    per-product agreement's: its products' amounts, from events read ``per_product``): each event is attributed once, by a
    look-up of its customer's referrals, so the work is linear in events and referrals (reports of a
    partner with hundreds of referred customers; a loop per referral over all events was cubic)."""
    referrals = agreement.referrals
    by_customer: dict[str, list[int]] = {}
    for n, referral in enumerate(referrals):
        by_customer.setdefault(referral.customer_ref, []).append(n)
    revenue = [ZERO] * len(referrals)
    wanted = set(agreement.products) if agreement.products is not None else None
    for event in events:
        if event.currency != agreement.currency:  # fees on other currencies need a rate: not revenue here
            continue
        amount = event.amount
        if wanted is not None:  # a per-product agreement: the fee's base is its products' share only
            amount = sum((v for p, v in (event.product_amounts or {}).items() if p in wanted), ZERO)
        for n in by_customer.get(event.customer_ref, ()):
            referral = referrals[n]
            if referral.contract_ref is not None and referral.contract_ref != event.contract_ref:
                continue
            if event.occurred_on < referral.referred_on:
                continue
            revenue[n] = _CTX.add(revenue[n], amount)
            break
    return revenue


def in_window(agreement: ReferralAgreement, referral: Referral, day: date) -> bool:
    """Whether the percentage still applies on ``day``: for ``months`` from the referral, or for the life
    of the contract (no limit)."""
    if agreement.months is None:
        return True
    return day < add_cycles(referral.referred_on, agreement.months, 1, "month")


def accrue(
    agreement: ReferralAgreement,
    events: Iterable[FeeEvent],
    booked: Booked | None = None,
    *,
    closed_through: str | None = None,
    rates: Mapping[tuple[str, str], Decimal] | None = None,
    others: Mapping[str, Decimal] | None = None,
) -> FeeRun:
    """The accruals ``events`` add to what ``booked`` holds for ``agreement``: each event's change since
    it was last accrued (its first accrual, a refund, an edit), and each new customer's flat fee.
    ``closed_through``: the last period whose statement is closed. ``rates``: (from, to) -> rate, for
    events in another currency than the agreement's (without one such an event is a problem).
    ``others``: the referred revenue of the partner's other agreements per period; given, tiers are
    applied to the partner's total and this agreement earns its share (``tier_share``).
    ``events`` are all the agreement's events (the store hands in every one each run), so a flat fee
    whose customer's payments (or, basis ``billed``, invoices) are all undone (refunded, deleted at the
    source, credited) is reversed. Only events of the agreement's basis count, the flat fee's too: it is
    earned on the customer's first payment (``collected``) or first invoice issued (``billed``), and only
    by a new customer: one whose first payment (invoice) ever is before its referral earns none."""
    booked = booked or Booked()
    run = FeeRun()
    period_base = dict(booked.period_base)
    period_fee = dict(booked.period_fee)
    event_base = dict(booked.event_base)
    event_source = dict(booked.event_source)
    changes = dict(booked.event_count)
    paid: dict[str, list[FeeEvent]] = defaultdict(list)  # per referred customer, its events of the basis: flat fee
    agreement_ref, partner_ref = agreement.agreement_ref, agreement.partner_ref
    currency, basis, flat_fee = agreement.currency, agreement.basis, agreement.flat_fee
    has_rule = agreement.percent is not None or agreement.tiers is not None
    referred: dict[str, list[Referral]] = {}
    for r in agreement.referrals:
        referred.setdefault(r.customer_ref, []).append(r)
    # A customer referred once, for all its contracts (the common case): its referral without a loop.
    whole = {c: found[0] for c, found in referred.items() if len(found) == 1 and found[0].contract_ref is None}
    since = {c: referral.referred_on for c, referral in whole.items()}
    # The flat fee is per *new* customer: one that paid (or, billed, was invoiced) before it was first
    # referred earns none (``veterans``; events come in day order, so they are known before its later ones).
    first_referred = {c: min(r.referred_on for r in found) for c, found in referred.items()}
    veterans: set[str] = set()
    # A customer no longer referred (its referral removed) keeps the flat fee it earned while what it paid
    # stands: its events still count for that, as its accrued events' changes do for the percentage.
    unreferred = {c for c in booked.flat_periods if c not in referred} if flat_fee is not None else set()
    earned: dict[str, Decimal] = {}  # per invoice (``FeeEvent.against``): the base its events earned on, net
    plain = agreement.products is None
    # A percentage's fee is a product with the rate (``percent / 100`` is exact, and so is the product at
    # 34 digits): the same figure as fee_on's, without its call and branches per event (bench_partner_fees).
    rate = (
        _CTX.divide(agreement.percent, HUNDRED) if agreement.tiers is None and agreement.percent is not None else None
    )
    step = _QUANTA.get(currency) or quantum(currency)
    quantize = _HALF_UP.quantize
    windowed = agreement.months is not None
    pooled = others is not None and agreement.tiers is not None
    others = others or {}
    append = run.accruals.append
    new = tuple.__new__  # an Accrual without the call of its generated __new__ (fields in order, as below)
    current: str | None = None  # the period whose running base and fee are ``total`` and ``target``
    total = target = ZERO
    # One context for the whole loop (34 digits: sums and products of money are exact), so the operators
    # are exact without a context switch per event; the arithmetic is the same as the methods of _CTX.
    with localcontext(_CTX):
        for event in chronological(events):
            event_ref, customer_ref, _, day, event_basis, event_currency, amount, _, against = event  # one unpacking
            accrued = event_ref in event_base  # a change of an event that earned a fee always counts
            undoing = against is not None and amount < 0  # judged by what its invoice earned, not by its date
            referred_on = since.get(customer_ref)
            if referred_on is not None:
                referral = whole[customer_ref] if day >= referred_on else None
            elif customer_ref in referred:
                referral = referral_for(agreement, event)
            else:
                referral = None
            kept_flat = customer_ref in unreferred
            if referral is None and not accrued and not undoing:
                if kept_flat and event_basis == basis:
                    paid[customer_ref].append(event)
                if (
                    flat_fee is not None
                    and event_basis == basis
                    and amount > 0
                    and customer_ref in first_referred
                    and day < first_referred[customer_ref]
                ):
                    veterans.add(customer_ref)
                continue
            source = used = None
            if plain and event_currency == currency:
                base = amount
            else:
                found = _base(agreement, event, rates, run, booked.event_rate.get(event_ref))
                if found is None:
                    continue
                base, source, used = found
                if source is not None and used is not None:  # converted: what changed is its own amount
                    source -= event_source.get(event_ref, ZERO)
                    if event_ref in booked.event_rate:  # at the rate it first accrued at, not today's
                        base = event_base[event_ref] + source * used
            if event_basis != basis:
                continue
            if flat_fee is not None and (referral is not None or kept_flat) and customer_ref not in veterans:
                paid[customer_ref].append(event)  # what it paid (collected) or was invoiced (billed)
            if not has_rule:
                continue
            if undoing and against is not None:  # at most what its invoice's events earned, less earlier undoings
                left = earned.get(against, ZERO)
                base = min(max(base, -left), ZERO)
                delta = base - event_base.get(event_ref, ZERO)
            elif accrued:
                delta = base - event_base[event_ref]
            elif referral is None or (windowed and not in_window(agreement, referral, day)):
                continue
            else:
                delta = base
            if against is not None:
                earned[against] = earned.get(against, ZERO) + base
            if not delta:
                continue
            earlier = changes.get(event_ref, 0)
            ref = event_ref if earlier == 0 else f"{event_ref}@{earlier + 1}"
            changes[event_ref] = earlier + 1
            event_base[event_ref] = base
            source_currency = None
            if source is not None:
                event_source[event_ref] = event_source.get(event_ref, ZERO) + source
                source_currency = event_currency
            period = period_of(day)
            if closed_through is not None and period <= closed_through:
                period = next_period(closed_through)
            if period != current:  # in day order a period's events come together: its sums stay in locals
                if current is not None:
                    period_base[current], period_fee[current] = total, target
                current, total, target = period, period_base.get(period, ZERO), period_fee.get(period, ZERO)
            before = target
            total += delta
            if rate is not None:
                target = quantize(total * rate, step)
                if target.is_zero():
                    target = target.copy_abs()  # no "-0.00"
            elif pooled:
                target = round_money(tier_share(agreement, total, total + others.get(period, ZERO)), currency)
            else:
                target = round_money(fee_on(agreement, total), currency)
            fee = target - before
            append(
                new(
                    Accrual,
                    (
                        agreement_ref,
                        partner_ref,
                        ref,
                        FEE,
                        customer_ref,
                        day,
                        period,
                        currency,
                        delta,
                        fee,
                        source_currency,
                        source,
                        used,
                    ),
                )
            )
        if current is not None:
            period_base[current], period_fee[current] = total, target
    if pooled:
        _rerate(agreement, period_base, period_fee, changes, others, closed_through, run)
    if flat_fee is not None:
        _settle_flat_fees(agreement, paid, booked, closed_through, run)
    return run


POOLED = "(partner tiers)"  # the customer_ref of a re-rating by the partner's other agreements' revenue


def tier_share(agreement: ReferralAgreement, own: Decimal, total: Decimal) -> Decimal:
    """The agreement's part of its tiers applied to the partner's ``total`` referred revenue of a period:
    ``tiers(total) * own / total`` (a volume tier's rate at the total, a graduated one's average rate)."""
    if total == 0:
        return ZERO
    return _CTX.divide(_CTX.multiply(fee_on(agreement, total), own), total)


def _rerate(
    agreement: ReferralAgreement,
    period_base: Mapping[str, Decimal],
    period_fee: dict[str, Decimal],
    changes: dict[str, int],
    others: Mapping[str, Decimal],
    closed_through: str | None,
    run: FeeRun,
) -> None:
    """Bring each open period's fee to its share at the partner's total now: the other agreements'
    revenue moved its tier without an event of this one (accrued as ``tier:<period>``)."""
    for period in sorted(period_base):
        if closed_through is not None and period <= closed_through:
            continue
        own = period_base[period]
        target = round_money(tier_share(agreement, own, own + others.get(period, ZERO)), agreement.currency)
        fee = target - period_fee.get(period, ZERO)
        if fee == 0:
            continue
        ref = f"tier:{period}"
        earlier = changes.get(ref, 0)
        changes[ref] = earlier + 1
        period_fee[period] = target
        day = first_day(period)
        run.accruals.append(
            Accrual(
                agreement.agreement_ref,
                agreement.partner_ref,
                _nth(ref, earlier),
                FEE,
                POOLED,
                day,
                period,
                agreement.currency,
                ZERO,
                fee,
            )
        )


def period_bases(booked: Booked, run: FeeRun) -> dict[str, Decimal]:
    """An agreement's referred revenue per statement period once ``run`` is booked."""
    bases = dict(booked.period_base)
    for accrual in run.accruals:
        if accrual.kind == FEE:
            bases[accrual.period] = _CTX.add(bases.get(accrual.period, ZERO), accrual.base)
    return bases


_DAY, _REF = itemgetter(FeeEvent._fields.index("occurred_on")), itemgetter(FeeEvent._fields.index("event_ref"))


def chronological(events: Iterable[FeeEvent]) -> list[FeeEvent]:
    """Events by day, money before what undoes it on the same day, then ref: sorted by ref, then (stably)
    by sign, then by day, the same order as one sort by the triple and cheaper (single keys compare
    faster than tuples). A refund dated as its payment comes after it, so it finds what it undoes."""
    ordered = sorted(events, key=_REF)
    ordered.sort(key=_negative)
    ordered.sort(key=_DAY)
    return ordered


def _negative(event: FeeEvent) -> bool:
    return event.amount < 0


def _nth(ref: str, earlier: int) -> str:
    """An accrual's ref after ``earlier`` ones of the same event: ``ref``, then ``ref@2``, ``ref@3``."""
    return ref if earlier == 0 else f"{ref}@{earlier + 1}"


def _settle_flat_fees(
    agreement: ReferralAgreement,
    paid: Mapping[str, list[FeeEvent]],
    booked: Booked,
    closed_through: str | None,
    run: FeeRun,
) -> None:
    """Each referred customer's flat fee as its events of the agreement's basis stand, day by day
    (``paid``: in order): earned the day its net turns positive, reversed the day it falls back to zero
    or below, earned again if it turns positive after that. For ``collected`` that is its first payment,
    and all it paid refunded or deleted at the source; for ``billed`` its first invoice issued, and all
    it was invoiced credited. Like the percentage, each period's flat fees are that figure and a run
    accrues the difference from what is booked (a closed period's on the next open one): rerunning, or
    accruing in pieces, comes to the same."""
    assert agreement.flat_fee is not None
    fee = round_money(agreement.flat_fee, agreement.currency)
    for customer in sorted(set(paid) | set(booked.flat_periods)):
        target: dict[str, Decimal] = defaultdict(lambda: ZERO)
        dated: dict[str, FeeEvent] = {}
        net, paying = ZERO, False
        events = paid.get(customer, [])
        for n, event in enumerate(events):
            net += event.amount
            if n + 1 < len(events) and events[n + 1].occurred_on == event.occurred_on:
                continue  # a day at a time: a payment and its refund on one day earn nothing
            if (net > 0) != paying:
                paying = not paying
                period = booking_period(event.occurred_on, closed_through)
                target[period] += fee if paying else -fee
                dated[period] = event
        have: dict[str, Decimal] = defaultdict(lambda: ZERO)
        for period, amount in booked.flat_periods.get(customer, {}).items():
            have[booking_period(first_day(period), closed_through)] += amount
        count = booked.flat_count.get(customer, 0)
        for period in sorted(set(target) | set(have)):
            change = target[period] - have[period]
            if change == 0:
                continue
            event = dated.get(period) or FeeEvent(
                f"flat:{customer}", customer, None, first_day(period), "collected", agreement.currency, ZERO
            )
            ref = _nth(f"flat:{customer}", count)
            count += 1
            run.accruals.append(_accrual(agreement, ref, FLAT_FEE, event, period, ZERO, change))


def first_day(period: str) -> date:
    """The first day of a period (YYYY-MM)."""
    year, month = (int(part) for part in period.split("-"))
    return date(year, month, 1)


def _base(
    agreement: ReferralAgreement,
    event: FeeEvent,
    rates: Mapping[tuple[str, str], Decimal] | None,
    run: FeeRun,
    kept: Decimal | None = None,
) -> tuple[Decimal, Decimal | None, Decimal | None] | None:
    """The event's amount the fee is on (its products', for a per-product agreement), in the agreement's
    currency, with (for an event in another currency) that amount in the event's currency and the rate:
    ``kept``, the one it first accrued at, else the configured one. None (with a problem) when it cannot
    be known."""
    amount = event.amount
    if event.currency == agreement.currency and agreement.products is None:  # the common case
        return amount, None, None
    if agreement.products is not None:
        if event.product_amounts is None:
            run.problems.append(
                FeeProblem(agreement.agreement_ref, event.event_ref, "products", "the event has no amounts per product")
            )
            return None
        wanted = set(agreement.products)
        with localcontext(_CTX):
            amount = sum((v for p, v in event.product_amounts.items() if p in wanted), ZERO)
    if event.currency == agreement.currency:
        return amount, None, None
    rate = kept if kept is not None else (rates or {}).get((event.currency, agreement.currency))
    if rate is None:
        message = (
            f"the customer pays in {event.currency} but the agreement accrues in {agreement.currency}, and no "
            f"exchange rate {event.currency}->{agreement.currency} is configured"
        )
        run.problems.append(FeeProblem(agreement.agreement_ref, event.event_ref, "currency", message))
        return None
    with localcontext(_CTX):
        return amount * rate, amount, rate


def _accrual(
    agreement: ReferralAgreement,
    ref: str,
    kind: str,
    event: FeeEvent,
    period: str,
    base: Decimal,
    fee: Decimal,
) -> Accrual:
    return Accrual(
        agreement.agreement_ref,
        agreement.partner_ref,
        ref,
        kind,
        event.customer_ref,
        event.occurred_on,
        period,
        agreement.currency,
        base,
        fee,
    )


@dataclass(frozen=True)
class StatementLine:
    customer_ref: str
    base: Decimal
    fees: Decimal


@dataclass(frozen=True)
class Statement:
    """A partner's fees of the months ``first_period`` to ``period``, per referred customer; ``total`` is
    what its Bill asks to pay. A statement closes every month since the partner's last statement (a
    month never closed, before go-live or a missed run, is billed by the next statement, not lost)."""

    partner_ref: str
    period: str
    currency: str
    lines: tuple[StatementLine, ...]
    total: Decimal
    first_period: str = ""  # the first month it covers ("": ``period`` only)

    @property
    def months(self) -> str:
        """The months covered: ``2026-11``, or ``2026-09 to 2026-11``."""
        return months_label(self.first_period or self.period, self.period)


STATEMENT_CSV_COLUMNS = ("months", "currency", "customer_ref", "base", "fees")
"""The columns of a statement as CSV (``partners statement --csv``, the statement e-mail's attachment)."""


def statement_csv(of: Statement) -> str:
    """A statement as a CSV file on its own: a line per referred customer, each saying the months and
    the currency, and a last line ``(total)`` with the base and the fees summed."""
    base = sum((line.base for line in of.lines), ZERO)
    rows = [(line.customer_ref, line.base, line.fees) for line in of.lines] + [("(total)", base, of.total)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(STATEMENT_CSV_COLUMNS)
    for customer_ref, amount, fees in rows:
        writer.writerow(
            (of.months, of.currency, customer_ref, money_str(amount, of.currency), money_str(fees, of.currency))
        )
    return out.getvalue()


def statement_details(
    bill: PartnerBill, accrued: Iterable[Decimal], payment_terms_days: int, *, billed: bool
) -> dict[str, Any]:
    """What a partner's statement message says, as the message keeps it (money as text, JSON-safe):
    the months, the fees accrued and the reversals (the accruals' positive and negative fees), the
    total, each referred customer's line, and the Bill (number, date, due date, payment terms; a
    VendorCredit when the total is negative; none when ``billed`` is false: a zero total)."""
    fees = [Decimal(f) for f in accrued]
    cur = bill.currency

    def text(amount: Decimal) -> str:
        return money_str(amount, cur)

    return {
        "statement": {
            "partner_ref": bill.partner_ref,
            "period": bill.period,
            "first_period": bill.first_period or bill.period,
            "months": bill.months,
            "currency": cur,
            "fees": text(sum((f for f in fees if f > 0), ZERO)),
            "reversals": text(sum((f for f in fees if f < 0), ZERO)),
            "total": text(bill.total),
            "lines": [{"customer_ref": x.customer_ref, "base": text(x.base), "fees": text(x.fees)} for x in bill.lines],
            "bill": (
                {
                    "number": bill.number,
                    "doc_type": bill.doc_type,
                    "bill_date": bill.bill_date.isoformat(),
                    "due_date": bill.due_date.isoformat(),
                }
                if billed
                else None
            ),
            "payment_terms_days": payment_terms_days,
        }
    }


def statement_of_details(details: Mapping[str, Any]) -> Statement:
    """The statement a message's details keep (see :func:`statement_details`), for its CSV."""
    kept = details["statement"]
    lines = tuple(StatementLine(x["customer_ref"], Decimal(x["base"]), Decimal(x["fees"])) for x in kept["lines"])
    return Statement(
        kept["partner_ref"], kept["period"], kept["currency"], lines, Decimal(kept["total"]), kept["first_period"]
    )


def months_label(first: str, last: str) -> str:
    """``2026-11`` for one month, ``2026-09 to 2026-11`` for several."""
    return last if first in ("", last) else f"{first} to {last}"


def vanished(accruals: Iterable[Accrual], present: set[str], on: date, basis: FeeBasis) -> list[FeeEvent]:
    """Events that accrued a fee but are gone from the store (a payment deleted at its source): each
    comes back at 0 (in its own currency, so it is converted at the rate it accrued at; nothing on any
    product), dated ``on``, so what it earned is reversed."""
    last: dict[str, Accrual] = {}
    for accrual in accruals:
        if accrual.kind == FEE:
            last[root_ref(accrual.event_ref)] = accrual
    return [
        FeeEvent(ref, a.customer_ref, None, on, basis, a.source_currency or a.currency, ZERO, {})
        for ref, a in sorted(last.items())
        if ref not in present
    ]


def statement(
    partner_ref: str, period: str, currency: str, accruals: Iterable[Accrual], *, first: str | None = None
) -> Statement:
    """The statement of ``partner_ref`` for the months ``first`` to ``period`` (default: ``period`` only)
    from its accruals (others are ignored)."""
    first = first or period
    if first > period:
        raise ValueError(f"a statement cannot start at {first}, after its month {period}")
    base: dict[str, Decimal] = defaultdict(lambda: ZERO)
    fees: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for accrual in accruals:
        if accrual.partner_ref != partner_ref or not first <= accrual.period <= period:
            continue
        if accrual.currency != currency:
            raise ValueError(f"accrual {accrual.event_ref} is in {accrual.currency}, the statement in {currency}")
        base[accrual.customer_ref] += accrual.base
        fees[accrual.customer_ref] += accrual.fee
    lines = tuple(StatementLine(c, base[c], fees[c]) for c in sorted(fees))
    return Statement(partner_ref, period, currency, lines, sum((line.fees for line in lines), ZERO), first)


@dataclass(frozen=True)
class PartnerBill:
    """A closed statement as the bill accounts payable should hold: the partner (a vendor), the period's
    fees per referred customer, dated the day after the period, due on the partner's payment terms; a
    negative total is a vendor credit for its opposite instead (``credit``).
    ``number`` is deterministic (the vendor reference QuickBooks keeps, at most 21 characters), so a
    retry finds the Bill an earlier attempt made."""

    statement_id: int
    partner_ref: str
    partner_name: str
    email: str | None
    currency: str
    period: str
    number: str
    bill_date: date
    due_date: date
    lines: tuple[StatementLine, ...]
    total: Decimal
    first_period: str = ""  # the first month it covers ("": ``period`` only)

    @property
    def months(self) -> str:
        """The months the Bill is for: ``2026-11``, or ``2026-09 to 2026-11``."""
        return months_label(self.first_period or self.period, self.period)

    @property
    def idempotency_key(self) -> str:
        return f"billbridge-partner-bill-{self.statement_id}-create"

    @property
    def credit(self) -> bool:
        """A negative statement (reversals above fees): the partner owes us, a vendor credit, not a bill."""
        return self.total < 0

    @property
    def doc_type(self) -> str:
        return "vendor_credit" if self.credit else "bill"


def bill_number(statement_id: int, period: str) -> str:
    """``PF-2026-11-42``: partner fees, the period, the statement id (unique)."""
    return f"PF-{period}-{statement_id}"


def partner_bill(
    statement_id: int, partner_name: str, email: str | None, payment_terms_days: int, of: Statement
) -> PartnerBill:
    """The Bill of a closed statement."""
    year, month = (int(part) for part in next_period(of.period).split("-"))
    day = date(year, month, 1)
    return PartnerBill(
        statement_id,
        of.partner_ref,
        partner_name,
        email,
        of.currency,
        of.period,
        bill_number(statement_id, of.period),
        day,
        day + timedelta(days=payment_terms_days),
        of.lines,
        of.total,
        of.first_period,
    )
