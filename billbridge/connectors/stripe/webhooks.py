"""Verifying Stripe webhook deliveries: the ``Stripe-Signature`` HMAC and a replay window."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import stripe

from billbridge.connectors.base import WebhookRefused

__all__ = ["WebhookRefused", "read_event", "verify_signature", "verify_webhook"]

DEFAULT_TOLERANCE_SECONDS = 300  # Stripe's libraries default to a five-minute window


MAX_UNIX_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second a datetime holds


def verify_webhook(
    payload: bytes, header: str, secret: str, tolerance: int = DEFAULT_TOLERANCE_SECONDS, now: float | None = None
) -> dict[str, Any]:
    """The verified event as a dict; raises WebhookRefused otherwise (:func:`verify_signature`,
    then :func:`read_event`)."""
    return read_event(verify_signature(payload, header, secret, tolerance, now))


def verify_signature(
    payload: bytes, header: str, secret: str, tolerance: int = DEFAULT_TOLERANCE_SECONDS, now: float | None = None
) -> str:
    """The payload's text once its signature and timestamp are checked; raises WebhookRefused.

    The signature check is stripe-python's ``WebhookSignature.verify_header``; the window is checked
    here against ``now`` (it reads the system clock itself), in both directions.
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRefused("the payload is not UTF-8 text", "malformed_payload") from None
    try:
        stripe.WebhookSignature.verify_header(text, header, secret, tolerance=None)
    except stripe.SignatureVerificationError as exc:
        raise WebhookRefused(f"bad Stripe-Signature: {exc.user_message or exc}") from exc
    stamps = [value for key, _, value in (part.partition("=") for part in header.split(",")) if key == "t"]
    if len(stamps) != 1:
        # stripe-python checks the signature against the first ``t``: a second one appended to an old,
        # validly signed header must not pass for a fresh timestamp.
        raise WebhookRefused(f"Stripe-Signature holds {len(stamps)} timestamps; exactly one is allowed")
    stamp = int(stamps[0])
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance:
        raise WebhookRefused(f"Stripe-Signature timestamp {stamp} is outside the {tolerance}s window", "outside_window")
    return text


def read_event(text: str) -> dict[str, Any]:
    """A signed payload as a Stripe event: an object with a non-empty ``id`` and ``type`` and a
    ``created`` Unix time; raises WebhookRefused (malformed_payload) naming what is wrong."""
    try:
        event = json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        raise WebhookRefused(f"the payload is not JSON: {exc}"[:200], "malformed_payload") from None
    except RecursionError:
        raise WebhookRefused("the payload is nested too deep to read", "malformed_payload") from None
    if not isinstance(event, dict) or event.get("object") != "event":
        raise WebhookRefused("the payload is not a Stripe event", "malformed_payload")
    for name in ("id", "type"):
        if not isinstance(event.get(name), str) or not event[name]:
            raise WebhookRefused(f"the event has no {name}", "malformed_payload")
    created = event.get("created")
    if isinstance(created, bool) or not isinstance(created, int) or not 0 <= created <= MAX_UNIX_TIME:
        raise WebhookRefused(
            f"created: expected a Unix time in whole seconds up to {MAX_UNIX_TIME}", "malformed_payload"
        )
    return event
