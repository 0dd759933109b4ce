"""External references: which id a record has in an outside system (one per system, type and record)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from billbridge.store.models import Customer, ExternalRef


def get_external_id(session: Session, system: str, object_type: str, internal_id: int) -> str | None:
    return session.scalar(
        select(ExternalRef.external_id).where(
            ExternalRef.system == system, ExternalRef.object_type == object_type, ExternalRef.internal_id == internal_id
        )
    )


def get_internal_id(session: Session, system: str, object_type: str, external_id: str) -> int | None:
    return session.scalar(
        select(ExternalRef.internal_id).where(
            ExternalRef.system == system, ExternalRef.object_type == object_type, ExternalRef.external_id == external_id
        )
    )


def external_refs_of(
    session: Session, system: str, object_type: str, internal_ids: Iterable[int]
) -> dict[int, tuple[str, str | None]]:
    """internal id -> (external id, the name it has there where it is not its own, else None)."""
    ids = sorted(set(internal_ids))
    found: dict[int, tuple[str, str | None]] = {}
    for start in range(0, len(ids), LINK_CHUNK):
        rows = session.execute(
            select(ExternalRef.internal_id, ExternalRef.external_id, ExternalRef.external_name).where(
                ExternalRef.system == system,
                ExternalRef.object_type == object_type,
                ExternalRef.internal_id.in_(ids[start : start + LINK_CHUNK]),
            )
        )
        found.update((internal_id, (external_id, name)) for internal_id, external_id, name in rows)
    return found


def customer_external_ref(session: Session, system: str, customer_ref: str) -> tuple[str, str | None] | None:
    """Our customer's (external id, name there where not its own) in ``system``, or None when unrecorded."""
    row = session.execute(
        select(ExternalRef.external_id, ExternalRef.external_name)
        .join(Customer, Customer.id == ExternalRef.internal_id)
        .where(
            ExternalRef.system == system, ExternalRef.object_type == "customer", Customer.customer_ref == customer_ref
        )
    ).first()
    return (row[0], row[1]) if row is not None else None


def count_named(session: Session) -> dict[str, int]:
    """How many records are known in an outside system under a name not their own, by "system object type"."""
    rows = session.execute(
        select(ExternalRef.system, ExternalRef.object_type, func.count())
        .where(ExternalRef.external_name.is_not(None))
        .group_by(ExternalRef.system, ExternalRef.object_type)
    )
    return {f"{system} {object_type}": n for system, object_type, n in rows}


def link(
    session: Session,
    system: str,
    object_type: str,
    internal_id: int,
    external_id: str,
    version: str | None = None,
    name: str | None = None,
) -> None:
    """Record the link (``name``: the record's name there where it is not its own); linking the same
    pair again updates its version and name, another external id is refused."""
    row = session.scalar(
        select(ExternalRef).where(
            ExternalRef.system == system, ExternalRef.object_type == object_type, ExternalRef.internal_id == internal_id
        )
    )
    if row is None:
        session.add(
            ExternalRef(
                system=system,
                object_type=object_type,
                internal_id=internal_id,
                external_id=external_id,
                version=version,
                external_name=name,
            )
        )
    elif row.external_id != external_id:
        raise ValueError(
            f"{object_type} {internal_id} is already linked to {system} id {row.external_id}, not {external_id}"
        )
    else:
        row.version = version
        row.external_name = name or row.external_name


LINK_CHUNK = 500  # internal ids per IN (...) when linking many


Link = tuple[str, str, int, str, str | None] | tuple[str, str, int, str, str | None, str | None]
"""(system, object type, internal id, external id, version[, the name it has there where not its own])"""


def link_many(session: Session, links: Sequence[Link]) -> None:
    """``link`` for many (system, object type, internal id, external id, version[, name]) at once: one
    read per system and type (per 500 ids) and one insert, instead of a read and an insert per link."""
    wanted: dict[tuple[str, str, int], tuple[str, str | None, str | None]] = {}
    for system, object_type, internal_id, external_id, version, *named in links:
        key = (system, object_type, internal_id)
        if key in wanted and wanted[key][0] != external_id:
            raise ValueError(
                f"{object_type} {internal_id} cannot be linked to {system} ids {wanted[key][0]} and {external_id}"
            )
        wanted[key] = (external_id, version, named[0] if named else None)
    groups: dict[tuple[str, str], list[int]] = {}
    for system, object_type, internal_id in wanted:
        groups.setdefault((system, object_type), []).append(internal_id)
    for (system, object_type), ids in groups.items():
        for start in range(0, len(ids), LINK_CHUNK):
            rows = session.scalars(
                select(ExternalRef).where(
                    ExternalRef.system == system,
                    ExternalRef.object_type == object_type,
                    ExternalRef.internal_id.in_(ids[start : start + LINK_CHUNK]),
                )
            )
            for row in rows:
                external_id, version, name = wanted.pop((system, object_type, row.internal_id))
                if row.external_id != external_id:
                    raise ValueError(
                        f"{object_type} {row.internal_id} is already linked to {system} id {row.external_id}, not {external_id}"
                    )
                row.version = version
                row.external_name = name or row.external_name
    if wanted:
        session.execute(
            insert(ExternalRef),
            [
                {
                    "system": system,
                    "object_type": object_type,
                    "internal_id": internal_id,
                    "external_id": external_id,
                    "version": version,
                    "external_name": name,
                }
                for (system, object_type, internal_id), (external_id, version, name) in wanted.items()
            ],
        )
