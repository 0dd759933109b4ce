"""Idempotency keys, one mechanism for the usage API and the write API: the ``Idempotency-Key`` header
(printable ASCII, at most 150 characters), scoped to the API key's legal entity (two entities never
collide), and one refusal for a key sent again with a different request (409).

A usage event keeps its key with the event (``store.usage``); a write request keeps its answer
(``store.api_answers``) and the same request sent again gets that answer replayed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fastapi import Request
from sqlalchemy.orm import Session

from billbridge.api.errors import ApiError, refuse
from billbridge.store import api_answers
from billbridge.store.api_answers import Answer
from billbridge.store.db import Store

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 150
KEY_PATTERN = r"^[\x21-\x7e]+$"
_KEY = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}")
REPLAYED_HEADER = "Idempotent-Replayed"


def openapi_parameter(what: str) -> dict[str, Any]:
    """The header as an OpenAPI parameter of an operation."""
    return {
        "name": HEADER,
        "in": "header",
        "required": False,
        "description": f"Idempotency key of the {what} (printable ASCII, at most {MAX_KEY_LENGTH} characters)",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": KEY_PATTERN},
    }


def header_key(request: Request) -> str | None:
    """The request's idempotency key, or None; 422 when it is not 1-150 printable ASCII characters."""
    key = request.headers.get("idempotency-key")
    if key is not None and not _KEY.fullmatch(key):
        raise refuse(
            422, "bad_idempotency_key", f"{HEADER} must be 1-{MAX_KEY_LENGTH} printable ASCII characters", HEADER
        )
    return key


def scoped(entity_id: int, key: str) -> str:
    """A key as stored: the same key from two legal entities is two keys."""
    return f"{entity_id}:{key}"


def conflict(what: str, field: str) -> ApiError:
    return refuse(409, "idempotency_conflict", f"this idempotency key was already used for a different {what}", field)


def fingerprint(method: str, path: str, body: Any) -> str:
    """What makes two requests the same: method, path and the body's JSON (key order aside)."""
    text = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"), default=_exact)
    return hashlib.sha256(text.encode()).hexdigest()


def _exact(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(type(value).__name__)


def answer_once(
    store: Store, key: str | None, entity_id: int, request_fingerprint: str, answer: Callable[[Session], Answer]
) -> tuple[Answer, bool]:
    """``answer(session)`` in one write transaction, and whether it is a replay. With a key, the answer
    is kept with what it changed; the same request sent again with the key gets it back (replayed, the
    change not made twice), another request with the key a 409. A refusal (an ApiError) keeps nothing:
    the request can be corrected and sent again with the same key."""
    with store.write() as session:
        if key is None:
            return answer(session), False
        stored_key = scoped(entity_id, key)
        taken = api_answers.claim(session, stored_key, request_fingerprint)
        if taken is not None:
            first_fingerprint, first = taken
            if first_fingerprint != request_fingerprint:
                raise conflict("request", HEADER)
            return first, True
        fresh = answer(session)
        api_answers.keep(session, stored_key, fresh)
        return fresh, False
