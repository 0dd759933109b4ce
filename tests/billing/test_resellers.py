"""Reseller terms: the list price less the reseller's discount (per product where it says so, on top of
a line's own percentage), the reseller's payment terms; a contract it cannot resell names the field."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billbridge.billing.engine import CREDIT_PREFIX, DraftLine, InvoiceDraft
from billbridge.billing.model import Contract, Partner
from billbridge.billing.resellers import ResellerError, SoldDraft, combined_percent, consolidate, labelled, resell

D = Decimal


def reseller(**terms: Any) -> Partner:
    base = {"partner_ref": "channel-one", "name": "Channel One", "kind": "reseller", "entity_ref": "us"}
    return Partner.model_validate(
        {**base, "currency": "USD", "payment_terms_days": 45, "discount_percent": "25", **terms}
    )


def contract(**terms: Any) -> Contract:
    lines = [
        {"line_ref": "platform", "product_ref": "platform", "pricing": {"model": "flat", "amount": "1200"}},
        {
            "line_ref": "seats",
            "product_ref": "seats",
            "quantity": "10",
            "pricing": {"model": "per_unit", "unit_price": "45"},
            "discount": {"percent": "10"},
        },
    ]
    base = {"contract_ref": "C-1", "customer_ref": "globex", "entity_ref": "us", "currency": "USD"}
    return Contract.model_validate(
        {**base, "contract_start_date": "2026-01-01", "lines": lines, "reseller_ref": "channel-one", **terms}
    )


def test_the_reseller_pays_the_list_price_less_its_discount_on_its_terms() -> None:
    sold = resell(contract(auto_charge=True), reseller(product_discounts=[{"product_ref": "seats", "percent": "30"}]))
    assert sold.auto_charge is False  # the end customer's card is not the reseller's
    assert [line.discount.percent if line.discount else None for line in sold.lines] == [D(25), D(37)]  # 10% then 30%
    assert sold.payment_terms_days == 45
    assert sold.customer_ref == "globex" and sold.reseller_ref == "channel-one"  # the end customer stays


def test_what_a_reseller_cannot_take_names_the_field() -> None:
    with pytest.raises(ResellerError) as currency:
        resell(contract(currency="EUR"), reseller())
    assert currency.value.field == "currency"
    with pytest.raises(ResellerError) as kind:
        resell(contract(), reseller(kind="referral", discount_percent=None))
    assert kind.value.field == "reseller_ref"
    amount = contract(lines=[{"line_ref": "p", "product_ref": "platform", "discount": {"amount": "5"}}])
    with pytest.raises(ResellerError) as line:
        resell(amount, reseller())
    assert line.value.field == "lines[0].discount"


percents = st.integers(min_value=0, max_value=10_000).map(lambda n: D(n).scaleb(-2))


@given(percents, percents, st.integers(min_value=0, max_value=10**9).map(lambda n: D(n).scaleb(-2)))
def test_two_discounts_in_a_row_are_one_combined_discount(first: Decimal, second: Decimal, price: Decimal) -> None:
    combined = combined_percent(first, second)
    assert D(0) <= combined <= D(100)
    stepwise = price * (100 - first) / 100 * (100 - second) / 100
    assert price * (100 - combined) / 100 == stepwise


def test_a_price_book_price_comes_before_any_discount_and_a_distributor_prices_for_its_resellers() -> None:
    book = [{"product_ref": "platform", "pricing": {"model": "flat", "amount": "999"}}]
    sold = resell(contract(), reseller(price_book=book))
    platform, seats = sold.lines
    assert platform.pricing is not None and platform.pricing.model_dump()["amount"] == D(999)
    assert platform.discount is None  # no discount on top of its own price
    assert seats.discount is not None and seats.discount.percent == D("32.5")  # 10% then the general 25%
    distributor = reseller(partner_ref="distri", discount_percent="40", payment_terms_days=60)
    through = resell(contract(), reseller(distributor_ref="distri"), distributor)
    assert [line.discount.percent if line.discount else None for line in through.lines] == [D(40), D(46)]
    assert (through.payment_terms_days, through.reseller_ref, through.distributor_ref) == (60, "channel-one", "distri")


def test_a_distributor_that_is_missing_or_sells_through_another_is_refused() -> None:
    with pytest.raises(ResellerError, match="not found") as missing:
        resell(contract(), reseller(distributor_ref="distri"))
    assert missing.value.field == "reseller_ref"
    upper = reseller(partner_ref="distri", distributor_ref="top")
    with pytest.raises(ResellerError, match="two tiers at most"):
        resell(contract(), reseller(distributor_ref="distri"), upper)
    with pytest.raises(ValueError, match="price book"):
        reseller(
            kind="referral",
            discount_percent=None,
            price_book=[{"product_ref": "p", "pricing": {"model": "flat", "amount": "1"}}],
        )


def draft(ref: str, amounts: list[Decimal], *, day: int = 1, doc_type: str = "invoice") -> InvoiceDraft:
    lines = tuple(
        DraftLine(
            line_ref=f"l{i}",
            kind="recurring",
            product_ref="platform",
            description="Platform" if doc_type == "invoice" else f"{CREDIT_PREFIX}Platform",
            slot_start=date(2026, 1, day),
            slot_end=date(2026, 2, day),
            slot_days=31,
            span_start=date(2026, 1, day),
            span_end=date(2026, 2, day),
            quantity=D(1),
            amount=amount,
            discount=D(0),
            billed_amount=amount,
            terms_hash="h",
            sign=1,
            version_no=1,
        )
        for i, amount in enumerate(amounts)
    )
    total = sum(amounts, D(0))
    return InvoiceDraft(ref, doc_type, date(2026, 1, day), date(2026, 2, day), "USD", 1, lines, total, D(0), total)  # type: ignore[arg-type]


def sold(
    bill_to: str, contract_id: int, end_customer: str, d: InvoiceDraft, reseller_name: str | None = None
) -> SoldDraft:
    return SoldDraft(bill_to, contract_id, d.contract_ref, end_customer, reseller_name, d)


def test_drafts_of_one_party_and_cycle_become_one_document_in_sections() -> None:
    items = [
        sold("r1", 3, "Zeta", draft("C-3", [D("10.00")])),
        sold("r1", 1, "Acme", draft("C-1", [D("1.00"), D("2.00")])),
        sold("r1", 2, "Acme", draft("C-2", [D("4.00")], day=2)),  # another billing date: another document
        sold("r1", 4, "Acme", draft("C-4", [D("-3.00")], doc_type="credit_note")),
        sold("r2", 5, "Beta", draft("C-5", [D("5.00")]), reseller_name="Sub"),
        sold("r3", 6, "One", draft("C-6", [D("6.00")])),
        sold("r3", 7, "Two", draft("C-7", [D("7.00")])),
    ]
    docs = consolidate(items, lambda party: party == "r3")
    summary = [(d.contract_ref, d.doc_type, d.billing_date.day, d.invoice_total, d.line_contracts) for d in docs]
    assert summary == [
        ("C-4", "credit_note", 1, D("-3.00"), (4,)),
        ("C-1", "invoice", 1, D("13.00"), (1, 1, 3)),  # the lead is the first contract; Acme before Zeta
        ("C-2", "invoice", 2, D("4.00"), (2,)),
        ("C-5", "invoice", 1, D("5.00"), (5,)),
        ("C-6", "invoice", 1, D("6.00"), (6,)),  # r3 wants one document per end customer
        ("C-7", "invoice", 1, D("7.00"), (7,)),
    ]
    assert [line.description for line in docs[0].lines] == ["Credit: Acme: Platform"]
    assert [line.description for line in docs[1].lines] == ["Acme: Platform", "Acme: Platform", "Zeta: Platform"]
    assert docs[3].lines[0].description == "Beta via Sub: Platform"
    assert labelled("Credit: Acme: Platform", "Acme") == "Credit: Acme: Platform"  # a credit keeps one label


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["r1", "r2"]),
            st.sampled_from(["Acme", "Beta", "Gamma"]),
            st.lists(st.integers(min_value=1, max_value=10**8).map(lambda n: D(n).scaleb(-2)), min_size=1, max_size=3),
        ),
        max_size=12,
    ),
    st.booleans(),
)
def test_consolidation_keeps_every_line_and_every_cent(rows: list[tuple[str, str, list[Decimal]]], split: bool) -> None:
    items = [sold(party, i, name, draft(f"C-{i}", amounts)) for i, (party, name, amounts) in enumerate(rows)]
    docs = consolidate(items, lambda _party: split)
    assert sum(d.invoice_total for d in docs) == sum(sum(a) for _, _, a in rows)
    for d in docs:
        assert d.invoice_total == sum(line.billed_amount for line in d.lines)
        assert len(d.line_contracts) == len(d.lines)
    assert sorted(c for d in docs for c in d.line_contracts) == sorted(i for i, (_, _, a) in enumerate(rows) for _ in a)
    parties = {(party, name if split else "") for party, name, _ in rows}
    assert len(docs) == len(parties)
