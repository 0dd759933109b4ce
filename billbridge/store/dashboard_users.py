"""Dashboard users: a name, a scrypt hash of the password (never the password), the legal entities
they may see. Created by ``billbridge user create``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from billbridge.store.metric_models import DashboardUser
from billbridge.store.models import LegalEntity, utcnow

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # OWASP's minimum for scrypt (16 MiB, about 50 ms)
MIN_PASSWORD = 12


@dataclass(frozen=True)
class User:
    id: int
    username: str
    entity_refs: tuple[str, ...]


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    encode = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${encode(salt).decode()}${encode(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        found = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p))
    except ValueError:
        return False
    return kind == "scrypt" and hmac.compare_digest(found, expected)


def create_user(session: Session, username: str, password: str, entity_refs: Sequence[str]) -> User:
    """A new user seeing ``entity_refs``; ValueError names what is wrong (name taken, short password,
    unknown entity)."""
    username = username.strip()
    if not username or len(username) > 100:
        raise ValueError("username: give 1 to 100 characters")
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"password: at least {MIN_PASSWORD} characters")
    refs = sorted(set(entity_refs))
    if not refs:
        raise ValueError("--entity: name at least one legal entity the user may see")
    known = set(session.scalars(select(LegalEntity.entity_ref).where(LegalEntity.entity_ref.in_(refs))))
    missing = [r for r in refs if r not in known]
    if missing:
        raise ValueError(f"--entity: unknown legal entity {', '.join(repr(m) for m in missing)}")
    if session.scalar(select(DashboardUser.id).where(DashboardUser.username == username)) is not None:
        raise ValueError(f"username: {username!r} is taken")
    row = DashboardUser(username=username, password_hash=hash_password(password), entity_refs=refs)
    session.add(row)
    session.flush()
    return User(row.id, username, tuple(refs))


def sign_in(session: Session, username: str, password: str) -> User | None:
    """The user, when the name and password match an enabled user (the same work when the name is unknown)."""
    row = session.scalar(select(DashboardUser).where(DashboardUser.username == username.strip()))
    stored = row.password_hash if row is not None else _DUMMY
    ok = check_password(password, stored)
    if row is None or not ok or row.disabled_at is not None:
        return None
    return User(row.id, row.username, tuple(row.entity_refs))


def active_user(session: Session, user_id: int) -> User | None:
    row = session.get(DashboardUser, user_id)
    if row is None or row.disabled_at is not None:
        return None
    return User(row.id, row.username, tuple(row.entity_refs))


def disable_user(session: Session, username: str) -> None:
    row = session.scalar(select(DashboardUser).where(DashboardUser.username == username))
    if row is None:
        raise LookupError(f"no dashboard user {username!r}")
    if row.disabled_at is None:
        row.disabled_at = utcnow()


def list_users(session: Session) -> list[dict[str, Any]]:
    rows = session.scalars(select(DashboardUser).order_by(DashboardUser.username))
    return [
        {
            "username": r.username,
            "entities": list(r.entity_refs),
            "created_at": str(r.created_at),
            "disabled_at": str(r.disabled_at or ""),
        }
        for r in rows
    ]


_DUMMY = hash_password(secrets.token_urlsafe(16))
