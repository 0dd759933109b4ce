"""The Stripe sandbox's memory: objects by type, ids, lists with Stripe's paging, expansion, events.

Objects start from Stripe's own published fixtures (``templates.json``: stripe/openapi
``fixtures3.json``, MIT licence, the API version stripe 16 speaks) so every field the real API
returns is there with the right type; the sandbox fills in what it knows and nulls what it does not.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

LIST_LIMIT_MAX = 100  # Stripe: "limit can range between 1 and 100, and the default is 10"
LIST_LIMIT_DEFAULT = 10
EXPAND_MAX_DEPTH = 4  # Stripe: expansions have a maximum depth of four levels

PREFIXES: dict[str, str] = {
    "customer": "cus",
    "product": "prod",
    "price": "price",
    "invoiceitem": "ii",
    "invoice": "in",
    "line_item": "il",
    "invoice_payment": "inpay",
    "payment_method": "pm",
    "payment_intent": "pi",
    "charge": "ch",
    "refund": "re",
    "dispute": "dp",
    "balance_transaction": "txn",
    "event": "evt",
    "subscription": "sub",
    "subscription_item": "si",
}
_TYPE_BY_PREFIX = {prefix: kind for kind, prefix in PREFIXES.items()}
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def clone(value: Any) -> Any:
    """A copy of JSON-shaped data (dicts, lists, scalars): several times faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


def load_templates() -> dict[str, dict[str, Any]]:
    text = resources.files("billbridge.sandbox.stripe").joinpath("templates.json").read_text()
    templates: dict[str, dict[str, Any]] = json.loads(text)
    return templates


TEMPLATES = load_templates()


class StripeApiError(Exception):
    """An error answer in Stripe's shape; ``saved`` says whether an Idempotency-Key remembers it."""

    def __init__(self, status: int, error: dict[str, Any], *, saved: bool = True) -> None:
        super().__init__(error.get("message", ""))
        self.status, self.error, self.saved = status, error, saved

    @property
    def body(self) -> dict[str, Any]:
        return {"error": self.error}


def invalid(message: str, param: str | None = None, code: str | None = None) -> StripeApiError:
    """A request Stripe refuses while validating it: not remembered under its Idempotency-Key."""
    error: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if param:
        error["param"] = param
    if code:
        error["code"] = code
    return StripeApiError(400, error, saved=False)


def missing(kind: str, object_id: str, param: str = "id") -> StripeApiError:
    return StripeApiError(
        404,
        {
            "type": "invalid_request_error",
            "code": "resource_missing",
            "param": param,
            "message": f"No such {kind}: '{object_id}'",
        },
        saved=False,
    )


@dataclass
class Saved:
    """The first answer given under one Idempotency-Key."""

    fingerprint: str
    status: int
    body: dict[str, Any]


@dataclass
class StripeState:
    """All sandbox data, guarded by one lock (handlers run one at a time, as Stripe's API looks to a client)."""

    clock: Callable[[], float] = time.time
    search_lag: int = 0  # seconds before a new object shows up in search (Stripe: "under 1 minute")
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    idempotency: dict[tuple[str, str], Saved] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    listeners: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    sent_emails: list[dict[str, str]] = field(default_factory=list)  # POST /v1/invoices/{id}/send
    # The demo's stand-in for customers entering a card at signup (Stripe Checkout): a test payment
    # method token for each new customer, or None for no card.
    card_on_signup: Callable[[dict[str, Any]], str | None] | None = None
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def now(self) -> int:
        return int(self.clock())

    def new_id(self, kind: str) -> str:
        n = next(self._ids) * 7919 + 104729  # spread the digits so ids do not look sequential
        text = ""
        while n:
            n, r = divmod(n, len(_ALPHABET))
            text = _ALPHABET[r] + text
        return f"{PREFIXES[kind]}_1Sbx{text.rjust(10, '0')}"

    def new(self, kind: str, **fields: Any) -> dict[str, Any]:
        """A fresh object of ``kind`` from its template, with ``fields`` set, stored and returned."""
        obj: dict[str, Any] = clone(TEMPLATES[kind])
        obj["id"] = self.new_id(kind)
        for name, value in (("livemode", False), ("metadata", {}), ("created", self.now())):
            if name in obj:
                obj[name] = value
        obj.update(fields)
        self.objects.setdefault(kind, {})[obj["id"]] = obj
        return obj

    def get(self, kind: str, object_id: str, param: str = "id") -> dict[str, Any]:
        found = self.objects.get(kind, {}).get(object_id)
        if found is None:
            raise missing(kind, object_id, param)
        return found

    def find(self, object_id: str) -> dict[str, Any] | None:
        kind = _TYPE_BY_PREFIX.get(object_id.split("_", 1)[0])
        return self.objects.get(kind or "", {}).get(object_id)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return list(self.objects.get(kind, {}).values())

    def emit(self, event_type: str, obj: dict[str, Any], view: dict[str, Any]) -> dict[str, Any]:
        """Record an event carrying a snapshot of the object, and hand it to the webhook listeners."""
        event = self.new(
            "event",
            api_version=None,
            data={"object": clone(view)},
            pending_webhooks=len(self.listeners),
            request={"id": None, "idempotency_key": None},
            type=event_type,
        )
        for listener in self.listeners:
            listener(event)
        return event


def page(items: list[dict[str, Any]], params: dict[str, Any], url: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Stripe list paging: newest first, ``limit`` (<= 100), ``starting_after`` / ``ending_before`` by id."""
    limit = _int(params.get("limit"), "limit", LIST_LIMIT_DEFAULT)
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise invalid(f"Invalid limit: must be between 1 and {LIST_LIMIT_MAX}", "limit")
    items = _created_filter(items, params.get("created"))
    newest_first = sorted(items, key=lambda o: o.get("created", 0), reverse=True)
    ids = [o["id"] for o in newest_first]
    if after := params.get("starting_after"):
        if after not in ids:
            raise missing("object", after, "starting_after")
        newest_first = newest_first[ids.index(after) + 1 :]
    elif before := params.get("ending_before"):
        if before not in ids:
            raise missing("object", before, "ending_before")
        newest_first = newest_first[: ids.index(before)][-limit:]
    return newest_first[:limit], {"object": "list", "url": url, "has_more": len(newest_first) > limit}


def _created_filter(items: list[dict[str, Any]], created: Any) -> list[dict[str, Any]]:
    if created is None:
        return items
    if not isinstance(created, dict):
        exact = _int(created, "created", 0)
        return [o for o in items if o["created"] == exact]
    tests = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    for op, value in created.items():
        if op not in tests:
            raise invalid(f"Invalid created filter: {op}", f"created[{op}]")
        bound = _int(value, f"created[{op}]", 0)
        items = [o for o in items if tests[op](o["created"], bound)]
    return items


def _int(value: Any, param: str, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise invalid(f"Invalid integer: {value}", param) from None


def expand_paths(params: dict[str, Any]) -> list[list[str]]:
    paths = params.get("expand") or []
    if isinstance(paths, str):
        paths = [paths]
    out = []
    for path in paths:
        parts = str(path).split(".")
        if len(parts) > EXPAND_MAX_DEPTH:
            raise invalid(
                f"You cannot expand more than {EXPAND_MAX_DEPTH} levels of a property. Property: {path}", "expand"
            )
        out.append(parts)
    return out
