"""Legal entities, customers, products and the price book: upserts by their refs and lookups."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from billbridge.billing import model
from billbridge.store.message_models import BillingContactRow
from billbridge.store.models import Customer, LegalEntity, NumberSequence, Price, Product, table_of, utcnow
from billbridge.store.partner_models import Partner
from billbridge.store.records import Outcome

DOC_TYPES = ("invoice", "credit_note")


class MissingReference(LookupError):
    """A record points at a ref the store does not have. ``field`` names the pointing field;
    ``missing`` is what the store lacks, as (record type, ref), when getting it would let the record
    in (a sync retries the record then); None when it conflicts with what is there."""

    def __init__(self, field: str, message: str, missing: tuple[str, str] | None = None) -> None:
        super().__init__(message)
        self.field, self.missing = field, missing


class CustomerConflict(ValueError):
    """A customer record that would change what another record owns: a reseller's bill-to record
    (the customer under its partner ref) is written by its ``partners`` record only. ``field`` names
    the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def partner_owned(session: Session, refs: Iterable[str]) -> set[str]:
    """The customer refs among ``refs`` that are a reseller's bill-to record: a partner of kind reseller
    or both has that ref (it is invoiced as a customer under its partner ref)."""
    wanted = sorted(set(refs))
    if not wanted:
        return set()
    query = select(Partner.partner_ref).where(Partner.partner_ref.in_(wanted), Partner.kind != "referral")
    return set(session.scalars(query))


def _owned_conflict(ref: str) -> CustomerConflict:
    return CustomerConflict(
        "customer_ref",
        f"customer {ref} is the bill-to record of reseller {ref}: its name and legal entity come from its "
        "partners record; a customers record may not rename or move it",
    )


def upsert_entity(session: Session, entity: model.LegalEntity) -> Outcome:
    row = session.scalar(select(LegalEntity).where(LegalEntity.entity_ref == entity.entity_ref))
    values = {
        "name": entity.name,
        "currency": entity.currency,
        "invoice_prefix": entity.invoice_prefix,
        "credit_note_prefix": entity.credit_prefix,
        "timezone": entity.timezone,
        "messaging": entity.messaging.model_dump(mode="json") if entity.messaging else None,
    }
    if row is None:
        row = LegalEntity(entity_ref=entity.entity_ref, **values)
        session.add(row)
        session.flush()
        session.add_all(NumberSequence(entity_id=row.id, doc_type=t, next_value=1) for t in DOC_TYPES)
        return "created"
    return _apply(row, values)


def upsert_customer(session: Session, customer: model.Customer, *, as_partner: bool = False) -> Outcome:
    """Store a customer by its ref. A reseller's bill-to record is changed only by its partner
    (``as_partner``): a plain customer record that would rename or move it raises CustomerConflict."""
    entity_id = entity_ids(session, [customer.entity_ref]).get(customer.entity_ref)
    if entity_id is None:
        raise MissingReference(
            "entity_ref", f"unknown legal entity {customer.entity_ref!r}", ("entities", customer.entity_ref)
        )
    row = session.scalar(select(Customer).where(Customer.customer_ref == customer.customer_ref))
    values = {
        "name": customer.name,
        "entity_id": entity_id,
        "email": customer.email,
        "message_channel": customer.channel,
    }
    if row is None:
        row = Customer(customer_ref=customer.customer_ref, **values)
        session.add(row)
        session.flush()
        replace_contacts(session, {row.id: customer.contacts})
        return "created"
    if (
        not as_partner
        and (row.name, row.entity_id) != (customer.name, entity_id)
        and partner_owned(session, [customer.customer_ref])
    ):
        raise _owned_conflict(customer.customer_ref)
    outcome = _apply(row, values)
    return "updated" if replace_contacts(session, {row.id: customer.contacts}) else outcome


def upsert_customers(
    session: Session, customers: Iterable[model.Customer]
) -> dict[str, Outcome | MissingReference | CustomerConflict]:
    """Batch form of :func:`upsert_customer`: a few lookups and at most one insert and one update
    statement for the whole batch; a refused customer gets its error instead of an outcome."""
    batch = {c.customer_ref: c for c in customers}
    entities = entity_ids(session, [c.entity_ref for c in batch.values()])
    table = table_of(Customer)
    known = {
        r.customer_ref: r
        for r in session.execute(
            select(
                table.c.customer_ref,
                table.c.id,
                table.c.name,
                table.c.entity_id,
                table.c.email,
                table.c.message_channel,
            ).where(table.c.customer_ref.in_(batch))
        )
    }
    out: dict[str, Outcome | MissingReference | CustomerConflict] = {}
    owned = partner_owned(session, known)
    inserts: list[dict[str, object]] = []
    updates: list[dict[str, object]] = []
    now = utcnow()
    for ref, customer in batch.items():
        entity_id = entities.get(customer.entity_ref)
        if entity_id is None:
            out[ref] = MissingReference(
                "entity_ref", f"unknown legal entity {customer.entity_ref!r}", ("entities", customer.entity_ref)
            )
            continue
        row = known.get(ref)
        if row is None:
            inserts.append(
                {
                    "customer_ref": ref,
                    "name": customer.name,
                    "entity_id": entity_id,
                    "email": customer.email,
                    "message_channel": customer.channel,
                }
            )
            out[ref] = "created"
        elif (row.name, row.entity_id, row.email, row.message_channel) != (
            customer.name,
            entity_id,
            customer.email,
            customer.channel,
        ):
            if ref in owned and (row.name, row.entity_id) != (customer.name, entity_id):
                out[ref] = _owned_conflict(ref)
                continue
            updates.append(
                {
                    "cid": row.id,
                    "name": customer.name,
                    "entity_id": entity_id,
                    "email": customer.email,
                    "channel": customer.channel,
                    "now": now,
                }
            )
            out[ref] = "updated"
        else:
            out[ref] = "unchanged"
    connection = session.connection()
    if inserts:
        connection.execute(insert(table), inserts)
    if updates:
        connection.execute(_UPDATE_CUSTOMER, updates)
    with_contacts = {ref: c for ref, c in batch.items() if ref in out and not isinstance(out[ref], Exception)}
    if with_contacts:
        ids = dict(
            session.execute(
                select(table.c.customer_ref, table.c.id).where(table.c.customer_ref.in_(with_contacts))
            ).all()
        )
        changed = replace_contacts(session, {ids[ref]: c.contacts for ref, c in with_contacts.items()})
        for ref, customer_id in ids.items():
            if customer_id in changed and out[ref] == "unchanged":
                out[ref] = "updated"
    return out


def replace_contacts(session: Session, contacts: Mapping[int, Sequence[model.BillingContact] | None]) -> set[int]:
    """Store each customer's billing contacts as its source lists them now (None: the source says
    nothing of contacts, and the stored ones stay; none stored, the customer's email stands in);
    returns the customers whose contacts changed."""
    table = table_of(BillingContactRow)
    stored: dict[int, list[tuple[object, ...]]] = {cid: [] for cid in contacts}
    for row in session.execute(
        select(table.c.customer_id, table.c.email, table.c.role, table.c.name, table.c.language, table.c.opt_out)
        .where(table.c.customer_id.in_(list(contacts)))
        .order_by(table.c.customer_id, table.c.position)
    ):
        stored[row.customer_id].append(tuple(row)[1:])
    changed: set[int] = set()
    rows: list[dict[str, object]] = []
    for customer_id, listed in contacts.items():
        if listed is None:  # the source says nothing of contacts (a CRM without them): keep what is stored
            continue
        wanted = [(c.email, c.role, c.name, c.language, ",".join(c.opt_out)) for c in listed]
        if wanted == stored[customer_id]:
            continue
        changed.add(customer_id)
        rows.extend(
            {"customer_id": customer_id, "position": i, "email": e, "role": r, "name": n, "language": la, "opt_out": o}
            for i, (e, r, n, la, o) in enumerate(wanted)
        )
    if changed:
        session.execute(delete(table).where(table.c.customer_id.in_(changed)))
        if rows:
            session.execute(insert(table), rows)
    return changed


_UPDATE_CUSTOMER = (
    update(table_of(Customer))
    .where(table_of(Customer).c.id == bindparam("cid"))
    .values(
        name=bindparam("name"),
        entity_id=bindparam("entity_id"),
        email=bindparam("email"),
        message_channel=bindparam("channel"),
        updated_at=bindparam("now"),
    )
)


def unchanged_products(session: Session, products: Iterable[model.Product]) -> set[str]:
    """Refs of the given products the store already holds exactly so (name, description, every price)."""
    batch = list(products)
    stored = load_products(session, [p.product_ref for p in batch])
    same = set()
    for product in batch:
        current = stored.get(product.product_ref)
        if current is None or (current.name, current.description) != (product.name, product.description):
            continue
        prices = {p.price_ref: p for p in current.prices}
        if all(prices.get(p.price_ref) == p for p in product.prices):
            same.add(product.product_ref)
    return same


def upsert_product(session: Session, product: model.Product) -> Outcome:
    """Upsert a product and its prices (a price keeps its ref; prices left out of the file stay)."""
    row = session.scalar(select(Product).where(Product.product_ref == product.product_ref))
    values = {"name": product.name, "description": product.description}
    if row is None:
        row = Product(product_ref=product.product_ref, **values)
        session.add(row)
        session.flush()
        outcome: Outcome = "created"
    else:
        outcome = _apply(row, values)
    existing = {p.price_ref: p for p in session.scalars(select(Price).where(Price.product_id == row.id))}
    for price in product.prices:
        price_values = {
            "currency": price.currency,
            "pricing": price.pricing.model_dump(mode="json"),
            "product_id": row.id,
        }
        current = existing.get(price.price_ref)
        if current is None:
            taken = session.scalar(select(Price).where(Price.price_ref == price.price_ref))
            if taken is not None:
                raise MissingReference("prices.price_ref", f"price {price.price_ref!r} belongs to another product")
            session.add(Price(price_ref=price.price_ref, **price_values))
            outcome = "updated" if outcome == "unchanged" else outcome
        elif _apply(current, price_values) == "updated" and outcome == "unchanged":
            outcome = "updated"
    return outcome


def _apply(row: object, values: Mapping[str, object]) -> Outcome:
    changed = False
    for key, value in values.items():
        if getattr(row, key) != value:
            setattr(row, key, value)
            changed = True
    return "updated" if changed else "unchanged"


def entity_ids(session: Session, refs: Iterable[str]) -> dict[str, int]:
    refs = list(set(refs))
    rows = session.execute(select(LegalEntity.entity_ref, LegalEntity.id).where(LegalEntity.entity_ref.in_(refs)))
    return dict(rows.all())


def customer_ids(session: Session, refs: Iterable[str]) -> dict[str, tuple[int, int]]:
    """customer_ref -> (customer id, entity id)."""
    refs = list(set(refs))
    rows = session.execute(
        select(Customer.customer_ref, Customer.id, Customer.entity_id).where(Customer.customer_ref.in_(refs))
    )
    return {ref: (cid, eid) for ref, cid, eid in rows}


def product_ids(session: Session, refs: Iterable[str]) -> dict[str, int]:
    refs = list(set(refs))
    rows = session.execute(select(Product.product_ref, Product.id).where(Product.product_ref.in_(refs)))
    return dict(rows.all())


def load_products(session: Session, refs: Iterable[str]) -> dict[str, model.Product]:
    """The canonical products (with their prices) for the given refs."""
    refs = list(set(refs))
    products = {p.id: p for p in session.scalars(select(Product).where(Product.product_ref.in_(refs)))}
    prices: dict[int, list[model.ProductPrice]] = {pid: [] for pid in products}
    if products:
        for price in session.scalars(select(Price).where(Price.product_id.in_(products)).order_by(Price.id)):
            prices[price.product_id].append(
                model.ProductPrice.model_validate(
                    {"price_ref": price.price_ref, "currency": price.currency, "pricing": price.pricing}
                )
            )
    return {
        p.product_ref: model.Product(
            product_ref=p.product_ref, name=p.name, description=p.description, prices=prices[p.id]
        )
        for p in products.values()
    }
