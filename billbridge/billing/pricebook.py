"""Price book resolution: a contract line's pricing comes from the price book unless the line overrides it.

A contract version is stored with every line's pricing resolved, so a later price-book change never
reprices a signed contract silently.
"""

from __future__ import annotations

from collections.abc import Mapping

from billbridge.billing.model import Contract, ContractLine, Product, ProductPrice


class PriceBookError(ValueError):
    """A line names a product or price the price book does not have. ``field`` is the offending path;
    ``missing`` the (record type, ref) whose arrival would resolve it, where there is one."""

    def __init__(self, field: str, message: str, missing: tuple[str, str] | None = None) -> None:
        super().__init__(message)
        self.field, self.missing = field, missing


def resolve_prices(contract: Contract, products: Mapping[str, Product]) -> Contract:
    """Return the contract with every line's ``pricing`` and ``description`` filled from the price book,
    and its ``recognition`` and ``ssp`` where the line leaves them out and the product or price sets them
    (left unset otherwise: the charge's default recognition, the list price as SSP)."""
    lines: list[ContractLine] = []
    for index, line in enumerate(contract.lines):
        where = f"lines[{index}]"
        product = products.get(line.product_ref)
        if product is None:
            raise PriceBookError(
                f"{where}.product_ref", f"unknown product {line.product_ref!r}", ("products", line.product_ref)
            )
        pricing = line.pricing
        price = _book_price(product, line, contract.currency)
        if pricing is None:
            if price is None and line.price_ref is not None:
                raise PriceBookError(
                    f"{where}.price_ref", f"product {product.product_ref!r} has no price {line.price_ref!r}"
                )
            if price is None:
                raise PriceBookError(
                    f"{where}.pricing",
                    f"no pricing on the line and product {product.product_ref!r} has no {contract.currency} price",
                )
            if price.currency != contract.currency:
                raise PriceBookError(
                    f"{where}.price_ref",
                    f"price {price.price_ref!r} is in {price.currency}, the contract in {contract.currency}",
                )
            pricing = price.pricing
        update: dict[str, object] = {"pricing": pricing, "description": line.description or product.name}
        if line.ssp is None and price is not None and price.ssp is not None:
            update["ssp"] = price.ssp
        # A product's recognition applies to the lines it suits (usage only to usage charges).
        suits = product.recognition == "none" or (product.recognition == "usage") == (line.charge == "usage")
        if line.recognition is None and product.recognition is not None and suits:
            update["recognition"] = product.recognition
        lines.append(line.model_copy(update=update))
    return contract.model_copy(update={"lines": lines})


def _book_price(product: Product, line: ContractLine, currency: str) -> ProductPrice | None:
    """The price-book price a line is sold at (its ``price_ref``, else the product's price in the currency)."""
    if line.price_ref is not None:
        return next((p for p in product.prices if p.price_ref == line.price_ref), None)
    return next((p for p in product.prices if p.currency == currency), None)
