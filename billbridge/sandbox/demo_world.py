"""A vendor-neutral demo world: selling entities, companies, a price book and deals with line items.

Every sandbox renders the same world in its own vendor's shapes (Salesforce Accounts and
Opportunities, HubSpot companies and deals, ...), so the demo, the tests and the benchmarks can
compare what a sync stored with what the world says. Generation is seeded and deterministic.

Deals cover every pricing model of the price book, several currencies and legal entities, won and
not-won stages, and a few deliberately broken records (``DemoDeal.broken`` says how) that a sync
must quarantine rather than drop. ``changed`` produces the next state of the world: edits, closed
deals, deletions and fixes of broken deals, each with a later modification time. ``with_partners``
adds referral partners and resellers named on some deals, ``with_contacts`` billing contacts (some
companies deliberately without one); both draw from a generator of their own, so the deals stay as
``generate`` made them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from billbridge.billing.currency import MINOR_UNITS

Charge = Literal["recurring", "usage", "one_time"]
Stage = Literal["won", "lost", "open"]
_STAGES: list[Stage] = ["won", "lost", "open"]
Broken = Literal["no_start_date", "unknown_currency", "negative_quantity", "unknown_product", "lines_mismatch"]
BROKEN_KINDS: tuple[Broken, ...] = (
    "no_start_date",
    "unknown_currency",
    "negative_quantity",
    "unknown_product",
    "lines_mismatch",
)
_QUANTITY_SKUS = frozenset({"SEATS", "SEATS-TIERED", "STORAGE", "SMS-PACKS"})
CYCLES_MONTHS = {"monthly": 1, "quarterly": 3, "annually": 12}


@dataclass(frozen=True)
class DemoEntity:
    entity_ref: str
    name: str
    currency: str
    invoice_prefix: str
    country: str


ENTITIES: tuple[DemoEntity, ...] = (
    DemoEntity("us-inc", "Acme Software Inc.", "USD", "US-INV-", "US"),
    DemoEntity("eu-bv", "Acme Software B.V.", "EUR", "EU-INV-", "NL"),
    DemoEntity("uk-ltd", "Acme Software Ltd", "GBP", "UK-INV-", "GB"),
    DemoEntity("jp-kk", "Acme Software K.K.", "JPY", "JP-INV-", "JP"),
)
# How many units of each currency one US dollar buys in the demo price book.
_FX = {"USD": Decimal(1), "EUR": Decimal("0.92"), "GBP": Decimal("0.79"), "JPY": Decimal(150)}


def usd_per_unit(currency: str) -> Decimal:
    """What one unit of ``currency`` is worth in US dollars at the demo price book's rates (6 places): the
    rate a QuickBooks company keeping its books in USD holds for it."""
    return (Decimal(1) / _FX[currency]).quantize(Decimal("0.000001"))


@dataclass(frozen=True)
class DemoProduct:
    """A price-book product. ``pricing`` is the canonical pricing (contract-file JSON) per currency."""

    sku: str
    name: str
    charge: Charge
    pricing: dict[str, dict[str, Any]]
    list_price: dict[str, Decimal]  # the CRM's standard unit price per currency
    usage_aggregation: str | None = None
    recognition: str | None = None  # revenue recognition, where the product sets one


@dataclass(frozen=True)
class DemoCompany:
    key: str  # stable id of the world; vendors assign their own ids
    name: str
    domain: str
    entity_ref: str
    modified_at: datetime
    billing_email: str | None = None  # the company's own billing address (HubSpot's fallback property)


PartnerKind = Literal["referral", "reseller"]


@dataclass(frozen=True)
class DemoPartner:
    """A partner company: a referral partner earns a fee on the customers it brings, a reseller buys for
    its end customers and is invoiced instead of them. In the CRMs: an Account marked as a partner, a
    company; in billbridge: a partner declared in a contract file under the ref its CRM id maps to."""

    key: str  # P0001...; vendors assign their own ids
    name: str
    kind: PartnerKind
    entity_ref: str
    currency: str
    email: str
    modified_at: datetime


@dataclass(frozen=True)
class DemoContact:
    """A billing contact of a company: named on one of its deals (``deal_key``: Salesforce's
    OpportunityContactRole, a HubSpot deal association) or on the company itself (None:
    AccountContactRole, a company association)."""

    key: str
    company_key: str
    first_name: str
    last_name: str
    email: str
    language: str | None
    deal_key: str | None
    modified_at: datetime


@dataclass(frozen=True)
class DemoLine:
    key: str
    sku: str
    quantity: Decimal
    unit_price: Decimal  # the price on the deal line (list price, or an override)
    discount_percent: Decimal
    total: Decimal  # quantity x unit price less discount, rounded to the currency: what the CRM shows

    @property
    def overridden(self) -> bool:
        return self.discount_percent != 0


@dataclass(frozen=True)
class DemoDeal:
    key: str
    name: str
    company_key: str
    won: bool
    stage: Stage
    currency: str
    entity_ref: str
    amount: Decimal  # the deal amount the CRM shows
    close_date: date
    start_date: date | None
    end_date: date | None  # last day of service; None: evergreen
    billing_cycle: str  # monthly | quarterly | annually
    payment_terms_days: int
    auto_charge: bool
    billing_timing: Literal["in_advance", "in_arrears"]
    lines: tuple[DemoLine, ...]
    modified_at: datetime
    broken: Broken | None = None
    deleted: bool = False
    referral_partner: str | None = None  # the key of the partner that referred the customer
    reseller: str | None = None  # the key of the reseller the deal was sold through


@dataclass
class DemoWorld:
    entities: tuple[DemoEntity, ...]
    products: dict[str, DemoProduct]
    companies: dict[str, DemoCompany]
    deals: dict[str, DemoDeal]
    now: datetime
    seed: int
    generation: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    partners: dict[str, DemoPartner] = field(default_factory=dict)
    contacts: dict[str, DemoContact] = field(default_factory=dict)

    @property
    def live_deals(self) -> list[DemoDeal]:
        return [d for d in self.deals.values() if not d.deleted]

    def expected_contract_keys(self) -> set[str]:
        """Deals a correct sync turns into contracts: won, not deleted, not broken."""
        return {d.key for d in self.live_deals if d.won and d.broken is None}

    def broken_keys(self) -> set[str]:
        return {d.key for d in self.live_deals if d.won and d.broken is not None}


def _money(value: Decimal, currency: str) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-MINOR_UNITS[currency]), rounding=ROUND_HALF_UP)


def _in(currency: str, usd: str) -> str:
    return str(_money(Decimal(usd) * _FX[currency], currency))


def _price_book() -> dict[str, DemoProduct]:
    def per_currency(build: Any) -> dict[str, dict[str, Any]]:
        return {e.currency: build(e.currency) for e in ENTITIES}

    def tiers(c: str, rows: list[tuple[int | None, str, str]]) -> list[dict[str, Any]]:
        return [{"up_to": up, "unit_price": _in(c, unit), "flat_fee": _in(c, flat)} for up, unit, flat in rows]

    products = [
        DemoProduct(
            "PLATFORM",
            "Platform subscription",
            "recurring",
            per_currency(lambda c: {"model": "flat", "amount": _in(c, "1200")}),
            {e.currency: Decimal(_in(e.currency, "1200")) for e in ENTITIES},
        ),
        DemoProduct(
            "SEATS",
            "User seats",
            "recurring",
            per_currency(lambda c: {"model": "per_unit", "unit_price": _in(c, "45")}),
            {e.currency: Decimal(_in(e.currency, "45")) for e in ENTITIES},
        ),
        DemoProduct(
            "SEATS-TIERED",
            "User seats, graduated",
            "recurring",
            per_currency(
                lambda c: {
                    "model": "graduated",
                    "tiers": tiers(c, [(10, "50", "0"), (100, "40", "0"), (None, "30", "100")]),
                }
            ),
            {e.currency: Decimal(_in(e.currency, "40")) for e in ENTITIES},
        ),
        DemoProduct(
            "STORAGE",
            "Storage, volume priced per TB",
            "recurring",
            per_currency(lambda c: {"model": "volume", "tiers": tiers(c, [(5, "20", "0"), (None, "15", "0")])}),
            {e.currency: Decimal(_in(e.currency, "20")) for e in ENTITIES},
        ),
        DemoProduct(
            "SMS-PACKS",
            "SMS in packs of 1,000",
            "recurring",
            per_currency(
                lambda c: {"model": "package", "package_size": "1000", "package_price": _in(c, "10"), "free_units": "0"}
            ),
            {e.currency: Decimal(_in(e.currency, "0.01")) for e in ENTITIES},
        ),
        DemoProduct(
            "API-CALLS",
            "API calls (usage)",
            "usage",
            per_currency(
                lambda c: {
                    "model": "graduated",
                    "tiers": tiers(c, [(10000, "0", "0"), (1000000, "0.002", "0"), (None, "0.001", "0")]),
                }
            ),
            {e.currency: Decimal(0) for e in ENTITIES},
            usage_aggregation="sum",
        ),
        DemoProduct(
            "ONBOARDING",
            "Onboarding package",
            "one_time",
            per_currency(lambda c: {"model": "flat", "amount": _in(c, "2500")}),
            {e.currency: Decimal(_in(e.currency, "2500")) for e in ENTITIES},
        ),
    ]
    return {p.sku: p for p in products}


_NAMES_A = [
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Soylent",
    "Tyrell",
    "Cyberdyne",
    "Wayne",
    "Stark",
    "Wonka",
    "Vandelay",
    "Massive",
    "Dynamic",
]
_NAMES_B = [
    "Labs",
    "Systems",
    "Holdings",
    "Analytics",
    "Logistics",
    "Foods",
    "Energy",
    "Media",
    "Robotics",
    "Health",
    "Capital",
    "Works",
]
_SUFFIX = {"US": "Inc.", "NL": "B.V.", "GB": "Ltd", "JP": "K.K."}


class _Generator:
    def __init__(self, seed: int, now: datetime) -> None:
        self.rng = random.Random(seed)
        self.now = now
        self.products = _price_book()

    def modified(self, days_back: int = 120) -> datetime:
        seconds = self.rng.randrange(days_back * 86400)
        return (self.now - timedelta(seconds=seconds)).replace(microsecond=0)

    def company(self, n: int) -> DemoCompany:
        entity = self.rng.choice(ENTITIES)
        base = f"{self.rng.choice(_NAMES_A)} {self.rng.choice(_NAMES_B)} {n}"
        domain = base.lower().replace(" ", "-") + ".example"
        return DemoCompany(f"C{n:06d}", f"{base} {_SUFFIX[entity.country]}", domain, entity.entity_ref, self.modified())

    def line(self, deal_key: str, index: int, sku: str, currency: str) -> DemoLine:
        product = self.products[sku]
        quantity = {
            "PLATFORM": Decimal(1),
            "SEATS": Decimal(self.rng.randint(5, 200)),
            "SEATS-TIERED": Decimal(self.rng.randint(5, 300)),
            "STORAGE": Decimal(self.rng.randint(1, 20)),
            "SMS-PACKS": Decimal(self.rng.randrange(1000, 50000, 500)),
            "API-CALLS": Decimal(1),
            "ONBOARDING": Decimal(1),
        }[sku]
        unit_price = product.list_price[currency]
        discount = Decimal(self.rng.choice([0, 0, 0, 5, 10, 15])) if product.charge == "recurring" else Decimal(0)
        total = _money(quantity * unit_price * (100 - discount) / 100, currency)
        return DemoLine(f"{deal_key}-L{index}", sku, quantity, unit_price, discount, total)

    def deal(self, n: int, company: DemoCompany) -> DemoDeal:
        rng = self.rng
        entity = next(e for e in ENTITIES if e.entity_ref == company.entity_ref)
        key = f"D{n:07d}"
        skus = ["PLATFORM"] + rng.sample(
            ["SEATS", "SEATS-TIERED", "STORAGE", "SMS-PACKS", "API-CALLS", "ONBOARDING"], rng.choice([1, 2, 2, 3])
        )
        lines = tuple(self.line(key, i + 1, sku, entity.currency) for i, sku in enumerate(skus))
        start = date(2025, 1, 1) + timedelta(days=rng.randrange(0, 700))
        term_months = rng.choice([12, 12, 24, 36, 0])
        end = _add_months(start, term_months) - timedelta(days=1) if term_months else None
        stage: Stage = rng.choices(_STAGES, weights=[70, 15, 15])[0]
        return DemoDeal(
            key=key,
            name=f"{company.name} - {rng.choice(['New business', 'Expansion', 'Renewal'])}",
            company_key=company.key,
            won=stage == "won",
            stage=stage,
            currency=entity.currency,
            entity_ref=entity.entity_ref,
            amount=sum((line.total for line in lines), Decimal(0)),
            close_date=start - timedelta(days=rng.randrange(1, 30)),
            start_date=start,
            end_date=end,
            billing_cycle=rng.choices(["monthly", "quarterly", "annually"], weights=[6, 2, 2])[0],
            payment_terms_days=rng.choice([15, 30, 30, 45, 60]),
            auto_charge=rng.random() < 0.3,
            billing_timing="in_advance",
            lines=lines,
            modified_at=self.modified(),
        )

    def break_deal(self, deal: DemoDeal, kind: Broken) -> DemoDeal:
        if kind == "no_start_date":
            return replace(deal, start_date=None, broken=kind)
        if kind == "unknown_currency":
            return replace(deal, currency="XYZ", broken=kind)
        first = deal.lines[0]
        if kind == "negative_quantity":
            bad = replace(first, quantity=-first.quantity, total=-first.total)
            return replace(deal, lines=(bad, *deal.lines[1:]), amount=deal.amount - 2 * first.total, broken=kind)
        if kind == "unknown_product":
            return replace(deal, lines=(replace(first, sku="DISCONTINUED-SKU"), *deal.lines[1:]), broken=kind)
        return replace(deal, amount=deal.amount + Decimal(100), broken=kind)


def _add_months(day: date, months: int) -> date:
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return date(year, month, min(day.day, 28))


def generate(
    deals: int = 200,
    *,
    companies: int | None = None,
    seed: int = 7,
    broken: int | None = None,
    now: datetime | None = None,
) -> DemoWorld:
    """A world of ``deals`` deals over ``companies`` companies (default: one per three deals).

    ``broken`` deals (default: 2%, at least one of each kind when there are enough deals) are won
    deals with one deliberate defect each.
    """
    now = now or datetime(2026, 11, 1, tzinfo=UTC)
    gen = _Generator(seed, now)
    n_companies = companies or max(1, deals // 3)
    company_list = [gen.company(i + 1) for i in range(n_companies)]
    world_deals = {}
    for i in range(deals):
        deal = gen.deal(i + 1, gen.rng.choice(company_list))
        world_deals[deal.key] = deal
    n_broken = broken if broken is not None else (max(len(BROKEN_KINDS), deals // 50) if deals >= 50 else 0)
    won = [d for d in world_deals.values() if d.won]
    for i, deal in enumerate(gen.rng.sample(won, min(n_broken, len(won)))):
        world_deals[deal.key] = gen.break_deal(deal, BROKEN_KINDS[i % len(BROKEN_KINDS)])
    return DemoWorld(ENTITIES, gen.products, {c.key: c for c in company_list}, world_deals, now, seed)


def changed(
    world: DemoWorld,
    fraction: float = 0.01,
    *,
    seed: int | None = None,
    at: datetime | None = None,
    fix_broken: bool = True,
) -> DemoWorld:
    """The next state of the world: ``fraction`` of the deals edited, closed or deleted; broken deals
    fixed too unless ``fix_broken`` is False (then exactly ``fraction`` of the deals change).

    Every touched record gets modification time ``at`` (default: an hour after the world's ``now``).
    """
    at = at or world.now + timedelta(hours=1)
    gen = _Generator(world.seed * 1000 + world.generation + 1 if seed is None else seed, at)
    deals = dict(world.deals)
    live = [d for d in deals.values() if not d.deleted and d.broken is None]
    for deal in gen.rng.sample(live, max(1, int(len(live) * fraction))):
        action = gen.rng.choices(["quantity", "win", "delete"], weights=[70, 20, 10])[0]
        # A quantity edit touches a seat-like line (flat, usage and one-time lines bill no quantity).
        editable = [x for x in deal.lines if x.sku in _QUANTITY_SKUS]
        if action == "quantity" and deal.won and editable:
            first = editable[0]
            quantity = first.quantity + gen.rng.randint(1, 20)
            total = _money(quantity * first.unit_price * (100 - first.discount_percent) / 100, deal.currency)
            line = replace(first, quantity=quantity, total=total)
            lines = tuple(line if x.key == first.key else x for x in deal.lines)
            deals[deal.key] = replace(
                deal, lines=lines, amount=sum((x.total for x in lines), Decimal(0)), modified_at=at
            )
        elif action == "delete":
            deals[deal.key] = replace(deal, deleted=True, modified_at=at)
        else:
            deals[deal.key] = replace(deal, won=True, stage="won", modified_at=at)
    for deal in [d for d in deals.values() if fix_broken and d.broken is not None and not d.deleted]:
        fixed = gen.deal(int(deal.key[1:]), world.companies[deal.company_key])
        deals[deal.key] = replace(fixed, stage="won", won=True, modified_at=at)
    return DemoWorld(
        world.entities,
        world.products,
        world.companies,
        deals,
        at,
        world.seed,
        world.generation + 1,
        partners=world.partners,
        contacts=world.contacts,
    )


_PARTNER_NAMES = {
    "referral": ["Northwind Advisors", "Contoso Consulting", "Fabrikam Partners", "Litware Referrals"],
    "reseller": ["Channel One Distribution", "Tailspin Resellers", "Proseware Channel", "Adatum Reseller"],
}
_FIRST_NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Niklaus"]
_LAST_NAMES = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Wirth"]


def _valid_won(world: DemoWorld) -> list[DemoDeal]:
    return sorted((d for d in world.live_deals if d.won and d.broken is None), key=lambda d: d.key)


def with_partners(world: DemoWorld, *, referral: int = 2, resellers: int = 1) -> DemoWorld:
    """The world with ``referral`` referral partners and ``resellers`` resellers, each in the legal
    entity (and currency) of the most deals: every referral partner named on about a quarter of its
    entity's valid won deals, every reseller on three others (sold through it, so not auto-charged)."""
    rng = random.Random(world.seed * 7919 + 1)
    valid = _valid_won(world)
    counts = {e.entity_ref: sum(1 for d in valid if d.entity_ref == e.entity_ref) for e in world.entities}
    busiest = [e for e in sorted(world.entities, key=lambda e: -counts[e.entity_ref]) if counts[e.entity_ref]]
    if not busiest:
        return world
    partners: dict[str, DemoPartner] = {}
    deals = dict(world.deals)
    taken: set[str] = set()
    roles: tuple[PartnerKind, PartnerKind] = ("referral", "reseller")
    kinds = [roles[0]] * referral + [roles[1]] * resellers
    for n, kind in enumerate(kinds, start=1):
        entity = busiest[(n - 1 if kind == "referral" else n - 1 - referral) % len(busiest)]
        names = _PARTNER_NAMES[kind]
        name = f"{names[(world.seed + n) % len(names)]} {_SUFFIX[entity.country]}"
        key = f"P{n:04d}"
        domain = name.split()[0].lower()
        partner = DemoPartner(
            key, name, kind, entity.entity_ref, entity.currency, f"ap@{domain}.example", world.now - timedelta(days=200)
        )
        partners[key] = partner
        mine = [d for d in valid if d.entity_ref == entity.entity_ref and d.key not in taken]
        chosen = rng.sample(mine, min(len(mine), max(1, len(mine) // 4) if kind == "referral" else 3))
        for deal in sorted(chosen, key=lambda d: d.key):
            taken.add(deal.key)
            if kind == "referral":
                deals[deal.key] = replace(deal, referral_partner=key)
            else:
                deals[deal.key] = replace(deal, reseller=key, auto_charge=False)
    return replace(world, deals=deals, partners=partners)


def with_contacts(world: DemoWorld) -> DemoWorld:
    """The world with billing contacts, by company in key order (of companies with live deals): two in
    five have one on the company, one in five on its first deal, one in five only a billing e-mail on
    the company (HubSpot reads it as the fallback, Salesforce has no such field), and one in five none:
    its messages wait visibly for a contact. A third of the contacts read German."""
    rng = random.Random(world.seed * 7919 + 2)
    first_deal: dict[str, str] = {}
    for deal in sorted(world.live_deals, key=lambda d: d.key):
        first_deal.setdefault(deal.company_key, deal.key)
    companies = dict(world.companies)
    contacts: dict[str, DemoContact] = {}
    for n, key in enumerate(sorted(first_deal)):
        company, slot = companies[key], n % 5
        if slot == 4:
            continue
        if slot == 3:
            companies[key] = replace(company, billing_email=f"billing@{company.domain}")
            continue
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        contact_key = f"K{len(contacts) + 1:06d}"
        contacts[contact_key] = DemoContact(
            contact_key,
            key,
            first,
            last,
            f"{first.lower()}.{last.lower()}@{company.domain}",
            "de" if n % 3 == 2 else None,
            first_deal[key] if slot == 1 else None,
            company.modified_at,
        )
    return replace(world, companies=companies, contacts=contacts)


def partners_document(world: DemoWorld, ref: Callable[[str], str]) -> dict[str, Any]:
    """The world's partners as a contract file, under the partner_ref ``ref`` gives a partner's key (its
    CRM's prefix and id): referral partners with an agreement each (20% of what referred customers are
    invoiced for their first 24 months and a flat fee on their first invoice issued; or 10% of what they pay
    for the contract's life), resellers with a 20% discount and their own payment terms."""
    partners, agreements = [], []
    for n, partner in enumerate(sorted(world.partners.values(), key=lambda p: p.key)):
        partner_ref = ref(partner.key)
        record: dict[str, Any] = {
            "partner_ref": partner_ref,
            "name": partner.name,
            "kind": partner.kind,
            "entity_ref": partner.entity_ref,
            "currency": partner.currency,
            "email": partner.email,
            "payment_terms_days": 30 if partner.kind == "referral" else 45,
        }
        if partner.kind == "reseller":
            record["discount_percent"] = "20"
        else:
            terms: dict[str, Any] = (
                {"basis": "billed", "percent": "20", "months": 24, "flat_fee": _in(partner.currency, "250")}
                if n % 2 == 0
                else {"basis": "collected", "percent": "10"}
            )
            agreements.append(
                {"agreement_ref": f"{partner_ref}-referrals", "partner_ref": partner_ref, "currency": partner.currency}
                | terms
            )
        partners.append(record)
    return {"partners": partners, "referral_agreements": agreements}


def entities_document(world: DemoWorld) -> dict[str, Any]:
    """The world's selling entities as a contract file: what an installation sets up before syncing."""
    return {
        "entities": [
            {"entity_ref": e.entity_ref, "name": e.name, "currency": e.currency, "invoice_prefix": e.invoice_prefix}
            for e in world.entities
        ]
    }
