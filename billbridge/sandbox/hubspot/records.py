"""HubSpot CRM records in memory: objects with string properties, associations, and a demo world rendered into them.

HubSpot returns every property value as a string and timestamps as ISO 8601 with milliseconds and
``Z``; a requested property an object does not have comes back as ``null`` (as HubSpot answers;
the published OpenAPI schema types property values as strings only, see ``contract.py``), and
without ``properties`` the object's set properties are returned. Deals, line items, companies and products get numeric string ids in separate ranges; the
world keys they came from are kept in ``HubSpotData.ids`` so tests can compare.
"""

from __future__ import annotations

import bisect
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from billbridge.sandbox.demo_world import DemoCompany, DemoDeal, DemoLine, DemoProduct, DemoWorld

OBJECT_TYPES = {"0-3": "deals", "0-8": "line_items", "0-2": "companies", "0-7": "products", "0-1": "contacts"}
"""HubSpot's object type ids (the published specs name paths by them) -> the names the SDK uses."""

STAGES = {"won": "closedwon", "lost": "closedlost", "open": "appointmentscheduled"}
# Association type ids HubSpot defines (associations v4): deal -> line item, deal -> primary company,
# deal -> contact, company -> contact (the unlabelled defaults).
ASSOCIATION_TYPES = {("deals", "line_items"): 19, ("deals", "companies"): 5, ("deals", "contacts"): 3}
ASSOCIATION_TYPES[("companies", "contacts")] = 280
ASSOCIATION_TYPES[("contacts", "deals")] = 4
ASSOCIATION_TYPES[("contacts", "companies")] = 279
# The unlabelled (non-primary) deal <-> company types a labelled link also carries.
UNLABELLED_TYPES = {("deals", "companies"): 341, ("companies", "deals"): 342}
USER_LABEL_TYPE_BASE = 100  # user-defined association labels get type ids of their own (USER_DEFINED)
_ID_BASE = {
    "contacts": 1_000_000_000,
    "companies": 3_000_000_000,
    "deals": 5_000_000_000,
    "products": 7_000_000_000,
    "line_items": 9_000_000_000,
}


def iso_ms(ms: int) -> str:
    """HubSpot's timestamp form: ISO 8601 UTC with milliseconds and Z."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def parse_time(value: str) -> int:
    """A date filter value or property as epoch milliseconds (HubSpot accepts both forms in filters)."""
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return to_ms(moment)


@dataclass
class HsObject:
    id: str
    properties: dict[str, str]
    created_ms: int
    modified_ms: int
    archived_ms: int | None = None

    def body(self, names: list[str] | None, *, with_defaults: bool = True) -> dict[str, object]:
        """The object as the v3 API returns it, with the requested properties (None: all)."""
        if names is None:
            props: dict[str, str | None] = dict(self.properties)
        else:
            wanted = set(names) | ({"hs_object_id", "createdate", "hs_lastmodifieddate"} if with_defaults else set())
            props = {k: self.properties.get(k) for k in sorted(wanted)}  # unset requested ones: null, as HubSpot
        out: dict[str, object] = {
            "id": self.id,
            "properties": props,
            "createdAt": iso_ms(self.created_ms),
            "updatedAt": iso_ms(self.modified_ms),
            "archived": self.archived_ms is not None,
        }
        if self.archived_ms is not None:
            out["archivedAt"] = iso_ms(self.archived_ms)
        return out


class ObjectTable:
    """One object type: live and archived objects, and an index of live ones by (hs_lastmodifieddate, id)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.live: dict[str, HsObject] = {}
        self.archived: dict[str, HsObject] = {}
        self._index: list[tuple[int, int]] | None = None
        self._ids: dict[bool, list[int]] = {}  # archived? -> numeric ids in order; rebuilt after writes

    def put(self, obj: HsObject) -> None:
        obj.properties["hs_object_id"] = obj.id
        obj.properties["createdate"] = iso_ms(obj.created_ms)
        obj.properties["hs_lastmodifieddate"] = iso_ms(obj.modified_ms)
        self.archived.pop(obj.id, None)
        self.live[obj.id] = obj
        self._index = None
        self._ids.clear()

    def archive(self, object_id: str, at_ms: int) -> None:
        obj = self.live.pop(object_id, None)
        if obj is not None:
            obj.archived_ms = at_ms
            obj.modified_ms = at_ms
            obj.properties["hs_lastmodifieddate"] = iso_ms(at_ms)
            self.archived[object_id] = obj
            self._index = None
            self._ids.clear()

    def ids_after(self, after: int, limit: int, *, archived: bool = False) -> tuple[list[str], bool]:
        """Up to ``limit`` ids above ``after`` in id order, and whether more follow (a bisect, not a sort)."""
        if archived not in self._ids:
            self._ids[archived] = sorted(int(i) for i in (self.archived if archived else self.live))
        ids = self._ids[archived]
        start = bisect.bisect_right(ids, after)
        return [str(i) for i in ids[start : start + limit]], start + limit < len(ids)

    def by_modified(self) -> list[tuple[int, int]]:
        """Live objects sorted by (hs_lastmodifieddate ms, numeric id); rebuilt after writes."""
        if self._index is None:
            self._index = sorted((o.modified_ms, int(o.id)) for o in self.live.values())
        return self._index

    def modified_range(self, low: int | None, high: int | None) -> tuple[list[tuple[int, int]], int, int]:
        """The index and the [start, stop) positions of entries with low <= modified < high (None: unbounded)."""
        index = self.by_modified()
        start = 0 if low is None else bisect.bisect_left(index, (low, -1))
        stop = len(index) if high is None else bisect.bisect_left(index, (high, -1))
        return index, start, stop


@dataclass
class HubSpotData:
    """A HubSpot portal's CRM: object tables, deal associations, and the world keys behind the ids."""

    tables: dict[str, ObjectTable] = field(default_factory=lambda: {n: ObjectTable(n) for n in OBJECT_TYPES.values()})
    associations: dict[tuple[str, str], dict[str, list[str]]] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)  # world key (deal, company, line key; product SKU) -> id
    # (from type, to type, from id, to id) -> a labelled link's association types
    labels: dict[tuple[str, str, str, str], list[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    label_types: dict[str, int] = field(default_factory=dict)  # label -> its USER_DEFINED type id

    def associate(self, from_type: str, to_type: str, from_id: str, to_ids: list[str]) -> None:
        self.associations.setdefault((from_type, to_type), {})[from_id] = list(to_ids)
        reverse = self.associations.setdefault((to_type, from_type), {})
        for to_id in to_ids:
            reverse[to_id] = [from_id]

    def label(self, from_type: str, to_type: str, from_id: str, to_id: str, label: str, type_id: int) -> None:
        """Associate two records under a user-defined label, both ways (associations v4: the link has
        the unlabelled HUBSPOT_DEFINED type and ``{"category": "USER_DEFINED", "typeId": ..., "label": ...}``)."""
        for a, b, x, y in ((from_type, to_type, from_id, to_id), (to_type, from_type, to_id, from_id)):
            linked = self.associations.setdefault((a, b), {}).setdefault(x, [])
            if y not in linked:
                linked.append(y)
            default = {
                "category": "HUBSPOT_DEFINED",
                "typeId": UNLABELLED_TYPES.get((a, b)) or ASSOCIATION_TYPES.get((a, b), 0),
            }
            kinds = self.labels.setdefault((a, b, x, y), [default])
            kinds.append({"category": "USER_DEFINED", "typeId": type_id, "label": label})

    def add_contact(self, properties: dict[str, str], modified_ms: int) -> str:
        """A new contact (``email``, ``firstname``, ``lastname``, ``hs_language``, ...); returns its id."""
        table = self.tables["contacts"]
        contact_id = _id("contacts", len(table.live) + 1)
        _upsert(table, contact_id, _clean(dict(properties)), modified_ms)
        return contact_id

    def link_contact(self, from_type: str, from_id: str, contact_id: str, label: str | None = None) -> None:
        """Associate a contact with a deal or company (both directions, added to the links already
        there, as HubSpot keeps many contacts per record), optionally under a user-defined label."""
        if label is not None:
            type_id = self.label_types.setdefault(label, USER_LABEL_TYPE_BASE + len(self.label_types))
            self.label(from_type, "contacts", from_id, contact_id, label, type_id)
            return
        for a, a_id, b, b_id in (
            (from_type, from_id, "contacts", contact_id),
            ("contacts", contact_id, from_type, from_id),
        ):
            links = self.associations.setdefault((a, b), {}).setdefault(a_id, [])
            if b_id not in links:
                links.append(b_id)


def _id(kind: str, number: int) -> str:
    return str(_ID_BASE[kind] + number)


def _day(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _date_time(value: date) -> str:
    return iso_ms(to_ms(datetime.combine(value, time(0), UTC)))


def _clean(props: dict[str, str | None]) -> dict[str, str]:
    return {k: v for k, v in props.items() if v is not None and v != ""}


def company_properties(company: DemoCompany) -> dict[str, str]:
    props: dict[str, str | None] = {"name": company.name, "domain": company.domain, "legal_entity": company.entity_ref}
    return _clean(props | {"billing_email": company.billing_email})


PARTNER_NUMBERS = 900_000  # partner companies are numbered from here
PARTNER_LABELS = {"referral": "Referral partner", "reseller": "Reseller"}  # the connector's default labels
BILLING_CONTACT_LABEL = "Billing contact"  # likewise


def partner_company_id(partner_key: str) -> str:
    """A partner's company (numbered apart from the customers')."""
    return _id("companies", PARTNER_NUMBERS + int(partner_key[1:]))


def product_properties(product: DemoProduct) -> dict[str, str]:
    """Name, SKU, the portal-currency price, one hs_price_<ccy> per currency, and the custom billing properties."""
    props: dict[str, str | None] = {
        "name": product.name,
        "hs_sku": product.sku,
        "price": str(product.list_price.get("USD", Decimal(0))),
        "charge_type": product.charge,
        "usage_aggregation": product.usage_aggregation,
        "revenue_recognition": product.recognition,
    }
    for currency, price in product.list_price.items():
        props[f"hs_price_{currency.lower()}"] = str(price)
    for currency, pricing in product.pricing.items():
        props[f"pricing_json_{currency.lower()}"] = json.dumps(pricing, sort_keys=True)
    return _clean(props)


def deal_properties(deal: DemoDeal) -> dict[str, str]:
    return _clean(
        {
            "dealname": deal.name,
            "dealstage": STAGES[deal.stage],
            "pipeline": "default",
            "amount": str(deal.amount),
            "deal_currency_code": deal.currency,
            "closedate": _date_time(deal.close_date),
            "billing_start_date": _day(deal.start_date),
            "billing_end_date": _day(deal.end_date),
            "billing_cycle": deal.billing_cycle,
            "payment_terms_days": str(deal.payment_terms_days),
            "auto_charge": "true" if deal.auto_charge else "false",
            "billing_timing": deal.billing_timing,
            "legal_entity": deal.entity_ref,
        }
    )


def line_properties(
    line: DemoLine, deal: DemoDeal, product: DemoProduct | None, product_id: str | None
) -> dict[str, str]:
    """A line item with HubSpot's standard recurring-billing properties (one-time lines have none)."""
    recurring = product is None or product.charge != "one_time"
    term = None
    if deal.start_date and deal.end_date:
        after = deal.end_date + timedelta(days=1)
        months = (after.year - deal.start_date.year) * 12 + after.month - deal.start_date.month
        term = f"P{months}M"
    return _clean(
        {
            "name": product.name if product else line.sku,
            "hs_product_id": product_id,
            "hs_sku": line.sku,
            "quantity": str(line.quantity),
            "price": str(line.unit_price),
            "hs_discount_percentage": str(line.discount_percent),
            "amount": str(line.total),
            "recurringbillingfrequency": deal.billing_cycle if recurring else None,
            "hs_recurring_billing_start_date": _day(deal.start_date),
            "hs_recurring_billing_period": term if recurring else None,
        }
    )


def render(world: DemoWorld) -> HubSpotData:
    """The world as a HubSpot portal: every record created at its world modification time."""
    data = HubSpotData()
    apply(data, world)
    return data


def apply(data: HubSpotData, world: DemoWorld) -> int:
    """Bring the portal to ``world``'s state: changed records are rewritten with their new modification
    time, deleted deals (and their line items) archived. Returns how many deals changed."""
    with data.lock:
        tables = data.tables
        for n, product in enumerate(world.products.values(), start=1):
            pid = data.ids.setdefault(product.sku, _id("products", n))
            _upsert(tables["products"], pid, product_properties(product), to_ms(world.now) - 86_400_000 * 365)
        for company in world.companies.values():
            cid = data.ids.setdefault(company.key, _id("companies", int(company.key[1:])))
            _upsert(tables["companies"], cid, company_properties(company), to_ms(company.modified_at))
        for partner in world.partners.values():
            pid = data.ids.setdefault(partner.key, partner_company_id(partner.key))
            partner_props = {"name": partner.name, "legal_entity": partner.entity_ref}
            _upsert(tables["companies"], pid, partner_props, to_ms(partner.modified_at))
        changed = 0
        for deal in world.deals.values():
            changed += _apply_deal(data, world, deal)
            if not deal.deleted:
                _link_partners(data, deal)
        for contact in world.contacts.values():
            if contact.key not in data.ids:
                person: dict[str, str | None] = {
                    "email": contact.email,
                    "firstname": contact.first_name,
                    "lastname": contact.last_name,
                    "hs_language": contact.language,
                }
                cid = data.ids[contact.key] = data.add_contact(_clean(person), to_ms(contact.modified_at))
                on = (
                    ("deals", data.ids[contact.deal_key])
                    if contact.deal_key
                    else ("companies", data.ids[contact.company_key])
                )
                data.link_contact(*on, cid, BILLING_CONTACT_LABEL)
        return changed


def _link_partners(data: HubSpotData, deal: DemoDeal) -> None:
    """Associate the deal with its partners' companies under their labels (once; again after the
    deal's associations were rewritten)."""
    deal_id = data.ids[deal.key]
    linked = data.associations.get(("deals", "companies"), {}).get(deal_id, [])
    for kind, partner in (("referral", deal.referral_partner), ("reseller", deal.reseller)):
        if partner is None or data.ids[partner] in linked:
            continue
        label = PARTNER_LABELS[kind]
        type_id = data.label_types.setdefault(label, USER_LABEL_TYPE_BASE + len(data.label_types))
        data.labels.pop(("deals", "companies", deal_id, data.ids[partner]), None)
        data.labels.pop(("companies", "deals", data.ids[partner], deal_id), None)
        data.label("deals", "companies", deal_id, data.ids[partner], label, type_id)


def _upsert(table: ObjectTable, object_id: str, props: dict[str, str], modified_ms: int) -> bool:
    current = table.live.get(object_id)
    if (
        current is not None
        and all(current.properties.get(k) == v for k, v in props.items())
        and len(current.properties) == len(props) + 3
    ):
        return False
    created = current.created_ms if current else modified_ms
    table.put(HsObject(object_id, props, created, max(modified_ms, created)))
    return True


def _apply_deal(data: HubSpotData, world: DemoWorld, deal: DemoDeal) -> int:
    tables, number = data.tables, int(deal.key[1:])
    deal_id = data.ids.setdefault(deal.key, _id("deals", number))
    at = to_ms(deal.modified_at)
    old_lines = data.associations.get(("deals", "line_items"), {}).get(deal_id, [])
    if deal.deleted:
        if deal_id not in tables["deals"].live:
            return 0
        tables["deals"].archive(deal_id, at)
        for line_id in old_lines:
            tables["line_items"].archive(line_id, at)
        return 1
    changed = _upsert(tables["deals"], deal_id, deal_properties(deal), at)
    line_ids = []
    for line in deal.lines:
        line_id = data.ids.setdefault(line.key, _id("line_items", number * 10 + int(line.key.rsplit("L", 1)[1])))
        product = world.products.get(line.sku)
        props = line_properties(line, deal, product, data.ids.get(line.sku) if product else None)
        changed |= _upsert(tables["line_items"], line_id, props, at)
        line_ids.append(line_id)
    for gone in set(old_lines) - set(line_ids):
        tables["line_items"].archive(gone, at)
        changed = True
    changed |= tables["deals"].live[deal_id].modified_ms != at  # saved again without a visible change
    if changed or deal_id not in data.associations.get(("deals", "companies"), {}):
        data.associate("deals", "line_items", deal_id, line_ids)
        data.associate("deals", "companies", deal_id, [data.ids[deal.company_key]])
    if tables["deals"].live[deal_id].modified_ms != at:  # a line changed, or a save without changes
        obj = tables["deals"].live[deal_id]
        tables["deals"].put(HsObject(deal_id, dict(obj.properties), obj.created_ms, at))
    return int(changed)
