"""The one registry of vendors: what each one is to billbridge (a contract source, payment streams, a
push target and the documents it takes, a journal ledger, an invoice mailer, a pay link, a webhook
sender with its verifier, parser and rules) and how to build it from the settings.

Flows, the command line and the API look vendors up here (``vendor(name)``, ``push_target(name)``,
``webhooks()``) instead of importing connector modules by name or dispatching with ``if name ==
...``. A vendor's SDK is imported only when that vendor is built (the builders import inside), so a
run that syncs HubSpot never loads Stripe's or QuickBooks' libraries. Adding a vendor is its settings
sub-model, its packages (``connectors/<vendor>/``, ``mapping/<vendor>.py``, and ``vendors/<vendor>.py``
when it pushes or pays), its builders and one entry below (README, "Adding a vendor").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, Protocol

from billbridge.billing.documents import OutboundDocument
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

PayLink = Callable[[str], "str | None"]
"""The vendor's id of an invoice -> the page where the customer pays it online (None: it gives none)."""


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
    billing contacts; a vendor that mails only some of them says whom in the result's ``sent_to``. A
    vendor that gives the invoice's state in ``vendor_status`` (Stripe) and finds it other than
    ``open`` (paid, void) sends nothing: the message is skipped."""

    def send_invoice(
        self, invoice_id: str, to: Sequence[str], cc: Sequence[str], key: str, *, since: int | None = None
    ) -> PushResult: ...

    def close(self) -> None: ...


class DocumentWriter(Protocol):
    """A push target's writer, built for one push run: approved documents in, one ``PushResult`` per
    document, in order. A refused or failed write is a failed result (``retriable`` when trying again
    may work), never an exception, so the relay reads every target alike. ``look_up_first``: the
    documents were attempted before (their outcome is unknown), find them before creating them.
    ``recorded_customers``: our customer ref -> the vendor's id recorded for it (read by that id).
    ``renamed_customers``: customers this run found or made under another name (our ref -> (id,
    name)), for the flow to record as their reference."""

    @property
    def renamed_customers(self) -> Mapping[str, tuple[str, str]]: ...

    def push_documents(
        self,
        docs: Sequence[OutboundDocument],
        *,
        look_up_first: bool = True,
        recorded_customers: Mapping[str, str] | None = None,
    ) -> list[PushResult]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class PushTarget:
    """A vendor approved invoices and credit notes are pushed to (the ``push.<vendor>`` outbox topic).

    ``takes``: which documents go to it (of the ones approved while it is in the ``push_targets``
    setting); ``batch``: documents claimed per delivery (the writer splits them into the vendor's own
    batches); ``connect``: its writer for one run, built on the first batch (a run with nothing queued
    builds nothing); ``collects``: a delivered auto-charge invoice is queued on ``collect.<vendor>``
    for ``flows/collect.py`` to charge; ``mirrors``: payments received in other vendors are entered
    here too (``flows/mirror.py``: the ledger holds every payment of its invoices)."""

    connect: Callable[[Settings, TokenVault], DocumentWriter]
    takes: Callable[[OutboundDocument], bool]
    batch: int
    collects: bool = False
    mirrors: bool = False


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
    push: PushTarget | None = None  # where approved documents are pushed (``flows/push.py``)
    journals: Callable[[Settings, TokenVault], JournalTarget] | None = None  # where revenue journal entries go
    bills: bool = False  # accounts payable: partner fee Bills go to it (``flows/partner_fees.py``)
    mails: Callable[[Settings, TokenVault], InvoiceMailer] | None = None  # e-mails its own invoices (a channel)
    webhook: Webhook | None = None
    # gives a page where the customer pays an invoice it holds (the e-mail's and the PDF's pay link);
    # asked in the registry's order, the first vendor holding the invoice answers
    pay_link: Callable[[Settings, TokenVault], PayLink] | None = None
    title: str = ""  # the vendor's name in messages ("QuickBooks"); the name capitalised when empty

    @property
    def display(self) -> str:
        return self.title or self.name.capitalize()

    def settings_of(self, settings: Settings) -> object | None:
        """The vendor's sub-model of the settings tree (``settings.<name>``); None when not configured."""
        return getattr(settings, self.name, None)


@dataclass(frozen=True)
class WebhookEvent:
    """One event of a verified delivery, as the inbox keeps it: ``event_id`` unique per vendor,
    ``payload`` the text the webhook processor later reads (``accepts``, the rules)."""

    event_id: str
    event_type: str
    object_id: str | None
    occurred_at: datetime | None
    payload: str


Rule = tuple[str, "str | None", str]
"""(event type prefix, action or None to ignore, why): actions are ``reconcile:<vendor>`` (a payment
source) and ``sync:<vendor>`` (a subscriptions contract source); the first matching prefix wins."""


@dataclass(frozen=True)
class Webhook:
    """How a vendor's webhook deliveries are authenticated, read and acted on. ``header`` carries the
    signature, ``setting`` names the secret's environment variable, ``verify(body, signature,
    secret)`` raises ``WebhookRefused`` (its ``code`` says why) for a forged or stale delivery;
    ``parse(body)`` turns a verified delivery into events (``WebhookRefused`` with code
    ``malformed_payload`` when it cannot); ``rules`` say what each event type asks for, and
    ``ignores(settings, payload)`` gives the reason to ignore an event before the rules (None: read
    on). ``docs``: (summary, signature format, body description) for the endpoint's /docs."""

    header: str
    setting: str  # the environment variable naming the secret
    secret: Callable[[Settings], str | None]
    verify: Callable[[bytes, str, str], None]
    parse: Callable[[bytes], list[WebhookEvent]]
    rules: tuple[Rule, ...]
    docs: tuple[str, str, str]
    ignores: Callable[[Settings, str], str | None] | None = None
    body_schema: Mapping[str, Any] | None = None  # the body's JSON schema for /docs (None: an object)


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


def _stripe_events(body: bytes) -> list[WebhookEvent]:
    from billbridge.connectors.stripe.webhooks import read_event

    text = body.decode()
    event = read_event(text)
    obj = (event.get("data") or {}).get("object") or {}
    object_id = obj.get("id") if isinstance(obj, dict) else None
    return [
        WebhookEvent(
            event["id"],
            event["type"],
            object_id if isinstance(object_id, str) and object_id else None,
            datetime.fromtimestamp(event["created"], UTC),
            text,
        )
    ]


def _quickbooks_events(body: bytes) -> list[WebhookEvent]:
    from billbridge.connectors.quickbooks.webhooks import MalformedNotification, parse_notification

    try:
        changes = parse_notification(body)
    except MalformedNotification as exc:
        raise WebhookRefused(str(exc), "malformed_payload") from None
    return [
        WebhookEvent(
            c.key,
            f"{c.name}.{c.operation}",
            c.id,
            c.updated_at,
            json.dumps(
                {
                    "realmId": c.realm_id,
                    "name": c.name,
                    "id": c.id,
                    "operation": c.operation,
                    "lastUpdated": c.last_updated,
                }
                | ({"eventId": c.event_id} if c.event_id else {})
            ),
        )
        for c in changes
    ]


def _other_company(settings: Settings, payload: str) -> str | None:
    """An event of another QuickBooks company than the configured one is not ours to act on."""
    realm = str(json.loads(payload).get("realmId", ""))
    if settings.quickbooks is not None and realm != settings.quickbooks.realm_id:
        return f"company {realm} is not the configured one ({settings.quickbooks.realm_id})"
    return None


STRIPE_RULES: tuple[Rule, ...] = (
    ("charge.succeeded", "reconcile:stripe", "a payment succeeded"),
    ("payment_intent.succeeded", "reconcile:stripe", "a payment succeeded"),
    ("invoice.paid", "reconcile:stripe", "an invoice was paid"),
    ("invoice_payment.paid", "reconcile:stripe", "an invoice was paid"),
    ("charge.refunded", "reconcile:stripe", "a payment was refunded"),
    ("refund.", "reconcile:stripe", "a refund changed"),
    ("charge.dispute.funds_", "reconcile:stripe", "a dispute moved money"),
    ("charge.dispute.", None, "a dispute changed without moving money (reconciled when funds move)"),
    ("invoice.payment_failed", None, "declines are recorded by collect_payments when it charges"),
    ("customer.subscription.", "sync:stripe", "a subscription changed"),
)
QUICKBOOKS_RULES: tuple[Rule, ...] = (
    ("Payment.", "reconcile:quickbooks", "a payment changed in QuickBooks"),
    ("Invoice.", None, "invoices go from billbridge to QuickBooks, not back"),
    ("CreditMemo.", None, "credit notes go from billbridge to QuickBooks, not back"),
)

STRIPE_WEBHOOK = Webhook(
    "Stripe-Signature",
    "BILLBRIDGE_STRIPE__WEBHOOK_SECRET",
    _stripe_secret,
    _stripe_verify,
    _stripe_events,
    STRIPE_RULES,
    (
        "Stripe webhook endpoint",
        "t=<unix time>,v1=<HMAC-SHA256>",
        "A Stripe event",
    ),
)
QUICKBOOKS_WEBHOOK = Webhook(
    "intuit-signature",
    "BILLBRIDGE_QUICKBOOKS__WEBHOOK_VERIFIER_TOKEN",
    _intuit_token,
    _quickbooks_verify,
    _quickbooks_events,
    QUICKBOOKS_RULES,
    (
        "QuickBooks webhook endpoint",
        "base64 HMAC-SHA256 of the body",
        "Intuit's data change events: a JSON array of CloudEvents (the current format) or eventNotifications (legacy)",
    ),
    ignores=_other_company,
    body_schema={"oneOf": [{"type": "array", "items": {"type": "object"}}, {"type": "object"}]},
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


def _stripe_writer(settings: Settings, _tokens: TokenVault) -> DocumentWriter:
    from billbridge.vendors.stripe import StripeDocuments, connect

    return StripeDocuments(connect(settings))


def _stripe_takes(document: OutboundDocument) -> bool:
    """Stripe charges the auto-charge invoices and e-mails the invoices of customers on its channel."""
    return document.doc_type == "invoice" and (document.auto_charge or document.channel == "stripe")


def _quickbooks_writer(settings: Settings, tokens: TokenVault) -> DocumentWriter:
    from billbridge.vendors.quickbooks import connect

    return connect(settings, tokens)


def _every_document(_document: OutboundDocument) -> bool:
    """The ledger keeps every invoice and credit note."""
    return True


def _quickbooks_journals(settings: Settings, tokens: TokenVault) -> JournalTarget:
    from billbridge.vendors.quickbooks import connect

    return connect(settings, tokens)


def _stripe_mailer(settings: Settings, _tokens: TokenVault) -> InvoiceMailer:
    from billbridge.vendors.stripe import connect

    return connect(settings)


def _quickbooks_mailer(settings: Settings, tokens: TokenVault) -> InvoiceMailer:
    from billbridge.vendors.quickbooks import connect

    return connect(settings, tokens)


def _stripe_pay_link(settings: Settings, _tokens: TokenVault) -> PayLink:
    """Stripe's hosted invoice page (also where the customer updates a card)."""
    from billbridge.vendors.stripe import connect

    stripe = connect(settings)

    def link(invoice_id: str) -> str | None:
        found = stripe.retrieve_invoice(invoice_id).get("hosted_invoice_url")
        return str(found) if found else None

    return link


def _quickbooks_pay_link(settings: Settings, tokens: TokenVault) -> PayLink:
    """QuickBooks' ``InvoiceLink`` (given only with online payments on for the invoice and a BillEmail)."""
    from billbridge.vendors.quickbooks import connect

    return connect(settings, tokens).invoice_link


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
        title="HubSpot",
    ),
    "stripe": Vendor(
        "stripe",
        Contracts("subscriptions", _stripe_subscriptions),
        _stripe,
        # one invoice at a time (Stripe has no batch); a claim of 20 keeps a lease short
        push=PushTarget(_stripe_writer, _stripe_takes, batch=20, collects=True),
        webhook=STRIPE_WEBHOOK,
        mails=_stripe_mailer,
        pay_link=_stripe_pay_link,
    ),
    "quickbooks": Vendor(
        "quickbooks",
        payments=_quickbooks,
        # Ten QuickBooks batches (30 each) per claim: the customers new to a run are looked up and created
        # 30 at a time across them, not a few per batch (bench_push, 3,000 invoices: 1.55x the fewest calls
        # with claims of 30, 1.10x with 300).
        push=PushTarget(_quickbooks_writer, _every_document, batch=300, mirrors=True),
        journals=_quickbooks_journals,
        bills=True,
        webhook=QUICKBOOKS_WEBHOOK,
        mails=_quickbooks_mailer,
        pay_link=_quickbooks_pay_link,
        title="QuickBooks",
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


def display_name(name: str) -> str:
    """A registered vendor's name as people write it ("QuickBooks", "Stripe"), for tables and
    messages; a name that is no vendor's is given back as it is."""
    return VENDORS[name].display if name in VENDORS else name


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


def ledger(settings: Settings) -> str:
    """The installation's ledger (the ``ledger`` setting, default ``quickbooks``): where revenue journal
    entries post, partner fee Bills go, payments received elsewhere are mirrored. A name that is no
    ledger (no registry entry with ``journals`` or ``bills``) is refused, naming the setting."""
    name = settings.ledger
    entry = VENDORS.get(name)
    if entry is None or (entry.journals is None and not entry.bills):
        known = ", ".join(n for n, v in VENDORS.items() if v.journals is not None or v.bills)
        raise ValueError(f"ledger: {name!r} is not a ledger (expected {known})")
    return name


def invoice_mailers() -> tuple[str, ...]:
    """The vendors that e-mail their own invoices: the message channels besides ``email``."""
    return tuple(name for name, v in VENDORS.items() if v.mails is not None)


def pay_links() -> dict[str, Callable[[Settings, TokenVault], PayLink]]:
    """The vendors that give a pay link for the invoices they hold, in the order they are asked."""
    return {name: v.pay_link for name, v in VENDORS.items() if v.pay_link is not None}


def payment_sources() -> tuple[str, ...]:
    """The vendors payments are received in, in the order reconciliation reads them."""
    return tuple(name for name, v in VENDORS.items() if v.payments is not None)


def push_target(name: str) -> PushTarget:
    """The push target ``name``; a ValueError naming the known ones otherwise."""
    target = VENDORS[name].push if name in VENDORS else None
    if target is None:
        known = ", ".join(n for n, v in VENDORS.items() if v.push is not None)
        raise ValueError(f"unknown push target {name!r} (expected {known})")
    return target


def document_targets(configured: Iterable[str]) -> dict[str, Callable[[OutboundDocument], bool]]:
    """Which documents each configured push target takes (the ``push_targets`` setting), in the
    registry's order; a name that is no push target is refused, naming the setting."""
    chosen = set(configured)
    for name in chosen:
        try:
            push_target(name)
        except ValueError as exc:
            raise ValueError(f"push_targets: {exc}") from None
    return {name: v.push.takes for name, v in VENDORS.items() if name in chosen and v.push is not None}
