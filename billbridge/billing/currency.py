"""Currency minor units, rounding and exact splitting of money amounts.

Every function here works on ``decimal.Decimal`` only: floats are rejected so
that binary rounding errors can never reach an invoice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Context, Decimal
from types import MappingProxyType

# Active ISO 4217 codes (SIX "list one" as published 2026-01-01). Codes whose
# minor unit is "N.A." (precious metals, bond units, XDR, XSU, XUA, XTS, XXX)
# are left out on purpose: nothing can be invoiced in them.
_ACTIVE_CODES = [
    "AED",
    "AFN",
    "ALL",
    "AMD",
    "AOA",
    "ARS",
    "AUD",
    "AWG",
    "AZN",
    "BAM",
    "BBD",
    "BDT",
    "BHD",
    "BIF",
    "BMD",
    "BND",
    "BOB",
    "BOV",
    "BRL",
    "BSD",
    "BTN",
    "BWP",
    "BYN",
    "BZD",
    "CAD",
    "CDF",
    "CHE",
    "CHF",
    "CHW",
    "CLF",
    "CLP",
    "CNY",
    "COP",
    "COU",
    "CRC",
    "CUP",
    "CVE",
    "CZK",
    "DJF",
    "DKK",
    "DOP",
    "DZD",
    "EGP",
    "ERN",
    "ETB",
    "EUR",
    "FJD",
    "FKP",
    "GBP",
    "GEL",
    "GHS",
    "GIP",
    "GMD",
    "GNF",
    "GTQ",
    "GYD",
    "HKD",
    "HNL",
    "HTG",
    "HUF",
    "IDR",
    "ILS",
    "INR",
    "IQD",
    "IRR",
    "ISK",
    "JMD",
    "JOD",
    "JPY",
    "KES",
    "KGS",
    "KHR",
    "KMF",
    "KPW",
    "KRW",
    "KWD",
    "KYD",
    "KZT",
    "LAK",
    "LBP",
    "LKR",
    "LRD",
    "LSL",
    "LYD",
    "MAD",
    "MDL",
    "MGA",
    "MKD",
    "MMK",
    "MNT",
    "MOP",
    "MRU",
    "MUR",
    "MVR",
    "MWK",
    "MXN",
    "MXV",
    "MYR",
    "MZN",
    "NAD",
    "NGN",
    "NIO",
    "NOK",
    "NPR",
    "NZD",
    "OMR",
    "PAB",
    "PEN",
    "PGK",
    "PHP",
    "PKR",
    "PLN",
    "PYG",
    "QAR",
    "RON",
    "RSD",
    "RUB",
    "RWF",
    "SAR",
    "SBD",
    "SCR",
    "SDG",
    "SEK",
    "SGD",
    "SHP",
    "SLE",
    "SOS",
    "SRD",
    "SSP",
    "STN",
    "SVC",
    "SYP",
    "SZL",
    "THB",
    "TJS",
    "TMT",
    "TND",
    "TOP",
    "TRY",
    "TTD",
    "TWD",
    "TZS",
    "UAH",
    "UGX",
    "USD",
    "USN",
    "UYI",
    "UYU",
    "UYW",
    "UZS",
    "VED",
    "VES",
    "VND",
    "VUV",
    "WST",
    "XAD",
    "XAF",
    "XCD",
    "XCG",
    "XOF",
    "XPF",
    "YER",
    "ZAR",
    "ZMW",
    "ZWG",
]

_DEFAULT_MINOR_UNIT = 2
_OTHER_MINOR_UNITS: dict[int, list[str]] = {
    0: [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "ISK",
        "JPY",
        "KMF",
        "KRW",
        "PYG",
        "RWF",
        "UGX",
        "UYI",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ],
    3: ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"],
    4: ["CLF", "UYW"],
}

MINOR_UNITS: Mapping[str, int] = MappingProxyType(
    {code: _DEFAULT_MINOR_UNIT for code in _ACTIVE_CODES}
    | {code: unit for unit, codes in _OTHER_MINOR_UNITS.items() for code in codes}
)
"""Read-only map from active ISO 4217 code (upper case) to its minor unit."""

# Fixed context so results never depend on whatever the global one is set to.
_CTX = Context(prec=34)


class UnknownCurrencyError(ValueError):
    """Raised for a code that is not an active ISO 4217 currency."""

    def __init__(self, code: object) -> None:
        self.code = code
        super().__init__(
            f"unknown currency code {code!r}: expected an active ISO 4217 code in upper case, such as 'USD'"
        )


def _decimal(value: object, name: str) -> Decimal:
    """Return ``value`` as a finite Decimal; reject floats (and bools) loudly."""
    if isinstance(value, (bool, float)):
        raise TypeError(f"{name} must be a Decimal or int, not {type(value).__name__}")
    if isinstance(value, int):
        return Decimal(value)
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, not {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def minor_unit(currency: str) -> int:
    """Number of decimal places of ``currency`` (2 for USD, 0 for JPY)."""
    try:
        return MINOR_UNITS[currency]
    except (KeyError, TypeError):
        raise UnknownCurrencyError(currency) from None


def quantum(currency: str) -> Decimal:
    """Smallest amount of ``currency``: Decimal('0.01') for USD, 1 for JPY (computed once per currency)."""
    step = _QUANTA.get(currency) if type(currency) is str else None
    return step if step is not None else Decimal(1).scaleb(-minor_unit(currency))


_QUANTA = {code: Decimal(1).scaleb(-places) for code, places in MINOR_UNITS.items()}


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Round to the minor unit, ties away from zero (ROUND_HALF_UP).

    A result of zero is returned without sign so "-0.00" never shows up.
    """
    if type(amount) is not Decimal or not amount.is_finite():  # the common case skips the checks
        amount = _decimal(amount, "amount")
    step = _QUANTA.get(currency) if type(currency) is str else None
    rounded = amount.quantize(step or quantum(currency), rounding=ROUND_HALF_UP, context=_CTX)
    return rounded.copy_abs() if rounded.is_zero() else rounded


def _to_minor(total: Decimal, currency: str) -> int:
    """``total`` as an integer count of minor units; it must be exact."""
    total = _decimal(total, "total")
    scaled = total.scaleb(minor_unit(currency), context=_CTX)
    if scaled != scaled.to_integral_value(context=_CTX):
        raise ValueError(
            f"total {total} is not a whole number of {currency} minor units ({quantum(currency)}); round it first"
        )
    return int(scaled)


def _from_minor(units: int, currency: str) -> Decimal:
    """Turn an integer count of minor units back into an amount."""
    return Decimal(units).scaleb(-minor_unit(currency), context=_CTX)


def split_evenly(total: Decimal, parts: int, currency: str) -> list[Decimal]:
    """Split ``total`` into ``parts`` installments that sum exactly to it.

    The first ``parts - 1`` installments are ``total / parts`` rounded toward
    zero to the minor unit; the last one takes the remainder.
    """
    if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
        raise ValueError(f"parts must be an integer >= 1, got {parts!r}")
    units = _to_minor(total, currency)
    share = abs(units) // parts * (1 if units >= 0 else -1)
    last = units - share * (parts - 1)
    return [_from_minor(share, currency)] * (parts - 1) + [_from_minor(last, currency)]


def allocate(total: Decimal, weights: Sequence[Decimal], currency: str) -> list[Decimal]:
    """Split ``total`` in proportion to ``weights`` (largest-remainder method).

    Each part is first rounded toward zero; the minor units left over go one
    each to the parts with the largest dropped fractions (earlier parts win
    ties), so the result sums exactly to ``total``. Zero weights get zero.
    Computed in integers: the weights scaled to a common exponent are exact.
    """
    units = _to_minor(total, currency)
    exact = [w if type(w) is Decimal and w.is_finite() else _decimal(w, "weight") for w in weights]
    if any(w < 0 for w in exact):
        raise ValueError("weights must not be negative")
    scale = max((-w.as_tuple().exponent for w in exact if w), default=0)  # type: ignore[operator]
    scaled = [int(w.scaleb(scale, context=_CTX)) for w in exact]
    weight_sum = sum(scaled)
    if weight_sum == 0:
        raise ValueError("weights must not be empty or all zero")
    whole = abs(units)
    floors, remainders = zip(*(divmod(whole * w, weight_sum) for w in scaled), strict=True)
    parts = list(floors)
    leftover = whole - sum(parts)
    by_remainder = sorted(range(len(parts)), key=lambda i: (-remainders[i], i))
    for i in by_remainder[:leftover]:
        parts[i] += 1
    sign = 1 if units >= 0 else -1
    return [_from_minor(sign * f, currency) for f in parts]


def money_str(amount: Decimal, currency: str) -> str:
    """``amount`` as text in ``currency``'s minor units ("240.00" USD, "1200" JPY): how money is shown
    to people and written to JSON, whatever precision it was stored or computed at."""
    return str(round_money(amount, currency))


def money_display(amount: Decimal, currency: str) -> str:
    """``amount`` for a person to read: minor units, thousands separated, the currency after it
    ("1,234.50 USD", "-3,000 JPY")."""
    return f"{round_money(amount, currency):,} {currency}"
