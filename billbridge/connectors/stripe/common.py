"""Small pieces the Stripe connector's modules share."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from billbridge.connectors.paging import StartingAfter

VENDOR = "stripe"
PAGE_SIZE = 100  # Stripe lists page at 100 at most
PAGES = StartingAfter()  # lists page by starting_after the last id while has_more


def plain(obj: Any) -> dict[str, Any]:
    """A StripeObject as plain dicts and lists (``*_decimal`` fields stay Decimal, never float)."""
    data: dict[str, Any] = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return data


def content_key(prefix: str, params: dict[str, Any]) -> str:
    """An Idempotency-Key that changes with the content: a changed request must not reuse a key."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return f"{prefix}-{digest}"
