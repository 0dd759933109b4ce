"""Stripe subscriptions as a contract source for the CRM sync pipeline (``flows/crm_pages.py``).

A subscription is a deal-shaped bundle: the subscription is the deal, its items the lines, its
customer the company, with the prices (tiers expanded) and products the items name. Cancellations
are not deletions: a canceled subscription comes back with its end (``ended_at`` / ``cancel_at``),
so pages carry no deleted ids.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from billbridge.connectors.stripe.client import StripeConnector
from billbridge.connectors.stripe.common import VENDOR
from billbridge.connectors.stripe.readers import SubscriptionRecord
from billbridge.errors import NotConfigured
from billbridge.records import DealBundle, RecordPage
from billbridge.settings import Settings


class SubscriptionSource:
    """Pulls subscriptions changed since the cursor (see ``readers.pull_subscriptions``) as pages of DealBundles."""

    name = VENDOR

    def __init__(self, connector: StripeConnector, *, clock: Callable[[], float] = time.time) -> None:
        self.connector = connector
        self.clock = clock

    def pull(self, cursor: str | None) -> Iterator[RecordPage[DealBundle]]:
        for page in self.connector.pull_subscriptions(cursor, now=self.clock()):
            yield RecordPage(
                [bundle(r) for r in page.records],
                page.cursor,
                deleted_ids=list(page.deleted_ids),
                api_calls=page.api_calls,
            )


def bundle(record: SubscriptionRecord) -> DealBundle:
    sub = record.subscription
    items = list(((sub.get("items") or {}).get("data")) or [])
    return DealBundle(
        deal=sub,
        lines=items,
        company=record.customer,
        products=record.products,
        prices=record.prices,
        changed_at=record.changed_at,
    )


def connect(settings: Settings | None) -> SubscriptionSource:
    """The configured source (``flows.sync_crm`` calls this; the account is ``settings.stripe``)."""
    if settings is None or settings.stripe is None:
        raise NotConfigured("Stripe is not configured (BILLBRIDGE_STRIPE__API_KEY, ...)")
    return SubscriptionSource(StripeConnector(settings.stripe.key(), base_url=settings.stripe.base_url))
