"""Revenue posted to QuickBooks end to end (issue 14): a close queues the month's JournalEntry in the
outbox, the ledger posts it once; a month reopened and closed again replaces its entry; a process
killed between QuickBooks accepting the entry and our commit never makes a second one."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from billbridge.flows import revenue
from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.sandbox.quickbooks.running import RunningQuickBooks
from billbridge.settings import QuickBooksSettings, RevenueAccountsSettings, Settings
from billbridge.store import outbox
from billbridge.store.db import Store
from tests.docs import contract, document
from tests.settings_env import QUICK_RETRY, as_environment

YEAR = contract("C-Y", cycle_unit="year", contract_end_date="2026-12-31")  # 1,200 billed upfront for 2026
SEATS = contract(  # 2 seats at 45 a month, billed in arrears: recognised before billed (a contract asset)
    "C-U",
    contract_end_date="2026-12-31",
    billing_timing="in_arrears",
    lines=[{"line_ref": "seats", "product_ref": "seats", "quantity": "2"}],
)
JANUARY = date(2026, 1, 1)


def settings_for(qbo: RunningQuickBooks, database_url: str, data_dir: Path) -> Settings:
    made = {
        name: qbo.company.create("Account", {"Name": name, "AccountType": kind})["Id"]
        for name, kind in (
            ("Deferred Revenue", "Other Current Liability"),
            ("Unbilled Receivables", "Other Current Asset"),
        )
    }
    return Settings(
        database_url=database_url,
        data_dir=data_dir,
        quickbooks=QuickBooksSettings(
            client_id=qbo.client_id,
            client_secret=SecretStr(qbo.client_secret),
            realm_id=qbo.realm_id,
            refresh_token=SecretStr(qbo.refresh_token),
            api_url_v3=qbo.api_url_v3,
            discovery_url=qbo.discovery_url,
            ca_bundle=str(qbo.ca_bundle),
            requests_per_second=100_000,
            batches_per_minute=100_000,
            retry=QUICK_RETRY,
        ),
        revenue_accounts=RevenueAccountsSettings(
            deferred_revenue=made["Deferred Revenue"], contract_asset=made["Unbilled Receivables"], revenue="1"
        ),
    )


def entries(qbo: RunningQuickBooks) -> list[dict[str, Any]]:
    return qbo.company.all("JournalEntry")


def lines(entry: dict[str, Any]) -> list[tuple[str, str, Decimal]]:
    return [
        (
            ln["JournalEntryLineDetail"]["PostingType"],
            ln["JournalEntryLineDetail"]["AccountRef"]["value"],
            Decimal(str(ln["Amount"])),
        )
        for ln in entry["Line"]
    ]


def closed_january(store: Store, settings: Settings) -> None:
    import_document(store, document(YEAR, SEATS))
    run_billing(store, JANUARY)
    revenue.close(store, "us", JANUARY, ledger=revenue.ledger_of(settings))


def test_a_close_posts_one_entry_once_and_a_reclosed_month_replaces_it(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    settings = settings_for(qbo, database_url, tmp_path)
    accounts = settings.revenue_accounts
    assert accounts is not None
    closed_january(store, settings)
    assert revenue.post_journals(store, settings).outcomes == {"created": 1}
    [entry] = entries(qbo)
    assert (entry["DocNumber"], entry["TxnDate"]) == ("REV202601-USD-US", "2026-01-31")
    # C-Y: 101.92 of the year billed upfront drawn from deferred revenue; C-U: 91.73 recognised, not billed yet
    assert lines(entry) == [
        ("Debit", accounts.deferred_revenue, Decimal("101.92")),
        ("Debit", accounts.contract_asset, Decimal("91.73")),
        ("Credit", "1", Decimal("193.65")),
    ]
    qbo.faults.reset_calls()
    assert revenue.post_journals(store, settings).outcomes == {}  # nothing queued: no call at all
    assert qbo.faults.total_calls() == 0
    [report] = revenue.journal_report(store, settings, "us", JANUARY)
    assert (report["doc_number"], report["posting"], report["closed"]) == ("REV202601-USD-US", "posted", True)
    assert [(ln["posting"], ln["account"], ln["amount"]) for ln in report["lines"]] == [
        (posting, account, str(amount)) for posting, account, amount in lines(entry)
    ]

    # A backdated contract lands in January once it is reopened; closing again replaces the entry.
    revenue.close(store, "us", JANUARY, reopen=True, reason="late deal")
    assert revenue.journal_report(store, settings, "us", JANUARY)[0]["posting"] == "superseded (reopened)"
    import_document(store, document(contract("C-L", customer="initech", contract_end_date="2026-12-31")))
    run_billing(store, JANUARY)
    revenue.close(store, "us", JANUARY, ledger="quickbooks")
    assert revenue.post_journals(store, settings).outcomes == {"updated": 1}
    [replaced] = entries(qbo)
    assert (replaced["Id"], replaced["SyncToken"]) == (entry["Id"], "1")
    # C-L bills 1,200 a month for the year (14,400), recognised daily: January 14,400 x 31 / 365 = 1,223.01 more
    assert lines(replaced)[-1] == ("Credit", "1", Decimal("1416.66"))


def test_only_the_newest_close_of_a_month_posts(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    settings = settings_for(qbo, database_url, tmp_path)
    closed_january(store, settings)
    revenue.close(store, "us", JANUARY, reopen=True, reason="checking")
    revenue.close(store, "us", JANUARY, ledger="quickbooks")
    assert revenue.post_journals(store, settings).outcomes == {"superseded": 1, "created": 1}
    assert len(entries(qbo)) == 1
    revenue.close(store, "us", JANUARY, reopen=True, reason="again")  # queued nothing: the entry stays
    assert revenue.post_journals(store, settings).outcomes == {}
    assert len(entries(qbo)) == 1


def test_a_wrong_account_parks_the_entry_naming_it(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    settings = settings_for(qbo, database_url, tmp_path)
    assert settings.revenue_accounts is not None
    wrong = settings.model_copy(
        update={"revenue_accounts": settings.revenue_accounts.model_copy(update={"contract_asset": "1"})}
    )
    closed_january(store, wrong)
    assert revenue.check_accounts(store, settings) == []  # what `billbridge revenue accounts` says
    assert revenue.check_accounts(store, wrong) == [
        "account 1 'Services' is Income; contract_asset needs Other Asset or Other Current Asset"
    ]
    summary = revenue.post_journals(store, wrong)
    assert summary.outcomes == {"failed": 1}
    [(_, error)] = summary.failures
    assert error == (
        "REV202601-USD-US: us revenue_accounts: account 1 'Services' is Income; contract_asset needs Other Asset "
        "or Other Current Asset"
    )
    with store.read() as session:
        [parked] = outbox.pending(session, topic="journal.quickbooks")
    assert parked["last_error"] == error and entries(qbo) == []
    [report] = revenue.journal_report(store, wrong, "us", JANUARY)
    assert (report["posting"], report["error"]) == ("failed", error)


def reclosed_to_nothing(store: Store) -> None:
    """January reopened, and C-Y amended from January 1 to a pass-through line (``recognition: none``,
    recognised by someone else): January recognises nothing any more; closed again."""
    revenue.close(store, "us", JANUARY, reopen=True, reason="pass-through after all")
    passed = [{"line_ref": "platform", "product_ref": "platform", "recognition": "none"}]
    import_document(store, document(dict(YEAR, lines=passed, effective_date="2026-01-01")))
    revenue.close(store, "us", JANUARY, ledger="quickbooks")


def person_entry(qbo: RunningQuickBooks, number: str, note: str | None = None) -> dict[str, Any]:
    detail = {"DetailType": "JournalEntryLineDetail", "Amount": "5.00"}
    return qbo.company.create(
        "JournalEntry",
        {
            "DocNumber": number,
            **({"PrivateNote": note} if note else {}),
            "Line": [
                {**detail, "JournalEntryLineDetail": {"PostingType": "Debit", "AccountRef": {"value": "1"}}},
                {**detail, "JournalEntryLineDetail": {"PostingType": "Credit", "AccountRef": {"value": "1"}}},
            ],
        },
    )


def test_a_month_reclosed_to_nothing_deletes_its_entry_once_and_no_one_elses(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    settings = settings_for(qbo, database_url, tmp_path)
    import_document(store, document(YEAR))
    run_billing(store, JANUARY)
    revenue.close(store, "us", JANUARY, ledger="quickbooks")
    assert revenue.post_journals(store, settings).outcomes == {"created": 1}
    [ours] = entries(qbo)
    theirs = person_entry(qbo, "JE-100")  # a person's own entry: never touched

    reclosed_to_nothing(store)
    assert revenue.period_revenues(store, "us", JANUARY) == []
    [report] = revenue.journal_report(store, settings, "us", JANUARY)
    assert (report["doc_number"], report["posting"], report["removal"], report["lines"]) == (
        "REV202601-USD-US",
        "queued",
        True,
        [],
    )
    assert revenue.post_journals(store, settings).outcomes == {"deleted": 1}
    assert [e["Id"] for e in entries(qbo)] == [theirs["Id"]]
    assert [t["Id"] for t in qbo.company.deleted["JournalEntry"]] == [ours["Id"]]
    assert revenue.journal_report(store, settings, "us", JANUARY)[0]["posting"] == "posted"
    qbo.faults.reset_calls()
    assert revenue.post_journals(store, settings).outcomes == {}
    assert qbo.faults.total_calls() == 0

    # Reopened and closed again, still with nothing: the removal is queued again and finds nothing to remove.
    revenue.close(store, "us", JANUARY, reopen=True, reason="checking")
    revenue.close(store, "us", JANUARY, ledger="quickbooks")
    assert revenue.post_journals(store, settings).outcomes == {"existing": 1}
    assert [e["Id"] for e in entries(qbo)] == [theirs["Id"]]
    assert len(qbo.company.deleted["JournalEntry"]) == 1

    # Back to what January first recognised, closed again: a new entry is created, for real. (Its create
    # once repeated the first create's request id, which QuickBooks answered from memory: "created",
    # and no entry in the books.)
    revenue.close(store, "us", JANUARY, reopen=True, reason="recognised by us after all")
    import_document(
        store, document(dict(YEAR, lines=[dict(YEAR["lines"][0], recognition="ratable")], effective_date="2026-01-01"))
    )
    revenue.close(store, "us", JANUARY, ledger="quickbooks")
    assert revenue.post_journals(store, settings).outcomes == {"created": 1}
    again = [e for e in entries(qbo) if e["Id"] != theirs["Id"]]
    assert len(again) == 1 and again[0]["Id"] != ours["Id"]
    assert again[0]["DocNumber"] == ours["DocNumber"] and again[0]["Line"] == ours["Line"]
    assert revenue.journal_report(store, settings, "us", JANUARY)[0]["posting"] == "posted"


def test_a_removal_leaves_an_entry_a_person_made_under_our_number_alone(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    settings = settings_for(qbo, database_url, tmp_path)
    import_document(store, document(YEAR))
    run_billing(store, JANUARY)
    revenue.close(store, "us", JANUARY, ledger="quickbooks")  # queued, never posted
    theirs = person_entry(qbo, "REV202601-USD-US", note="January accrual, by hand")
    reclosed_to_nothing(store)
    assert revenue.post_journals(store, settings).outcomes == {"superseded": 1, "existing": 1}
    assert entries(qbo) == [theirs] and qbo.company.deleted["JournalEntry"] == []


@pytest.mark.slow
def test_a_removal_killed_after_quickbooks_deleted_the_entry_deletes_nothing_else(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    """SIGKILL while QuickBooks holds the answer to the batch that deleted the month's entry. The rerun
    looks the entry up by DocNumber, finds none of ours, and records the removal done."""
    settings = settings_for(qbo, database_url, tmp_path)
    import_document(store, document(YEAR))
    run_billing(store, JANUARY)
    revenue.close(store, "us", JANUARY, ledger="quickbooks")
    assert revenue.post_journals(store, settings).outcomes == {"created": 1}
    theirs = person_entry(qbo, "JE-100")
    reclosed_to_nothing(store)
    queued = killed_while_posting(qbo, settings, database_url, tmp_path, store)
    assert [e["Id"] for e in entries(qbo)] == [theirs["Id"]]  # QuickBooks deleted ours...
    assert queued["attempts"] == 1  # ...which we never recorded

    qbo.faults.clear()
    with store.write() as session:  # the lease of the dead run runs out
        outbox.retry_now(session, [queued["id"]])
    assert revenue.post_journals(store, settings).outcomes == {"existing": 1}
    assert [e["Id"] for e in entries(qbo)] == [theirs["Id"]]
    assert len(qbo.company.deleted["JournalEntry"]) == 1
    with store.read() as session:
        assert outbox.pending(session, topic="journal.quickbooks") == []


def killed_while_posting(
    qbo: RunningQuickBooks, settings: Settings, database_url: str, tmp_path: Path, store: Store
) -> dict[str, Any]:
    """Post the queued journal entries in a child process killed (SIGKILL) while QuickBooks holds its answer
    to the batch: QuickBooks has done the write, we never recorded it. The message left queued."""
    hold = qbo.faults.add(kind="hold_response", path="/batch", delay=30)
    env = {**os.environ, "BILLBRIDGE_DATABASE_URL": database_url, "BILLBRIDGE_DATA_DIR": str(tmp_path)}
    env["BILLBRIDGE_CONFIG"] = str(tmp_path / "none.toml")
    assert settings.quickbooks is not None and settings.revenue_accounts is not None
    env.update(as_environment("BILLBRIDGE_QUICKBOOKS", settings.quickbooks))
    for key in ("deferred_revenue", "contract_asset", "revenue"):
        env[f"BILLBRIDGE_REVENUE_ACCOUNTS__{key.upper()}"] = getattr(settings.revenue_accounts, key)
    script = (
        "from billbridge.settings import Settings\nfrom billbridge.flows.revenue import post_journals\n"
        "from billbridge.store.db import open_store\ns = Settings()\npost_journals(open_store(s.database), s)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.monotonic() + 60
    while not hold.done:
        assert child.poll() is None and time.monotonic() < deadline, "the post never reached QuickBooks"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with store.read() as session:
        queued = [m for m in outbox.pending(session, topic="journal.quickbooks") if m["attempts"]]
    assert len(queued) == 1
    return queued[0]


@pytest.mark.slow
def test_a_post_killed_after_quickbooks_accepted_the_entry_makes_no_second_one(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    """SIGKILL while QuickBooks holds the answer to the batch that created the entry. The rerun looks
    the entry up by DocNumber before writing and finds it: one entry per entity and month."""
    settings = settings_for(qbo, database_url, tmp_path)
    closed_january(store, settings)
    queued = killed_while_posting(qbo, settings, database_url, tmp_path, store)
    assert len(entries(qbo)) == 1  # QuickBooks committed the entry...
    assert queued["attempts"] == 1  # ...which we never recorded

    qbo.faults.clear()
    with store.write() as session:  # the lease of the dead run runs out
        outbox.retry_now(session, [queued["id"]])
    assert revenue.post_journals(store, settings).outcomes == {"existing": 1}
    assert len(entries(qbo)) == 1
    with store.read() as session:
        assert outbox.pending(session, topic="journal.quickbooks") == []


KWD_YEAR = contract(
    "C-K", customer="gulf", entity="kw", currency="KWD", cycle_unit="year", contract_end_date="2026-12-31"
)


def test_an_entry_in_a_foreign_currency_carries_quickbooks_own_rate_of_the_months_last_day(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    """Worked example: a USD company books the Kuwaiti entity's January. C-K bills 365.125 KWD for 2026
    upfront; January recognises 365.125 x 31 / 365 = 31.0106 -> 31.011 KWD. QuickBooks' rate for KWD on
    January 31 (the entry's TxnDate) is 3.2531 USD (set on the 31st; the 1st's 3.2400 and February's 3.3000
    are not that day's), so the entry's home total is 31.011 x 3.2531 = 100.8819 -> 100.88 USD."""
    settings = settings_for(qbo, database_url, tmp_path)
    import_document(store, document(KWD_YEAR))
    run_billing(store, JANUARY)
    revenue.close(store, "kw", JANUARY, ledger="quickbooks")

    # Multicurrency off: the entry cannot be posted, and says why (a person turns it on in QuickBooks)
    summary = revenue.post_journals(store, settings)
    assert summary.outcomes == {"failed": 1}
    assert summary.failures[0][1] == (
        "REV202601-KWD-KW: kw: an entry in KWD needs multicurrency on in QuickBooks (home currency USD)"
    )
    qbo.company.multicurrency = True
    with store.write() as session:
        [parked] = outbox.pending(session, topic="journal.quickbooks")
        outbox.retry_now(session, [parked["id"]])
    summary = revenue.post_journals(store, settings)  # on, but QuickBooks holds no KWD rate yet
    assert summary.failures[0][1].startswith("REV202601-KWD-KW: kw: no QuickBooks exchange rate for KWD on 2026-01-31")

    for day, rate in (("2026-01-01", "3.2400"), ("2026-01-31", "3.2531"), ("2026-02-01", "3.3000")):
        qbo.company.set_exchange_rate("KWD", day, Decimal(rate))
    with store.write() as session:
        outbox.retry_now(session, [parked["id"]])
    assert revenue.post_journals(store, settings).outcomes == {"created": 1}
    [entry] = entries(qbo)
    assert (entry["DocNumber"], entry["CurrencyRef"], entry["ExchangeRate"]) == (
        "REV202601-KWD-KW",
        {"value": "KWD"},
        Decimal("3.2531"),
    )
    assert (entry["TotalAmt"], entry["HomeTotalAmt"]) == (Decimal("31.011"), Decimal("100.88"))
    assert {amount for _, _, amount in lines(entry)} == {Decimal("31.011")}

    # Closed again with the same amounts: found, same lines and rate, nothing written
    revenue.close(store, "kw", JANUARY, reopen=True, reason="check")
    revenue.close(store, "kw", JANUARY, ledger="quickbooks")
    assert revenue.post_journals(store, settings).outcomes == {"existing": 1}
    assert entries(qbo)[0]["SyncToken"] == "0"


async def _artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        [latest] = await client.read_latest_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
        return str(latest.data)


def test_a_run_checks_the_accounts_first_and_an_entity_naming_a_missing_one_alone_is_not_posted(
    store: Store, qbo: RunningQuickBooks, flow_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two legal entities close January; us-inc's own mapping names account 4242 for its platform revenue,
    which the company does not have. The monthly run says so first (key and id), posts ca's entry and parks
    us's, naming the account."""
    from billbridge.flows.revenue import recognize_revenue
    from billbridge.settings import EntityRevenueAccounts
    from tests.docs import REFERENCE

    base = settings_for(qbo, flow_env, tmp_path)
    assert base.revenue_accounts is not None and base.quickbooks is not None
    accounts = base.revenue_accounts.model_copy(
        update={"entities": {"us": EntityRevenueAccounts(revenue_by_product={"platform": "4242"})}}
    )
    settings = base.model_copy(update={"revenue_accounts": accounts})
    for name, value in {
        **as_environment("BILLBRIDGE_QUICKBOOKS", base.quickbooks),
        **as_environment("BILLBRIDGE_REVENUE_ACCOUNTS", accounts),
    }.items():
        monkeypatch.setenv(name, value)
    world = {
        **REFERENCE,
        "entities": [
            *REFERENCE["entities"],
            {"entity_ref": "ca", "name": "Acme Canada", "currency": "USD", "invoice_prefix": "CA-INV-"},
        ],
        "customers": [*REFERENCE["customers"], {"customer_ref": "maple", "name": "Maple", "entity_ref": "ca"}],
        "contracts": [
            YEAR,
            contract("C-CA", customer="maple", entity="ca", cycle_unit="year", contract_end_date="2026-12-31"),
        ],
    }
    import_document(store, world)
    run_billing(store, JANUARY)
    for entity in ("us", "ca"):
        revenue.close(store, entity, JANUARY, ledger=revenue.ledger_of(settings))

    result = recognize_revenue(period="2026-01")
    missing = "account 4242 (revenue_by_product.platform) is not in the QuickBooks chart of accounts"
    assert result["account_problems"] == [missing]
    markdown = asyncio.run(_artifact("revenue-recognition"))
    assert f"- {missing}" in markdown.splitlines() and "| journal entries failed | 1 |" in markdown
    assert result["journals"]["outcomes"] == {"created": 1, "failed": 1}
    [(_, error)] = result["journals"]["failures"]
    assert error == f"REV202601-USD-US: us revenue_accounts: {missing}"
    [entry] = entries(qbo)  # ca's, 101.92 of its year drawn from deferred revenue; us's waits
    assert entry["DocNumber"] == "REV202601-USD-CA"
    assert lines(entry) == [("Debit", accounts.deferred_revenue, Decimal("101.92")), ("Credit", "1", Decimal("101.92"))]


def test_a_pass_through_line_posts_to_its_own_account_never_to_deferred_revenue(
    store: Store, qbo: RunningQuickBooks, database_url: str, tmp_path: Path
) -> None:
    """A year of the platform billed upfront (1,200, ratable) with a 45.00 fee someone else recognises
    (``recognition: none``). Pushed, the fee posts through an item of its own whose income account is
    ``pass_through``; the platform through its item to deferred revenue. After January's close and entry,
    QuickBooks' deferred revenue is the rollforward's closing balance: 1,200 - 101.92 = 1,098.08.

    With C-U beside it (2 seats at 45 a month for 2026, billed in arrears: 1,080 recognised daily), over two
    closes: January recognises 1,080 x 31 / 365 = 91.73 of C-U unbilled (a contract asset); February 1
    bills January's 90.00, which QuickBooks posts to deferred revenue and February's entry moves back to
    the contract asset (the reclass), while February recognises 174.58 - 91.73 = 82.85 more. Added up from
    QuickBooks' own invoices and entries: deferred revenue 1,200 + 90 - 101.92 - 92.05 - 90 = 1,006.03 and
    contract assets 91.73 + 82.85 - 90 = 84.58, the rollforward's closing balances each month."""
    from billbridge.flows.approval import approve_drafts
    from billbridge.flows.push import push

    base = settings_for(qbo, database_url, tmp_path)
    assert base.revenue_accounts is not None
    collected = qbo.company.create(
        "Account", {"Name": "Collected for others", "AccountType": "Other Current Liability"}
    )
    accounts = base.revenue_accounts.model_copy(update={"pass_through": collected["Id"]})
    settings = base.model_copy(update={"revenue_accounts": accounts})
    assert revenue.check_accounts(store, settings) == []
    fee = {"line_ref": "fee", "product_ref": "seats", "recognition": "none"}
    import_document(store, document(dict(YEAR, lines=[*YEAR["lines"], fee]), SEATS))
    run_billing(store, JANUARY)
    approve_drafts(store, ["quickbooks"])
    assert push(store, settings, "quickbooks").outcomes == {"created": 1}

    items = {i["Name"]: i for i in qbo.company.all("Item")}
    assert {name: i["IncomeAccountRef"]["value"] for name, i in items.items()} == {
        "platform": accounts.deferred_revenue,
        "seats (pass-through)": collected["Id"],
    }
    [invoice] = qbo.company.all("Invoice")
    posted = [
        (items_by_id[ln["SalesItemLineDetail"]["ItemRef"]["value"]], Decimal(str(ln["Amount"])))
        for items_by_id in [{i["Id"]: i["Name"] for i in items.values()}]
        for ln in invoice["Line"]
        if ln.get("DetailType") == "SalesItemLineDetail"
    ]
    assert posted == [("platform", Decimal("1200.00")), ("seats (pass-through)", Decimal("45.00"))]

    revenue.close(store, "us", JANUARY, ledger=revenue.ledger_of(settings))
    assert revenue.post_journals(store, settings).outcomes == {"created": 1}
    with store.read() as session:
        from billbridge.store.revenue import entity_id_of

        us = entity_id_of(session, "us")
    assert us is not None
    [roll] = revenue.rollforward_report(store, us, JANUARY)
    assert (roll["deferred_revenue"]["closing"], roll["contract_assets"]["closing"], roll["balanced"]) == (
        "1098.08",
        "91.73",
        True,
    )
    assert balance(qbo, accounts.deferred_revenue) == Decimal("1098.08")  # what billbridge says, to the cent
    assert -balance(qbo, accounts.contract_asset) == Decimal("91.73")  # a debit balance
    assert balance(qbo, collected["Id"]) == Decimal("45.00")

    # February: C-U's January is invoiced (in arrears) and pushed, the month closed and posted
    february = date(2026, 2, 1)
    run_billing(store, february)
    approve_drafts(store, ["quickbooks"])
    assert push(store, settings, "quickbooks").outcomes == {"created": 1}
    revenue.close(store, "us", february, ledger=revenue.ledger_of(settings))
    assert revenue.post_journals(store, settings).outcomes == {"created": 1}
    [roll] = revenue.rollforward_report(store, us, february)
    assert roll["balanced"] is True
    assert roll["contract_assets"] == {"opening": "91.73", "recognised": "82.85", "billed": "90.00", "closing": "84.58"}
    assert (roll["deferred_revenue"]["closing"], roll["billed_in_documents"]) == ("1006.03", "90.00")
    feb_entry = next(e for e in entries(qbo) if e["DocNumber"] == "REV202602-USD-US")
    assert ("Credit", accounts.contract_asset, Decimal("90.00")) in lines(feb_entry)  # the reclass
    assert balance(qbo, accounts.deferred_revenue) == Decimal("1006.03")
    assert -balance(qbo, accounts.contract_asset) == Decimal("84.58")


def balance(qbo: RunningQuickBooks, account: str) -> Decimal:
    """An account's credit balance from what QuickBooks holds: invoice lines through the items posting to
    it, less credit memos', and journal lines on it."""
    items = {i["Id"]: i["IncomeAccountRef"]["value"] for i in qbo.company.all("Item")}
    total = Decimal(0)
    for entity, sign in (("Invoice", 1), ("CreditMemo", -1)):
        for doc in qbo.company.all(entity):
            for ln in doc["Line"]:
                detail = ln.get("SalesItemLineDetail")
                if detail is not None and items[detail["ItemRef"]["value"]] == account:
                    total += sign * Decimal(str(ln["Amount"]))
    for entry in entries(qbo):
        for posting, on, amount in lines(entry):
            if on == account:
                total += amount if posting == "Credit" else -amount
    return total
