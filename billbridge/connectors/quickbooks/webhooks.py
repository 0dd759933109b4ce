"""QuickBooks webhook signatures: ``intuit-signature`` is base64(HMAC-SHA256(verifier token, raw payload))."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac


def verify_webhook(payload: bytes, signature: str, verifier_token: str) -> bool:
    """True when ``signature`` signs exactly ``payload`` (compare the raw bytes, before any JSON parsing)."""
    try:
        given = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    expected = hmac.new(verifier_token.encode(), payload, hashlib.sha256).digest()
    return hmac.compare_digest(given, expected)
