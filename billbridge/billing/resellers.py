"""Resellers: a contract sold through a reseller is invoiced to the reseller (the bill-to party) at its
price, on its payment terms; the end customer stays on the contract (and so on every invoice line and
usage event). Pure: ``resell`` turns the contract as sold into the terms billed, as the price book is
resolved into each stored version, so a re-import changes nothing; ``consolidate`` groups the planned
documents of one bill-to party and cycle into one document with a section per end customer.

The reseller's price of a line, in this order: the reseller's own ``price_book`` price of the product
(replacing the list price), else the list price less its discount for the product (``product_discounts``,
else ``discount_percent``), on top of the line's own percentage discount. A reseller that sells through a
distributor: the distributor is invoiced, at the distributor's price by the same rule, on its terms."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Context, Decimal, localcontext

from billbridge.billing.engine import CREDIT_PREFIX, DraftLine, InvoiceDraft
from billbridge.billing.model import Contract, ContractLine, Discount, Partner

_CTX = Context(prec=34)
HUNDRED = Decimal(100)


class ResellerError(ValueError):
    """A reseller contract that cannot be billed so; ``field`` names the contract field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def combined_percent(line_percent: Decimal, reseller_percent: Decimal) -> Decimal:
    """Two percentage discounts one after the other: 10% then 25% is 32.5% off."""
    with localcontext(_CTX):
        return HUNDRED - (HUNDRED - line_percent) * (HUNDRED - reseller_percent) / HUNDRED


def resell(contract: Contract, reseller: Partner, distributor: Partner | None = None) -> Contract:
    """The terms billed for ``contract`` sold through ``reseller``: to the reseller, or to ``distributor``
    when the reseller sells through one (then at the distributor's price and terms; the contract keeps
    its ``reseller_ref`` and gains ``distributor_ref``). The party billed must sell (kind reseller or
    both), in the contract's currency and legal entity."""
    if reseller.kind == "referral":
        raise ResellerError("reseller_ref", f"partner {reseller.partner_ref} is a referral partner, not a reseller")
    if reseller.distributor_ref is not None:
        if distributor is None or distributor.partner_ref != reseller.distributor_ref:
            raise ResellerError(
                "reseller_ref",
                f"reseller {reseller.partner_ref} sells through distributor {reseller.distributor_ref!r}, not found",
            )
        if distributor.kind == "referral":
            raise ResellerError(
                "reseller_ref", f"distributor {distributor.partner_ref} of {reseller.partner_ref} is a referral partner"
            )
        if distributor.distributor_ref is not None:
            raise ResellerError(
                "reseller_ref",
                f"distributor {distributor.partner_ref} itself sells through {distributor.distributor_ref}: "
                "two tiers at most",
            )
        billed = _priced(contract, distributor, "distributor")
        return billed.model_copy(update={"distributor_ref": distributor.partner_ref})
    return _priced(contract, reseller, "reseller")


def _priced(contract: Contract, seller: Partner, role: str) -> Contract:
    """Each line at ``seller``'s price (its price book, else the list price less its discount), on its terms."""
    if contract.currency != seller.currency:
        raise ResellerError(
            "currency",
            f"the contract is in {contract.currency}, its {role} {seller.partner_ref} buys in {seller.currency}",
        )
    if contract.entity_ref != seller.entity_ref:
        raise ResellerError(
            "entity_ref", f"the contract is sold by {contract.entity_ref}, its {role} buys from {seller.entity_ref}"
        )
    lines: list[ContractLine] = []
    for position, line in enumerate(contract.lines):
        own_price = seller.book_price(line.product_ref)
        if own_price is not None:
            if any(step.pricing is not None for step in line.ramps):
                raise ResellerError(
                    f"lines[{position}].ramps",
                    f"product {line.product_ref} has a {role} price book price; a ramp cannot change its pricing",
                )
            lines.append(line.model_copy(update={"pricing": own_price}))
            continue
        percent = seller.discount_for(line.product_ref)
        if percent == 0:
            lines.append(line)
            continue
        if line.discount is not None and line.discount.amount is not None:
            raise ResellerError(
                f"lines[{position}].discount",
                "a line sold through a reseller takes a percent discount (the reseller's is added to it), not an amount",
            )
        own = line.discount.percent if line.discount is not None and line.discount.percent is not None else Decimal(0)
        discount = Discount(percent=combined_percent(own, percent))
        lines.append(line.model_copy(update={"discount": discount}))
    # Never auto-charged: a card on file is the end customer's, and the reseller pays on its terms (this
    # also keeps a consolidated invoice, which takes its lead contract's flag, to one way of paying).
    return contract.model_copy(
        update={"lines": lines, "payment_terms_days": seller.payment_terms_days, "auto_charge": False}
    )


@dataclass(frozen=True, slots=True)
class SoldDraft:
    """A planned document of one contract sold through a partner: who it goes to and who it is for."""

    bill_to: str  # the partner invoiced (reseller or distributor)
    contract_id: int
    contract_ref: str
    end_customer: str  # the name each line shows
    reseller: str | None  # the reseller's name when a distributor is billed, shown beside the end customer
    draft: InvoiceDraft


@dataclass(frozen=True, slots=True)
class ConsolidatedDraft(InvoiceDraft):
    """One document for a bill-to party and cycle: ``contract_ref`` and ``version_no`` are its first
    contract's (the lead), ``line_contracts`` the contract each line bills."""

    line_contracts: tuple[int, ...] = ()


def section_label(sold: SoldDraft) -> str:
    """How a line names who it is for: the end customer, and its reseller when a distributor is billed."""
    return sold.end_customer if sold.reseller is None else f"{sold.end_customer} via {sold.reseller}"


def labelled(description: str, label: str) -> str:
    """A line's description naming its end customer once (a credit of a labelled line keeps one label)."""
    credit = description.startswith(CREDIT_PREFIX)
    bare = description.removeprefix(CREDIT_PREFIX)
    if not bare.startswith(f"{label}: "):
        bare = f"{label}: {bare}"
    return f"{CREDIT_PREFIX}{bare}" if credit else bare


def consolidate(sold: Iterable[SoldDraft], per_end_customer: Callable[[str], bool]) -> list[ConsolidatedDraft]:
    """Group planned documents into one per bill-to party, document type, billing date, currency and due
    date (and end customer, for a party that wants ``per_end_customer``): lines in sections per end
    customer (by name, then contract), each line's description naming it, totals the sums of the
    drafts' (each already the sum of its rounded lines)."""
    groups: dict[tuple[str, str, date, str, date, str], list[SoldDraft]] = defaultdict(list)
    for item in sold:
        d = item.draft
        split = section_label(item) if per_end_customer(item.bill_to) else ""
        groups[(item.bill_to, d.doc_type, d.billing_date, d.currency, d.due_date, split)].append(item)
    out: list[ConsolidatedDraft] = []
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda s: (section_label(s), s.contract_ref, s.contract_id))
        lead = min(members, key=lambda s: s.contract_id)
        lines: list[DraftLine] = []
        contracts: list[int] = []
        for member in members:
            label = section_label(member)
            for line in member.draft.lines:
                lines.append(_relabel(line, labelled(line.description, label)))
                contracts.append(member.contract_id)
        out.append(
            ConsolidatedDraft(
                contract_ref=lead.contract_ref,
                doc_type=lead.draft.doc_type,
                billing_date=lead.draft.billing_date,
                due_date=lead.draft.due_date,
                currency=lead.draft.currency,
                version_no=lead.draft.version_no,
                lines=tuple(lines),
                subtotal=sum((m.draft.subtotal for m in members), Decimal(0)),
                discount_total=sum((m.draft.discount_total for m in members), Decimal(0)),
                invoice_total=sum((m.draft.invoice_total for m in members), Decimal(0)),
                line_contracts=tuple(contracts),
            )
        )
    return out


def _relabel(line: DraftLine, description: str) -> DraftLine:
    """The line with another description (built directly: ``dataclasses.replace`` costs 3x as much)."""
    return DraftLine(
        line.line_ref,
        line.kind,
        line.product_ref,
        description,
        line.slot_start,
        line.slot_end,
        line.slot_days,
        line.span_start,
        line.span_end,
        line.quantity,
        line.amount,
        line.discount,
        line.billed_amount,
        line.terms_hash,
        line.sign,
        line.version_no,
    )
