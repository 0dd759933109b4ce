"""Referral data per partner, for the command, the API and the dashboard: its agreements, the customers
it referred with their revenue and the fees they earned, and its statements with what was billed,
credited and paid. Read-only; what it reads is written by ``store/partners.py`` and the fee run."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from billbridge.billing.currency import money_str
from billbridge.billing.model import FeeBasis
from billbridge.billing.partner_fees import FeeEvent, referral_revenue
from billbridge.store import partners as sql

ZERO = Decimal(0)


@dataclass
class ReferredCustomer:
    customer_ref: str
    agreement_ref: str
    referred_on: str
    contract_ref: str | None
    currency: str
    # what it paid (collected) or was invoiced (billed) since its referral: the fee's base (a per-product
    # agreement's products only)
    revenue: Decimal = ZERO
    fees: Decimal = ZERO  # the fees it earned its partner, net of reversals


@dataclass
class PartnerReport:
    partner_ref: str
    name: str
    kind: str
    entity_ref: str
    currency: str
    agreements: list[dict[str, Any]] = field(default_factory=list)
    referred: list[ReferredCustomer] = field(default_factory=list)
    statements: list[dict[str, Any]] = field(default_factory=list)
    fees_accrued: Decimal = ZERO
    fees_billed: Decimal = ZERO  # in QuickBooks as Bills
    fees_credited: Decimal = ZERO  # in QuickBooks as VendorCredits (negative statements)
    fees_paid: Decimal = ZERO  # paid on its Bills, as QuickBooks' BillPayments last said

    def as_dict(self) -> dict[str, Any]:
        """As data, money as strings in the partner's currency's minor units."""
        c = self.currency
        return {
            "partner_ref": self.partner_ref,
            "name": self.name,
            "kind": self.kind,
            "entity_ref": self.entity_ref,
            "currency": c,
            "agreements": self.agreements,
            "referred_customers": [
                {
                    "customer_ref": r.customer_ref,
                    "agreement_ref": r.agreement_ref,
                    "referred_on": r.referred_on,
                    "contract_ref": r.contract_ref,
                    "currency": r.currency,
                    "revenue": money_str(r.revenue, r.currency),
                    "fees": money_str(r.fees, r.currency),
                }
                for r in self.referred
            ],
            "statements": [
                {
                    **s,
                    "total": money_str(s["total"], s["currency"]),
                    "paid": None if s["paid"] is None else money_str(s["paid"], s["currency"]),
                    "closed_at": s["closed_at"].isoformat() if s["closed_at"] is not None else None,
                }
                for s in self.statements
            ],
            "fees_accrued": money_str(self.fees_accrued, c),
            "fees_billed": money_str(self.fees_billed, c),
            "fees_credited": money_str(self.fees_credited, c),
            "fees_paid": money_str(self.fees_paid, c),
        }


def partner_reports(
    session: Session, partner_refs: Iterable[str] | None = None, *, entity_refs: Iterable[str] | None = None
) -> list[PartnerReport]:
    """The referral data of these partners (all by default), of ``entity_refs`` only when given."""
    summaries = {s["partner_ref"]: s for s in sql.partner_summaries(session)}
    wanted = set(summaries) if partner_refs is None else set(partner_refs) & set(summaries)
    if entity_refs is not None:
        entities = set(entity_refs)
        wanted = {ref for ref in wanted if summaries[ref]["entity_ref"] in entities}
    reports = {
        ref: PartnerReport(ref, s["name"], s["kind"], s["entity_ref"], s["currency"])
        for ref, s in sorted(summaries.items())
        if ref in wanted
    }
    agreements = [a for a in sql.load_agreements(session) if a.partner_ref in reports]
    # Every event read once per basis for all the partners' referred customers, grouped by customer; each
    # agreement's accruals read in one batch (a query per agreement, and a scan of all events per
    # referral, made reports cubic in referred customers).
    # A per-product agreement's events are read split by product (its revenue is its products' share).
    by_customer: dict[tuple[FeeBasis, bool], dict[str, list[FeeEvent]]] = {}
    for basis, per_product in sorted({(a.basis, a.products is not None) for a in agreements}):
        customers = {
            r.customer_ref
            for a in agreements
            if (a.basis, a.products is not None) == (basis, per_product)
            for r in a.referrals
        }
        grouped: dict[str, list[FeeEvent]] = {}
        for event in sql.fee_events(session, customers, basis, per_product=per_product):
            grouped.setdefault(event.customer_ref, []).append(event)
        by_customer[(basis, per_product)] = grouped
    accruals = sql.accruals_by_agreement(session, [a.agreement_ref for a in agreements])
    for agreement in agreements:
        of = reports[agreement.partner_ref]
        of.agreements.append(agreement.model_dump(mode="json", exclude={"referrals"}))
        fees: dict[str, Decimal] = {}
        for accrual in accruals.get(agreement.agreement_ref, ()):
            fees[accrual.customer_ref] = fees.get(accrual.customer_ref, ZERO) + accrual.fee
            of.fees_accrued += accrual.fee
        grouped = by_customer.get((agreement.basis, agreement.products is not None), {})
        events = [e for c in sorted({r.customer_ref for r in agreement.referrals}) for e in grouped.get(c, ())]
        revenue = referral_revenue(agreement, events)
        for referral, earned in zip(agreement.referrals, revenue, strict=True):
            of.referred.append(
                ReferredCustomer(
                    referral.customer_ref,
                    agreement.agreement_ref,
                    referral.referred_on.isoformat(),
                    referral.contract_ref,
                    agreement.currency,
                    revenue=earned,
                    fees=fees.get(referral.customer_ref, ZERO),
                )
            )
    for statement in sql.statements(session):
        report = reports.get(statement["partner_ref"])
        if report is None:
            continue
        report.statements.append(statement)
        if statement["status"] == "billed":
            report.fees_billed += statement["total"]
            report.fees_paid += statement["paid"] or ZERO
        elif statement["status"] == "credited":
            report.fees_credited += -statement["total"]
    return list(reports.values())
