"""Connector scenarios recorded from the strict sandboxes and replayed in the fast tier: each takes a
connector (pointed at a sandbox when recording, at nothing when replaying) and returns what the
connector answered, which the replay tests check."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from billbridge.billing.documents import DocumentLine, OutboundDocument
from billbridge.connectors.base import PushResult
from billbridge.connectors.errors import RetryPolicy
from billbridge.connectors.hubspot import HubSpotClient, HubSpotSource
from billbridge.connectors.pacing import Pacer
from billbridge.connectors.quickbooks import QuickBooksConfig
from billbridge.connectors.quickbooks.tokens import InMemoryTokenStore, OAuthTokens
from billbridge.connectors.salesforce import SalesforceClient, SalesforceSettings, SalesforceSource
from billbridge.mapping.salesforce import DEFAULT_FIELDS
from billbridge.records import DealBundle, RecordPage
from billbridge.sandbox.demo_world import DemoWorld, generate
from billbridge.sandbox.hubspot.records import HubSpotData
from billbridge.settings import HubSpotSettings
from billbridge.vendors.quickbooks import QuickBooks
from billbridge.vendors.stripe import Stripe

STRIPE_KEY = "sk_test_cassettes"


def stripe_connector(url: str) -> Stripe:
    """The Stripe connector as the tests use it: no real sleeping between retries."""
    return Stripe(STRIPE_KEY, base_url=url, policy=RetryPolicy(attempts=3), sleep=lambda _: None)


def stripe_document(number: str, *amounts: str) -> OutboundDocument:
    """An auto-charged USD invoice of Globex with one line per amount."""
    lines = tuple(
        DocumentLine(
            f"{number}-L{i}", "SEATS", f"Line {i}", Decimal(1), Decimal(a), date(2026, 1, 1), date(2026, 1, 31)
        )
        for i, a in enumerate(amounts, 1)
    )
    total = sum((Decimal(a) for a in amounts), Decimal(0))
    return OutboundDocument(
        number, "invoice", 1, "us-inc", "sf-ACC1", "Globex", "ap@globex.test", "sf-OPP1", "USD",
        date(2026, 1, 1), date(2026, 1, 31), total, True, lines,
    )  # fmt: skip


def stripe_push_charge_pull(conn: Stripe) -> dict[str, Any]:
    """A customer ensured twice, an invoice pushed twice (created, then found), charged, and the
    payments pulled from the start."""
    customer = conn.ensure_customer("sf-ACC1", "Globex", "ap@globex.test")
    again = conn.ensure_customer("sf-ACC1", "Globex", "ap@globex.test")
    conn.attach_default_payment_method(customer, "pm_card_visa")
    doc = stripe_document("US-INV-000001", "135.00", "-35.00")
    first = conn.push_invoice(doc, customer, look_up=False)
    second = conn.push_invoice(doc, customer)
    assert first.external_id is not None
    charged = conn.charge_invoice(first.external_id, doc.idempotency_key("charge-1"))
    pages = list(conn.pull_payments(None))
    return {
        "customer": (customer, again),
        "pushes": (first, second),
        "charged": charged,
        "payments": [p for page in pages for p in page.payments],
        "cursor": pages[-1].cursor if pages else None,
    }


STRIPE_SCENARIOS = {"push_charge_pull": stripe_push_charge_pull}

HUBSPOT_TOKEN = "pat-cassettes"  # replaying sends it; the cassettes do not hold it (filtered)


def hubspot_world() -> DemoWorld:
    """The small seeded world the HubSpot sandbox holds when recording (the same every time)."""
    return generate(40, seed=11)


def hubspot_source(url: str, token: str = HUBSPOT_TOKEN) -> HubSpotSource:
    """The HubSpot connector with a private-app token, no real sleeping between retries."""
    settings = HubSpotSettings(host=url, access_token=token, requests_per_10s=100_000)
    client = HubSpotClient(settings, policy=RetryPolicy(attempts=3, base_delay=0.001), sleep=lambda _: None)
    return HubSpotSource(settings, client=client)


def hubspot_full_pull(source: HubSpotSource) -> list[RecordPage[DealBundle]]:
    """Every deal from the start: search pages, then associations and batch reads, then the archived list."""
    return list(source.pull(None))


def hubspot_contacts(data: HubSpotData, world: DemoWorld) -> None:
    """Billing contacts the recording portal holds: one on the first deal under the billing label,
    one unlabelled there, one labelled on the second deal's company (the same every time)."""
    first, second = world.live_deals[:2]
    stamp = int(world.now.timestamp() * 1000)
    ap = data.add_contact({"email": "ap@first.example", "firstname": "Ada", "hs_language": "de"}, stamp)
    other = data.add_contact({"email": "sales@first.example"}, stamp)
    controller = data.add_contact({"email": "controller@second.example"}, stamp)
    data.link_contact("deals", data.ids[first.key], ap, "Billing contact")
    data.link_contact("deals", data.ids[first.key], other)
    data.link_contact("companies", data.ids[second.company_key], controller, "Billing contact")


HUBSPOT_SCENARIOS = {"full_pull": hubspot_full_pull}


def salesforce_world() -> DemoWorld:
    """The small seeded world the Salesforce sandbox holds when recording (the same every time)."""
    return generate(40, seed=13)


def salesforce_source(url: str, credentials: dict[str, str], ca: str | None = None) -> SalesforceSource:
    """The Salesforce connector (client credentials flow) on the world's clock, as the sync uses it."""
    settings = SalesforceSettings(
        instance_url=url,
        client_id=credentials["client_id"],
        client_secret=credentials["client_secret"],
        ca_bundle=ca,
    )
    client = SalesforceClient(settings, policy=RetryPolicy(attempts=3, base_delay=0.001))
    now = salesforce_world().now + timedelta(days=1)  # the end of the Get Deleted window, fixed
    return SalesforceSource(client, columns=DEFAULT_FIELDS.columns(), clock=lambda: now)


def salesforce_full_pull(source: SalesforceSource) -> list[RecordPage[DealBundle]]:
    """Every opportunity from the start: the SOQL pages with their lines, accounts and products."""
    return list(source.pull(None))


SALESFORCE_SCENARIOS = {"full_pull": salesforce_full_pull}


QUICKBOOKS_REFRESH = "replayed-refresh-token"  # replaying starts from it; the cassettes do not hold it (filtered)


def quickbooks_connector(
    api_url_v3: str,
    discovery_url: str,
    ca: str | None = None,
    *,
    client: tuple[str, str] = ("id", "secret"),
    refresh_token: str = QUICKBOOKS_REFRESH,
    realm_id: str = "9130350000000000",
) -> QuickBooks:
    """The QuickBooks connector with its tokens in memory, no pacing, quick retries."""
    config = QuickBooksConfig(
        client[0], client[1], realm_id, api_url_v3=api_url_v3, discovery_url=discovery_url, ca_bundle=ca
    )
    return QuickBooks(
        config,
        InMemoryTokenStore(OAuthTokens(refresh_token)),
        policy=RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01),
        pacer=Pacer(10_000, 1),
        batch_pacer=Pacer(10_000, 1),
    )


def quickbooks_documents() -> list[OutboundDocument]:
    """Four USD invoices of two customers, two lines each."""
    docs = []
    for i in range(1, 5):
        lines = (
            DocumentLine("seats", "SEATS", "Seats", Decimal(3), Decimal("89.97"), date(2026, 1, 1), date(2026, 1, 31)),
            DocumentLine(
                "calls", "API-CALLS", "API calls", Decimal(7), Decimal(i) + Decimal("0.05"),
                date(2026, 1, 1), date(2026, 1, 31),
            ),
        )  # fmt: skip
        docs.append(
            OutboundDocument(
                f"US-INV-{i:06d}",
                "invoice",
                1,
                "us-inc",
                f"cust-{i % 2}",
                f"Customer {i % 2}",
                None,
                f"ct-{i}",
                "USD",
                date(2026, 1, 1),
                date(2026, 1, 31),
                sum((ln.amount for ln in lines), Decimal(0)),
                False,
                lines,
            )  # fmt: skip
        )
    return docs


def quickbooks_push_twice(conn: QuickBooks) -> tuple[list[PushResult], list[PushResult]]:
    """Four invoices pushed (customers and items looked up or created), then pushed again: found."""
    try:
        docs = quickbooks_documents()
        return conn.push_documents(docs, look_up_first=False), conn.push_documents(docs, look_up_first=True)
    finally:
        conn.close()


QUICKBOOKS_SCENARIOS = {"push_twice": quickbooks_push_twice}
