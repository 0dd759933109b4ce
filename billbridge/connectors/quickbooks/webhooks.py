"""QuickBooks webhooks: ``intuit-signature`` is base64(HMAC-SHA256(verifier token, raw payload)); the
payload lists entity changes per company (realm)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any


def verify_webhook(payload: bytes, signature: str, verifier_token: str) -> bool:
    """True when ``signature`` signs exactly ``payload`` (compare the raw bytes, before any JSON parsing)."""
    try:
        given = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    expected = hmac.new(verifier_token.encode(), payload, hashlib.sha256).digest()
    return hmac.compare_digest(given, expected)


@dataclass(frozen=True)
class EntityChange:
    """One entity change of a notification (Intuit batches several per delivery, and per company)."""

    realm_id: str
    name: str  # the entity: Payment, Invoice, Customer, ...
    id: str
    operation: str  # Create, Update, Delete, Merge, Void, Emailed
    last_updated: str

    @property
    def key(self) -> str:
        """Unique per change: a redelivery carries the same, a later change of the entity a new one."""
        return f"{self.realm_id}:{self.name}:{self.id}:{self.operation}:{self.last_updated}"

    @property
    def updated_at(self) -> datetime | None:
        try:
            return datetime.fromisoformat(self.last_updated)
        except ValueError:
            return None


class MalformedNotification(ValueError):
    """A signed payload that is not an Intuit data-change notification; the message names the field."""


def parse_notification(payload: bytes) -> list[EntityChange]:
    """The entity changes of a verified payload (the classic ``eventNotifications`` format)."""
    try:
        body = json.loads(payload)
    except ValueError as exc:
        raise MalformedNotification(f"the payload is not JSON: {exc}") from None
    notifications = _field(body, "eventNotifications", list, "")
    changes = []
    for n, notification in enumerate(notifications):
        where = f"eventNotifications[{n}]"
        realm = _field(notification, "realmId", str, where)
        event = _field(notification, "dataChangeEvent", dict, where)
        for e, entity in enumerate(_field(event, "entities", list, f"{where}.dataChangeEvent")):
            at = f"{where}.dataChangeEvent.entities[{e}]"
            changes.append(
                EntityChange(
                    realm,
                    _field(entity, "name", str, at),
                    _field(entity, "id", str, at),
                    _field(entity, "operation", str, at),
                    _field(entity, "lastUpdated", str, at),
                )
            )
    return changes


def _field(container: Any, name: str, kind: type, where: str) -> Any:
    path = f"{where}.{name}" if where else name
    if not isinstance(container, dict):
        raise MalformedNotification(f"{where or 'the payload'} is not an object")
    value = container.get(name)
    if not isinstance(value, kind) or (kind is str and not value):
        expected = "a list" if kind is list else "an object" if kind is dict else "a non-empty string"
        raise MalformedNotification(f"{path}: expected {expected}, got {type(value).__name__}")
    return value
