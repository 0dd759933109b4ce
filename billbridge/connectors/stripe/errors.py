"""How stripe-python's exceptions map onto the shared retry classes (connectors/errors.py).

Retries happen only in ``call_with_retries``: the StripeClient is built with max_network_retries=0.
"""

from __future__ import annotations

import stripe

from billbridge.connectors.errors import Classified, ErrorKind, classify_status, parse_retry_after

CONFLICT = 409  # a concurrent request with the same Idempotency-Key is still running: try again


def classify_stripe(exc: BaseException) -> Classified | None:
    """Stripe's error classes -> retriable / auth / fatal; None for exceptions that are not Stripe's."""
    if not isinstance(exc, stripe.StripeError):
        return None
    reason = f"{type(exc).__name__}: {exc.user_message or exc}"
    headers = exc.headers or {}
    retry_after = parse_retry_after(headers.get("retry-after") or headers.get("Retry-After"))
    if isinstance(exc, stripe.CardError):  # a decline is an outcome for the caller, never retried
        return Classified(ErrorKind.FATAL, reason)
    if isinstance(exc, (stripe.IdempotencyError, stripe.InvalidRequestError, stripe.PermissionError)):
        return Classified(ErrorKind.FATAL, reason)
    if isinstance(exc, stripe.AuthenticationError):
        return Classified(ErrorKind.AUTH, reason)
    if isinstance(exc, (stripe.RateLimitError, stripe.APIConnectionError)):
        # a dropped connection leaves the outcome open; the retry carries the same Idempotency-Key
        return Classified(ErrorKind.RETRIABLE, reason, retry_after)
    should_retry = headers.get("stripe-should-retry") or headers.get("Stripe-Should-Retry")
    if should_retry == "false":  # Stripe says a retry would only replay the saved answer
        return Classified(ErrorKind.FATAL, reason)
    status = exc.http_status or 0
    if status == CONFLICT or should_retry == "true":
        return Classified(ErrorKind.RETRIABLE, reason, retry_after)
    if status:
        return classify_status(status, headers.get("retry-after"), reason)
    return Classified(ErrorKind.FATAL, reason)
