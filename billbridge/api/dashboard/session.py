"""Dashboard sessions: who signed in (an API key or a dashboard user), the legal entities they see,
and the CSRF token of their forms, sealed (Fernet, the installation's key) in an HttpOnly,
SameSite=Strict cookie that expires after ``SESSION_SECONDS``.

The seal's own timestamp enforces the expiry even if a browser kept the cookie; every request
checks the key or user again, so a revoked key or disabled user is out at once. Forms post a CSRF
token (signed-in forms: the session's; the sign-in form: a pre-session cookie's), and a POST from
another origin is refused.
"""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass

from fastapi import Request, Response
from sqlalchemy import select

from billbridge.secrets import Sealer, SealError
from billbridge.store import dashboard_users
from billbridge.store.db import Store
from billbridge.store.models import ApiKey, LegalEntity

COOKIE = "bb_session"
CSRF_COOKIE = "bb_csrf"
SESSION_SECONDS = 8 * 3600
KIND = "billbridge-dashboard-session"


@dataclass(frozen=True)
class Session:
    """A signed-in person: ``who`` names them (a key prefix or a username)."""

    principal: str  # "key" or "user"
    principal_id: int
    who: str
    entity_refs: tuple[str, ...]
    csrf: str


def seal(sealer: Sealer, session: Session) -> str:
    body = {
        "kind": KIND,
        "principal": session.principal,
        "id": session.principal_id,
        "who": session.who,
        "entities": list(session.entity_refs),
        "csrf": session.csrf,
    }
    return sealer.seal(json.dumps(body))


def current(request: Request, sealer: Sealer, store: Store) -> Session | None:
    """The request's session if its cookie is ours, unexpired, and its key or user still valid (with
    the entities they may see now)."""
    sealed = request.cookies.get(COOKIE)
    if not sealed:
        return None
    try:
        body = json.loads(sealer.open(sealed, max_age=SESSION_SECONDS))
    except (SealError, ValueError):
        return None
    if not isinstance(body, dict) or body.get("kind") != KIND:
        return None
    principal, ident = body.get("principal"), body.get("id")
    if not isinstance(ident, int):
        return None
    with store.read() as db:
        if principal == "key":
            found = db.execute(
                select(ApiKey.key_prefix, LegalEntity.entity_ref)
                .join(LegalEntity, LegalEntity.id == ApiKey.entity_id)
                .where(ApiKey.id == ident, ApiKey.revoked_at.is_(None))
            ).first()
            if found is None:
                return None
            return Session("key", ident, found[0], (found[1],), str(body.get("csrf")))
        if principal == "user":
            user = dashboard_users.active_user(db, ident)
            if user is None:
                return None
            return Session("user", ident, user.username, user.entity_refs, str(body.get("csrf")))
    return None


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


def same_origin(request: Request) -> bool:
    """A browser's POST names its origin: it must be this server's (no header: not a browser form)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return origin == f"{request.url.scheme}://{request.url.netloc}"
