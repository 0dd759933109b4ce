"""Verifying Stripe webhook deliveries: the ``Stripe-Signature`` HMAC and a replay window."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import stripe

DEFAULT_TOLERANCE_SECONDS = 300  # Stripe's libraries default to a five-minute window


class WebhookRefused(ValueError):
    """A delivery that is forged, malformed or outside the replay window."""


def verify_webhook(
    payload: bytes, header: str, secret: str, tolerance: int = DEFAULT_TOLERANCE_SECONDS, now: float | None = None
) -> dict[str, Any]:
    """The verified event as a dict; raises WebhookRefused otherwise.

    The signature check is stripe-python's ``WebhookSignature.verify_header``; the window is checked
    here against ``now`` (it reads the system clock itself), in both directions.
    """
    text = payload.decode("utf-8")
    try:
        stripe.WebhookSignature.verify_header(text, header, secret, tolerance=None)
    except stripe.SignatureVerificationError as exc:
        raise WebhookRefused(f"bad Stripe-Signature: {exc.user_message or exc}") from exc
    stamp = int(dict(part.split("=", 1) for part in header.split(",") if "=" in part)["t"])
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance:
        raise WebhookRefused(f"Stripe-Signature timestamp {stamp} is outside the {tolerance}s window")
    try:
        event = json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        raise WebhookRefused("the payload is not JSON") from exc
    if not isinstance(event, dict) or event.get("object") != "event":
        raise WebhookRefused("the payload is not a Stripe event")
    return event
