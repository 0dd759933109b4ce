"""The demo: the whole quote-to-cash loop on one machine with no accounts anywhere.

Starts the four vendor sandboxes on loopback (Salesforce and HubSpot seeded with different demo
worlds, QuickBooks empty, Stripe where new customers enter a card at signup, one in five a card
that declines), points billbridge at them by configuration alone, and runs the ``quote_to_cash``
Prefect flow. Then some customers pay their invoices in QuickBooks, and the flow runs again, as
its schedule would: everything already done is left alone and the new payments are reconciled.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from billbridge.billing.currency import money_str, quantum
from billbridge.billing.metrics import arr, mrr
from billbridge.errors import UserError
from billbridge.flows.importing import import_document
from billbridge.private_files import private_file
from billbridge.sandbox import demo_world
from billbridge.settings import Settings
from billbridge.store import outbox, quarantine
from billbridge.store.contracts import current_contracts
from billbridge.store.db import Store, open_store
from billbridge.store.invoices import list_invoices
from billbridge.store.reference import entity_ids

DECLINING_CARD = "pm_card_chargeDeclinedInsufficientFunds"
DEMO_STORE = "demo.db"  # in the data folder: the store the demo leaves for a person to look around
SANDBOX_STORE = "sandbox.db"  # the store `billbridge sandbox` points billbridge at

STARTUP_SETTING = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
REGISTER_BLOCKS = "PREFECT_API_BLOCKS_REGISTER_ON_START"
PREFECT_DEFAULTS = {
    # Quiet: Prefect's per-run log lines and its temporary server's telemetry are noise here (the
    # Prefect UI has the runs). Set PREFECT_LOGGING_LEVEL to see them.
    "PREFECT_LOGGING_LEVEL": "ERROR",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # Prefect gives the temporary server of the demo's runs 20 s to start: too short once on a loaded
    # 2-core machine with a fresh Prefect home (the server first creates its database).
    STARTUP_SETTING: "180",
}


class PrefectDidNotStart(UserError):
    """Prefect's temporary server for the demo's runs did not answer in time."""


def prefect_environment() -> None:
    """Prefect's settings for the demo, where the person has not set their own.

    The command's modules import Prefect before the demo starts, and Prefect reads its settings and
    configures logging on import: so these defaults are read again (Prefect's own hook for changed
    environment variables), or the quiet logs and the longer start-up time would not apply."""
    missing = {key: value for key, value in PREFECT_DEFAULTS.items() if key not in os.environ}
    os.environ.update(missing)
    if missing and "prefect" in sys.modules:
        from prefect.context import refresh_global_settings_context
        from prefect.logging.configuration import setup_logging

        refresh_global_settings_context()
        setup_logging()
    prefect_home_ready()


def prefect_home_ready() -> None:
    """Prefect's home folder (PREFECT_HOME, ``~/.prefect``), made with its parents where missing; a
    UserError naming it when it cannot be written.

    The temporary server keeps its database there. Prefect makes the folder without its parents and
    only warns when it cannot: the server then failed to open its database and the demo waited its
    whole start-up time (180 s) for a server that had already stopped, then blamed a busy machine
    (seen with HOME pointing at a folder that did not exist)."""
    from prefect.settings import get_current_settings

    home = Path(get_current_settings().home)
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=home):
            pass
    except OSError as exc:
        raise PrefectDidNotStart(
            f"Prefect's home folder {home} cannot be written ({exc.strerror or exc}), and Prefect's temporary "
            "server keeps its database there: set PREFECT_HOME to a folder you can write"
        ) from None


SALESFORCE_SEED, HUBSPOT_SEED = 101, 202


def demo_worlds(deals: int) -> dict[str, demo_world.DemoWorld]:
    """The two CRM worlds, by CRM: N deals each, with referral partners and resellers named on some
    deals and billing contacts on most companies (a few left without, so their messages wait)."""
    return {
        crm: demo_world.with_contacts(demo_world.with_partners(demo_world.generate(deals, seed=seed)))
        for crm, seed in (("salesforce", SALESFORCE_SEED), ("hubspot", HUBSPOT_SEED))
    }


def partner_ref_of(crm: str) -> Callable[[str], str]:
    """A world partner's key -> the partner_ref its CRM account maps to (the CRM's prefix and id)."""
    from billbridge.mapping import hubspot, salesforce
    from billbridge.sandbox.hubspot.records import partner_company_id
    from billbridge.sandbox.salesforce import partner_account_id

    if crm == "salesforce":
        return lambda key: salesforce.DEFAULT_MAPPING.ref_prefix + partner_account_id(key)
    return lambda key: hubspot.DEFAULT_MAPPING.ref_prefix + partner_company_id(key)


# The demo org names a deal's referral partner in the standard PartnerAccountId (Partner Relationship
# Management) and its reseller in a custom lookup; billing contacts are read on the Account too.
SALESFORCE_PARTNERS = {
    "BILLBRIDGE_SALESFORCE__REFERRAL_PARTNER_FIELD": "PartnerAccountId",
    "BILLBRIDGE_SALESFORCE__RESELLER_PARTNER_FIELD": "Reseller_Account__c",
    "BILLBRIDGE_SALESFORCE__ACCOUNT_CONTACT_ROLES": "true",
}


@dataclass
class Sandboxes:
    env: dict[str, str]
    quickbooks: Any
    stripe: Any
    salesforce: Any
    hubspot: Any
    smtp: Any = None  # the SMTP sandbox customer e-mails go to (its mailbox folder: ``smtp.mailbox.folder``)


@contextmanager
def running_sandboxes(deals: int, *, webhooks_to: str | None = None) -> Iterator[Sandboxes]:
    """The four sandboxes, and the settings (as BILLBRIDGE_* variables) that point billbridge at them.
    ``webhooks_to``: the base URL of a billbridge API (``billbridge serve``) that Stripe's and
    QuickBooks' sandboxes send their signed webhooks to (its /webhooks/stripe and /webhooks/quickbooks),
    with the secrets that verify them among the settings."""
    from billbridge.sandbox.hubspot import HubSpotSandbox
    from billbridge.sandbox.quickbooks.company import QboCompany
    from billbridge.sandbox.quickbooks.running import start_quickbooks
    from billbridge.sandbox.salesforce import SalesforceSandbox
    from billbridge.sandbox.smtp import SmtpSandbox
    from billbridge.sandbox.stripe import start_seeded

    with ExitStack() as stack:
        mailbox = Settings().data_dir / "demo-mailbox"
        shutil.rmtree(mailbox, ignore_errors=True)  # the mailbox of this run only
        smtp = stack.enter_context(SmtpSandbox(folder=mailbox))
        worlds = demo_worlds(deals)
        salesforce = SalesforceSandbox(worlds["salesforce"]).start()
        stack.callback(salesforce.stop)
        hubspot = HubSpotSandbox.start(worlds["hubspot"])
        stack.callback(hubspot.stop)
        base = webhooks_to.rstrip("/") if webhooks_to else None
        # Without Intuit's rate limits, as the other demo sandboxes: the demo shows the flow, not the pace
        # One company keeps the books of the four entities: multicurrency on, as it must be for customers
        # and entries in EUR, GBP and JPY (off, each of those entities' journal entries is refused and
        # only the USD one posts), with a rate for each currency from long before any demo month.
        company = QboCompany(multicurrency=True)
        for entity in demo_world.ENTITIES:
            if entity.currency != company.home_currency:
                company.set_exchange_rate(entity.currency, "2000-01-01", demo_world.usd_per_unit(entity.currency))
        quickbooks = start_quickbooks(
            company=company, webhook_url=f"{base}/webhooks/quickbooks" if base else None, limits=None
        )
        stack.callback(quickbooks.stop)
        stripe = stack.enter_context(
            start_seeded(
                demo_world.generate(3, seed=303),
                subscriptions=0,
                webhook_url=f"{base}/webhooks/stripe" if base else None,
            )
        )
        signups = Counter[str]()

        def card(customer: dict[str, Any]) -> str:
            signups["n"] += 1
            return DECLINING_CARD if signups["n"] % 5 == 0 else "pm_card_visa"

        stripe.sandbox.state.card_on_signup = card
        # A chart of accounts for revenue recognition: invoices post to deferred revenue, closes post
        # the month's JournalEntry (income "1" is the company's own Services account).
        deferred, unbilled = (
            quickbooks.company.create("Account", {"Name": name, "AccountType": kind})["Id"]
            for name, kind in (
                ("Deferred Revenue", "Other Current Liability"),
                ("Unbilled Receivables", "Other Current Asset"),
            )
        )
        env = {
            **salesforce.env(),
            **SALESFORCE_PARTNERS,
            **hubspot.env(),
            "BILLBRIDGE_HUBSPOT__REQUESTS_PER_10S": "100000",  # sandboxes do not throttle
            "BILLBRIDGE_QUICKBOOKS__CLIENT_ID": quickbooks.client_id,
            "BILLBRIDGE_QUICKBOOKS__CLIENT_SECRET": quickbooks.client_secret,
            "BILLBRIDGE_QUICKBOOKS__REALM_ID": quickbooks.realm_id,
            "BILLBRIDGE_QUICKBOOKS__REFRESH_TOKEN": quickbooks.refresh_token,
            "BILLBRIDGE_QUICKBOOKS__API_URL_V3": quickbooks.api_url_v3,
            "BILLBRIDGE_QUICKBOOKS__DISCOVERY_URL": quickbooks.discovery_url,
            "BILLBRIDGE_QUICKBOOKS__CA_BUNDLE": str(quickbooks.ca_bundle),
            "BILLBRIDGE_QUICKBOOKS__REQUESTS_PER_SECOND": "100000",  # its sandbox is started without limits
            "BILLBRIDGE_QUICKBOOKS__BATCHES_PER_MINUTE": "100000",
            "BILLBRIDGE_STRIPE__API_KEY": stripe.api_key,
            "BILLBRIDGE_STRIPE__BASE_URL": stripe.url,
            "BILLBRIDGE_CRM_SOURCES": json.dumps(["salesforce", "hubspot"]),
            "BILLBRIDGE_PUSH_TARGETS": json.dumps(["quickbooks", "stripe"]),
            "BILLBRIDGE_AUTO_APPROVE_INVOICES": "true",
            "BILLBRIDGE_REVENUE_ACCOUNTS__DEFERRED_REVENUE": deferred,
            "BILLBRIDGE_REVENUE_ACCOUNTS__CONTRACT_ASSET": unbilled,
            "BILLBRIDGE_REVENUE_ACCOUNTS__REVENUE": "1",
            **{f"BILLBRIDGE_SMTP__{key.upper()}": str(value) for key, value in smtp.settings().items()},
        }
        if base:
            env["BILLBRIDGE_STRIPE__WEBHOOK_SECRET"] = stripe.webhook_secret
            env["BILLBRIDGE_QUICKBOOKS__WEBHOOK_VERIFIER_TOKEN"] = quickbooks.webhook_verifier
        yield Sandboxes(env, quickbooks, stripe, salesforce, hubspot, smtp)


def customers_pay_in_quickbooks(quickbooks: Any, stripe: Any) -> int:
    """Some customers pay: every second open QuickBooks invoice in full, every seventh in half; not
    the auto-charge ones, which Stripe collected."""
    charged = {str((inv.get("metadata") or {}).get("billbridge_number")) for inv in stripe.sandbox.state.all("invoice")}
    paid = 0
    open_invoices = [
        r
        for r in quickbooks.company.all("Invoice")
        if Decimal(str(r.get("Balance", 0))) > 0 and str(r.get("DocNumber")) not in charged
    ]
    for n, invoice in enumerate(sorted(open_invoices, key=lambda r: int(r["Id"]))):
        balance = Decimal(str(invoice["Balance"]))
        step = quantum(str(invoice["CurrencyRef"]["value"]))  # half a yen invoice is whole yen
        share = balance if n % 2 == 0 else (balance / 2).quantize(step) if n % 7 == 1 else None
        if share:
            quickbooks.company.receive_payment({invoice["Id"]: share}, ref=f"DEMO-{invoice['DocNumber']}")
            paid += 1
    return paid


def summary(
    store: Store, runs: list[dict[str, Any]], as_of: date, sandboxes: Sandboxes, fees: list[dict[str, Any]]
) -> dict[str, Any]:
    """What the demo did, from the store and the sandboxes: counts per step, money per currency.
    ``runs``: the two quote_to_cash runs' results; ``fees``: the two partner_fees runs' results."""
    with store.read() as session:
        contracts = current_contracts(session, None)
        documents = list_invoices(session)
        quarantined = quarantine.list_open(session)
        unposted = [m["last_error"] or "not posted yet" for m in outbox.pending(session, topic="journal.quickbooks")]
    monthly = mrr(contracts.values(), as_of)
    statuses = Counter(str(d["status"]) for d in documents)
    first = runs[0]
    pulled = {
        name.split(".", 1)[1]: step.get("deals_pulled", 0)
        for name, step in first.items()
        if name.startswith("sync_crm.")
    }
    reconciled = Counter[str]()
    recorded_from = Counter[str]()  # new payments recorded, per source
    for run in runs:
        for name, step in run.items():
            if name.startswith("reconcile."):
                outcomes = step.get("outcomes", {})
                reconciled.update(outcomes)
                recorded_from[name.split(".", 1)[1]] += sum(
                    outcomes.get(k, 0) for k in ("matched", "partly_matched", "unmatched")
                )
    qbo_numbers = [str(r["DocNumber"]) for e in ("Invoice", "CreditMemo") for r in sandboxes.quickbooks.company.all(e)]
    stripe_numbers = [
        str((inv.get("metadata") or {}).get("billbridge_number"))
        for inv in sandboxes.stripe.sandbox.state.all("invoice")
    ]
    qbo_docs = len(qbo_numbers)
    journal_numbers = [str(r["DocNumber"]) for r in sandboxes.quickbooks.company.all("JournalEntry")]
    bill_numbers = [str(r["DocNumber"]) for e in ("Bill", "VendorCredit") for r in sandboxes.quickbooks.company.all(e)]
    vendor_names = [str(r["DisplayName"]) for r in sandboxes.quickbooks.company.all("Vendor")]
    entered = [  # Stripe payments entered in QuickBooks (their note names the Stripe payment)
        str(p.get("PrivateNote"))
        for p in sandboxes.quickbooks.company.all("Payment")
        if str(p.get("PrivateNote", "")).startswith("billbridge stripe ")
    ]
    again = runs[-1]
    charged = sum(run.get("collect", {}).get("outcomes", {}).get("charged", 0) for run in runs)
    declined = sum(run.get("collect", {}).get("outcomes", {}).get("declined", 0) for run in runs)
    return {
        "as_of": as_of.isoformat(),
        "deals_pulled": pulled,
        "contracts": len(contracts),
        "invoices": sum(1 for d in documents if d["doc_type"] == "invoice"),
        "credit_notes": sum(1 for d in documents if d["doc_type"] == "credit_note"),
        "pushed": {
            "quickbooks": qbo_docs,
            "stripe": len(sandboxes.stripe.sandbox.state.all("invoice")),
        },
        "charged": charged,
        "declined": declined,
        "stripe_payments_in_quickbooks": len(set(entered)),
        "paid": statuses["paid"],
        "paid_with_nothing_due": sum(1 for d in documents if d["status"] == "paid" and d["invoice_total"] == 0),
        "partially_paid": statuses["partially_paid"],
        "reconciled": dict(reconciled),
        "payments_recorded": dict(recorded_from),
        "unmatched": [
            u
            for run in runs
            for n, step in run.items()
            if n.startswith("reconcile.")
            for u in step.get("unmatched", [])
        ][:20],
        "quarantined": len(quarantined),
        # Anything done twice would show here: documents in a vendor under one number more than once,
        # and what the second run of quote_to_cash (nothing new upstream) created.
        "duplicates": {
            "quickbooks": len(qbo_numbers) - len(set(qbo_numbers)),
            "stripe": len(stripe_numbers) - len(set(stripe_numbers)),
            "quickbooks_payments": len(entered) - len(set(entered)),
            "quickbooks_journal_entries": len(journal_numbers) - len(set(journal_numbers)),
            "quickbooks_bills": len(bill_numbers) - len(set(bill_numbers)),
            "quickbooks_vendors": len(vendor_names) - len(set(vendor_names)),
        },
        "second_run_created": {
            "contracts": sum(
                step.get("counts", {}).get("contracts.created", 0)
                for n, step in again.items()
                if n.startswith("sync_crm.")
            ),
            "invoices": again.get("bill", {}).get("invoices", 0),
            "pushed": sum(
                step.get("outcomes", {}).get("created", 0) for n, step in again.items() if n.startswith("push.")
            ),
            "charged": again.get("collect", {}).get("outcomes", {}).get("charged", 0),
            "payments_in_quickbooks": again.get("reconcile.stripe", {})
            .get("mirrored_to_quickbooks", {})
            .get("created", 0),
            "bills": fees[-1].get("bills", {}).get("created", 0),
        },
        "partners": _partners_summary(store, documents, sandboxes),
        "mrr": {cur: str(v) for cur, v in monthly.items()},
        "arr": {cur: str(v) for cur, v in arr(monthly).items()},
        "monitors": _monitors_summary(again.get("snapshot_monitors", {})),
        "messages": _messages_summary(store, sandboxes),
        # revenue recognised in the month of as_of and deferred at its end, per currency
        "recognised_revenue": again.get("recognize_revenue", {}).get("recognised", {}),
        "deferred_revenue": again.get("recognize_revenue", {}).get("deferred", {}),
        # the month before as_of, closed between the runs: one JournalEntry per entity and currency
        "closed_month": last_month(as_of).strftime("%Y-%m"),
        "journal_entries": len(journal_numbers),
        "journal_entries_not_posted": unposted,  # queued by the close but refused or not sent: why
    }


STATEMENT_SUBJECT = "Referral fee statement "  # the default partner_statement subject's start


def _partners_summary(store: Store, documents: list[dict[str, Any]], sandboxes: Sandboxes) -> dict[str, Any]:
    """Partners by kind, referral fees accrued per currency (net of reversals), statements closed and
    e-mailed to their partners (in the SMTP sandbox's mailbox), Bills and VendorCredits in QuickBooks,
    and the invoices billed to resellers."""
    from billbridge.store import messages
    from billbridge.store import partners as sql

    with store.read() as session:
        partners = sql.load_partners(session)
        accruals = sql.load_accruals(session)
        closed = sql.statements(session)
        mailed = messages.listing(session, kind=messages.PARTNER_STATEMENT, state="sent")
    fees: dict[str, Decimal] = {}
    for accrual in accruals:
        fees[accrual.currency] = fees.get(accrual.currency, Decimal(0)) + accrual.fee
    resellers = {ref for ref, p in partners.items() if p.kind != "referral"}
    company = sandboxes.quickbooks.company
    return {
        "partners": dict(sorted(Counter(p.kind for p in partners.values()).items())),
        "fees_accrued": {c: money_str(a, c) for c, a in sorted(fees.items())},
        "statements": len(closed),
        "statements_mailed": len(mailed),
        "statements_in_mailbox": (
            sum(1 for r in sandboxes.smtp.mailbox.items() if str(r.message["Subject"]).startswith(STATEMENT_SUBJECT))
            if sandboxes.smtp
            else 0
        ),
        "bills": len(company.all("Bill")),
        "vendor_credits": len(company.all("VendorCredit")),
        "reseller_invoices": sum(1 for d in documents if d["doc_type"] == "invoice" and d["customer_ref"] in resellers),
    }


def _messages_summary(store: Store, sandboxes: Sandboxes) -> dict[str, Any]:
    """Messages by kind and state, and where the SMTP sandbox's mailbox keeps what it received."""
    from billbridge.store.messages import overview

    with store.read() as session:
        data = overview(session)
    return {
        "by_kind": data["by_kind"],
        "waiting_for_contact": len(data["waiting_for_contact"]),
        "mailbox": str(sandboxes.smtp.mailbox.folder) if sandboxes.smtp else None,
        "received": len(sandboxes.smtp.mailbox.items()) if sandboxes.smtp else 0,
    }


def _monitors_summary(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The second run's monitor snapshot: monitors, values kept, alerts (with a few of them)."""
    return {
        "monitors": snapshot.get("monitors", 0),
        "values": snapshot.get("values", 0),
        "alerts": snapshot.get("alerts", 0),
        "alerts_by_monitor": snapshot.get("alerts_by_monitor", {}),
    }


def last_month(day: date) -> date:
    first = day.replace(day=1)
    return (first - timedelta(days=1)).replace(day=1)


def close_last_month(store: Store, day: date) -> None:
    """Close the month before ``day`` for every legal entity, as a controller would once the month's
    invoices are out: its journal entries are queued for QuickBooks (the next recognize_revenue posts them)."""
    from billbridge.flows import revenue
    from billbridge.store.revenue import entity_refs

    with store.read() as session:
        refs = entity_refs(session)
    for ref in refs:
        # the demo's simulated day is its "today": a month ended by then can close, whatever the wall clock says
        revenue.close(store, ref, last_month(day), ledger="quickbooks", today=day, actor="billbridge demo")


def add_demo_monitors(store: Store) -> int:
    """The demo's monitors, as a finance team defines them once its deals are in: per legal entity the
    current period's invoice total per customer, contracts ending within 30 days (renewals) and the
    usage its contracts bill over the billing period. Returns how many were added."""
    from billbridge.billing.monitors import MonitorDefinition
    from billbridge.flows import monitors as mon
    from billbridge.store import monitors as sql

    added = 0
    with store.write() as session:
        for entity in demo_world.ENTITIES:
            ids = entity_ids(session, [entity.entity_ref])
            if not ids:
                continue
            definitions: list[dict[str, Any]] = [
                {"name": "invoice-total", "source": "contract", "contract": {"item": "invoice_total"}},
                {
                    "name": "renewals",
                    "source": "contract",
                    "contract": {"item": "contract_end_date"},
                    "conditions": [{"when": "within_days", "value": 30}],
                },
            ]
            definitions += [
                {
                    "name": f"usage-{product.lower()}",
                    "source": "usage_aggregate",
                    "usage": {"product_ref": product},
                    "conditions": [{"when": "increment_above", "value": 0}],
                }
                for product in sql.usage_products(session, ids[entity.entity_ref])
            ]
            for definition in definitions:
                try:
                    mon.add_monitor(
                        session, MonitorDefinition.model_validate({**definition, "entity_ref": entity.entity_ref})
                    )
                except mon.MonitorRefused:  # defined before: the demo's store is emptied at each start
                    continue
                added += 1
    return added


def demo_world_store(data_dir: Path, name: str, deals: int) -> str:
    """A SQLite store of its own in the data folder (``demo.db``, ``sandbox.db``), emptied, with the
    demo world's legal entities and the partners of its two CRM worlds of ``deals`` deals in it, with
    their referral agreements (what an installation sets up before syncing: the sandboxes' deals name
    them). Emptied because the sandboxes start empty every time, so what an earlier run
    stored (cursors, external ids, the QuickBooks tokens it rotated) belongs to vendors that no longer
    exist. The configured store is never touched."""
    path = data_dir / name
    for leftover in (path, path.with_name(f"{name}-wal"), path.with_name(f"{name}-shm")):
        leftover.unlink(missing_ok=True)
    private_file(path)
    url = f"sqlite:///{path}"
    store = open_store(url)
    try:
        import_document(store, demo_world.entities_document(demo_world.generate(0)))
        for crm, world in demo_worlds(deals).items():
            import_document(store, demo_world.partners_document(world, partner_ref_of(crm)))
    finally:
        store.dispose()
    return url


@contextmanager
def demo_session(deals: int = 60, as_of: date | None = None) -> Iterator[tuple[dict[str, Any], Sandboxes]]:
    """Start the sandboxes, run quote_to_cash, let customers pay, run it again; yield the summary
    while the sandboxes (and the settings pointing at them) are still there."""
    from prefect.settings import (
        PREFECT_API_BLOCKS_REGISTER_ON_START,
        PREFECT_API_TLS_INSECURE_SKIP_VERIFY,
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )

    from billbridge.flows.partner_fees import partner_fees, previous_period
    from billbridge.flows.quote_to_cash import quote_to_cash

    day = as_of or date.today()
    # No flow run heartbeats: they let a server notice a crashed run of a deployment, while the demo's
    # runs are in this process against a temporary server that ends with it; and each run's heartbeat
    # thread is joined at its end, about a second per flow run (subflows included: 50 in a demo).
    quicker: dict[Any, Any] = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    if REGISTER_BLOCKS not in os.environ:
        # The temporary server Prefect starts for the runs (when no PREFECT_API_URL is set) registers
        # every block type it knows before it answers, a good part of its start-up; the demo saves no
        # block. A server of the person's own, or `demo --serve`'s, is not started here: unaffected.
        quicker[PREFECT_API_BLOCKS_REGISTER_ON_START] = False
    if not (PREFECT_API_URL.value() or "http://").startswith("https://"):
        # Prefect makes a client for every task run and, unless told to skip verifying, loads certifi's
        # whole CA bundle into a new SSL context for it (3.5% of a demo's CPU); against its own temporary
        # server or another on plain HTTP there is no certificate to verify. HTTPS servers keep it.
        quicker[PREFECT_API_TLS_INSECURE_SKIP_VERIFY] = True
    with temporary_settings(updates=quicker), running_sandboxes(deals) as sandboxes:
        env = {**sandboxes.env, "BILLBRIDGE_DATABASE_URL": demo_world_store(Settings().data_dir, DEMO_STORE, deals)}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            store = open_store(Settings().database)
            try:
                runs = [quote_to_cash(as_of=day)]
            except RuntimeError as exc:  # Prefect's own words: "Timed out while attempting to connect to ephemeral..."
                if "ephemeral Prefect API server" not in str(exc):
                    raise
                raise PrefectDidNotStart(
                    f"Prefect's temporary server did not start within {os.environ.get(STARTUP_SETTING, 20)} s "
                    f"(a busy machine?): run the demo again, or allow it longer with {STARTUP_SETTING}=600"
                ) from None
            customers_pay_in_quickbooks(sandboxes.quickbooks, sandboxes.stripe)
            add_demo_monitors(store)
            close_last_month(store, day)  # the second run posts its journal entries
            fees = [partner_fees(period=previous_period(day), as_of=day)]  # as its monthly schedule would
            runs.append(quote_to_cash(as_of=day))
            fees.append(partner_fees(period=previous_period(day), as_of=day))  # again: nothing billed twice
            yield summary(store, runs, day, sandboxes, fees), sandboxes
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def run_demo(deals: int = 60, as_of: date | None = None) -> dict[str, Any]:
    """The demo's summary (the sandboxes stop afterwards)."""
    with demo_session(deals, as_of) as (result, _):
        return result
