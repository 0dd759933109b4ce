"""Signed outgoing webhooks of monitors' alerts, for teams without Prefect Cloud notifications.

Stripe's scheme: the ``Billbridge-Signature`` header is ``t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<body>" with the monitor's signing secret>``; a receiver recomputes it and refuses deliveries
signed more than a few minutes away from its clock (replays). ``Billbridge-Delivery`` is the alert's
id: delivery is at least once (the outbox retries), so a receiver keeps the ids it has handled.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import httpx

from billbridge.connectors.errors import Classified, ErrorKind, classify_status

SIGNATURE_HEADER = "Billbridge-Signature"
DELIVERY_HEADER = "Billbridge-Delivery"
TIMEOUT = httpx.Timeout(10.0)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The header's value for ``body`` signed at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, *, now: float | None = None, tolerance: int = 300) -> bool:
    """What a receiver does: the signature matches and was made within ``tolerance`` seconds."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        stamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - stamp) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, stamp, body), f"t={stamp},v1={parts.get('v1', '')}")


def deliver(client: httpx.Client, url: str, body: bytes, secret: str, delivery_id: str) -> Classified | None:
    """POST one signed delivery; None when the receiver took it (2xx), else why not (5xx, 429 and
    transport failures are retriable; another status is fatal: the receiver refuses it)."""
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(secret, int(time.time()), body),
        DELIVERY_HEADER: delivery_id,
        "User-Agent": "billbridge-monitors",
    }
    try:
        response = client.post(url, content=body, headers=headers, timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        return Classified(ErrorKind.RETRIABLE, f"{type(exc).__name__} posting to the webhook")
    if 200 <= response.status_code < 300:
        return None
    classified = classify_status(response.status_code, response.headers.get("Retry-After"))
    if classified.kind == ErrorKind.AUTH:  # no credential of ours to refresh: the receiver refuses us
        return Classified(ErrorKind.FATAL, classified.reason)
    return classified
