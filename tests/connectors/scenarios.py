"""Connector scenarios recorded from the strict sandboxes and replayed in the fast tier: each takes a
connector (pointed at a sandbox when recording, at nothing when replaying) and returns what the
connector answered, which the replay tests check."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from billbridge.billing.documents import DocumentLine, IncomingPayment, OutboundDocument
from billbridge.billing.partner_fees import PartnerBill, StatementLine
from billbridge.connectors.base import PushResult
from billbridge.connectors.errors import RetryPolicy
from billbridge.connectors.hubspot import HubSpotClient, HubSpotSource
from billbridge.connectors.pacing import Pacer
from billbridge.connectors.quickbooks import QuickBooksConfig
from billbridge.connectors.quickbooks.tokens import InMemoryTokenStore, OAuthTokens
from billbridge.connectors.salesforce import SalesforceClient, SalesforceSettings, SalesforceSource
from billbridge.connectors.stripe import StripeConflict
from billbridge.mapping.journal import AccountMapping, PeriodRevenue, journal_entry_payload
from billbridge.mapping.quickbooks import customer_spec
from billbridge.mapping.salesforce import DEFAULT_FIELDS, SalesforceFields
from billbridge.records import DealBundle, RecordPage
from billbridge.sandbox.demo_world import DemoDeal, DemoWorld, changed, generate
from billbridge.sandbox.hubspot.records import HubSpotData
from billbridge.sandbox.quickbooks.company import QboCompany
from billbridge.sandbox.salesforce import account_id, opportunity_id
from billbridge.sandbox.stripe import StripeSandbox
from billbridge.sandbox.stripe import catalog as stripe_catalog
from billbridge.sandbox.stripe import payments as stripe_payments
from billbridge.sandbox.stripe.seed import seed as seed_stripe
from billbridge.settings import HubSpotSettings
from billbridge.vendors.contract import PaymentPage
from billbridge.vendors.quickbooks import PaymentToRecord, QuickBooks
from billbridge.vendors.stripe import Stripe

STRIPE_KEY = "sk_test_cassettes"
RECORDING_CLOCK = 1_800_000_000.0  # where every sandbox clock starts when recording


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


class SandboxClock:
    """A sandbox's clock while recording: fixed, moved on only by the scenario (``now += ...``)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class StripeSide:
    """What a Stripe scenario may do at the sandbox itself while recording (a customer paying, a
    cardholder disputing); replaying, the side is None and the cassette holds what followed."""

    sandbox: StripeSandbox
    clock: SandboxClock


def stripe_push_charge_pull(conn: Stripe, side: StripeSide | None = None) -> dict[str, Any]:
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


def stripe_customers_send_void(conn: Stripe, side: StripeSide | None = None) -> dict[str, Any]:
    """Customers looked up before created (by metadata search) and updated when their name changed;
    an invoice Stripe e-mails (sent once, found sent the second time), one voided, one marked
    uncollectible, and a charge of the void one refused."""
    created = conn.ensure_customer("sf-ACC1", "Globex", None)
    found = conn.ensure_customer("sf-ACC1", "Globex", None)
    updated = conn.ensure_customer("sf-ACC1", "Globex Corp", "ap@globex.test", customer_id=created)
    mailed = replace(stripe_document("US-INV-000020", "42.00"), auto_charge=False)
    pushed = conn.push_invoice(mailed, created, look_up=False)
    assert pushed.external_id is not None
    sent = conn.send_invoice(pushed.external_id, ["ap@globex.test"], [], mailed.idempotency_key("send"))
    resent = conn.send_invoice(
        pushed.external_id, ["ap@globex.test"], [], mailed.idempotency_key("send-2"), since=int(RECORDING_CLOCK)
    )
    voided_doc, lost_doc = stripe_document("US-INV-000021", "10.00"), stripe_document("US-INV-000022", "10.00")
    voided, lost = conn.push_invoice(voided_doc, created), conn.push_invoice(lost_doc, created)
    assert voided.external_id is not None and lost.external_id is not None
    statuses = (
        conn.void(voided.external_id, voided_doc.idempotency_key("void")),
        conn.mark_uncollectible(lost.external_id, lost_doc.idempotency_key("uncollectible")),
    )
    try:
        conn.charge_invoice(voided.external_id, voided_doc.idempotency_key("charge-1"))
        refused = ""
    except StripeConflict as exc:
        refused = str(exc)
    return {
        "customers": (created, found, updated),
        "pushed": pushed,
        "sent": (sent, resent),
        "statuses": statuses,
        "refused": refused,
    }


def stripe_refunds_disputes(conn: Stripe, side: StripeSide | None = None) -> dict[str, Any]:
    """Two invoices charged; a day later one charge is partly refunded and the other disputed by the
    cardholder: the refunds and the disputes' withdrawals are pulled, each from the start."""
    customer = conn.ensure_customer("sf-ACC1", "Globex", "ap@globex.test")
    conn.attach_default_payment_method(customer, "pm_card_visa")
    docs = [stripe_document("US-INV-000031", "135.00"), stripe_document("US-INV-000032", "80.00")]
    for doc in docs:
        pushed = conn.push_invoice(doc, customer, look_up=False)
        assert pushed.external_id is not None
        conn.charge_invoice(pushed.external_id, doc.idempotency_key("charge-1"))
    if side is not None:
        side.clock.now += 86400
        refunded, disputed = side.sandbox.state.all("charge")
        stripe_payments.create_refund(
            side.sandbox.state, {"charge": refunded["id"], "amount": "3500", "reason": "requested_by_customer"}
        )
        stripe_payments.open_dispute(side.sandbox.state, disputed["id"])
    return {
        "refunds": [p for page in conn.pull_refunds(None) for p in page.payments],
        "disputes": [p for page in conn.pull_disputes(None) for p in page.payments],
        "payments": [p for page in conn.pull_payments(None) for p in page.payments],
    }


STRIPE_PAGED_INVOICES = 105  # a full page of Stripe's 100 and a short one


def stripe_payments_paging(conn: Stripe, side: StripeSide | None = None) -> list[PaymentPage]:
    """105 invoices paid a second apart (made at the sandbox directly), pulled from the start: two
    pages of charges, the payment events that name their invoices read in windows that never overlap."""
    if side is not None:
        state = side.sandbox.state
        customer = stripe_catalog.create_customer(state, {"name": "Globex", "payment_method": "pm_card_visa"})
        for n in range(STRIPE_PAGED_INVOICES):
            side.clock.now += 1
            params = {"customer": customer["id"], "currency": "usd", "metadata": {"billbridge_number": f"N{n}"}}
            invoice = stripe_payments.create_invoice(state, params)
            stripe_payments.add_lines(state, {"lines": [{"amount": "1000"}]}, invoice["id"])
            stripe_payments.finalize_invoice(state, {}, invoice["id"])
            stripe_payments.pay_invoice(state, {}, invoice["id"])
    return list(conn.pull_payments(None))


def stripe_refusal(attempt: Callable[[], object]) -> str:
    """What Stripe's refusal of a write said: the StripeConflict raised, or the failed result's error."""
    try:
        result = attempt()
    except StripeConflict as exc:
        return str(exc)
    return str(getattr(result, "error", "") or "")


def stripe_decline_and_conflict(conn: Stripe, side: StripeSide | None = None) -> dict[str, Any]:
    """A customer whose card is declined: the invoice (created, lines added, finalized: three calls)
    stays open with the decline's reason; a new card, a second attempt paid. A new version of the
    pushed invoice is refused as a conflict, not pushed again."""
    customer = conn.ensure_customer("sf-ACC1", "Globex", "ap@globex.test")
    conn.attach_default_payment_method(customer, "pm_card_chargeDeclinedInsufficientFunds")
    doc = stripe_document("US-INV-000041", "135.00", "-35.00")
    calls = conn.api_calls
    pushed = conn.push_invoice(doc, customer, look_up=False)
    push_calls = conn.api_calls - calls
    assert pushed.external_id is not None
    declined = conn.charge_invoice(pushed.external_id, doc.idempotency_key("charge-1"))
    still = conn.retrieve_invoice(pushed.external_id)["status"]
    conn.attach_default_payment_method(customer, "pm_card_visa")
    paid = conn.charge_invoice(pushed.external_id, doc.idempotency_key("charge-2"))
    return {
        "push_calls": push_calls,
        "declined": declined,
        "still": still,
        "paid": paid,
        "conflict": stripe_refusal(lambda: conn.push_invoice(replace(doc, version=2), customer)),
    }


def stripe_payments_incremental(conn: Stripe, side: StripeSide | None = None) -> dict[str, Any]:
    """Two invoices collected a day after they were finalized, pulled from the start (two calls: the
    charges, and the payment events naming their invoices); then an invoice paid an hour later, twice,
    each time pulled from the previous cursor."""
    customer = conn.ensure_customer("sf-ACC1", "Globex", "ap@globex.test")
    conn.attach_default_payment_method(customer, "pm_card_visa")
    pushed = [conn.push_invoice(stripe_document(f"US-INV-00005{n}", "135.00"), customer) for n in (1, 2)]
    if side is not None:
        side.clock.now += 86400
    for n, invoice in enumerate(pushed, 1):
        assert invoice.external_id is not None
        conn.charge_invoice(invoice.external_id, f"charge-{n}")
    calls = conn.api_calls
    first = list(conn.pull_payments(None))
    first_calls = conn.api_calls - calls
    cursor, later = first[-1].cursor, []
    for n in (3, 4):
        if side is not None:
            side.clock.now += 3600
        doc = stripe_document(f"US-INV-00005{n}", "50.00")
        invoice = conn.push_invoice(doc, customer)
        assert invoice.external_id is not None
        conn.charge_invoice(invoice.external_id, doc.idempotency_key("charge-1"))
        later = list(conn.pull_payments(cursor))
        cursor = later[-1].cursor
    return {"first": first, "first_calls": first_calls, "later": later, "cursor": cursor}


def stripe_search_lag(conn: Stripe, side: StripeSide | None = None) -> dict[str, Any]:
    """Stripe's search lags behind writes (here a minute): a customer ensured twice is one customer
    (the same content, the same idempotency key), and an invoice pushed twice is found by listing."""
    if side is not None:
        side.sandbox.state.search_lag = 60
    customers = (conn.ensure_customer("sf-ACC9", "Hooli", None), conn.ensure_customer("sf-ACC9", "Hooli", None))
    conn.attach_default_payment_method(customers[0], "pm_card_visa")
    doc = stripe_document("US-INV-000061", "135.00", "-35.00")
    return {
        "customers": customers,
        "pushes": (conn.push_invoice(doc, customers[0]), conn.push_invoice(doc, customers[0])),
    }


def stripe_world() -> DemoWorld:
    """The small seeded world whose won deals the subscriptions scenario holds as Stripe subscriptions."""
    return generate(20, seed=11)


def stripe_touched(world: DemoWorld, seeded: Collection[str]) -> list[str]:
    """The deals (keys) whose subscriptions the subscriptions scenario changes: the first two seeded."""
    return [d.key for d in world.live_deals if d.key in seeded][:2]


def stripe_subscriptions(conn: Stripe, side: StripeSide | None = None) -> dict[str, Any]:
    """The world's won deals as subscriptions (made at the sandbox), pulled in full with their prices,
    products and customers; then a quantity changed an hour later, twice, each pulled from the
    previous cursor (the subscription events since it)."""
    seeded = seed_stripe(side.sandbox.state, stripe_world()).subscriptions if side is not None else {}
    full = list(conn.pull_subscriptions(None, now=RECORDING_CLOCK))
    cursor, changed = full[-1].cursor, []
    for hour in (1, 2):
        if side is not None:
            side.clock.now += 3600
            state = side.sandbox.state
            sub_id = seeded[stripe_touched(stripe_world(), seeded)[hour - 1]]
            item_id = state.get("subscription", sub_id)["_items"][0]
            stripe_catalog.update_subscription(state, {"items": [{"id": item_id, "quantity": "7"}]}, sub_id)
        changed = list(conn.pull_subscriptions(cursor, now=RECORDING_CLOCK + 3600 * hour))
        cursor = changed[-1].cursor
    return {"full": full, "changed": changed}


STRIPE_SCENARIOS: dict[str, Callable[[Stripe, StripeSide | None], Any]] = {
    "push_charge_pull": stripe_push_charge_pull,
    "customers_send_void": stripe_customers_send_void,
    "refunds_disputes": stripe_refunds_disputes,
    "payments_paging": stripe_payments_paging,
    "decline_and_conflict": stripe_decline_and_conflict,
    "payments_incremental": stripe_payments_incremental,
    "search_lag": stripe_search_lag,
    "subscriptions": stripe_subscriptions,
}

HUBSPOT_TOKEN = "pat-cassettes"  # replaying sends it; the cassettes do not hold it (filtered)


def hubspot_world() -> DemoWorld:
    """The small seeded world the HubSpot sandbox holds when recording (the same every time)."""
    return generate(40, seed=11)


def hubspot_source(url: str, token: str = HUBSPOT_TOKEN) -> HubSpotSource:
    """The HubSpot connector with a private-app token, no real sleeping between retries."""
    settings = HubSpotSettings(host=url, access_token=token, requests_per_10s=100_000)
    client = HubSpotClient(settings, policy=RetryPolicy(attempts=3, base_delay=0.001), sleep=lambda _: None)
    return HubSpotSource(settings, client=client)


def hubspot_full_pull(source: HubSpotSource, side: CrmSide | None = None) -> list[RecordPage[DealBundle]]:
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


@dataclass
class CrmSide:
    """What a CRM scenario may do at the sandbox while recording (edit deals, add contact roles);
    replaying, the side is None: the tests work out what to expect from the same seeded worlds."""

    sandbox: Any  # HubSpotSandbox or SalesforceSandbox: both apply a changed world
    world: DemoWorld


CRM_CHANGED = 0.3  # the share of deals edited, won or deleted between a full and an incremental pull


def crm_later(world: DemoWorld) -> DemoWorld:
    """The world after the edits the incremental scenarios apply (the same every time)."""
    return changed(world, CRM_CHANGED)


def hubspot_full_then_incremental(
    source: HubSpotSource, side: CrmSide | None = None
) -> list[list[RecordPage[DealBundle]]]:
    """A full pull, then the world changes (edits, wins, deletions an hour later), an incremental pull
    from the full pull's cursor, and a third pull that finds nothing new."""
    full = list(source.pull(None))
    if side is not None:
        side.sandbox.apply(crm_later(side.world))
    later = list(source.pull(full[-1].cursor))
    return [full, later, list(source.pull(later[-1].cursor))]


HUBSPOT_RESELLER_TYPE = 9  # a user-defined association type id, as a portal's "Reseller" label gets one


def hubspot_contact_deals(world: DemoWorld) -> list[DemoDeal]:
    """Valid won deals of distinct companies, none of the companies of ``hubspot_contacts``' two deals:
    the contacts scenario gives them a billing email, a malformed contact, a contact with a language
    HubSpot does not have, a malformed billing email, and a reseller (in that order)."""
    taken = {d.company_key for d in world.live_deals[:2]}
    keys, out = set(world.expected_contract_keys()), []
    for deal in world.live_deals[2:]:
        if deal.key in keys and deal.company_key not in taken:
            taken.add(deal.company_key)
            out.append(deal)
    return out[:5]


def hubspot_reseller(world: DemoWorld) -> tuple[DemoDeal, str]:
    """The deal the contacts scenario links to a reseller, and the reseller's company (another one)."""
    deal = hubspot_contact_deals(world)[4]
    return deal, next(k for k in sorted(world.companies) if k != deal.company_key)


def _hubspot_edits(side: CrmSide) -> None:
    """What a sales rep does in the portal before the contacts scenario's pulls."""
    data, world = side.sandbox.data, side.world
    by_email, typo, bad_language, bad_billing_email, resold = hubspot_contact_deals(world)
    _, reseller = hubspot_reseller(world)
    stamp, ids = int(world.now.timestamp() * 1000), data.ids
    with data.lock:
        companies = data.tables["companies"].live
        companies[ids[by_email.company_key]].properties["billing_email"] = " invoices@three.example "
        companies[ids[bad_billing_email.company_key]].properties["billing_email"] = "ar@@example"
        data.link_contact(
            "deals", ids[typo.key], data.add_contact({"email": "ap at example"}, stamp), "Billing contact"
        )
        odd = data.add_contact({"email": "ok@example.com", "hs_language": "Deutsch!"}, stamp)
        data.link_contact("deals", ids[bad_language.key], odd, "Billing contact")
        ceo = data.add_contact({"email": "ceo@second.example", "firstname": "Chef"}, stamp)
        data.link_contact("deals", ids[world.live_deals[1].key], ceo, "Decision maker")
        data.label("deals", "companies", ids[resold.key], ids[reseller], "Reseller", HUBSPOT_RESELLER_TYPE)


def hubspot_contacts_and_partners(source: HubSpotSource, side: CrmSide | None = None) -> dict[str, Any]:
    """Billing contacts and partners read with the deals: full pulls with the default billing label,
    with "Decision maker" as the billing label, with none (the contacts not asked for), and the
    labelled associations (a reseller) of the resold deal read both ways; the calls each pull took."""
    if side is not None:
        _hubspot_edits(side)

    def pull(label: str | None) -> tuple[list[RecordPage[DealBundle]], int]:
        settings = source.settings.model_copy(update={"billing_contact_label": label})
        calls = source.client.calls
        pages = list(HubSpotSource(settings, client=source.client).pull(None))
        return pages, source.client.calls - calls

    pulls = {label: pull(label) for label in ("Billing contact", "Decision maker", "")}
    bundles = [b for page in pulls["Billing contact"][0] for b in page.records]
    resold = next(b for b in bundles if b.labelled)
    [reseller] = resold.labelled["Reseller"]
    deal_id = str(resold.deal["id"])
    return {
        "pulls": pulls,
        "links": source.client.labelled_associations("deals", "companies", [deal_id]),
        "back": source.client.labelled_associations("companies", "deals", [reseller]),
    }


HUBSPOT_SCENARIOS: dict[str, Callable[[HubSpotSource, CrmSide | None], Any]] = {
    "full_pull": hubspot_full_pull,
    "full_then_incremental": hubspot_full_then_incremental,
    "contacts_and_partners": hubspot_contacts_and_partners,
}


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


def salesforce_full_pull(source: SalesforceSource, side: CrmSide | None = None) -> list[RecordPage[DealBundle]]:
    """Every opportunity from the start: the SOQL pages with their lines, accounts and products."""
    return list(source.pull(None))


SALESFORCE_PARTNER_FIELDS = SalesforceFields(reseller_partner="PartnerAccountId")


def salesforce_roles_partner(world: DemoWorld) -> tuple[str, str]:
    """The opportunity the roles scenario gives contact roles and a partner account, and that account."""
    deal = next(d for d in sorted(world.live_deals, key=lambda d: d.key) if d.key in world.expected_contract_keys())
    partner = next(k for k in sorted(world.companies) if k != deal.company_key)
    return opportunity_id(deal.key), account_id(partner)


def _salesforce_role(side: CrmSide, n: int, opportunity: str, role: str, email: str, primary: bool) -> None:
    """A contact in ``role`` on ``opportunity``, as a sales rep would add it (stamped the day before)."""
    stamp, org = side.world.now - timedelta(days=1), side.sandbox.org
    contact = f"003{n:015d}"
    org.put(
        "Contact",
        {"Id": contact, "FirstName": "Ada", "LastName": f"Payer{n}", "Email": email, "IsDeleted": False,
         "SystemModstamp": stamp},
    )  # fmt: skip
    org.put(
        "OpportunityContactRole",
        {"Id": f"00K{n:015d}", "OpportunityId": opportunity, "ContactId": contact, "Role": role,
         "IsPrimary": primary, "IsDeleted": False, "SystemModstamp": stamp},
    )  # fmt: skip


def salesforce_roles_partner_incremental(
    source: SalesforceSource, side: CrmSide | None = None
) -> list[list[RecordPage[DealBundle]]]:
    """Contact roles (a decision maker, two billing contacts) and a partner account (PartnerAccountId,
    read as the reseller) on one opportunity; a full pull with the partner column, then the world
    changes, an incremental pull (SOQL from the cursor, the delete log), and a third finding nothing."""
    source = SalesforceSource(source.client, columns=SALESFORCE_PARTNER_FIELDS.columns(), clock=source.clock)
    if side is not None:
        opportunity, partner = salesforce_roles_partner(side.world)
        _salesforce_role(side, 1, opportunity, "Decision Maker", "ceo@example.com", True)
        _salesforce_role(side, 2, opportunity, "Billing", "ap@example.com", False)
        _salesforce_role(side, 3, opportunity, "Billing", "controller@example.com", True)
        org = side.sandbox.org
        org.put("Account", {**org.tables["Account"].records[partner], "IsPartner": True})
        org.put("Opportunity", {**org.tables["Opportunity"].records[opportunity], "PartnerAccountId": partner})
    full = list(source.pull(None))
    if side is not None:
        side.sandbox.apply(crm_later(side.world))
    later = list(source.pull(full[-1].cursor))
    return [full, later, list(source.pull(later[-1].cursor))]


def salesforce_account_role_deals(world: DemoWorld) -> list[DemoDeal]:
    """Three valid won deals of distinct companies (by key): the account roles scenario gives the first
    a billing contact role of its own and one on its Account, the second billing and decision maker
    roles on its Account only, the third a billing contact with a malformed address."""
    deals: list[DemoDeal] = []
    for deal in sorted(world.live_deals, key=lambda d: d.key):
        if deal.key in world.expected_contract_keys() and deal.company_key not in {d.company_key for d in deals}:
            deals.append(deal)
    return deals[:3]


def _salesforce_account_role(side: CrmSide, n: int, company: str, role: str, email: str) -> None:
    """A Contact of the company's Account in ``role`` there (AccountContactRole), stamped the day before."""
    stamp, org, account = side.world.now - timedelta(days=1), side.sandbox.org, account_id(company)
    contact = f"003{n:015d}"
    org.put(
        "Contact",
        {"Id": contact, "FirstName": "Bo", "LastName": f"Books{n}", "Email": email, "AccountId": account,
         "IsDeleted": False, "SystemModstamp": stamp},
    )  # fmt: skip
    org.put(
        "AccountContactRole",
        {"Id": f"02Z{n:015d}", "AccountId": account, "ContactId": contact, "Role": role, "IsPrimary": False,
         "IsDeleted": False, "SystemModstamp": stamp},
    )  # fmt: skip


def salesforce_account_roles(source: SalesforceSource, side: CrmSide | None = None) -> dict[str, Any]:
    """Billing contacts from the Account's contact roles where the Opportunity names none (the setting
    ``account_contact_roles`` on: one more query a page, the roles by Account ids), then the same
    pull with it off; one Opportunity's billing contact has a malformed address."""
    if side is not None:
        on_opportunity, on_account, typo = salesforce_account_role_deals(side.world)
        _salesforce_role(side, 11, opportunity_id(on_opportunity.key), "Billing", "ap@one.example", True)
        _salesforce_account_role(side, 12, on_opportunity.company_key, "Billing", "books@one.example")
        _salesforce_account_role(side, 13, on_account.company_key, "Decision Maker", "ceo@two.example")
        _salesforce_account_role(side, 14, on_account.company_key, "Billing", "books@two.example")
        _salesforce_role(side, 15, opportunity_id(typo.key), "Billing", "ap at example", True)
    settings = source.client.settings.model_copy(update={"account_contact_roles": True})
    client = SalesforceClient(settings, policy=RetryPolicy(attempts=3, base_delay=0.001))
    with_roles = SalesforceSource(client, columns=source.columns, clock=source.clock)
    return {"with_roles": list(with_roles.pull(None)), "plain": list(source.pull(None))}


def salesforce_late(world: DemoWorld) -> DemoDeal:
    """The opportunity the late commit scenario commits late: one changed more than a day before the newest."""
    newest = max(d.modified_at for d in world.live_deals)
    return next(d for d in world.live_deals if d.modified_at < newest - timedelta(days=1))


def salesforce_late_commit(source: SalesforceSource, side: CrmSide | None = None) -> dict[str, Any]:
    """A full pull, then one from its cursor at once: the lag window re-reads the newest changes and
    repeats none. Then an opportunity committed late, stamped a minute before the newest one already
    delivered: the pull from the full pull's cursor still delivers it."""
    first = list(source.pull(None))
    again = list(source.pull(first[-1].cursor))
    if side is not None:
        newest = max(d.modified_at for d in side.world.live_deals)
        stamped = replace(salesforce_late(side.world), name="Late commit", modified_at=newest - timedelta(minutes=1))
        side.sandbox.org.put("Opportunity", side.sandbox.renderer.opportunity(stamped))
    return {"first": first, "again": again, "late": list(source.pull(first[-1].cursor))}


SALESFORCE_SCENARIOS: dict[str, Callable[[SalesforceSource, CrmSide | None], Any]] = {
    "full_pull": salesforce_full_pull,
    "roles_partner_incremental": salesforce_roles_partner_incremental,
    "account_roles": salesforce_account_roles,
    "late_commit": salesforce_late_commit,
}


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


def quickbooks_documents(n: int = 4, *, start: int = 1) -> list[OutboundDocument]:
    """``n`` USD invoices of two customers, two lines each."""
    docs = []
    for i in range(start, start + n):
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


def quickbooks_push_twice(
    conn: QuickBooks, side: QuickBooksSide | None = None
) -> tuple[list[PushResult], list[PushResult]]:
    """Four invoices pushed (customers and items looked up or created), then pushed again: found."""
    try:
        docs = quickbooks_documents()
        return conn.push_documents(docs, look_up_first=False), conn.push_documents(docs, look_up_first=True)
    finally:
        conn.close()


@dataclass
class QuickBooksSide:
    """What a QuickBooks scenario may do at the company itself while recording (a customer paying, a
    bookkeeper setting up accounts or rates); replaying, the side is None."""

    company: QboCompany


def quickbooks_payments(conn: QuickBooks, side: QuickBooksSide | None = None) -> dict[str, Any]:
    """Six invoices and a credit memo pushed in one batch; a customer pays two invoices with one
    cheque and another pays one; a Stripe payment is recorded against two invoices (looked up first,
    so the second attempt finds it); the payments are then read from the start, a page at a time."""
    try:
        docs = quickbooks_documents(6)
        memo = replace(quickbooks_documents(1, start=7)[0], number="US-CN-000001", doc_type="credit_note")
        pushed = {r.number: r.external_id or "" for r in conn.push_documents([*docs, memo], look_up_first=False)}
        same = [d for d in docs if d.customer_ref == docs[0].customer_ref]
        if side is not None:
            side.company.receive_payment(
                {pushed[same[0].number]: Decimal("50.00"), pushed[same[1].number]: Decimal("10.00")},
                amount=Decimal("75.00"),
                ref="CHK-7",
            )
            side.company.receive_payment({pushed["US-INV-000002"]: Decimal("92.02")})
        paid = same[1:3]
        customer = conn.find("Customer", "DisplayName", [paid[0].customer_name])[paid[0].customer_name]["Id"]
        card = IncomingPayment(
            source="stripe",
            payment_ref="ch_3MtwBwLkdIwHu7ix28a3tqPa",  # longer than PaymentRefNum holds
            currency="USD",
            amount=Decimal("40.00") + Decimal("30.00"),
            received_on=date(2026, 2, 1),
            customer_ref=paid[0].customer_ref,
            invoice_numbers=(paid[0].number, paid[1].number),
            invoice_amounts=(Decimal("40.00"), Decimal("30.00")),
        )
        record = PaymentToRecord(card, str(customer), {d.number: pushed[d.number] for d in paid})
        recorded = (conn.record_payments([record]), conn.record_payments([record]))
        return {
            "pushed": pushed,
            "recorded": recorded,
            "pages": list(conn.pull_payments(None, page_size=2)),
        }
    finally:
        conn.close()


def quickbooks_journal_entries(conn: QuickBooks, side: QuickBooksSide | None = None) -> dict[str, Any]:
    """A month of recognised revenue posted as a JournalEntry once (a rerun finds it), the month
    closed again with more usage (the entry replaced by a sparse update naming its SyncToken), and a
    mapping naming a missing account refused before anything is posted."""
    try:
        if side is not None:
            for name, kind in (
                ("Deferred Revenue", "Other Current Liability"),
                ("Unbilled Receivables", "Other Current Asset"),
                ("Usage Revenue", "Income"),
            ):
                side.company.create("Account", {"Name": name, "AccountType": kind})
        ids = {a["Name"]: str(a["Id"]) for a in conn.query_all("Account")}
        accounts = AccountMapping(
            revenue="1",
            deferred_revenue=ids["Deferred Revenue"],
            contract_asset=ids["Unbilled Receivables"],
            revenue_by_recognition={"usage": ids["Usage Revenue"]},
        )
        return {
            "first": conn.post_journal_entries([(quickbooks_month(), accounts)]),
            "again": conn.post_journal_entries([(quickbooks_month(), accounts)]),
            "replaced": conn.post_journal_entries([(quickbooks_month(usage="60.00"), accounts)]),
            "wrong": conn.post_journal_entries(
                [(quickbooks_month(), accounts.model_copy(update={"revenue_by_product": {"api": "999"}}))]
            ),
        }
    finally:
        conn.close()


def quickbooks_month(platform: str = "101.92", usage: str = "45.50") -> PeriodRevenue:
    """November 2026's recognised revenue of us-inc: a ratable platform fee and usage."""
    p, u = Decimal(platform), Decimal(usage)
    return PeriodRevenue("us-inc", "USD", date(2026, 11, 1), {("platform", "ratable"): p, ("api", "usage"): u}, p, u)


def quickbooks_partner_bills() -> list[PartnerBill]:
    """A referral partner's fees as a Bill and a reversal-heavy month as a VendorCredit."""
    lines = (
        StatementLine("hooli", Decimal("1000.00"), Decimal("450.00")),
        StatementLine("initech", Decimal("10"), Decimal("2.00")),
    )
    bill = PartnerBill(
        7, "northwind", "Northwind Advisors", "ap@northwind.example", "USD", "2026-11", "PF-2026-11-7",
        date(2026, 12, 1), date(2026, 12, 31), lines, Decimal("452.00"),
    )  # fmt: skip
    credit = PartnerBill(
        8, "contoso", "Contoso Partners", None, "USD", "2026-11", "PF-2026-11-8",
        date(2026, 12, 1), date(2026, 12, 31), (StatementLine("globex", Decimal("-200.00"), Decimal("-30.00")),),
        Decimal("-30.00"),
    )  # fmt: skip
    return [bill, credit]


def quickbooks_bills_and_rates(conn: QuickBooks, side: QuickBooksSide | None = None) -> dict[str, Any]:
    """Partner statements pushed as a Bill and a VendorCredit (vendors and the expense account looked
    up, then made), pushed again (found by DocNumber); the company's currency preferences and an
    exchange rate read."""
    try:
        if side is not None:  # a company that sells abroad: multicurrency on, a rate entered
            side.company.multicurrency = True
            side.company.set_exchange_rate("EUR", "2026-11-30", Decimal("1.0825"))
        bills = quickbooks_partner_bills()
        first = conn.push_bills(bills, look_up_first=False)
        return {
            "first": first,
            "again": conn.push_bills(bills),
            "paid": conn.bill_payments(r.external_id or "" for r in first),
            "prefs": conn.currency_prefs(),
            "rate": conn.exchange_rate("EUR", date(2026, 12, 1)),
        }
    finally:
        conn.close()


def quickbooks_send_invoice(conn: QuickBooks, side: QuickBooksSide | None = None) -> dict[str, Any]:
    """An invoice QuickBooks e-mails to two addresses with two in copy (BillEmailCc set first by a
    sparse update), then asked again: found sent (EmailStatus), not sent twice."""
    try:
        [pushed] = conn.push_documents(quickbooks_documents(1), look_up_first=False)
        assert pushed.external_id is not None
        to, cc = ["ap@cust-1.test", "controller@cust-1.test"], ["cfo@cust-1.test", "audit@cust-1.test"]
        return {
            "sent": conn.send_invoice(pushed.external_id, to, cc, "billbridge-invoice:1"),
            "again": conn.send_invoice(pushed.external_id, to, cc, "billbridge-invoice:1"),
            "mailed": side.company.sent_emails if side is not None else None,
        }
    finally:
        conn.close()


def quickbooks_later_run(conn: QuickBooks, config: QuickBooksConfig | None = None, **options: Any) -> QuickBooks:
    """Another connector to the same company with the same tokens: a later run, nothing cached (with
    another ``config`` or connector ``options`` where given)."""
    return QuickBooks(
        config or conn.config,
        conn.keeper.store,
        policy=RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01),
        pacer=Pacer(10_000, 1),
        batch_pacer=Pacer(10_000, 1),
        **options,
    )


def quickbooks_customer_names(conn: QuickBooks, side: QuickBooksSide | None = None) -> dict[str, Any]:
    """Customers and items looked up before created: ensured by one connector, then by a later run
    that finds them (nothing made twice). "Customer 1" was made inactive by a bookkeeper (queries
    return active customers only, DisplayName is unique among inactive ones too): it is found and
    made active again. A Vendor holds "Customer 0": that customer is made as "Customer 0 (cust-0)",
    and a later run's push finds it under that name. The company's customers and invoices read back."""
    later = quickbooks_later_run(conn)
    try:
        if side is not None:
            side.company.create("Customer", {"DisplayName": "Customer 1", "Active": False})
            side.company.create("Vendor", {"DisplayName": "Customer 0"})
        docs = quickbooks_documents(4)  # cust-1, cust-0, cust-1, cust-0
        specs = list({d.customer_ref: customer_spec(d) for d in docs}.values())
        skus = {ln.product_ref: ln.description for d in docs for ln in d.lines}
        ensured = (conn.ensure_customers(specs), conn.ensure_items(skus))
        renamed = dict(conn.renamed_customers)
        found = (later.ensure_customers(specs), later.ensure_items(skus))
        pushed = (conn.push_documents(docs[:2]), quickbooks_later_run(conn).push_documents(docs[2:]))
        return {
            "ensured": ensured,
            "found": found,
            "renamed": renamed,
            "pushed": pushed,
            "customers": list(conn.query_all("Customer", order_by="Id")),
            "invoices": list(conn.query_all("Invoice", order_by="Id")),
        }
    finally:
        later.close()
        conn.close()


def quickbooks_doc_number_taken(conn: QuickBooks, side: QuickBooksSide | None = None) -> dict[str, Any]:
    """Three invoices pushed, then all five again without the look-up (as a rerun after an uncertain
    create does): QuickBooks refuses the three taken DocNumbers with 6140, which the connector looks
    up and reports as existing, and the two new ones are created."""
    try:
        docs = quickbooks_documents(5)
        first = conn.push_documents(docs[:3], look_up_first=False)
        return {"first": first, "again": conn.push_documents(docs, look_up_first=False)}
    finally:
        conn.close()


def quickbooks_credit_memo_and_yen(conn: QuickBooks, side: QuickBooksSide | None = None) -> dict[str, Any]:
    """A JPY invoice (no minor unit) and a credit note (a CreditMemo of the positive amount) pushed,
    then pushed again (both found); the company's invoices and credit memos read back."""
    try:
        jan = (date(2026, 1, 1), date(2026, 1, 31))
        yen = DocumentLine("a", "SEATS", "Seats", Decimal(2), Decimal(15000), *jan)
        jpy = replace(
            quickbooks_documents(1, start=900)[0],
            currency="JPY",
            customer_ref="jp-1",
            customer_name="Kabushiki",
            lines=(yen,),
            total=Decimal(15000),
        )
        credit_line = DocumentLine("a", "SEATS", "Seats", Decimal(-1), Decimal("-29.99"), *jan)
        credit = replace(
            quickbooks_documents(1)[0],
            number="US-CN-000001",
            doc_type="credit_note",
            lines=(credit_line,),
            total=Decimal("-29.99"),
            applies_to="US-INV-000001",
        )
        return {
            "first": conn.push_documents([jpy, credit]),
            "again": conn.push_documents([jpy, credit]),
            "invoices": list(conn.query_all("Invoice")),
            "memos": list(conn.query_all("CreditMemo")),
        }
    finally:
        conn.close()


def quickbooks_journal_problems(conn: QuickBooks, side: QuickBooksSide | None = None) -> dict[str, Any]:
    """A mapping naming an Expense account as the contract asset and a missing account: refused
    naming both, nothing posted. A bookkeeper's own entry holding the month's DocNumber: never
    overwritten, the post fails saying so. The journal entries read back."""
    try:
        if side is not None:
            made = {
                name: str(side.company.create("Account", {"Name": name, "AccountType": kind})["Id"])
                for name, kind in (
                    ("Deferred Revenue", "Other Current Liability"),
                    ("Unbilled Receivables", "Other Current Asset"),
                    ("Usage Revenue", "Income"),
                    ("Office", "Expense"),
                )
            }
            mine = journal_entry_payload(quickbooks_month(), quickbooks_accounts(made))
            assert mine is not None
            side.company.create("JournalEntry", {**mine, "PrivateNote": "accrual by hand"})
        ids = {a["Name"]: str(a["Id"]) for a in conn.query_all("Account")}
        accounts = quickbooks_accounts(ids)
        wrong = accounts.model_copy(update={"contract_asset": ids["Office"], "revenue_by_product": {"api": "999"}})
        return {
            "office": ids["Office"],
            "wrong": conn.post_journal_entries([(quickbooks_month(), wrong)]),
            "taken": conn.post_journal_entries([(quickbooks_month(), accounts)]),
            "entries": list(conn.query_all("JournalEntry")),
        }
    finally:
        conn.close()


def quickbooks_accounts(ids: dict[str, str]) -> AccountMapping:
    """The revenue recognition accounts of a chart holding them by these names."""
    return AccountMapping(
        revenue="1",
        deferred_revenue=ids["Deferred Revenue"],
        contract_asset=ids["Unbilled Receivables"],
        revenue_by_recognition={"usage": ids["Usage Revenue"]},
    )


def quickbooks_northwind_credit() -> PartnerBill:
    """December's reversals of the referral partner Northwind: a VendorCredit to the same Vendor."""
    return PartnerBill(
        9, "northwind", "Northwind Advisors", "ap@northwind.example", "USD", "2026-12", "PF-2026-12-9",
        date(2027, 1, 1), date(2027, 1, 31), (StatementLine("hooli", Decimal("-100.00"), Decimal("-45.00")),),
        Decimal("-45.00"),
    )  # fmt: skip


def quickbooks_vendor_names(conn: QuickBooks, side: QuickBooksSide | None = None) -> dict[str, Any]:
    """QuickBooks keeps DisplayName unique across customers, vendors and employees. A customer holds
    "Northwind Advisors": its Bill goes to a Vendor made as "Northwind Advisors (northwind)", which a
    later run's VendorCredit finds. An employee holds "Contoso Partners" and a customer its suffixed
    name: its statement fails naming both, nothing made. The vendors, bills and credits read back."""
    try:
        if side is not None:
            side.company.create("Customer", {"DisplayName": "Northwind Advisors"})
            side.company.create("Employee", {"DisplayName": "Contoso Partners"})
            side.company.create("Customer", {"DisplayName": "Contoso Partners (contoso)"})
        first = conn.push_bills(quickbooks_partner_bills())
        later = quickbooks_later_run(conn)
        try:
            credit = later.push_bills([quickbooks_northwind_credit()])
        finally:
            later.close()
        return {
            "first": first,
            "credit": credit,
            "vendors": list(conn.query_all("Vendor")),
            "bills": list(conn.query_all("Bill")),
            "credits": list(conn.query_all("VendorCredit")),
        }
    finally:
        conn.close()


def quickbooks_refused_documents(conn: QuickBooks, side: QuickBooksSide | None = None) -> dict[str, Any]:
    """A document naming a customer QuickBooks does not know (2500) fails alone; so does one whose
    customer QuickBooks refuses to create (no name), on a later run: the others are created."""
    later = quickbooks_later_run(conn)
    try:
        docs = quickbooks_documents(3)  # cust-1, cust-0, cust-1
        customers = conn.ensure_customers(list({d.customer_ref: customer_spec(d) for d in docs}.values()))
        items = conn.ensure_items({ln.product_ref: ln.description for d in docs for ln in d.lines})
        unknown = conn.push_documents(docs, customer_ids={**customers, "cust-0": "999999"}, item_ids=items)
        more = quickbooks_documents(3, start=4)
        more[1] = replace(more[1], customer_ref="nameless", customer_name="")
        return {
            "unknown": unknown,
            "nameless": later.push_documents(more),
            "invoices": list(conn.query_all("Invoice", order_by="Id")),
        }
    finally:
        later.close()
        conn.close()


def quickbooks_deferred_items(conn: QuickBooks, side: QuickBooksSide | None = None) -> dict[str, Any]:
    """Revenue recognition on: items found with another income account ("SEATS", made by hand) are
    moved to deferred revenue (a sparse update), items made take it, so an invoice credits deferred
    revenue. The items read back."""
    try:
        if side is not None:
            side.company.create("Account", {"Name": "Deferred Revenue", "AccountType": "Other Current Liability"})
            side.company.create("Item", {"Name": "SEATS", "Type": "Service", "IncomeAccountRef": {"value": "1"}})
        deferred = next(str(a["Id"]) for a in conn.query_all("Account") if a["Name"] == "Deferred Revenue")
        recognising = quickbooks_later_run(conn, replace(conn.config, income_account_id=deferred), repoint_items=True)
        try:
            pushed = recognising.push_documents(quickbooks_documents(2), look_up_first=False)
        finally:
            recognising.close()
        return {"deferred": deferred, "pushed": pushed, "items": list(conn.query_all("Item"))}
    finally:
        conn.close()


QUICKBOOKS_SCENARIOS: dict[str, Callable[[QuickBooks, QuickBooksSide | None], Any]] = {
    "send_invoice": quickbooks_send_invoice,
    "push_twice": quickbooks_push_twice,
    "payments": quickbooks_payments,
    "journal_entries": quickbooks_journal_entries,
    "bills_and_rates": quickbooks_bills_and_rates,
    "customer_names": quickbooks_customer_names,
    "doc_number_taken": quickbooks_doc_number_taken,
    "credit_memo_and_yen": quickbooks_credit_memo_and_yen,
    "journal_problems": quickbooks_journal_problems,
    "vendor_names": quickbooks_vendor_names,
    "refused_documents": quickbooks_refused_documents,
    "deferred_items": quickbooks_deferred_items,
}
