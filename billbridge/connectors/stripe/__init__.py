"""Stripe through its official SDK: invoices out, charges collected, payments and subscriptions in."""

from __future__ import annotations

from billbridge.connectors.stripe.client import ChargeOutcome, StripeConflict, StripeConnector
from billbridge.connectors.stripe.errors import classify_stripe
from billbridge.connectors.stripe.readers import PaymentRecords, SubscriptionPage, SubscriptionRecord
from billbridge.connectors.stripe.webhooks import WebhookRefused, verify_webhook

__all__ = [
    "ChargeOutcome",
    "PaymentRecords",
    "StripeConflict",
    "StripeConnector",
    "SubscriptionPage",
    "SubscriptionRecord",
    "WebhookRefused",
    "classify_stripe",
    "verify_webhook",
]
