"""Pricing models of the contract file format and what they charge.

Each model turns a billed quantity into a full-precision (unrounded) amount;
rounding to the currency happens later, once, on the invoice line.
Money and quantity fields are Decimals; floats are refused so that a YAML
``9.99`` or a Python ``0.1`` never turns into a binary approximation.
"""

from __future__ import annotations

from decimal import Context, Decimal, localcontext
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator

# Fixed context so results never depend on whatever the global one is set to.
_CTX = Context(prec=34)


def _no_float(kind: str) -> BeforeValidator:
    """Build a before-validator that refuses floats for ``kind`` fields."""

    def check(value: object) -> object:
        if isinstance(value, float):
            raise ValueError(f"use a string or integer for {kind}, not a float")
        return value

    return BeforeValidator(check)


# Bounds that keep every product of an amount and a quantity exact in the 34-digit context money is
# computed in (and storable in any database): below 10^15, at most 12 decimal places.
LIMIT = Decimal("1e15")
PLACES = 12

# A decimal string as the bounds allow it, for the JSON Schema (files and the API's OpenAPI document).
_DECIMAL_TEXT = {"type": "string", "pattern": rf"^\+?[0-9]{{1,15}}(\.[0-9]{{1,{PLACES}}})?$"}


def _decimal_schema(minimum: dict[str, Any]) -> WithJsonSchema:
    return WithJsonSchema({"anyOf": [{"type": "number", **minimum, "exclusiveMaximum": 1e15}, _DECIMAL_TEXT]})


# The constraints come before the float check: so placed, pydantic-core checks them itself on the
# decimal it parsed (after the check), instead of in a Python function per value (a third of the
# time of reading a stored contract, which a billing run does for every contract).
Money = Annotated[
    Decimal, Field(ge=0, lt=LIMIT, decimal_places=PLACES), _no_float("money"), _decimal_schema({"minimum": 0})
]
"""A non-negative amount of money given as a string, int or Decimal."""

Quantity = Annotated[
    Decimal, Field(ge=0, lt=LIMIT, decimal_places=PLACES), _no_float("quantities"), _decimal_schema({"minimum": 0})
]
"""A non-negative quantity given as a string, int or Decimal."""

PositiveQuantity = Annotated[
    Decimal,
    Field(gt=0, lt=LIMIT, decimal_places=PLACES),
    _no_float("quantities"),
    _decimal_schema({"exclusiveMinimum": 0}),
]
"""A strictly positive quantity given as a string, int or Decimal."""

Percent = Annotated[Decimal, Field(ge=0), _no_float("percentages")]
"""A non-negative percentage given as a string, int or Decimal."""


def _check_quantity(quantity: Decimal) -> Decimal:
    """Validate the quantity passed to ``amount_for``."""
    if type(quantity) is Decimal and quantity.is_finite() and quantity >= 0:  # the common case
        return quantity
    if isinstance(quantity, (bool, float)):
        raise TypeError(f"quantity must be a Decimal or int, not {type(quantity).__name__}")
    if isinstance(quantity, int):
        quantity = Decimal(quantity)
    if not isinstance(quantity, Decimal):
        raise TypeError(f"quantity must be a Decimal, not {type(quantity).__name__}")
    if not quantity.is_finite() or quantity < 0:
        raise ValueError(f"quantity must be a finite number >= 0, got {quantity}")
    return quantity


def _model_is_required(schema: dict[str, Any]) -> None:
    """In a file or an API body the pricing model names itself (it is the union's tag), whatever the
    class's default: say so in the JSON Schema."""
    if "model" in schema.get("properties", {}):
        schema["required"] = ["model", *[f for f in schema.get("required", []) if f != "model"]]


class _Model(BaseModel):
    """Common configuration: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_model_is_required)


class FlatPrice(_Model):
    """A fixed amount per billing period, whatever the quantity."""

    model: Literal["flat"] = "flat"
    amount: Money

    def amount_for(self, quantity: Decimal) -> Decimal:
        """Return ``amount``; the quantity is only validated."""
        _check_quantity(quantity)
        return self.amount


class PerUnitPrice(_Model):
    """``unit_price`` for every unit (e.g. per seat)."""

    model: Literal["per_unit"] = "per_unit"
    unit_price: Money

    def amount_for(self, quantity: Decimal) -> Decimal:
        """Return ``unit_price * quantity``."""
        quantity = _check_quantity(quantity)
        with localcontext(_CTX):
            return self.unit_price * quantity


class Tier(_Model):
    """One price tier: units up to and including ``up_to`` (None = no limit)."""

    up_to: PositiveQuantity | None
    unit_price: Money = Decimal(0)
    flat_fee: Money = Decimal(0)


class _Tiered(_Model):
    """Shared validation of an ascending list of tiers ending with no limit."""

    @field_validator("tiers", check_fields=False)
    @classmethod
    def _check_tiers(cls, tiers: list[Tier]) -> list[Tier]:
        """Tiers must be non-empty, strictly ascending, last one unbounded."""
        if not tiers:
            raise ValueError("at least one tier is required")
        if tiers[-1].up_to is not None:
            raise ValueError("the last tier must have up_to: null (no upper limit)")
        bounds = [t.up_to for t in tiers[:-1] if t.up_to is not None]
        if len(bounds) != len(tiers) - 1:
            raise ValueError("only the last tier may have up_to: null")
        for lower, upper in pairwise(bounds):
            if upper <= lower:
                raise ValueError(f"tier up_to values must be strictly ascending, got {upper} after {lower}")
        return tiers


class GraduatedPrice(_Tiered):
    """Each unit priced by the tier it falls in, plus the flat fee of every
    tier that holds at least part of a unit."""

    model: Literal["graduated"] = "graduated"
    tiers: list[Tier]

    def amount_for(self, quantity: Decimal) -> Decimal:
        """Sum over tiers of units-in-tier * unit_price + flat_fee."""
        quantity = _check_quantity(quantity)
        total = Decimal(0)
        lower = Decimal(0)
        with localcontext(_CTX):
            for tier in self.tiers:
                if quantity <= lower:
                    break
                upper = quantity if tier.up_to is None else min(quantity, tier.up_to)
                total += (upper - lower) * tier.unit_price + tier.flat_fee
                if tier.up_to is None:
                    break
                lower = tier.up_to
        return total


class VolumePrice(_Tiered):
    """All units priced at the tier the total quantity falls in."""

    model: Literal["volume"] = "volume"
    tiers: list[Tier]

    def amount_for(self, quantity: Decimal) -> Decimal:
        """quantity * unit_price + flat_fee of the matching tier; 0 for 0."""
        quantity = _check_quantity(quantity)
        if quantity == 0:
            return Decimal(0)
        tier = next(t for t in self.tiers if t.up_to is None or quantity <= t.up_to)
        with localcontext(_CTX):
            return quantity * tier.unit_price + tier.flat_fee


class PackagePrice(_Model):
    """Whole packages of ``package_size`` units after ``free_units``."""

    model: Literal["package"] = "package"
    package_size: PositiveQuantity
    package_price: Money
    free_units: Quantity = Decimal(0)

    def amount_for(self, quantity: Decimal) -> Decimal:
        """ceil(max(0, quantity - free_units) / package_size) * package_price."""
        quantity = _check_quantity(quantity)
        with localcontext(_CTX):
            billable = max(Decimal(0), quantity - self.free_units)
            packages, rest = divmod(billable, self.package_size)
            if rest:
                packages += 1
            return packages * self.package_price


Pricing = Annotated[
    FlatPrice | PerUnitPrice | GraduatedPrice | VolumePrice | PackagePrice,
    Field(discriminator="model"),
]
"""Any pricing model, told apart by its ``model`` field."""
