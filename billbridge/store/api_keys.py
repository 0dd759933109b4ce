"""API keys: created with a random token shown once, stored as its SHA-256, scoped to one legal entity."""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import event, or_, select
from sqlalchemy.orm import Session

from billbridge.store.models import ApiKey, LegalEntity, utcnow

TOKEN_START = "bb_"
PREFIX_CHARS = 8  # random characters after TOKEN_START that form the public prefix


@dataclass(frozen=True)
class Principal:
    """Who a valid key speaks for: the key and its legal entity."""

    key_id: int
    key_prefix: str
    entity_id: int
    entity_ref: str
    entity_name: str
    currency: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_key(session: Session, entity_ref: str, name: str | None = None) -> tuple[dict[str, object], str]:
    """A new key for the entity; returns its listing row and the token (which is not stored)."""
    entity_id = session.scalar(select(LegalEntity.id).where(LegalEntity.entity_ref == entity_ref))
    if entity_id is None:
        raise LookupError(f"unknown legal entity {entity_ref!r}")
    public = secrets.token_hex(PREFIX_CHARS // 2)
    token = f"{TOKEN_START}{public}_{secrets.token_urlsafe(32)}"
    row = ApiKey(key_prefix=f"{TOKEN_START}{public}", key_hash=hash_token(token), entity_id=entity_id, name=name)
    session.add(row)
    session.flush()
    return _listing(row, entity_ref), token


class _Revocations:
    """How many key revocations this process has committed: the API's key caches in this process
    forget every key when it changes, so a revocation takes effect here at once (other processes'
    caches let a revoked key through for at most ``api_cache_seconds``)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def committed(self, _session: Session) -> None:
        with self._lock:
            self.count += 1


REVOCATIONS = _Revocations()


def revocations() -> int:
    """Changes whenever this process commits a key revocation."""
    return REVOCATIONS.count


def revoke_key(session: Session, key_id_or_prefix: str) -> dict[str, object]:
    """Revoke by id or prefix; revoking twice keeps the first revocation time. This process's key
    caches hear of it once the session commits (:func:`revocations`)."""
    condition = ApiKey.key_prefix == key_id_or_prefix
    if key_id_or_prefix.isdigit():
        condition = or_(condition, ApiKey.id == int(key_id_or_prefix))
    found = session.execute(
        select(ApiKey, LegalEntity.entity_ref).join(LegalEntity, LegalEntity.id == ApiKey.entity_id).where(condition)
    ).first()
    if found is None:
        raise LookupError(f"no API key with id or prefix {key_id_or_prefix!r}")
    row, entity_ref = found
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        event.listen(session, "after_commit", REVOCATIONS.committed, once=True)
    return _listing(row, entity_ref)


def list_keys(session: Session) -> list[dict[str, object]]:
    rows = session.execute(
        select(ApiKey, LegalEntity.entity_ref).join(LegalEntity, LegalEntity.id == ApiKey.entity_id).order_by(ApiKey.id)
    )
    return [_listing(row, entity_ref) for row, entity_ref in rows]


def authenticate(session: Session, token: str) -> Principal | None:
    """The principal of a valid, unrevoked token, else None."""
    found = session.execute(
        select(
            ApiKey.id,
            ApiKey.key_prefix,
            ApiKey.revoked_at,
            LegalEntity.id,
            LegalEntity.entity_ref,
            LegalEntity.name,
            LegalEntity.currency,
        )
        .join(LegalEntity, LegalEntity.id == ApiKey.entity_id)
        .where(ApiKey.key_hash == hash_token(token))
    ).first()
    if found is None or found.revoked_at is not None:
        return None
    key_id, prefix, _, entity_id, entity_ref, entity_name, currency = found
    return Principal(key_id, prefix, entity_id, entity_ref, entity_name, currency)


def _listing(row: ApiKey, entity_ref: str) -> dict[str, object]:
    revoked: datetime | None = row.revoked_at
    return {
        "id": row.id,
        "prefix": row.key_prefix,
        "entity_ref": entity_ref,
        "name": row.name,
        "created_at": row.created_at,
        "revoked_at": revoked,
    }
