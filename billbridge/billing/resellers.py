"""Resellers: a contract sold through a reseller is invoiced to the reseller (the bill-to party) at its
price, the list price less its discount, on its payment terms; the end customer stays on the contract
(and so on every invoice line and usage event). Pure: it turns the contract as sold into the terms
billed, as the price book is resolved into each stored version, so a re-import changes nothing."""

from __future__ import annotations

from decimal import Context, Decimal, localcontext

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


def resell(contract: Contract, reseller: Partner) -> Contract:
    """The terms billed to ``reseller`` for ``contract``: each line discounted by the reseller's discount
    for its product (on top of the line's own percentage), the reseller's payment terms. The reseller
    must sell (kind reseller or both), in the contract's currency and legal entity."""
    if reseller.kind == "referral":
        raise ResellerError("reseller_ref", f"partner {reseller.partner_ref} is a referral partner, not a reseller")
    if contract.currency != reseller.currency:
        raise ResellerError(
            "currency",
            f"the contract is in {contract.currency}, its reseller {reseller.partner_ref} buys in {reseller.currency}",
        )
    if contract.entity_ref != reseller.entity_ref:
        raise ResellerError(
            "entity_ref", f"the contract is sold by {contract.entity_ref}, its reseller buys from {reseller.entity_ref}"
        )
    lines: list[ContractLine] = []
    for position, line in enumerate(contract.lines):
        percent = reseller.discount_for(line.product_ref)
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
    return contract.model_copy(update={"lines": lines, "payment_terms_days": reseller.payment_terms_days})
