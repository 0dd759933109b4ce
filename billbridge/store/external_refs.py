"""External references: which id a record has in an outside system (one per system, type and record)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from billbridge.store.models import ExternalRef


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


def link(
    session: Session, system: str, object_type: str, internal_id: int, external_id: str, version: str | None = None
) -> None:
    """Record the link; linking the same pair again updates its version, another external id is refused."""
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
            )
        )
    elif row.external_id != external_id:
        raise ValueError(
            f"{object_type} {internal_id} is already linked to {system} id {row.external_id}, not {external_id}"
        )
    else:
        row.version = version


LINK_CHUNK = 500  # internal ids per IN (...) when linking many


def link_many(session: Session, links: Sequence[tuple[str, str, int, str, str | None]]) -> None:
    """``link`` for many (system, object type, internal id, external id, version) at once: one read per
    system and type (per 500 ids) and one insert, instead of a read and an insert per link."""
    wanted: dict[tuple[str, str, int], tuple[str, str | None]] = {}
    for system, object_type, internal_id, external_id, version in links:
        key = (system, object_type, internal_id)
        if key in wanted and wanted[key][0] != external_id:
            raise ValueError(
                f"{object_type} {internal_id} cannot be linked to {system} ids {wanted[key][0]} and {external_id}"
            )
        wanted[key] = (external_id, version)
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
                external_id, version = wanted.pop((system, object_type, row.internal_id))
                if row.external_id != external_id:
                    raise ValueError(
                        f"{object_type} {row.internal_id} is already linked to {system} id {row.external_id}, not {external_id}"
                    )
                row.version = version
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
                }
                for (system, object_type, internal_id), (external_id, version) in wanted.items()
            ],
        )
