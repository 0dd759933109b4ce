#!/usr/bin/env python
"""Benchmark of invoice generation: ``run_billing`` over N contracts of mixed pricing, against a floor.

    python bench/bench_billing.py                         # 100,000 contracts, SQLite and PostgreSQL
    python bench/bench_billing.py --contracts 10000 --backend sqlite --profile

Setup (not timed): N contracts of mixed pricing are generated deterministically and imported with
``import_document``. Timed: one ``run_billing(store, as_of)`` over all of them. Floor (timed in the
same run, same backend): the invoice and invoice line rows that run created, read back as plain
dicts, bulk-inserted with SQLAlchemy core into a freshly migrated empty database (one transaction).
Ratio = billing seconds / floor seconds; the target is a ratio of at most 3.

By default every contract is generated so that exactly one invoice is due on ``--as-of``, so
"invoices per second" is also "contracts per second"; the invoices are then checked against an
independent calculation of their totals (see ``expected_invoice``).

PostgreSQL needs an admin URL in ``--postgres-url`` or BILLBRIDGE_TEST_POSTGRES_URL (e.g. from
``source scripts/throwaway-postgres.sh``); each run creates two databases and drops them afterwards.
"""

from __future__ import annotations

import argparse
import calendar
import cProfile
import io
import json
import math
import os
import pstats
import random
import resource
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from common import (
    Backend,
    PostgresBackend,
    Runs,
    SQLiteBackend,
    add_runs_argument,
    code_version,
    log,
    repeat,
    stamp,
    timer,
)
from sqlalchemy import Table, func, insert, select
from sqlalchemy.engine import Engine

from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import CHUNK, run_billing
from billbridge.settings import Settings
from billbridge.store.db import open_store
from billbridge.store.models import Contract as ContractRow
from billbridge.store.models import Customer as CustomerRow
from billbridge.store.models import Invoice, InvoiceLine
from billbridge.store.models import LegalEntity as LegalEntityRow

DEFAULT_AS_OF = date(2026, 7, 1)
TARGET_RATIO = 2.5  # x the floor (issue 20; was 3x)
INVOICES: Table = Invoice.__table__  # type: ignore[assignment]
LINES: Table = InvoiceLine.__table__  # type: ignore[assignment]
PARENTS: list[Table] = [LegalEntityRow.__table__, CustomerRow.__table__, ContractRow.__table__]  # type: ignore[list-item]


# ---------------------------------------------------------------------------------------------
# Reference data: entities, price book
# ---------------------------------------------------------------------------------------------

MINOR = {"USD": 2, "EUR": 2, "JPY": 0, "KWD": 3}
SCALE = {"USD": Decimal("1"), "EUR": Decimal("0.9"), "JPY": Decimal("150"), "KWD": Decimal("0.307")}
ENTITIES = [
    # entity_ref, name, currency, invoice prefix, weight
    ("bench-us-inc", "Bench Software Inc.", "USD", "US-INV-", 35),
    ("bench-us-svc", "Bench Services LLC", "USD", "USS-INV-", 15),
    ("bench-eu-bv", "Bench Software B.V.", "EUR", "EU-INV-", 25),
    ("bench-jp-kk", "Bench Software K.K.", "JPY", "JP-INV-", 15),
    ("bench-kw-wll", "Bench Software W.L.L.", "KWD", "KW-INV-", 10),
]


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-MINOR[currency])


def money(value: Decimal | str | int, currency: str) -> str:
    """A price book amount in ``currency``, at its minor unit."""
    return str(Decimal(value).quantize(quantum(currency), rounding=ROUND_HALF_UP))


def fx(value: str, currency: str, *, exact: bool = False) -> str:
    """A USD list price converted to ``currency`` (unit prices of usage keep their precision)."""
    converted = Decimal(value) * SCALE[currency]
    return str(converted.normalize()) if exact else money(converted, currency)


def price_book() -> list[dict[str, Any]]:
    """Products with one or more prices per currency. The first price of a currency is the default."""
    products: dict[str, tuple[str, list[dict[str, Any]]]] = {
        "platform": ("Platform subscription", []),
        "seats": ("User seats", []),
        "api-calls": ("API calls (usage)", []),
        "storage": ("Storage GB-months (usage)", []),
        "onboarding": ("Onboarding and training", []),
        "hardware": ("Edge appliance", []),
        "support": ("Premium support", []),
    }
    for cur in MINOR:
        c = cur.lower()
        products["platform"][1].append(
            {"price_ref": f"platform-{c}", "currency": cur, "pricing": {"model": "flat", "amount": fx("1200", cur)}}
        )
        seats = products["seats"][1]
        seats.append(
            {"price_ref": f"seats-{c}", "currency": cur, "pricing": {"model": "per_unit", "unit_price": fx("45", cur)}}
        )
        seats.append(
            {
                "price_ref": f"seats-{c}-graduated",
                "currency": cur,
                "pricing": {
                    "model": "graduated",
                    "tiers": [
                        {"up_to": "10", "unit_price": fx("50", cur), "flat_fee": fx("100", cur)},
                        {"up_to": "50", "unit_price": fx("40", cur)},
                        {"up_to": None, "unit_price": fx("30", cur)},
                    ],
                },
            }
        )
        seats.append(
            {
                "price_ref": f"seats-{c}-volume",
                "currency": cur,
                "pricing": {
                    "model": "volume",
                    "tiers": [
                        {"up_to": "25", "unit_price": fx("20", cur)},
                        {"up_to": "100", "unit_price": fx("15", cur), "flat_fee": fx("50", cur)},
                        {"up_to": None, "unit_price": fx("12", cur)},
                    ],
                },
            }
        )
        api = products["api-calls"][1]
        api.append(
            {
                "price_ref": f"api-{c}-package",
                "currency": cur,
                "pricing": {
                    "model": "package",
                    "package_size": "1000",
                    "package_price": fx("2.50", cur, exact=True),
                    "free_units": "10000",
                },
            }
        )
        api.append(
            {
                "price_ref": f"api-{c}-graduated",
                "currency": cur,
                "pricing": {
                    "model": "graduated",
                    "tiers": [
                        {"up_to": "100000", "unit_price": fx("0.002", cur, exact=True)},
                        {"up_to": None, "unit_price": fx("0.001", cur, exact=True)},
                    ],
                },
            }
        )
        products["storage"][1].append(
            {
                "price_ref": f"storage-{c}-volume",
                "currency": cur,
                "pricing": {
                    "model": "volume",
                    "tiers": [
                        {"up_to": "1000", "unit_price": fx("0.10", cur, exact=True)},
                        {"up_to": None, "unit_price": fx("0.08", cur, exact=True), "flat_fee": fx("10", cur)},
                    ],
                },
            }
        )
        products["onboarding"][1].append(
            {"price_ref": f"onboarding-{c}", "currency": cur, "pricing": {"model": "flat", "amount": fx("5000", cur)}}
        )
        products["hardware"][1].append(
            {
                "price_ref": f"hardware-{c}",
                "currency": cur,
                "pricing": {"model": "per_unit", "unit_price": fx("1250.75", cur)},
            }
        )
        products["support"][1].append(
            {"price_ref": f"support-{c}", "currency": cur, "pricing": {"model": "flat", "amount": fx("300", cur)}}
        )
    return [{"product_ref": ref, "name": name, "prices": prices} for ref, (name, prices) in products.items()]


# ---------------------------------------------------------------------------------------------
# Contract generation
# ---------------------------------------------------------------------------------------------


def add_cycles(anchor: date, n: int, length: int, unit: str) -> date:
    """Start of cycle ``n`` from ``anchor`` (month ends clamp), written here independently of billbridge."""
    if unit == "day":
        return anchor + timedelta(days=n * length)
    if unit == "week":
        return anchor + timedelta(days=7 * n * length)
    months = n * length * (12 if unit == "year" else 1)
    year, month0 = divmod(anchor.year * 12 + anchor.month - 1 + months, 12)
    return date(year, month0 + 1, min(anchor.day, calendar.monthrange(year, month0 + 1)[1]))


CYCLES = {
    "weekly": (1, "week"),
    "biweekly": (2, "week"),
    "monthly": (1, "month"),
    "quarterly": (3, "month"),
    "yearly": (1, "year"),
}


class Generator:
    """Deterministic contracts of mixed pricing; each has exactly one invoice due on ``as_of``.

    In-advance contracts start on ``as_of`` (optionally with a later cycle anchor, i.e. a partial
    first period); in-arrears contracts have their first period end on ``as_of`` (full or partial).
    One-time fees of in-arrears contracts get ``billing_date: as_of``; installments are only used in
    advance (the first one is due on the start date).
    """

    ARCHETYPES = [
        # name, weight
        ("saas_monthly_advance", 20),
        ("seats_graduated_arrears", 12),
        ("volume_usage_quarterly_minimum", 10),
        ("yearly_ramp_advance", 8),
        ("installments_advance", 10),
        ("one_time_onboarding", 10),
        ("weekly_flat", 8),
        ("package_usage_arrears", 8),
        ("partial_period_advance", 8),
        ("yearly_arrears_minimum", 6),
    ]

    def __init__(self, n_contracts: int, as_of: date, seed: int, resellers: int = 0, resold_share: float = 0.5) -> None:
        self.n = n_contracts
        self.d = as_of
        self.rng = random.Random(seed)
        n_customers = max(len(ENTITIES), n_contracts // 3)
        self.entities = [
            {"entity_ref": ref, "name": name, "currency": cur, "invoice_prefix": prefix}
            for ref, name, cur, prefix, _ in ENTITIES
        ]
        weights = [w for *_, w in ENTITIES]
        self.customers: list[dict[str, Any]] = []
        self.customers_by_entity: dict[str, list[str]] = defaultdict(list)
        for j in range(n_customers):
            entity = ENTITIES[j % len(ENTITIES)] if j < len(ENTITIES) else self.rng.choices(ENTITIES, weights)[0]
            ref = f"bench-cust-{j:06d}"
            self.customers.append({"customer_ref": ref, "name": f"Customer {j}", "entity_ref": entity[0]})
            self.customers_by_entity[entity[0]].append(ref)
        self.products = price_book()
        self.prices = {p["price_ref"]: p["pricing"] for prod in self.products for p in prod["prices"]}
        self.default_price: dict[tuple[str, str], dict[str, Any]] = {}
        for prod in self.products:
            for p in prod["prices"]:
                self.default_price.setdefault((prod["product_ref"], p["currency"]), p["pricing"])
        self.kinds: Counter[str] = Counter()
        # Resellers (--resellers): spread over the entities, in each entity's currency, at 0% discount so
        # that every contract's expected total holds; drawn from their own random stream, so the
        # contracts are the same as without them.
        self.resold_share = resold_share
        self.reseller_rng = random.Random(seed + 1)
        self.partners: list[dict[str, Any]] = []
        self.resellers_by_entity: dict[str, list[str]] = defaultdict(list)
        for k in range(resellers):
            ref_, _, cur, _, _ = ENTITIES[k % len(ENTITIES)]
            partner = {"partner_ref": f"bench-reseller-{k:04d}", "name": f"Reseller {k}", "kind": "reseller"}
            self.partners.append({**partner, "entity_ref": ref_, "currency": cur, "payment_terms_days": 30})
            self.resellers_by_entity[ref_].append(partner["partner_ref"])

    def reference_document(self) -> dict[str, Any]:
        doc = {"entities": self.entities, "customers": self.customers, "products": self.products}
        return {**doc, "partners": self.partners} if self.partners else doc

    def contracts(self) -> Iterator[dict[str, Any]]:
        names = [name for name, _ in self.ARCHETYPES]
        weights = [w for _, w in self.ARCHETYPES]
        entity_weights = [w for *_, w in ENTITIES]
        for i in range(self.n):
            rng = self.rng
            entity_ref, _, currency, _, _ = rng.choices(ENTITIES, entity_weights)[0]
            kind = rng.choices(names, weights)[0]
            self.kinds[kind] += 1
            contract: dict[str, Any] = {
                "contract_ref": f"BENCH-{i:07d}",
                "customer_ref": rng.choice(self.customers_by_entity[entity_ref]),
                "entity_ref": entity_ref,
                "currency": currency,
                "payment_terms_days": rng.choice([0, 15, 30, 30, 30, 45, 60]),
                "auto_charge": rng.random() < 0.3,
            }
            getattr(self, kind)(contract, rng, currency)
            resellers = self.resellers_by_entity.get(entity_ref)
            if resellers and self.reseller_rng.random() < self.resold_share:
                contract["reseller_ref"] = self.reseller_rng.choice(resellers)
            yield contract

    # -- helpers ---------------------------------------------------------------------------------

    def _advance(self, c: dict[str, Any], cycle: str, *, partial: bool = False) -> None:
        length, unit = CYCLES[cycle]
        c.update(
            contract_start_date=self.d.isoformat(), cycle_length=length, cycle_unit=unit, billing_timing="in_advance"
        )
        if partial:
            span = (add_cycles(self.d, 1, length, unit) - self.d).days
            c["cycle_start_date"] = (self.d + timedelta(days=self.rng.randint(1, span - 1))).isoformat()

    def _arrears(self, c: dict[str, Any], cycle: str, *, partial: bool = False) -> None:
        length, unit = CYCLES[cycle]
        full_start = add_cycles(self.d, -1, length, unit)
        start = full_start
        if partial:
            start = full_start + timedelta(days=self.rng.randint(1, (self.d - full_start).days - 1))
        c.update(
            contract_start_date=start.isoformat(), cycle_length=length, cycle_unit=unit, billing_timing="in_arrears"
        )
        if partial or add_cycles(start, 1, length, unit) != self.d or self.rng.random() < 0.5:
            c["cycle_start_date"] = self.d.isoformat()  # anchor the cycles on as_of: the first one ends there

    def _maybe_end(self, c: dict[str, Any], p: float) -> None:
        if self.rng.random() < p:
            c["contract_end_date"] = add_cycles(self.d, self.rng.choice([1, 2, 3]), 1, "year").isoformat()

    def _contract_discount(self, c: dict[str, Any], cur: str, p: float, *, amount_share: float = 0.5) -> None:
        if self.rng.random() < p:
            if self.rng.random() < amount_share:
                c["discount"] = {"amount": fx(str(self.rng.choice([25, 50, 100, 150])), cur)}
            else:
                c["discount"] = {"percent": str(self.rng.choice([5, 10, 12.5, 15, 20]))}

    def _line_discount(self, line: dict[str, Any], cur: str, p: float, *, amount: str | None = None) -> None:
        if self.rng.random() < p:
            if amount is not None and self.rng.random() < 0.5:
                line["discount"] = {"amount": fx(amount, cur)}
            else:
                line["discount"] = {"percent": str(self.rng.choice([5, 10, 15, 20, 25]))}

    def _qty(self, lo: int, hi: int) -> str:
        return str(self.rng.randint(lo, hi))

    # -- archetypes ------------------------------------------------------------------------------

    def saas_monthly_advance(self, c: dict[str, Any], rng: random.Random, cur: str) -> None:
        self._advance(c, "monthly")
        self._maybe_end(c, 0.3)
        seats: dict[str, Any] = {"line_ref": "seats", "product_ref": "seats", "quantity": self._qty(1, 200)}
        if rng.random() < 0.3:
            seats["pricing"] = {"model": "per_unit", "unit_price": fx(str(rng.choice([29, 35, 39, 49])), cur)}
        c["lines"] = [{"line_ref": "platform", "product_ref": "platform"}, seats]
        self._contract_discount(c, cur, 0.2)

    def seats_graduated_arrears(self, c: dict[str, Any], rng: random.Random, cur: str) -> None:
        self._arrears(c, "monthly", partial=rng.random() < 0.3)
        line = {
            "line_ref": "seats",
            "product_ref": "seats",
            "price_ref": f"seats-{cur.lower()}-graduated",
            "quantity": self._qty(1, 150),
        }
        self._line_discount(line, cur, 0.5, amount="100")
        c["lines"] = [line]

    def volume_usage_quarterly_minimum(self, c: dict[str, Any], rng: random.Random, cur: str) -> None:
        self._arrears(c, "quarterly", partial=rng.random() < 0.25)
        usage_price = rng.choice([f"api-{cur.lower()}-package", f"api-{cur.lower()}-graduated", None])
        usage: dict[str, Any] = {"line_ref": "api", "product_ref": "api-calls", "charge": "usage"}
        if usage_price:
            usage["price_ref"] = usage_price
        c["lines"] = [
            {
                "line_ref": "seats",
                "product_ref": "seats",
                "price_ref": f"seats-{cur.lower()}-volume",
                "quantity": self._qty(5, 200),
            },
            usage,
        ]
        c["minimum_commitment"] = fx(str(rng.choice([500, 1000, 2000, 3000, 5000])), cur)
        self._contract_discount(c, cur, 0.5, amount_share=0.7)

    def yearly_ramp_advance(self, c: dict[str, Any], rng: random.Random, cur: str) -> None:
        self._advance(c, "yearly")
        self._maybe_end(c, 0.5)
        if rng.random() < 0.5:
            base = Decimal(rng.choice([10000, 12000, 15000, 20000]))
            line: dict[str, Any] = {
                "line_ref": "platform",
                "product_ref": "platform",
                "pricing": {"model": "flat", "amount": fx(str(base), cur)},
            }
            steps = []
            if rng.random() < 0.4:  # a step inside the first (billed) year: two lines on the invoice
                steps.append(
                    {
                        "start_date": add_cycles(self.d, rng.choice([3, 6, 9]), 1, "month").isoformat(),
                        "pricing": {"model": "flat", "amount": fx(str(base * Decimal("1.1")), cur)},
                    }
                )
            for year, factor in ((1, "1.25"), (2, "1.5")):
                steps.append(
                    {
                        "start_date": add_cycles(self.d, year, 1, "year").isoformat(),
                        "pricing": {"model": "flat", "amount": fx(str(base * Decimal(factor)), cur)},
                    }
                )
            line["ramps"] = steps
        else:
            qty = rng.randint(10, 100)
            line = {"line_ref": "seats", "product_ref": "seats", "quantity": str(qty)}
            steps = []
            if rng.random() < 0.4:
                steps.append({"start_date": add_cycles(self.d, 6, 1, "month").isoformat(), "quantity": str(qty + 10)})
            steps.append(
                {
                    "start_date": add_cycles(self.d, 1, 1, "year").isoformat(),
                    "quantity": str(qty + 25),
                    "pricing": {"model": "per_unit", "unit_price": fx("42", cur)},
                }
            )
            line["ramps"] = steps
        c["lines"] = [line]

    def installments_advance(self, c: dict[str, Any], rng: random.Random, cur: str) -> None:
        self._advance(c, rng.choice(["monthly", "monthly", "quarterly"]))
        if rng.random() < 0.5:
            extra: dict[str, Any] = {
                "line_ref": "onboarding",
                "product_ref": "onboarding",
                "charge": "installments",
                "installments": rng.choice([2, 3, 4, 6, 12]),
            }
        else:
            extra = {
                "line_ref": "appliance",
                "product_ref": "hardware",
                "charge": "installments",
                "installments": rng.choice([3, 6, 7, 12, 24]),
                "quantity": self._qty(1, 5),
            }
        self._line_discount(extra, cur, 0.2)
        c["lines"] = [{"line_ref": "platform", "product_ref": "platform"}, extra]

    def one_time_onboarding(self, c: dict[str, Any], rng: random.Random, cur: str) -> None:
        self._advance(c, rng.choice(["monthly", "quarterly"]))
        self._maybe_end(c, 0.3)
        onboarding: dict[str, Any] = {"line_ref": "onboarding", "product_ref": "onboarding", "charge": "one_time"}
        if rng.random() < 0.3:
            onboarding["billing_date"] = self.d.isoformat()
        self._line_discount(onboarding, cur, 0.3, amount="500")
        c["lines"] = [{"line_ref": "platform", "product_ref": "platform"}, onboarding]
        self._contract_discount(c, cur, 0.15, amount_share=0.0)

    def weekly_flat(self, c: dict[str, Any], rng: random.Random, cur: str) -> None:
        cycle = rng.choice(["weekly", "biweekly"])
        self._advance(c, cycle, partial=rng.random() < 0.3)
        if "cycle_start_date" not in c and rng.random() < 0.3:  # service ends inside the first cycle
            length, unit = CYCLES[cycle]
            span = (add_cycles(self.d, 1, length, unit) - self.d).days
            c["contract_end_date"] = (self.d + timedelta(days=rng.randint(1, span - 2))).isoformat()
        amount = fx(str(rng.choice([49, 99, 168.5, 250])), cur)
        c["lines"] = [
            {"line_ref": "platform", "product_ref": "platform", "pricing": {"model": "flat", "amount": amount}}
        ]

    def package_usage_arrears(self, c: dict[str, Any], rng: random.Random, cur: str) -> None:
        self._arrears(c, rng.choice(["monthly", "monthly", "weekly"]))
        lines: list[dict[str, Any]] = [
            {"line_ref": "support", "product_ref": "support"},
            {
                "line_ref": "api",
                "product_ref": "api-calls",
                "charge": "usage",
                "price_ref": f"api-{cur.lower()}-package",
            },
        ]
        if rng.random() < 0.4:
            lines.append(
                {"line_ref": "storage", "product_ref": "storage", "charge": "usage", "usage_aggregation": "max"}
            )
        if rng.random() < 0.3:
            lines.append(
                {
                    "line_ref": "setup",
                    "product_ref": "onboarding",
                    "charge": "one_time",
                    "billing_date": self.d.isoformat(),
                    "pricing": {"model": "flat", "amount": fx("750", cur)},
                }
            )
        c["lines"] = lines

    def partial_period_advance(self, c: dict[str, Any], rng: random.Random, cur: str) -> None:
        self._advance(c, rng.choice(["monthly", "quarterly"]), partial=True)
        seats: dict[str, Any] = {"line_ref": "seats", "product_ref": "seats", "quantity": self._qty(1, 80)}
        self._line_discount(seats, cur, 0.3, amount="50")
        c["lines"] = [seats, {"line_ref": "support", "product_ref": "support"}]
        self._contract_discount(c, cur, 0.4, amount_share=0.6)

    def yearly_arrears_minimum(self, c: dict[str, Any], rng: random.Random, cur: str) -> None:
        self._arrears(c, "yearly", partial=rng.random() < 0.3)
        amount = Decimal(rng.choice([6000, 9000, 12000]))
        c["lines"] = [
            {
                "line_ref": "platform",
                "product_ref": "platform",
                "pricing": {"model": "flat", "amount": fx(str(amount), cur)},
            }
        ]
        if rng.random() < 0.5:
            c["lines"].append(
                {
                    "line_ref": "api",
                    "product_ref": "api-calls",
                    "charge": "usage",
                    "price_ref": f"api-{cur.lower()}-graduated",
                }
            )
        c["minimum_commitment"] = fx(str(amount * Decimal(rng.choice(["0.8", "1.25", "1.5"]))), cur)

    # -- the independent expectation ---------------------------------------------------------------

    def pricing_of(self, contract: dict[str, Any], line: dict[str, Any]) -> dict[str, Any]:
        if "pricing" in line:
            return line["pricing"]
        if "price_ref" in line:
            return self.prices[line["price_ref"]]
        return self.default_price[(line["product_ref"], contract["currency"])]


def price_amount(pricing: dict[str, Any], qty: Decimal) -> Decimal:
    """What a pricing charges for ``qty``, unrounded (the documented semantics of each model)."""
    model = pricing["model"]
    if model == "flat":
        return Decimal(pricing["amount"])
    if model == "per_unit":
        return Decimal(pricing["unit_price"]) * qty
    tiers = [
        (
            None if t["up_to"] is None else Decimal(t["up_to"]),
            Decimal(t.get("unit_price", "0")),
            Decimal(t.get("flat_fee", "0")),
        )
        for t in pricing.get("tiers", [])
    ]
    if model == "graduated":
        total, lower = Decimal(0), Decimal(0)
        for up_to, unit, flat in tiers:
            if qty <= lower:
                break
            upper = qty if up_to is None else min(qty, up_to)
            total += (upper - lower) * unit + flat
            if up_to is None:
                break
            lower = up_to
        return total
    if model == "volume":
        if qty == 0:
            return Decimal(0)
        up_to, unit, flat = next(t for t in tiers if t[0] is None or qty <= t[0])
        return qty * unit + flat
    if model == "package":
        billable = max(Decimal(0), qty - Decimal(pricing.get("free_units", "0")))
        return Decimal(math.ceil(billable / Decimal(pricing["package_size"]))) * Decimal(pricing["package_price"])
    raise ValueError(model)


def round_money(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(quantum(currency), rounding=ROUND_HALF_UP) + 0


def line_discount(discount: dict[str, Any] | None, gross: Decimal) -> Decimal:
    if not discount or gross <= 0:
        return Decimal(0)
    if "percent" in discount:
        return gross * Decimal(discount["percent"]) / 100
    return min(Decimal(discount["amount"]), gross)


def first_period(c: dict[str, Any]) -> tuple[date, date, date, date]:
    """(start, end exclusive, full cycle start, full cycle end) of the contract's first period."""
    start = date.fromisoformat(c["contract_start_date"])
    anchor = date.fromisoformat(c.get("cycle_start_date") or c["contract_start_date"])
    length, unit = c["cycle_length"], c["cycle_unit"]
    k = 0
    while add_cycles(anchor, k, length, unit) > start:
        k -= 1
    while add_cycles(anchor, k + 1, length, unit) <= start:
        k += 1
    full_start, full_end = add_cycles(anchor, k, length, unit), add_cycles(anchor, k + 1, length, unit)
    end = full_end
    if c.get("contract_end_date"):
        end = min(end, date.fromisoformat(c["contract_end_date"]) + timedelta(days=1))
    return start, end, full_start, full_end


@dataclass
class Expected:
    total: Decimal
    lines: int
    notes: list[str] = field(default_factory=list)


def expected_invoice(gen: Generator, c: dict[str, Any]) -> Expected:
    """The one invoice a generated contract should get on ``as_of``, computed without billbridge code."""
    cur = c["currency"]
    start, end, full_start, full_end = first_period(c)
    days, full_days = (end - start).days, (full_end - full_start).days
    notes: list[str] = []
    billed: list[tuple[str, Decimal]] = []
    recurring_full = Decimal(0)
    with localcontext() as ctx:
        ctx.prec = 34
        for line in c["lines"]:
            pricing = gen.pricing_of(c, line)
            qty = Decimal(line.get("quantity", "1"))
            charge = line.get("charge", "recurring")
            if charge == "recurring":
                points = sorted(
                    {start, end}
                    | {
                        date.fromisoformat(s["start_date"])
                        for s in line.get("ramps", [])
                        if start < date.fromisoformat(s["start_date"]) < end
                    }
                )
                for a, b in zip(points, points[1:], strict=False):
                    p, q = pricing, qty
                    for step in line.get("ramps", []):
                        if date.fromisoformat(step["start_date"]) <= a:
                            p = step.get("pricing", p)
                            q = Decimal(step["quantity"]) if "quantity" in step else q
                    gross = price_amount(p, q)
                    net = gross - line_discount(line.get("discount"), gross)
                    span = (b - a).days
                    billed.append(("recurring", round_money(net if span == full_days else net * span / full_days, cur)))
                    recurring_full += net
            elif charge == "usage":
                gross = price_amount(pricing, Decimal(0))  # no usage events in this benchmark
                billed.append(("usage", round_money(gross - line_discount(line.get("discount"), gross), cur)))
            elif charge == "one_time":
                gross = price_amount(pricing, qty)
                billed.append(("one_time", round_money(gross - line_discount(line.get("discount"), gross), cur)))
            else:
                gross = price_amount(pricing, qty)
                total = round_money(gross - line_discount(line.get("discount"), gross), cur)
                n = line["installments"]
                units = int(total.scaleb(MINOR[cur]))
                first = total if n == 1 else Decimal(units // n).scaleb(-MINOR[cur])
                billed.append(("installments", first))
        if c.get("minimum_commitment") is not None and c["billing_timing"] == "in_arrears":
            minimum = Decimal(c["minimum_commitment"])
            floor = round_money(minimum if days == full_days else minimum * days / full_days, cur)
            actual = sum((amount for kind, amount in billed if kind in ("recurring", "usage")), Decimal(0))
            if floor - actual > 0:
                billed.append(("minimum", floor - actual))
        # Contract discounts apply to the charges, not to the minimum true-up; an amount discount is
        # per full period, prorated like the recurring charges (share of their full-period amount).
        subtotal = sum((amount for kind, amount in billed if kind != "minimum"), Decimal(0))
        discount = c.get("discount")
        if discount and subtotal != 0:
            if "percent" in discount:
                cut = -round_money(subtotal * Decimal(discount["percent"]) / 100, cur)
            elif subtotal > 0:
                recurring_billed = sum((amount for kind, amount in billed if kind == "recurring"), Decimal(0))
                share = min(Decimal(1), recurring_billed / recurring_full) if recurring_full > 0 else Decimal(1)
                cut = -min(round_money(Decimal(discount["amount"]) * share, cur), subtotal)
                if days != full_days:
                    notes.append("contract amount discount prorated on a partial period")
            else:
                cut = Decimal(0)
            if cut != 0:
                billed.append(("discount", cut))
    return Expected(sum((amount for _, amount in billed), Decimal(0)), len(billed), notes)


def read_rows(engine: Engine, table: Table) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(table).order_by(table.c.id)).mappings()]


# ---------------------------------------------------------------------------------------------
# One backend
# ---------------------------------------------------------------------------------------------


@dataclass
class Result:
    backend: str
    contracts: int
    invoices: int = 0
    credit_notes: int = 0
    lines: int = 0
    import_seconds: float = 0.0
    billing_seconds: float = 0.0
    writer_cpu_seconds: float = 0.0  # process_time of the billing run's own process
    workers_cpu_seconds: float = 0.0  # CPU of its planning processes (reaped when the run ends)
    invoices_per_second: float = 0.0
    lines_per_second: float = 0.0
    floor_seconds: float = 0.0
    floor_invoices_per_second: float = 0.0
    ratio: float = 0.0
    target_met: bool = False
    profiled: bool = False
    failed_contracts: int = 0
    checks: dict[str, Any] = field(default_factory=dict)


def _children_cpu() -> float:
    """CPU of this process's descendants: its children that ended (``RUSAGE_CHILDREN``) and, from
    /proc, its live children with the children they reaped. A billing run's planning processes are
    children of a fork server (``flows.ahead``) that outlives the run: their CPU, once their pool has
    shut down, is in the server's reaped children's time. With the writer's process_time, what a run
    costs a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = usage.ru_utime + usage.ru_stime
    tick = os.sysconf("SC_CLK_TCK")
    me = os.getpid()
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:  # fields: state, ppid, ..., utime stime cutime cstime at 11-14
            total += sum(int(value) for value in fields[11:15]) / tick
    return total


def bench_backend(backend: Backend, gen_factory: Any, args: argparse.Namespace) -> Result:
    tag = f"[{backend.name}]"
    gen: Generator = gen_factory()
    result = Result(backend=backend.name, contracts=args.contracts)

    # --- setup: import (not timed for the result, but reported) ---
    store = open_store(backend.new_url("billing"))
    contracts: dict[str, dict[str, Any]] = {}
    try:
        with timer() as t_import:
            summary = import_document(store, gen.reference_document())
            if summary.errors:
                raise SystemExit(f"{tag} reference data did not import: {summary.errors[:3]}")
            batch: list[dict[str, Any]] = []
            done = 0
            import_errors: list[str] = []
            last_log = time.perf_counter()

            def flush() -> None:
                nonlocal done, last_log
                s = import_document(store, {"contracts": batch})
                import_errors.extend(str(e) for e in s.errors)
                done += len(batch)
                batch.clear()
                if time.perf_counter() - last_log > 10 or done == args.contracts:
                    log(f"{tag} imported {done:,}/{args.contracts:,} contracts ({time.perf_counter() - started:.0f}s)")
                    last_log = time.perf_counter()

            started = time.perf_counter()
            for contract in gen.contracts():
                contracts[contract["contract_ref"]] = contract
                batch.append(contract)
                if len(batch) >= args.import_batch:
                    flush()
            if batch:
                flush()
        result.import_seconds = t_import[0]
        log(
            f"{tag} setup: imported {args.contracts:,} contracts in {t_import[0]:.1f}s "
            f"({args.contracts / t_import[0]:,.0f}/s); kinds: {dict(sorted(gen.kinds.items()))}"
        )
        if import_errors:
            log(f"{tag} WARNING: {len(import_errors)} contract records did not import, e.g. {import_errors[:3]}")
        result.checks["import_errors"] = len(import_errors)

        # --- timed: billing ---
        profiler = cProfile.Profile() if (args.profile and backend.name == "sqlite") else None
        log(
            f"{tag} billing as of {args.as_of} (chunk size {args.chunk_size}, {args.workers} planning workers){' under cProfile' if profiler else ''} ..."
        )
        children_before = _children_cpu()
        with timer(freeze=True) as t_bill:
            cpu_before = time.process_time()
            if profiler:
                profiler.enable()
            billing = run_billing(store, args.as_of, chunk_size=args.chunk_size, workers=args.workers)
            if profiler:
                profiler.disable()
            result.writer_cpu_seconds = time.process_time() - cpu_before
        result.workers_cpu_seconds = _children_cpu() - children_before
        result.billing_seconds = t_bill[0]
        result.profiled = profiler is not None
        result.failed_contracts = len(billing.failed)
        if billing.failed:
            log(f"{tag} WARNING: {len(billing.failed)} contracts failed to plan, e.g. {billing.failed[:3]}")
            result.checks["failed_samples"] = billing.failed[:5]
        result.checks["pending_adjustments"] = billing.pending_adjustments

        # --- untimed: read back what the run created ---
        invoice_rows = read_rows(store.engine, INVOICES)
        line_rows = read_rows(store.engine, LINES)
        result.invoices = sum(1 for r in invoice_rows if r["doc_type"] == "invoice")
        result.credit_notes = sum(1 for r in invoice_rows if r["doc_type"] == "credit_note")
        result.lines = len(line_rows)
        documents = len(invoice_rows)
        result.invoices_per_second = documents / t_bill[0] if t_bill[0] else 0.0
        result.lines_per_second = len(line_rows) / t_bill[0] if t_bill[0] else 0.0
        log(
            f"{tag} billing: {documents:,} documents, {len(line_rows):,} lines in {t_bill[0]:.2f}s "
            f"({result.invoices_per_second:,.0f} invoices/s); CPU {result.writer_cpu_seconds:.1f}s writer + "
            f"{result.workers_cpu_seconds:.1f}s planning processes"
        )
        with store.engine.connect() as conn:
            refs = {cid: ref for cid, ref in conn.execute(select(ContractRow.id, ContractRow.contract_ref))}
            parents = {
                table.name: [dict(r) for r in conn.execute(select(table).order_by(table.c.id)).mappings()]
                for table in PARENTS
            }
        result.checks.update(check_results(gen, contracts, refs, invoice_rows, line_rows, args))

        if profiler:
            print_profile(profiler, args)
    finally:
        store.dispose()

    # --- floor: the same rows, bulk-inserted into a fresh, migrated, empty database ---
    floor_store = open_store(backend.new_url("floor"))
    try:
        with floor_store.engine.begin() as conn:  # untimed: the parents the rows reference
            for table in PARENTS:
                if parents[table.name]:
                    conn.execute(insert(table), parents[table.name])
        floor_lines = [{k: v for k, v in row.items() if k != "id"} for row in line_rows]
        with timer(freeze=True) as t_floor, floor_store.engine.begin() as conn:
            if invoice_rows:
                conn.execute(insert(INVOICES), invoice_rows)
            if floor_lines:
                conn.execute(insert(LINES), floor_lines)
        with floor_store.engine.connect() as conn:
            copied = conn.execute(select(func.count()).select_from(LINES)).scalar_one()
            assert copied == len(line_rows), (copied, len(line_rows))
    finally:
        floor_store.dispose()
    result.floor_seconds = t_floor[0]
    result.floor_invoices_per_second = documents / t_floor[0] if t_floor[0] else 0.0
    result.ratio = t_bill[0] / t_floor[0] if t_floor[0] else float("inf")
    result.target_met = result.ratio <= TARGET_RATIO
    log(
        f"{tag} floor: bulk insert of {documents:,} invoices + {len(line_rows):,} lines in {t_floor[0]:.2f}s; "
        f"ratio {result.ratio:.1f}x{' (billing ran under cProfile: inflated)' if result.profiled else ''}"
    )
    return result


# ---------------------------------------------------------------------------------------------
# Checks on what the run created
# ---------------------------------------------------------------------------------------------


def check_results(
    gen: Generator,
    contracts: dict[str, dict[str, Any]],
    refs: dict[int, str],
    invoice_rows: list[dict[str, Any]],
    line_rows: list[dict[str, Any]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    lines_by_invoice: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for line in line_rows:
        lines_by_invoice[line["invoice_id"]].append(line)
    # Per contract through its lines: a reseller's consolidated invoice bills several contracts.
    invoices_by_id = {inv["id"]: inv for inv in invoice_rows}
    contract_lines: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for line in line_rows:
        contract_lines[refs[line["contract_id"]]][line["invoice_id"]].append(line)
    by_contract: dict[str, list[dict[str, Any]]] = {
        ref: [invoices_by_id[i] for i in sorted(docs)] for ref, docs in contract_lines.items()
    }

    # Invariants of every document.
    bad_sums, bad_subtotals, unrounded, non_positive = [], [], [], []
    for inv in invoice_rows:
        lines = lines_by_invoice[inv["id"]]
        if sum((x["billed_amount"] for x in lines), Decimal(0)) != inv["invoice_total"]:
            bad_sums.append(inv["number"])
        if inv["subtotal"] + inv["discount_total"] != inv["invoice_total"]:
            bad_subtotals.append(inv["number"])
        q = quantum(inv["currency"])
        if any(x["billed_amount"] != x["billed_amount"].quantize(q) for x in lines):
            unrounded.append(inv["number"])
        if inv["doc_type"] == "invoice" and inv["invoice_total"] <= 0:
            non_positive.append((inv["number"], str(inv["invoice_total"])))
    checks["lines_not_summing_to_total"] = len(bad_sums)
    checks["subtotal_plus_discount_not_total"] = len(bad_subtotals)
    checks["invoices_with_unrounded_lines"] = len(unrounded)
    checks["invoices_with_total_le_zero"] = len(non_positive)
    if non_positive:
        checks["invoices_with_total_le_zero_samples"] = non_positive[:5]

    # Gapless numbering per entity and document type.
    seqs: dict[tuple[int, str], list[int]] = defaultdict(list)
    for inv in invoice_rows:
        seqs[(inv["entity_id"], inv["doc_type"])].append(inv["sequence_no"])
    checks["numbering_gaps_or_duplicates"] = sum(1 for s in seqs.values() if sorted(s) != list(range(1, len(s) + 1)))

    # Exactly one invoice per contract, matching the independent expectation.
    if args.as_of == args.start_date:
        per_contract = Counter(len(by_contract.get(ref, [])) for ref in contracts)
        checks["contracts_by_invoice_count"] = {str(k): v for k, v in sorted(per_contract.items())}
        mismatches: list[dict[str, Any]] = []
        mismatch_kinds: Counter[str] = Counter()
        notes: Counter[str] = Counter()
        for ref, contract in contracts.items():
            docs = by_contract.get(ref, [])
            if len(docs) != 1:
                continue
            inv = docs[0]
            exp = expected_invoice(gen, contract)
            notes.update(exp.notes)
            own = contract_lines[ref][inv["id"]]
            n_lines, total = len(own), sum((x["billed_amount"] for x in own), Decimal(0))
            if total != exp.total or n_lines != exp.lines or inv["billing_date"] != args.as_of:
                mismatch_kinds[archetype_of(contract)] += 1
                if len(mismatches) < 5:
                    mismatches.append(
                        {
                            "contract_ref": ref,
                            "total": str(total),
                            "expected_total": str(exp.total),
                            "lines": n_lines,
                            "expected_lines": exp.lines,
                            "billing_date": inv["billing_date"].isoformat(),
                        }
                    )
        checks["totals_differing_from_expectation"] = sum(mismatch_kinds.values())
        if gen.partners:  # one consolidated invoice per reseller (all its contracts are due on the same day)
            reseller_customers = {p["partner_ref"] for p in gen.partners}
            with_docs = Counter(
                invoices_by_id[i]["customer_id"]
                for ref, contract in contracts.items()
                if contract.get("reseller_ref") in reseller_customers
                for i in contract_lines.get(ref, {})
            )
            checks["resold_contracts"] = sum(1 for c in contracts.values() if c.get("reseller_ref"))
            checks["reseller_invoices"] = len(
                {i for ref, c in contracts.items() if c.get("reseller_ref") for i in contract_lines.get(ref, {})}
            )
            checks["resellers_invoiced"] = len(with_docs)
        if mismatches:
            checks["totals_differing_by_shape"] = dict(mismatch_kinds)
            checks["totals_differing_samples"] = mismatches
        if notes:
            checks["notes"] = dict(notes)
    return checks


def archetype_of(c: dict[str, Any]) -> str:
    kinds = sorted({line.get("charge", "recurring") for line in c["lines"]})
    shape = f"{c['billing_timing']}/{c['cycle_length']}{c['cycle_unit']}/{'+'.join(kinds)}"
    if c.get("cycle_start_date") and c["cycle_start_date"] != c["contract_start_date"]:
        shape += "/anchored"
    if c.get("minimum_commitment"):
        shape += "/minimum"
    if c.get("discount"):
        shape += "/discount"
    if any(line.get("ramps") for line in c["lines"]):
        shape += "/ramps"
    return shape


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def print_profile(profiler: cProfile.Profile, args: argparse.Namespace) -> None:
    out = sys.stderr if args.json else sys.stdout
    if args.profile_out:
        profiler.dump_stats(args.profile_out)
        log(f"profile written to {args.profile_out}")
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    stats.sort_stats(args.profile_sort).print_stats(25)
    print(f"\n== cProfile of the SQLite billing run, top 25 by {args.profile_sort} ==", file=out)
    print(buffer.getvalue(), file=out)


def print_table(results: list[Runs[Result]], skipped: dict[str, str]) -> None:
    """Median (lowest-highest) of the runs; the ratio is taken per run, against its own floor."""
    header = f"{'backend':<11}{'contracts':>10}{'invoices':>10}  {'billing s':<22}{'invoices/s':<26}"
    header += f"{'x floor':<22}{'CPU s (writer+planning)':<26}{'load (1 min)':<20}"
    print()
    print(header)
    print("-" * len(header))
    for runs in results:
        r = runs.first
        print(
            f"{r.backend:<11}{r.contracts:>10,}{r.invoices + r.credit_notes:>10,}  "
            f"{runs.spread(lambda x: x.billing_seconds).show('.2f'):<22}"
            f"{runs.spread(lambda x: x.invoices_per_second).show(',.0f'):<26}"
            f"{runs.spread(lambda x: x.ratio).show('.2f', 'x'):<22}"
            f"{runs.spread(lambda x: x.writer_cpu_seconds + x.workers_cpu_seconds).show('.1f'):<26}"
            f"{runs.load.show('.2f'):<20}"
        )
    for name, why in skipped.items():
        print(f"{name}: skipped ({why})")
    print(f"\ntarget: the median within {TARGET_RATIO}x of the floor")
    for runs in results:
        for i, r in enumerate(runs.results, 1):
            profiled = " (profiled)" if r.profiled else ""
            print(
                f"\n[{r.backend} run {i}]{profiled} setup import {r.import_seconds:.1f}s; lines {r.lines:,}; "
                f"credit notes {r.credit_notes}; failed to plan {r.failed_contracts}; "
                f"floor {r.floor_seconds:.2f}s ({r.floor_invoices_per_second:,.0f} invoices/s); "
                f"CPU {r.writer_cpu_seconds:.1f}s writer + {r.workers_cpu_seconds:.1f}s planning processes"
            )
            for key, value in r.checks.items():
                print(f"  {key}: {value}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contracts", type=int, default=100_000, help="number of contracts (default 100000)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BILLBRIDGE_TEST_POSTGRES_URL"),
        help="admin URL of a PostgreSQL server (default: $BILLBRIDGE_TEST_POSTGRES_URL); "
        "two databases are created per run and dropped afterwards",
    )
    parser.add_argument(
        "--start-date",
        type=date.fromisoformat,
        default=DEFAULT_AS_OF,
        help=f"day the generated contracts are built around (default {DEFAULT_AS_OF}): each has "
        "exactly one invoice due on it",
    )
    parser.add_argument(
        "--as-of",
        type=date.fromisoformat,
        default=None,
        help="billing date passed to run_billing (default: --start-date, one invoice per contract; "
        "a later date bills several periods and skips the per-contract checks)",
    )
    parser.add_argument("--chunk-size", type=int, default=CHUNK, help=f"run_billing chunk size (default {CHUNK})")
    parser.add_argument(
        "--workers",
        type=int,
        default=Settings().billing_workers,
        help="run_billing planning processes (default: the billing_workers setting; 0 plans in the writing process)",
    )
    parser.add_argument("--seed", type=int, default=20260701)
    parser.add_argument(
        "--resellers",
        type=int,
        default=0,
        help="sell --resold-share of the contracts through this many resellers (issue 17: 500; default 0, none)",
    )
    parser.add_argument("--resold-share", type=float, default=0.5, help="share of contracts resold (default 0.5)")
    parser.add_argument("--import-batch", type=int, default=5000, help="contracts per import_document call")
    parser.add_argument(
        "--profile", action="store_true", help="run the SQLite billing under cProfile (its time is then inflated)"
    )
    parser.add_argument("--profile-sort", default="cumulative", help="pstats sort key (default cumulative)")
    parser.add_argument("--profile-out", default=None, help="also write the raw profile to this file")
    parser.add_argument("--workdir", default=None, help="where the SQLite files go (default: system temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    parser.add_argument("--json", action="store_true", help="print the results as JSON (logs go to stderr)")
    add_runs_argument(parser)
    args = parser.parse_args(argv)
    if args.as_of is None:
        args.as_of = args.start_date
    if args.as_of < args.start_date:
        parser.error("--as-of must not be before --start-date (nothing would be billed)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    skipped: dict[str, str] = {}
    if "postgresql" in backends and not args.postgres_url:
        why = "no --postgres-url and no BILLBRIDGE_TEST_POSTGRES_URL; `source scripts/throwaway-postgres.sh` first"
        if args.backend == "postgresql":
            print(f"error: {why}", file=sys.stderr)
            return 2
        log(f"WARNING: PostgreSQL skipped: {why}")
        skipped["postgresql"] = why
        backends.remove("postgresql")

    version = code_version()
    log(f"billbridge {version}")
    results: list[Runs[Result]] = []
    for name in backends:
        backend: Backend = (
            SQLiteBackend(args.workdir or tempfile.gettempdir(), args.keep)
            if name == "sqlite"
            else PostgresBackend(args.postgres_url, args.keep)
        )
        try:
            results.append(
                repeat(
                    lambda backend=backend: bench_backend(  # type: ignore[misc]
                        backend,
                        lambda: Generator(
                            args.contracts, args.start_date, args.seed, args.resellers, args.resold_share
                        ),
                        args,
                    ),
                    args.runs,
                    name,
                )
            )
        finally:
            backend.cleanup()

    if args.json:
        payload = {
            "code_version": version,
            "contracts": args.contracts,
            "start_date": args.start_date.isoformat(),
            "as_of": args.as_of.isoformat(),
            "seed": args.seed,
            "chunk_size": args.chunk_size,
            "workers": args.workers,
            "resellers": args.resellers,
            "target_ratio": TARGET_RATIO,
            "results": [{"runs": [asdict(r) for r in runs.results], "load": runs.loads} for runs in results],
            "skipped": skipped,
        }
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(stamp())
        print_table(results, skipped)
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
