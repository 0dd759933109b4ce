"""Partners and referral agreements: upserts by their refs, lookups, and the referral fees accrued on
them (once per agreement, event and kind) and the partners' statements."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, aliased

from billbridge.billing import model
from billbridge.billing.currency import allocate
from billbridge.billing.model import FeeBasis
from billbridge.billing.partner_fees import Accrual, FeeEvent, next_period
from billbridge.store import messages
from billbridge.store.bulk import BulkStatement, insert_rows
from billbridge.store.models import (
    Contract,
    ContractVersion,
    Customer,
    Invoice,
    InvoiceLine,
    LegalEntity,
    Payment,
    PaymentAllocation,
    table_of,
    utcnow,
)
from billbridge.store.partner_models import Partner, PartnerFeeAccrual, PartnerStatement, ReferralAgreement
from billbridge.store.records import Outcome
from billbridge.store.reference import MissingReference, customer_ids, entity_ids, upsert_customer

IN_BATCH = 500  # refs per IN list (SQLite's bound parameters are limited)


class PartnerError(ValueError):
    """A partner record that conflicts with what the store holds; ``field`` names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _apply(row: Any, values: dict[str, Any]) -> Outcome:
    if all(getattr(row, name) == value for name, value in values.items()):
        return "unchanged"
    for name, value in values.items():
        setattr(row, name, value)
    return "updated"


def upsert_partner(session: Session, partner: model.Partner) -> Outcome:
    """Store a partner by its ref; its legal entity must be known. A changed e-mail releases its
    statement messages waiting for one (``messages.release_waiting``)."""
    entity_id = entity_ids(session, [partner.entity_ref]).get(partner.entity_ref)
    if entity_id is None:
        raise MissingReference(
            "entity_ref", f"unknown legal entity {partner.entity_ref!r}", ("entities", partner.entity_ref)
        )
    row = session.scalar(select(Partner).where(Partner.partner_ref == partner.partner_ref))
    if partner.distributor_ref is not None:
        _check_distributor(session, partner.distributor_ref)
    if row is not None and row.kind != "referral" and partner.kind == "referral":
        sold = _resold_through(session, partner.partner_ref, active_on=datetime.now(UTC).date())
        if sold:
            shown = ", ".join(sold[:3]) + (f" and {len(sold) - 3} more" if len(sold) > 3 else "")
            raise PartnerError(
                "kind",
                f"partner {partner.partner_ref} is the bill-to party of active contracts sold through it ({shown}): "
                f"it stays {row.kind} while they are",
            )
    values = {
        "name": partner.name,
        "kind": partner.kind,
        "entity_id": entity_id,
        "currency": partner.currency,
        "email": partner.email,
        "payment_terms_days": partner.payment_terms_days,
        "terms": partner.model_dump(mode="json"),
    }
    if partner.kind != "referral":  # a reseller is invoiced: it is a customer of ours under its partner ref
        _check_bill_to(session, partner, row, entity_id)
        upsert_customer(
            session,
            model.Customer(
                customer_ref=partner.partner_ref, name=partner.name, entity_ref=partner.entity_ref, email=partner.email
            ),
            as_partner=True,
        )
    if row is None:
        session.add(Partner(partner_ref=partner.partner_ref, **values))
        session.flush()
        return "created"
    if row.currency != partner.currency and _has_agreements(session, row.id):
        raise PartnerError(
            "currency", f"partner {partner.partner_ref} has referral agreements in {row.currency}; it cannot move"
        )
    before = row.email
    outcome = _apply(row, values)
    if row.email != before:  # its statements waiting for an e-mail go out now (one still malformed: named)
        session.flush()
        messages.release_waiting(session, partner_id=row.id)
    return outcome


def _check_distributor(session: Session, distributor_ref: str) -> None:
    """A reseller's distributor must be a known partner that sells (kind reseller or both) directly: one
    not known yet is a missing reference (the reseller waits in quarantine and is retried when it
    arrives), as its contracts would otherwise all be refused."""
    distributor = session.execute(
        select(Partner.kind, Partner.terms).where(Partner.partner_ref == distributor_ref)
    ).one_or_none()
    if distributor is None:
        raise MissingReference(
            "distributor_ref", f"unknown distributor {distributor_ref!r}", ("partners", distributor_ref)
        )
    if distributor.kind == "referral":
        raise PartnerError("distributor_ref", f"distributor {distributor_ref} is a referral partner, not a reseller")
    if distributor.terms.get("distributor_ref") is not None:
        raise PartnerError(
            "distributor_ref",
            f"distributor {distributor_ref} itself sells through {distributor.terms['distributor_ref']}: "
            "two tiers at most",
        )


def _check_bill_to(session: Session, partner: model.Partner, row: Partner | None, entity_id: int) -> None:
    """A reseller's bill-to record is the customer under its partner ref, and only its own: a customer
    of that ref that the partner did not create (a customer in its own right, or one kept while the
    partner only referred) is never renamed or moved by it; it becomes the bill-to record only when it
    is the same party (same name, same legal entity: a CRM account that buys and resells). Its own is
    not moved either once invoiced in its entity (its invoices and contracts stay there)."""
    customer = session.execute(
        select(Customer.id, Customer.name, Customer.entity_id).where(Customer.customer_ref == partner.partner_ref)
    ).one_or_none()
    if customer is None:
        return
    ref = partner.partner_ref
    if (row is None or row.kind == "referral") and (customer.name, customer.entity_id) != (partner.name, entity_id):
        raise PartnerError(
            "partner_ref",
            f"{ref} is already the ref of customer {customer.name!r} (another name or legal entity), not reseller "
            f"{ref}'s bill-to record: a reseller would rename or move it (give the partner another partner_ref)",
        )
    if customer.entity_id != entity_id and (
        session.scalar(select(Invoice.id).where(Invoice.customer_id == customer.id).limit(1)) is not None
        or _resold_through(session, ref)
    ):
        raise PartnerError(
            "entity_ref",
            f"reseller {ref} is invoiced in another legal entity than {partner.entity_ref!r} (it has invoices or "
            "contracts sold through it there); it cannot move",
        )


def _resold_through(session: Session, partner_ref: str, *, active_on: date | None = None) -> list[str]:
    """The contracts whose current version is sold through this partner (as reseller or distributor),
    by ref; with ``active_on``, only those not ended before that day."""
    needle = f'%"{partner_ref}"%'
    query = (
        select(Contract.contract_ref, ContractVersion.terms, ContractVersion.contract_end_date)
        .join(
            ContractVersion,
            and_(ContractVersion.contract_id == Contract.id, ContractVersion.version_no == Contract.current_version_no),
        )
        .where(ContractVersion.terms.like(needle))
        .order_by(Contract.contract_ref)
    )
    found = []
    for contract_ref, terms, end in session.execute(query):
        stored = json.loads(terms)
        if partner_ref not in (stored.get("reseller_ref"), stored.get("distributor_ref")):
            continue
        if active_on is not None and end is not None and end < active_on:
            continue
        found.append(contract_ref)
    return found


def _has_agreements(session: Session, partner_id: int) -> bool:
    return (
        session.scalar(select(ReferralAgreement.id).where(ReferralAgreement.partner_id == partner_id).limit(1))
        is not None
    )


def upsert_agreement(session: Session, agreement: model.ReferralAgreement) -> Outcome:
    """Store a referral agreement by its ref. Its partner must be known, refer customers (kind referral
    or both) and be paid in the agreement's currency (fees accrue in it and its Bills are in it). It is
    stored with the referrals of the customers the store has: one of a customer it does not have yet
    waits (``unknown_referrals``, quarantined by the import and retried when the customer arrives)
    without holding back the others."""
    partner = session.scalar(select(Partner).where(Partner.partner_ref == agreement.partner_ref))
    if partner is None:
        raise MissingReference(
            "partner_ref", f"unknown partner {agreement.partner_ref!r}", ("partners", agreement.partner_ref)
        )
    if partner.kind == "reseller":
        raise PartnerError("partner_ref", f"partner {partner.partner_ref} is a reseller, not a referral partner")
    if partner.currency != agreement.currency:
        raise PartnerError(
            "currency",
            f"the agreement is in {agreement.currency} but partner {partner.partner_ref} is paid in {partner.currency}",
        )
    waiting = unknown_referrals(session, agreement)
    if waiting:
        wait = {n for n, _ in waiting}
        known = [r for n, r in enumerate(agreement.referrals) if n not in wait]
        agreement = agreement.model_copy(update={"referrals": known})
    row = session.scalar(select(ReferralAgreement).where(ReferralAgreement.agreement_ref == agreement.agreement_ref))
    values = {"partner_id": partner.id, "currency": agreement.currency, "terms": agreement.model_dump(mode="json")}
    if row is None:
        session.add(ReferralAgreement(agreement_ref=agreement.agreement_ref, **values))
        return "created"
    return _apply(row, values)


def unknown_referrals(session: Session, agreement: model.ReferralAgreement) -> list[tuple[int, model.Referral]]:
    """The agreement's referrals (with their index) of customers the store does not have (yet)."""
    known = customer_ids(session, {r.customer_ref for r in agreement.referrals})
    return [(n, r) for n, r in enumerate(agreement.referrals) if r.customer_ref not in known]


def load_partners(session: Session, refs: Iterable[str] | None = None) -> dict[str, model.Partner]:
    """The stored partners (all, or those of ``refs``) as canonical records, by ref."""
    query = select(Partner.terms).order_by(Partner.partner_ref)
    if refs is not None:
        query = query.where(Partner.partner_ref.in_(list(refs)))
    partners = (model.Partner.model_validate(terms) for terms in session.scalars(query))
    return {p.partner_ref: p for p in partners}


def load_agreements(session: Session, partner_ref: str | None = None) -> list[model.ReferralAgreement]:
    """The stored referral agreements (of one partner, or all), by agreement ref."""
    query = select(ReferralAgreement.terms).order_by(ReferralAgreement.agreement_ref)
    if partner_ref is not None:
        query = query.join(Partner, Partner.id == ReferralAgreement.partner_id).where(
            Partner.partner_ref == partner_ref
        )
    return [model.ReferralAgreement.model_validate(terms) for terms in session.scalars(query)]


def partner_summaries(session: Session) -> list[dict[str, Any]]:
    """Every partner with its entity and agreement count, for listings."""
    agreements: dict[int, int] = {}
    for partner_id in session.scalars(select(ReferralAgreement.partner_id)):
        agreements[partner_id] = agreements.get(partner_id, 0) + 1
    query = (
        select(Partner, LegalEntity.entity_ref)
        .join(LegalEntity, LegalEntity.id == Partner.entity_id)
        .order_by(Partner.partner_ref)
    )
    return [
        {
            "partner_ref": p.partner_ref,
            "name": p.name,
            "kind": p.kind,
            "entity_ref": entity_ref,
            "currency": p.currency,
            "email": p.email,
            "payment_terms_days": p.payment_terms_days,
            "agreements": agreements.get(p.id, 0),
        }
        for p, entity_ref in session.execute(query)
    ]


def accruals_by_agreement(session: Session, agreement_refs: Iterable[str]) -> dict[str, list[Accrual]]:
    """The accruals of these agreements (each in the order accrued), read in a few queries for a batch
    of partners rather than one per agreement."""
    refs = sorted(set(agreement_refs))
    out: dict[str, list[Accrual]] = {ref: [] for ref in refs}
    for start in range(0, len(refs), IN_BATCH):
        query = (
            select(
                ReferralAgreement.agreement_ref,
                Partner.partner_ref,
                PartnerFeeAccrual.event_ref,
                PartnerFeeAccrual.kind,
                PartnerFeeAccrual.customer_ref,
                PartnerFeeAccrual.occurred_on,
                PartnerFeeAccrual.period,
                PartnerFeeAccrual.currency,
                PartnerFeeAccrual.base,
                PartnerFeeAccrual.fee,
                PartnerFeeAccrual.source_currency,
                PartnerFeeAccrual.source_amount,
                PartnerFeeAccrual.rate,
            )
            .join(ReferralAgreement, ReferralAgreement.id == PartnerFeeAccrual.agreement_id)
            .join(Partner, Partner.id == PartnerFeeAccrual.partner_id)
            .where(ReferralAgreement.agreement_ref.in_(refs[start : start + IN_BATCH]))
            .order_by(PartnerFeeAccrual.id)
        )
        for row in session.execute(query):
            out[row[0]].append(Accrual._make(row))
    return out


def load_accruals(
    session: Session,
    *,
    agreement_ref: str | None = None,
    partner_ref: str | None = None,
    period: str | None = None,
    after: str | None = None,
    through: str | None = None,
) -> list[Accrual]:
    """Accrued fees, filtered by agreement, partner and period (one, or those after ``after`` up to
    ``through``), in the order they were accrued."""
    query = (
        select(PartnerFeeAccrual, ReferralAgreement.agreement_ref, Partner.partner_ref)
        .join(ReferralAgreement, ReferralAgreement.id == PartnerFeeAccrual.agreement_id)
        .join(Partner, Partner.id == PartnerFeeAccrual.partner_id)
        .order_by(PartnerFeeAccrual.id)
    )
    if agreement_ref is not None:
        query = query.where(ReferralAgreement.agreement_ref == agreement_ref)
    if partner_ref is not None:
        query = query.where(Partner.partner_ref == partner_ref)
    if period is not None:
        query = query.where(PartnerFeeAccrual.period == period)
    if after is not None:
        query = query.where(PartnerFeeAccrual.period > after)
    if through is not None:
        query = query.where(PartnerFeeAccrual.period <= through)
    return [
        Accrual(
            agreement,
            partner,
            row.event_ref,
            row.kind,
            row.customer_ref,
            row.occurred_on,
            row.period,
            row.currency,
            row.base,
            row.fee,
            row.source_currency,
            row.source_amount,
            row.rate,
        )
        for row, agreement, partner in session.execute(query)
    ]


_ACCRUAL_KEYS = (
    "agreement_id",
    "partner_id",
    "event_ref",
    "kind",
    "customer_ref",
    "occurred_on",
    "period",
    "currency",
    "base",
    "fee",
    "created_at",
    "source_currency",
    "source_amount",
    "rate",
)
_INSERT_ACCRUALS = insert_rows(table_of(PartnerFeeAccrual), _ACCRUAL_KEYS)


def save_accruals(session: Session, accruals: Iterable[Accrual]) -> int:
    """Store new accruals; one already stored (same agreement, event and kind) is skipped, so a rerun of a
    run that committed adds nothing. Returns how many were added. The rows go in as one batch on the
    driver (``store/bulk.py``): a unit-of-work object per accrual was most of a fee run's time."""
    batch = list(accruals)
    if not batch:
        return 0
    agreements = {
        ref: (agreement_id, partner_id)
        for ref, agreement_id, partner_id in session.execute(
            select(ReferralAgreement.agreement_ref, ReferralAgreement.id, ReferralAgreement.partner_id).where(
                ReferralAgreement.agreement_ref.in_({a.agreement_ref for a in batch})
            )
        )
    }
    known: set[tuple[int, str, str]] = {
        (agreement_id, event_ref, kind)
        for agreement_id, event_ref, kind in session.execute(
            select(PartnerFeeAccrual.agreement_id, PartnerFeeAccrual.event_ref, PartnerFeeAccrual.kind).where(
                PartnerFeeAccrual.agreement_id.in_([agreement_id for agreement_id, _ in agreements.values()])
            )
        )
    }
    now = utcnow()
    rows = []
    for accrual in batch:
        agreement_id, partner_id = agreements[accrual.agreement_ref]
        key = (agreement_id, accrual.event_ref, accrual.kind)
        if key in known:
            continue
        known.add(key)
        rows.append(
            {
                "agreement_id": agreement_id,
                "partner_id": partner_id,
                "event_ref": accrual.event_ref,
                "kind": accrual.kind,
                "customer_ref": accrual.customer_ref,
                "occurred_on": accrual.occurred_on,
                "period": accrual.period,
                "currency": accrual.currency,
                "base": accrual.base,
                "fee": accrual.fee,
                "created_at": now,
                "source_currency": accrual.source_currency,
                "source_amount": accrual.source_amount,
                "rate": accrual.rate,
            }
        )
    if rows:
        session.flush()  # what the session holds goes first, as the unit of work would order it
        connection = session.connection()
        BulkStatement.of(_INSERT_ACCRUALS, connection, _ACCRUAL_KEYS).write_rows(connection, rows)
    return len(rows)


def closed_through(session: Session, partner_ref: str) -> str | None:
    """The last period of the partner whose statement is closed (None: none is)."""
    query = (
        select(PartnerStatement.period)
        .join(Partner, Partner.id == PartnerStatement.partner_id)
        .where(Partner.partner_ref == partner_ref)
        .order_by(PartnerStatement.period.desc())
        .limit(1)
    )
    return session.scalar(query)


def closed_through_many(session: Session, partner_refs: Iterable[str]) -> dict[str, str | None]:
    """:func:`closed_through` of each of these partners, in one query."""
    refs = sorted(set(partner_refs))
    query = (
        select(Partner.partner_ref, func.max(PartnerStatement.period))
        .join(Partner, Partner.id == PartnerStatement.partner_id)
        .where(Partner.partner_ref.in_(refs))
        .group_by(Partner.partner_ref)
    )
    found: dict[str, str | None] = dict.fromkeys(refs)
    found.update({ref: period for ref, period in session.execute(query)})
    return found


def closed_before(session: Session, partner_ref: str, period: str) -> str | None:
    """The partner's last closed period before ``period`` (None: none is)."""
    query = (
        select(func.max(PartnerStatement.period))
        .join(Partner, Partner.id == PartnerStatement.partner_id)
        .where(Partner.partner_ref == partner_ref, PartnerStatement.period < period)
    )
    return session.scalar(query)


def statement_accruals(session: Session, partner_ref: str, period: str) -> tuple[str, list[Accrual]]:
    """What the partner's statement of ``period`` covers: every accrual after its previous statement's
    month up to ``period`` (a month never closed, before go-live or in a missed run, is billed by the next
    statement), and the first month covered (the one after the previous statement, else the earliest
    accrued, else ``period``)."""
    previous = closed_before(session, partner_ref, period)
    accruals = load_accruals(session, partner_ref=partner_ref, after=previous, through=period)
    if previous is not None:
        return next_period(previous), accruals
    return min((a.period for a in accruals), default=period), accruals


def close_statement(session: Session, partner_ref: str, period: str, total: Decimal) -> tuple[int, bool]:
    """Close the partner's statement of ``period`` at ``total``: later fees go to the next period. Returns
    (statement id, whether it was closed now); closing a closed one changes nothing."""
    partner = session.scalar(select(Partner).where(Partner.partner_ref == partner_ref))
    if partner is None:
        raise LookupError(f"unknown partner {partner_ref!r}")
    row = session.scalar(
        select(PartnerStatement).where(PartnerStatement.partner_id == partner.id, PartnerStatement.period == period)
    )
    if row is not None:
        return row.id, False
    last = closed_through(session, partner_ref)
    if last is not None and period < last:
        raise PartnerError("period", f"partner {partner_ref}: period {period} is before {last}, closed already")
    row = PartnerStatement(
        partner_id=partner.id, period=period, currency=partner.currency, total=total, status="closed"
    )
    session.add(row)
    session.flush()
    return row.id, True


def statements(session: Session, partner_ref: str | None = None) -> list[dict[str, Any]]:
    """Closed statements, newest first."""
    query = (
        select(PartnerStatement, Partner.partner_ref)
        .join(Partner, Partner.id == PartnerStatement.partner_id)
        .order_by(PartnerStatement.period.desc(), Partner.partner_ref)
    )
    if partner_ref is not None:
        query = query.where(Partner.partner_ref == partner_ref)
    return [
        {
            "id": s.id,
            "partner_ref": ref,
            "period": s.period,
            "currency": s.currency,
            "total": s.total,
            "status": s.status,
            "closed_at": s.closed_at,
            "paid": s.paid,
        }
        for s, ref in session.execute(query)
    ]


def set_statements_paid(session: Session, paid: Mapping[int, Decimal]) -> None:
    """Record what was paid on statements' Bills (by statement id), as QuickBooks last said."""
    for row in session.scalars(select(PartnerStatement).where(PartnerStatement.id.in_(sorted(paid)))):
        row.paid = paid[row.id]


def first_day(period: str) -> date:
    year, month = (int(part) for part in period.split("-"))
    return date(year, month, 1)


ISSUED = ("sent", "partially_paid", "paid")  # what a customer was invoiced: documents that reached it


def fee_events(
    session: Session, customer_refs: Iterable[str], basis: FeeBasis, *, per_product: bool = False
) -> list[FeeEvent]:
    """The events of these customers a referral fee is on: what they paid (``collected``: each payment's
    amount applied to each invoice, a refund's negative) or were invoiced (``billed``: issued invoices,
    credit notes negative). ``per_product`` splits each amount over its invoice's products. Each event
    names the invoice it is on (``FeeEvent.against``: a refund is a negative payment on the invoice it
    pays back; a credit note is on the invoice it credits, when known), so undoing money reverses only
    what that invoice earned, whatever the day it is undone."""
    refs = sorted(set(customer_refs))
    if not refs:
        return []
    # (ref, invoice id, currency, customer, contract, day, amount, against) per event; read through Core (the
    # ORM's row loading and named access per row were most of this function's time at 100,000 payments).
    rows: list[tuple[str, int, str, str, str | None, date, Decimal, str | None]] = []
    connection = session.connection()
    for start in range(0, len(refs), IN_BATCH):
        base = (
            select(Invoice.id, Invoice.number, Invoice.currency, Customer.customer_ref, Contract.contract_ref)
            .join(Customer, Customer.id == Invoice.customer_id)
            .join(Contract, Contract.id == Invoice.contract_id)
            .where(Customer.customer_ref.in_(refs[start : start + IN_BATCH]))
        )
        if basis == "billed":
            credited = aliased(Invoice)
            query = (
                base.add_columns(Invoice.billing_date, Invoice.invoice_total, credited.number)
                .outerjoin(credited, credited.id == Invoice.applies_to_id)
                .where(Invoice.status.in_(ISSUED))
            )
            rows += [
                (
                    f"doc:{number}",
                    invoice_id,
                    currency,
                    customer,
                    contract,
                    day,
                    amount,
                    f"inv:{applies_to}" if applies_to is not None else (f"inv:{number}" if amount >= 0 else None),
                )
                for invoice_id, number, currency, customer, contract, day, amount, applies_to in connection.execute(
                    query
                )
            ]
        else:
            query = (
                base.add_columns(Payment.payment_ref, Payment.received_on, PaymentAllocation.amount)
                .join(PaymentAllocation, PaymentAllocation.invoice_id == Invoice.id)
                .join(Payment, Payment.id == PaymentAllocation.payment_id)
            )
            rows += [
                (f"pay:{payment_ref}:{number}", invoice_id, currency, customer, contract, day, amount, f"inv:{number}")
                for invoice_id, number, currency, customer, contract, payment_ref, day, amount in connection.execute(
                    query
                ).all()
            ]
    resold = _resold_events(session, refs, basis, per_product)
    if not per_product:
        return [
            FeeEvent(ref, customer, contract, day, basis, currency, amount, None, against)
            for ref, _, currency, customer, contract, day, amount, against in rows
        ] + resold
    products = _product_weights(session, {invoice_id for _, invoice_id, *_ in rows})
    events = resold
    for ref, invoice_id, currency, customer, contract, day, amount, against in rows:
        weights = products.get(invoice_id, {})
        names = sorted(weights)
        shares = allocate(amount, [weights[n] for n in names], currency) if names and any(weights.values()) else []
        split = dict(zip(names, shares, strict=True))
        events.append(FeeEvent(ref, customer, contract, day, basis, currency, amount, split, against))
    return events


def invoice_customers(session: Session, numbers: Iterable[str]) -> set[str]:
    """The customers (bill-to) of these invoices, by number."""
    wanted = sorted(set(numbers))
    found: set[str] = set()
    for start in range(0, len(wanted), IN_BATCH):
        query = (
            select(Customer.customer_ref)
            .join(Invoice, Invoice.customer_id == Customer.id)
            .where(Invoice.number.in_(wanted[start : start + IN_BATCH]))
            .distinct()
        )
        found.update(session.scalars(query))
    return found


def partners_referring(session: Session, customer_refs: Iterable[str]) -> set[str]:
    """The partners whose agreements refer any of these customers, or an end customer of a contract
    invoiced to one of them (a reseller paying for it): those whose fees their events may move."""
    refs = sorted(set(customer_refs))
    ends: set[str] = set(refs)
    end = aliased(Customer)
    for start in range(0, len(refs), IN_BATCH):
        query = (
            select(end.customer_ref)
            .select_from(InvoiceLine)
            .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
            .join(Customer, Customer.id == Invoice.customer_id)
            .join(Contract, Contract.id == InvoiceLine.contract_id)
            .join(end, end.id == Contract.customer_id)
            .where(
                Customer.customer_ref.in_(refs[start : start + IN_BATCH]), Invoice.customer_id != Contract.customer_id
            )
            .distinct()
        )
        ends.update(session.scalars(query))
    return {a.partner_ref for a in load_agreements(session) if any(r.customer_ref in ends for r in a.referrals)}


def _resold_events(session: Session, refs: Sequence[str], basis: FeeBasis, per_product: bool) -> list[FeeEvent]:
    """The events of these (end) customers' contracts sold through a reseller: the reseller is invoiced,
    so each payment of (``collected``) or amount of (``billed``) a reseller's invoice is split over its
    contracts by what their lines billed, and the part of a referred end customer's contract is its
    event (``<ref>#<contract>``, on ``inv:<number>#<contract>``): a referral partner earns on what the
    customer it brought buys through a reseller, as it would if the customer bought directly."""
    end = aliased(Customer)
    invoice_ids: set[int] = set()
    for start in range(0, len(refs), IN_BATCH):
        query = (
            select(InvoiceLine.invoice_id)
            .join(Contract, Contract.id == InvoiceLine.contract_id)
            .join(end, end.id == Contract.customer_id)
            .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
            .where(end.customer_ref.in_(refs[start : start + IN_BATCH]), Invoice.customer_id != Contract.customer_id)
            .distinct()
        )
        invoice_ids.update(session.scalars(query))
    if not invoice_ids:
        return []
    ids = sorted(invoice_ids)
    # invoice -> (contract, end customer) -> product -> what its lines billed (absolute: weights)
    weights: dict[int, dict[tuple[str, str], dict[str, Decimal]]] = {}
    lines = (
        select(InvoiceLine.invoice_id, Contract.contract_ref, end.customer_ref, InvoiceLine.product_ref)
        .add_columns(InvoiceLine.billed_amount)
        .join(Contract, Contract.id == InvoiceLine.contract_id)
        .join(end, end.id == Contract.customer_id)
    )
    wanted = set(refs)
    rows: list[tuple[str, int, str, str, date, Decimal, str | None]] = []
    credited = aliased(Invoice)
    for start in range(0, len(ids), IN_BATCH):
        batch = ids[start : start + IN_BATCH]
        for invoice_id, contract_ref, customer_ref, product, amount in session.execute(
            lines.where(InvoiceLine.invoice_id.in_(batch))
        ):
            products = weights.setdefault(invoice_id, {}).setdefault((contract_ref, customer_ref), {})
            products[product] = products.get(product, Decimal(0)) + abs(amount)
        if basis == "billed":
            issued = (
                select(Invoice.id, Invoice.number, Invoice.currency, Invoice.billing_date, Invoice.invoice_total)
                .add_columns(credited.number)
                .outerjoin(credited, credited.id == Invoice.applies_to_id)
                .where(Invoice.id.in_(batch), Invoice.status.in_(ISSUED))
            )
            rows += [
                (
                    f"doc:{number}",
                    invoice_id,
                    number,
                    currency,
                    day,
                    amount,
                    applies_to or (number if amount >= 0 else None),
                )
                for invoice_id, number, currency, day, amount, applies_to in session.execute(issued)
            ]
        else:
            paid = (
                select(Invoice.id, Invoice.number, Invoice.currency, Payment.payment_ref, Payment.received_on)
                .add_columns(PaymentAllocation.amount)
                .join(PaymentAllocation, PaymentAllocation.invoice_id == Invoice.id)
                .join(Payment, Payment.id == PaymentAllocation.payment_id)
                .where(Invoice.id.in_(batch))
            )
            rows += [
                (f"pay:{payment_ref}:{number}", invoice_id, number, currency, day, amount, number)
                for invoice_id, number, currency, payment_ref, day, amount in session.execute(paid)
            ]
    events = []
    for ref, invoice_id, _, currency, day, amount, on in rows:
        pieces = weights.get(invoice_id, {})
        keys = sorted(pieces)
        sizes = [sum(pieces[key].values(), Decimal(0)) for key in keys]
        if not any(sizes):
            continue
        for (contract_ref, customer_ref), share in zip(keys, allocate(amount, sizes, currency), strict=True):
            if customer_ref not in wanted:
                continue
            split = None
            if per_product:
                names = sorted(pieces[(contract_ref, customer_ref)])
                products = pieces[(contract_ref, customer_ref)]
                shares = allocate(share, [products[n] for n in names], currency) if any(products.values()) else []
                split = dict(zip(names, shares, strict=True)) if shares else {}
            against = f"inv:{on}#{contract_ref}" if on is not None else None
            events.append(
                FeeEvent(
                    f"{ref}#{contract_ref}", customer_ref, contract_ref, day, basis, currency, share, split, against
                )
            )
    return events


def _product_weights(session: Session, invoice_ids: set[int]) -> dict[int, dict[str, Decimal]]:
    """Each invoice's billed amount per product (absolute, as weights for splitting what it was paid)."""
    out: dict[int, dict[str, Decimal]] = {}
    if not invoice_ids:
        return out
    query = select(InvoiceLine.invoice_id, InvoiceLine.product_ref, InvoiceLine.billed_amount).where(
        InvoiceLine.invoice_id.in_(sorted(invoice_ids))
    )
    for invoice_id, product, amount in session.execute(query):
        weights = out.setdefault(invoice_id, {})
        weights[product] = weights.get(product, Decimal(0)) + abs(amount)
    return out


def lock_partner(session: Session, partner_ref: str) -> None:
    """Serialise what accrues on and closes a partner's statements (its row lock; SQLite has one writer)."""
    session.execute(select(Partner.id).where(Partner.partner_ref == partner_ref).with_for_update())


def lock_partners(session: Session, partner_refs: Iterable[str]) -> None:
    """:func:`lock_partner` for a batch of partners, in the order of their ids (two runs locking
    overlapping batches never wait on each other crosswise)."""
    query = select(Partner.id).where(Partner.partner_ref.in_(sorted(set(partner_refs)))).order_by(Partner.id)
    session.execute(query.with_for_update())


def set_statement_status(session: Session, statement_ids: Iterable[int], status: str) -> None:
    for row in session.scalars(select(PartnerStatement).where(PartnerStatement.id.in_(list(statement_ids)))):
        row.status = status


def statements_by_id(session: Session, statement_ids: Iterable[int]) -> list[dict[str, Any]]:
    query = (
        select(PartnerStatement, Partner.partner_ref)
        .join(Partner, Partner.id == PartnerStatement.partner_id)
        .where(PartnerStatement.id.in_(list(statement_ids)))
    )
    return [
        {
            "id": s.id,
            "partner_ref": ref,
            "period": s.period,
            "currency": s.currency,
            "total": s.total,
            "status": s.status,
        }
        for s, ref in session.execute(query)
    ]


def partner_ids(session: Session, refs: Iterable[str]) -> dict[str, int]:
    """partner_ref -> id of the known ones (what the quarantine retries a record lacking a partner by)."""
    rows = session.execute(select(Partner.partner_ref, Partner.id).where(Partner.partner_ref.in_(list(set(refs)))))
    return dict(rows.all())


def add_referral(session: Session, partner_ref: str, referral: model.Referral) -> Outcome:
    """Add a referral (a CRM deal's referral partner) to each of the partner's referral agreements;
    one the agreement already covers (the customer, for this contract or all) is left as it is. Raises
    PartnerError when the partner has no agreement: a referral earns nothing without one."""
    rows = session.scalars(
        select(ReferralAgreement)
        .join(Partner, Partner.id == ReferralAgreement.partner_id)
        .where(Partner.partner_ref == partner_ref)
        .order_by(ReferralAgreement.agreement_ref)
    ).all()
    if not rows:
        raise PartnerError("partner_ref", f"partner {partner_ref} has no referral agreement to add the referral to")
    outcome: Outcome = "unchanged"
    for row in rows:
        agreement = model.ReferralAgreement.model_validate(row.terms)
        if any(
            r.customer_ref == referral.customer_ref and r.contract_ref in (None, referral.contract_ref)
            for r in agreement.referrals
        ):  # already referred: this contract, or all of the customer's
            continue
        updated = agreement.model_copy(update={"referrals": [*agreement.referrals, referral]})
        row.terms = updated.model_dump(mode="json")
        outcome = "updated"
    return outcome
