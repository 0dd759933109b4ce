"""External references: which id a record has in an outside system (one per system, type and record)."""

from __future__ import annotations

from sqlalchemy import select
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
