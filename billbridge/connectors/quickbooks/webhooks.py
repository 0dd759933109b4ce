"""QuickBooks webhooks: ``intuit-signature`` is base64(HMAC-SHA256(verifier token, raw payload)), in
both of Intuit's payload formats. The current one (Intuit moved every app to it in 2026) is a JSON
array of CloudEvents 1.0, one per entity change: ``type`` ``qbo.<entity>.<operation>.v1`` (entity in
lower case, operation in the past tense), ``intuitentityid``, ``intuitaccountid`` (the company),
``time``. The legacy one is an ``eventNotifications`` object listing the changes per company."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
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
    event_id: str | None = None  # the CloudEvent's id (None in the legacy format)

    @property
    def key(self) -> str:
        """Unique per change: a redelivery carries the same, a later change of the entity a new one.
        Made of the change, not the CloudEvent id, which the CloudEvents spec does not bind a
        redelivery to keep."""
        return f"{self.realm_id}:{self.name}:{self.id}:{self.operation}:{self.last_updated}"

    @property
    def updated_at(self) -> datetime | None:
        """``last_updated`` in UTC (informational: None when it is no time a datetime holds in UTC)."""
        try:
            stamp = datetime.fromisoformat(self.last_updated)
            return stamp.astimezone(UTC) if stamp.tzinfo else stamp.replace(tzinfo=UTC)
        except (ValueError, OverflowError):  # OverflowError: 0001-01-01T00:00:00+01:00 is no UTC time
            return None


class MalformedNotification(ValueError):
    """A signed payload that is not an Intuit data-change notification; the message names the field."""


# CloudEvents name the entity in lower case; the API (and the legacy format) as below.
ENTITIES = {
    name.lower(): name
    for name in (
        "Account", "Bill", "BillPayment", "Budget", "Class", "CreditMemo", "Currency", "Customer", "Department",
        "Deposit", "Employee", "Estimate", "Invoice", "Item", "JournalCode", "JournalEntry", "Payment",
        "PaymentMethod", "Preferences", "Purchase", "PurchaseOrder", "RefundReceipt", "SalesReceipt", "TaxAgency",
        "Term", "TimeActivity", "Transfer", "Vendor", "VendorCredit",
    )
}  # fmt: skip
OPERATIONS = {
    "created": "Create",
    "updated": "Update",
    "deleted": "Delete",
    "merged": "Merge",
    "voided": "Void",
    "emailed": "Emailed",
}
_EVENT_TYPE = re.compile(r"qbo\.([a-z]+)\.([a-z]+)\.v[0-9]+")


def parse_notification(payload: bytes) -> list[EntityChange]:
    """The entity changes of a verified payload, in either format (see the module's docstring)."""
    try:
        body = json.loads(payload)
    except ValueError as exc:
        raise MalformedNotification(f"the payload is not JSON: {exc}") from None
    except RecursionError:
        raise MalformedNotification("the payload is nested too deep to read") from None
    if isinstance(body, list):
        return [_cloud_event(event, f"[{n}]") for n, event in enumerate(body)]
    if not isinstance(body, dict):
        raise MalformedNotification("the payload is neither a list of CloudEvents nor an eventNotifications object")
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


def _cloud_event(event: Any, where: str) -> EntityChange:
    version = _field(event, "specversion", str, where)
    if version != "1.0":
        raise MalformedNotification(f"{where}.specversion: expected 1.0, got {version!r}")
    event_type = _field(event, "type", str, where)
    parts = _EVENT_TYPE.fullmatch(event_type)
    if parts is None:
        raise MalformedNotification(f"{where}.type: expected qbo.<entity>.<operation>.v<n>, got {event_type!r}")
    entity, operation = parts.groups()
    return EntityChange(
        _field(event, "intuitaccountid", str, where),
        ENTITIES.get(entity, entity.capitalize()),
        _field(event, "intuitentityid", str, where),
        OPERATIONS.get(operation, operation.capitalize()),
        _field(event, "time", str, where),
        _field(event, "id", str, where),
    )


def _field(container: Any, name: str, kind: type, where: str) -> Any:
    path = f"{where}.{name}" if where else name
    if not isinstance(container, dict):
        raise MalformedNotification(f"{where or 'the payload'} is not an object")
    value = container.get(name)
    if not isinstance(value, kind) or (kind is str and not value):
        expected = "a list" if kind is list else "an object" if kind is dict else "a non-empty string"
        raise MalformedNotification(f"{path}: expected {expected}, got {type(value).__name__}")
    return value
