"""The one registry of vendors: what each one is to billbridge (a contract source, a push target, a
payment source, a webhook sender) and how to build it from the settings.

Flows, the command line and the API look vendors up here (``vendor(name)``) instead of importing
connector modules by name or dispatching with ``if name == ...``. A vendor's SDK is imported only
when that vendor is built (the builders import inside), so a run that syncs HubSpot never loads
Stripe's or QuickBooks' libraries. Adding a vendor is its packages (``connectors/<vendor>/``,
``mapping/<vendor>.py``, and ``vendors/<vendor>.py`` when it pushes or pays) plus one entry below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, Protocol

from billbridge.connectors.base import DealSource, PushResult, WebhookRefused
from billbridge.mapping import hubspot as hubspot_mapping
from billbridge.mapping import salesforce as salesforce_mapping
from billbridge.mapping.crm import CrmMapping
from billbridge.records import DealBundle
from billbridge.settings import Settings
from billbridge.vendors.contract import PaymentPage

if TYPE_CHECKING:
    from billbridge.connectors.quickbooks.tokens import TokenStore
    from billbridge.mapping.crm import CrmCompany, CrmDeal, CrmProduct
    from billbridge.mapping.journal import AccountMapping, PeriodRevenue
    from billbridge.mapping.stripe import MappedSubscription, StripeSubscriptionMapping

PaymentPull = Callable[[str | None], Iterator[PaymentPage]]
"""One payment stream: pages of payments since a cursor (None: from the start)."""

TokenVault = Callable[[str, "str | None"], "TokenStore"]
"""Where a vendor's rotating OAuth tokens are kept: (connection key, first refresh token) -> store."""


class PaymentSource(Protocol):
    """A vendor payments are received in: its streams by name (each with its own cursor)."""

    def payment_streams(self) -> Mapping[str, PaymentPull]: ...

    def close(self) -> None: ...


class JournalTarget(Protocol):
    """A ledger that takes journal entries (the month's recognised revenue): each posted once, one
    ``PushResult`` per entry, in order."""

    def account_problems(self, mappings: Sequence[AccountMapping]) -> list[str]: ...

    def post_journal_entries(self, entries: Sequence[tuple[PeriodRevenue, AccountMapping]]) -> list[PushResult]: ...

    def close(self) -> None: ...


class InvoiceMailer(Protocol):
    """A vendor that e-mails its own invoices (a message channel: ``quickbooks``, ``stripe``). It
    looks first whether it sent the invoice already (``existing``), so no retry mails twice;
    ``since`` (epoch seconds) is when an earlier attempt may have begun. ``to`` and ``cc`` are the
    billing contacts; a vendor that mails only some of them says whom in the result's ``sent_to``."""

    def send_invoice(
        self, invoice_id: str, to: Sequence[str], cc: Sequence[str], key: str, *, since: int | None = None
    ) -> PushResult: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Contracts:
    """A contract source: how its records are pulled and what maps them. ``deals``: CRM deals mapped
    by ``bundle_to_crm`` and a ``CrmMapping``; ``subscriptions``: Stripe subscriptions."""

    kind: Literal["deals", "subscriptions"]
    connect: Callable[[Settings], DealSource]
    bundle_to_crm: (
        Callable[[DealBundle, dict[Any, Any]], tuple[CrmDeal, CrmCompany | None, dict[str, CrmProduct]]] | None
    ) = None  # (bundle, a cache kept for the whole sync) -> neutral CRM records
    default_mapping: CrmMapping | None = None
    # the installation's ``bundle_to_crm``, where settings name the fields it reads (None: the default's)
    configured: Callable[[Settings], Callable[[DealBundle, dict[Any, Any]], Any]] | None = None


@dataclass(frozen=True)
class Vendor:
    """One vendor and the roles it plays; a role it does not play is None."""

    name: str
    contracts: Contracts | None = None
    payments: Callable[[Settings, TokenVault], PaymentSource] | None = None  # where payments are received
    pushes: bool = False  # a push target: ``flows/push.py`` declares how documents are delivered to it
    journals: Callable[[Settings, TokenVault], JournalTarget] | None = None  # where revenue journal entries go
    bills: bool = False  # accounts payable: partner fee Bills go to it (``flows/partner_fees.py``)
    mails: Callable[[Settings, TokenVault], InvoiceMailer] | None = None  # e-mails its own invoices (a channel)
    webhook: Webhook | None = None


@dataclass(frozen=True)
class Webhook:
    """How a vendor's webhook deliveries are authenticated: the header carrying the signature, the
    setting holding the secret, and ``verify(body, signature, secret)``, raising ``WebhookRefused``
    (its ``code`` says why) for a forged or stale delivery."""

    header: str
    setting: str  # the environment variable naming the secret
    secret: Callable[[Settings], str | None]
    verify: Callable[[bytes, str, str], None]


def webhooks() -> dict[str, Webhook]:
    """The vendors that send webhooks, by name."""
    return {name: v.webhook for name, v in VENDORS.items() if v.webhook is not None}


def _stripe_secret(settings: Settings) -> str | None:
    secret = settings.stripe.webhook_secret if settings.stripe else None
    return secret.get_secret_value() if secret else None


def _stripe_verify(body: bytes, signature: str, secret: str) -> None:
    from billbridge.connectors.stripe.webhooks import verify_signature

    verify_signature(body, signature, secret)


def _intuit_token(settings: Settings) -> str | None:
    token = settings.quickbooks.webhook_verifier_token if settings.quickbooks else None
    return token.get_secret_value() if token else None


def _quickbooks_verify(body: bytes, signature: str, token: str) -> None:
    from billbridge.connectors.quickbooks.webhooks import verify_webhook

    if not verify_webhook(body, signature, token):
        raise WebhookRefused(f"{QUICKBOOKS_WEBHOOK.header} does not sign this payload")


STRIPE_WEBHOOK = Webhook("Stripe-Signature", "BILLBRIDGE_STRIPE__WEBHOOK_SECRET", _stripe_secret, _stripe_verify)
QUICKBOOKS_WEBHOOK = Webhook(
    "intuit-signature", "BILLBRIDGE_QUICKBOOKS__WEBHOOK_VERIFIER_TOKEN", _intuit_token, _quickbooks_verify
)


def salesforce_fields(settings: Settings) -> salesforce_mapping.SalesforceFields:
    """The Salesforce fields the installation's settings name (the contact role, the partner lookups)."""
    config = settings.salesforce
    if config is None:
        return salesforce_mapping.DEFAULT_FIELDS
    return salesforce_mapping.SalesforceFields(
        billing_contact_role=config.billing_contact_role,
        referral_partner=config.referral_partner_field,
        reseller_partner=config.reseller_partner_field,
    )


def _salesforce(settings: Settings) -> DealSource:
    from billbridge.connectors.salesforce import connect

    return connect(settings, columns=salesforce_fields(settings).columns())


def _salesforce_mapper(settings: Settings) -> Callable[[DealBundle, dict[Any, Any]], Any]:
    return partial(salesforce_mapping.bundle_to_crm, fields=salesforce_fields(settings))


def hubspot_properties(settings: Settings) -> hubspot_mapping.HubSpotProperties:
    """The HubSpot names the installation's settings give (the partner association labels; an empty
    label is not read), over the documented defaults."""
    config = settings.hubspot
    if config is None:
        return hubspot_mapping.DEFAULT_PROPERTIES
    return hubspot_mapping.DEFAULT_PROPERTIES.model_copy(
        update={
            "referral_partner_label": config.referral_partner_label or None,
            "reseller_label": config.reseller_label or None,
        }
    )


def _hubspot_mapper(settings: Settings) -> Callable[[DealBundle, dict[Any, Any]], Any]:
    return partial(hubspot_mapping.bundle_to_crm, names=hubspot_properties(settings))


def _hubspot(settings: Settings) -> DealSource:
    from billbridge.connectors.hubspot import connect

    return connect(settings)


def _stripe_subscriptions(settings: Settings) -> DealSource:
    from billbridge.connectors.stripe.source import connect

    return connect(settings)


def _stripe(settings: Settings, _tokens: TokenVault) -> PaymentSource:
    from billbridge.vendors.stripe import connect

    return connect(settings)


def _quickbooks(settings: Settings, tokens: TokenVault) -> PaymentSource:
    from billbridge.vendors.quickbooks import connect

    return connect(settings, tokens)


def _quickbooks_journals(settings: Settings, tokens: TokenVault) -> JournalTarget:
    from billbridge.vendors.quickbooks import connect

    return connect(settings, tokens)


def _stripe_mailer(settings: Settings, _tokens: TokenVault) -> InvoiceMailer:
    from billbridge.vendors.stripe import connect

    return connect(settings)


def _quickbooks_mailer(settings: Settings, tokens: TokenVault) -> InvoiceMailer:
    from billbridge.vendors.quickbooks import connect

    return connect(settings, tokens)


VENDORS: dict[str, Vendor] = {
    "salesforce": Vendor(
        "salesforce",
        Contracts(
            "deals",
            _salesforce,
            salesforce_mapping.bundle_to_crm,
            salesforce_mapping.DEFAULT_MAPPING,
            configured=_salesforce_mapper,
        ),
    ),
    "hubspot": Vendor(
        "hubspot",
        Contracts(
            "deals",
            _hubspot,
            hubspot_mapping.bundle_to_crm,
            hubspot_mapping.DEFAULT_MAPPING,
            configured=_hubspot_mapper,
        ),
    ),
    "stripe": Vendor(
        "stripe",
        Contracts("subscriptions", _stripe_subscriptions),
        _stripe,
        pushes=True,
        webhook=STRIPE_WEBHOOK,
        mails=_stripe_mailer,
    ),
    "quickbooks": Vendor(
        "quickbooks",
        payments=_quickbooks,
        pushes=True,
        journals=_quickbooks_journals,
        bills=True,
        webhook=QUICKBOOKS_WEBHOOK,
        mails=_quickbooks_mailer,
    ),
}


def vendor(name: str) -> Vendor:
    """The registered vendor ``name``; a ValueError naming the known ones otherwise."""
    if name not in VENDORS:
        raise ValueError(f"unknown vendor {name!r} (expected {', '.join(VENDORS)})")
    return VENDORS[name]


def contract_sources() -> dict[str, Contracts]:
    """The vendors contracts are synced from, by name."""
    return {name: v.contracts for name, v in VENDORS.items() if v.contracts is not None}


_WRITTEN = {"hubspot": "HubSpot", "quickbooks": "QuickBooks"}  # the names not written capitalised


def display_name(name: str) -> str:
    """A registered vendor's name as people write it ("QuickBooks", "Stripe"), for tables and
    messages; a name that is no vendor's is given back as it is."""
    if name not in VENDORS:
        return name
    return _WRITTEN.get(name, name.capitalize())


class SubscriptionMapper(Protocol):
    """Maps one subscription (with its customer, prices and products) by the installation's mapping
    settings; None for one that is no contract (it never started)."""

    def __call__(
        self,
        sub: Mapping[str, Any],
        customer: Mapping[str, Any] | None,
        prices: Mapping[str, Mapping[str, Any]],
        products: Mapping[str, Mapping[str, Any]],
        config: StripeSubscriptionMapping,
        *,
        changed_at: int | None = None,
    ) -> MappedSubscription | None: ...


@dataclass(frozen=True)
class SubscriptionMapping:
    """How a subscriptions contract source's records become contracts: the model of its mapping
    settings (the documented defaults when the installation sets none) and the function applying it."""

    settings: type[StripeSubscriptionMapping]
    map: SubscriptionMapper


def subscription_mapping(name: str) -> SubscriptionMapping:
    """How the subscriptions contract source ``name`` is mapped (imported when asked, as the builders
    do). Only Stripe's subscriptions are mapped so far: another source of kind "subscriptions" is
    refused by name, never read as if it were Stripe's."""
    from billbridge.mapping import stripe as stripe_mapping

    known = {"stripe": SubscriptionMapping(stripe_mapping.StripeSubscriptionMapping, stripe_mapping.map_subscription)}
    if name not in known:
        raise ValueError(f"contract source {name!r} has no subscription mapping (mapped: {', '.join(known)})")
    return known[name]


def ledgers() -> tuple[str, ...]:
    """The vendors revenue journal entries can be posted to."""
    return tuple(name for name, v in VENDORS.items() if v.journals is not None)


def invoice_mailers() -> tuple[str, ...]:
    """The vendors that e-mail their own invoices: the message channels besides ``email``."""
    return tuple(name for name, v in VENDORS.items() if v.mails is not None)


def payment_sources() -> tuple[str, ...]:
    """The vendors payments are received in, in the order reconciliation reads them."""
    return tuple(name for name, v in VENDORS.items() if v.payments is not None)
