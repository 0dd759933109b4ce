"""The dashboard's Partners page: the entity's partners with their fees accrued, billed, credited and
paid, the customers each referred (revenue, fees) and the monthly statements; the same referral data as
``billbridge partners show`` and ``/api/partners`` (``store/partner_reports.py``)."""

from __future__ import annotations

from typing import Any

from billbridge.flows.metrics import Report
from billbridge.store.db import Store
from billbridge.store.partner_reports import partner_reports


def _reports(store: Store, entity_ref: str, memo: dict[str, Any] | None = None) -> list[dict[str, object]]:
    """The entity's partner reports, built once per page: the page's three tables share them (``memo``)."""
    key = f"partner_reports:{entity_ref}"
    if memo is not None and key in memo:
        return memo[key]
    with store.read() as session:
        built = [r.as_dict() for r in partner_reports(session, entity_refs=[entity_ref])]
    if memo is not None:
        memo[key] = built
    return built


def partners_report(store: Store, entity_ref: str, memo: dict[str, Any] | None = None) -> Report:
    rows = [
        {
            **{k: p[k] for k in ("partner_ref", "name", "kind", "currency")},
            **{k: p[k] for k in ("fees_accrued", "fees_billed", "fees_credited", "fees_paid")},
            "referred_customers": len(p["referred_customers"]),  # type: ignore[arg-type]
        }
        for p in _reports(store, entity_ref, memo)
    ]
    columns = ["partner_ref", "name", "kind", "currency", "referred_customers"]
    money = ("fees_accrued", "fees_billed", "fees_credited", "fees_paid")
    return Report("partners", "Partners", [*columns, *money], rows, money=money)


def referrals_report(store: Store, entity_ref: str, memo: dict[str, Any] | None = None) -> Report:
    rows = [
        {"partner_ref": p["partner_ref"], **r}
        for p in _reports(store, entity_ref, memo)
        for r in p["referred_customers"]  # type: ignore[attr-defined]
    ]
    columns = ["partner_ref", "customer_ref", "agreement_ref", "referred_on", "currency", "revenue", "fees"]
    return Report("referrals", "Referred customers", columns, rows, money=("revenue", "fees"))


def statements_report(store: Store, entity_ref: str, memo: dict[str, Any] | None = None) -> Report:
    rows = [
        {"partner_ref": p["partner_ref"], **{k: s[k] for k in ("period", "currency", "total", "status", "paid")}}
        for p in _reports(store, entity_ref, memo)
        for s in p["statements"]  # type: ignore[attr-defined]
    ]
    columns = ["partner_ref", "period", "currency", "total", "status", "paid"]
    return Report("partner_statements", "Statements", columns, rows, money=("total", "paid"))
