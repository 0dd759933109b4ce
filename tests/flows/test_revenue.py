"""Revenue recognition against a real store (SQLite and PostgreSQL): schedules built from the stored
contracts and invoices, rebuilt only when they change, and a closed month that never changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select, update

from billbridge.flows import revenue
from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.store.db import Store
from billbridge.store.models import Contract, Invoice
from billbridge.store.revenue import PeriodError, entity_id_of, stale_contracts
from billbridge.store.revenue_models import RevenuePeriodEvent
from tests.docs import contract, document

YEAR = contract("C-Y", cycle_unit="year", contract_end_date="2026-12-31")  # 1,200 billed upfront for 2026


def months(report: dict) -> dict[str, dict[str, str]]:
    return {m["month"]: m for m in report["months"]}


def use_api(store: Store, ref: str, customer: str, stamp: str, quantity: str) -> None:
    """One usage event of the ``api`` product for ``customer``, stored as the usage API stores it."""
    from billbridge.store.models import Customer, Product
    from billbridge.store.usage import insert_events

    with store.write() as session:
        ids = session.execute(select(Customer.id, Customer.entity_id).where(Customer.customer_ref == customer)).one()
        product = session.scalar(select(Product.id).where(Product.product_ref == "api"))
        row = {"event_ref": ref, "entity_id": ids.entity_id, "customer_id": ids.id, "product_id": product}
        insert_events(session, [row | {"timestamp": datetime.fromisoformat(stamp), "quantity": Decimal(quantity)}])


def test_a_year_upfront_is_deferred_and_recognised_daily_and_a_rerun_changes_nothing(store: Store) -> None:
    import_document(store, document(YEAR))
    run_billing(store, date(2026, 1, 1))
    first = revenue.with_balances(revenue.rebuild(store, date(2026, 1, 31)), store)
    assert (first.contracts, first.rebuilt, first.failed) == (1, 1, [])
    assert first.recognised == {"USD": Decimal("101.92")} and first.deferred == {"USD": Decimal("1098.08")}
    report = revenue.schedule_report(store, "C-Y")
    assert report is not None
    [ob] = report["obligations"]
    assert (ob["recognition"], ob["allocated"], ob["ssp"], ob["treatment"]) == (
        "ratable",
        "1200.00",
        "1200.00",
        "original",
    )
    jan, feb, dec = (months(report)[m] for m in ("2026-01", "2026-02", "2026-12"))
    assert (jan["billed"], jan["recognised"], jan["deferred"]) == ("1200.00", "101.92", "1098.08")
    assert (feb["recognised"], dec["deferred"]) == ("92.05", "0.00")
    assert revenue.rebuild(store, date(2026, 1, 31)).rebuilt == 0  # nothing changed: nothing rebuilt

    with store.read() as session:
        us = entity_id_of(session, "us")
    assert us is not None
    [roll] = revenue.rollforward_report(store, us, date(2026, 1, 1))
    assert roll["deferred_revenue"] == {
        "opening": "0.00",
        "billed": "1200.00",
        "recognised": "101.92",
        "closing": "1098.08",
    }
    assert roll["balanced"] is True
    [row] = revenue.waterfall_report(store, us, date(2026, 1, 1), date(2026, 3, 1))
    assert (row["booked_month"], row["booked"], row["recognised_to_date"], row["remaining"]) == (
        "2026-01",
        "1200.00",
        "295.89",
        "904.11",
    )
    assert row["recognised"] == {"2026-01": "101.92", "2026-02": "92.05", "2026-03": "101.92"}


def test_a_closed_month_never_changes_and_a_backdated_change_is_a_catch_up(store: Store) -> None:
    import_document(store, document(YEAR))
    run_billing(store, date(2026, 1, 1))
    revenue.close(store, "us", date(2026, 1, 1))
    with pytest.raises(PeriodError, match="closed already"):
        revenue.close(store, "us", date(2026, 1, 1))
    assert months(revenue.schedule_report(store, "C-Y") or {})["2026-01"]["recognised"] == "101.92"

    # Amended in February, back to January 1: the year now costs 2,400 (the correction waits for the
    # next yearly billing date, so it is unbilled: a contract asset meanwhile).
    platform = {"line_ref": "platform", "product_ref": "platform", "pricing": {"model": "flat", "amount": "2400"}}
    amended = dict(YEAR, lines=[platform])
    import_document(store, document(dict(amended, effective_date="2026-01-01")))
    run_billing(store, date(2026, 2, 1))
    revenue.rebuild(store, date(2026, 2, 28))
    report = months(revenue.schedule_report(store, "C-Y") or {})
    assert report["2026-01"]["recognised"] == "101.92"  # closed: as it was
    # January should now hold round(2400 x 31/365) = 203.84: February, the first open month, gets the
    # 101.92 missing as a catch-up, besides its own 387.95 - 203.84 = 184.11.
    assert (report["2026-02"]["catch_up"], report["2026-02"]["recognised"]) == ("101.92", "286.03")
    assert Decimal(report["2026-01"]["recognised"]) + Decimal(report["2026-02"]["recognised"]) == Decimal("387.95")

    revenue.close(store, "us", date(2026, 1, 1), reopen=True, reason="amended terms")
    revenue.rebuild(store, date(2026, 2, 28), full=True)
    report = months(revenue.schedule_report(store, "C-Y") or {})
    assert (report["2026-01"]["recognised"], report["2026-02"]["catch_up"]) == ("203.84", "0.00")
    with store.read() as session:
        events = session.execute(select(RevenuePeriodEvent.action, RevenuePeriodEvent.reason)).all()
    assert [tuple(e) for e in events] == [("close", None), ("reopen", "amended terms")]


async def _artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        [latest] = await client.read_latest_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
        return str(latest.data)


def test_the_recognize_revenue_flow_summarises_per_currency(store: Store, flow_env: str) -> None:
    import asyncio

    from billbridge.flows.revenue import recognize_revenue

    import_document(store, document(YEAR))
    run_billing(store, date(2026, 1, 1))
    result = recognize_revenue(period="2026-01")
    assert (result["through"], result["rebuilt"]) == ("2026-01-31", 1)
    assert (result["recognised"], result["deferred"]) == ({"USD": "101.92"}, {"USD": "1098.08"})
    # The artifact a person reads in the Prefect UI: the same figures, per currency
    markdown = asyncio.run(_artifact("revenue-recognition"))
    assert markdown.splitlines()[:2] == ["# Revenue recognised through 2026-01-31", ""]
    for row in (
        "| contracts | 1 |",
        "| schedules rebuilt | 1 |",
        "| recognised USD | 101.92 |",
        "| deferred revenue USD | 1098.08 |",
        "| contract assets USD | 0.00 |",
    ):
        assert row in markdown.splitlines(), row
    assert "journal entries" not in markdown and "could not be recognised" not in markdown  # no ledger, no failure
    assert recognize_revenue(period="2026-01")["rebuilt"] == 0


def test_the_flow_recognises_through_the_last_complete_month_by_default(store: Store, flow_env: str) -> None:
    """The monthly deployment runs on the 1st at 03:30 UTC: it must summarise the month that just ended."""
    import inspect

    import yaml

    from billbridge.flows.revenue import period_through, recognize_revenue

    assert period_through("previous", date(2026, 12, 1)) == date(2026, 11, 30)
    assert period_through("previous", date(2026, 1, 1)) == date(2025, 12, 31)
    assert period_through("previous", date(2028, 3, 31)) == date(2028, 2, 29)
    assert period_through("2026-02", date(2030, 1, 1)) == date(2026, 2, 28)
    with pytest.raises(ValueError, match="'2026-2' is not a month"):
        period_through("2026-2", date(2026, 1, 1))
    assert inspect.signature(recognize_revenue.fn).parameters["period"].default == "previous"
    deployments = yaml.safe_load((Path(__file__).resolve().parents[2] / "prefect.yaml").read_text())["deployments"]
    [monthly] = [d for d in deployments if d["name"] == "recognize-revenue"]
    assert monthly.get("parameters", {}).get("period", "previous") == "previous"

    import_document(store, document(YEAR))
    run_billing(store, date(2026, 1, 1))
    today = datetime.now(UTC).date()
    assert recognize_revenue()["through"] == (today.replace(day=1) - timedelta(days=1)).isoformat()


def test_a_months_recognition_gives_the_journal_entry_its_amounts(store: Store) -> None:
    from billbridge.mapping.journal import AccountMapping, journal_entry_payload

    usage = contract(
        "C-U",
        contract_end_date="2026-12-31",
        billing_timing="in_arrears",
        lines=[{"line_ref": "seats", "product_ref": "seats", "quantity": "2"}],
    )
    import_document(store, document(YEAR, usage))
    run_billing(store, date(2026, 1, 1))
    revenue.rebuild(store, date(2026, 1, 31))
    [period] = revenue.period_revenues(store, "us", date(2026, 1, 1))
    # C-Y: 101.92 of the year billed upfront (from deferred revenue); C-U: 2 seats at 45 a month for the
    # year (1,080) straight-line, January round(1080 x 31/365) = 91.73, billed in arrears on February 1
    # (a contract asset until then)
    assert dict(period.revenue) == {("platform", "ratable"): Decimal("101.92"), ("seats", "ratable"): Decimal("91.73")}
    assert (period.from_deferred, period.to_contract_asset) == (Decimal("101.92"), Decimal("91.73"))
    accounts = AccountMapping(revenue="1", deferred_revenue="2", contract_asset="3")
    payload = journal_entry_payload(period, accounts)
    assert payload is not None and [line["Amount"] for line in payload["Line"]] == ["101.92", "91.73", "193.65"]


def test_a_late_usage_event_after_the_close_is_a_catch_up_in_the_first_open_month(store: Store) -> None:

    calls = contract("C-API", lines=[{"line_ref": "api", "product_ref": "api", "charge": "usage"}])
    import_document(store, document(calls))

    def use(ref: str, stamp: str, quantity: str) -> None:
        use_api(store, ref, "globex", stamp, quantity)

    use("e1", "2026-01-10T10:00:00+00:00", "50000")  # 50,000 calls x 0.002 = 100.00 in January
    run_billing(store, date(2026, 2, 1))
    revenue.rebuild(store, date(2026, 2, 1))
    revenue.close(store, "us", date(2026, 1, 1))
    use("e2", "2026-01-20T10:00:00+00:00", "15000")  # late: January was invoiced and closed (30.00 more)
    use("e3", "2026-02-15T10:00:00+00:00", "10000")  # February's own 20.00
    run_billing(store, date(2026, 3, 1))  # March 1 bills February and corrects January
    revenue.rebuild(store, date(2026, 3, 1))
    report = months(revenue.schedule_report(store, "C-API") or {})
    assert report["2026-01"]["recognised"] == "100.00"  # closed: never rewritten
    assert (report["2026-02"]["recognised"], report["2026-02"]["catch_up"]) == ("50.00", "30.00")
    assert report["2026-03"]["billed"] == "50.00" and report["2026-03"]["deferred"] == "0.00"


def test_schedules_built_ahead_by_planning_processes_are_the_ones_built_in_the_run(store: Store) -> None:
    from billbridge.store.revenue import schedule_rows
    from tests.docs import DISCOUNTED

    seats = {"line_ref": "seats", "product_ref": "seats", "quantity": "2"}
    contracts = [
        YEAR,
        DISCOUNTED,
        contract("C-M", lines=[seats]),  # evergreen, monthly: a term per period
        contract("C-Q", cycle_length=3, contract_end_date="2026-12-31", billing_timing="in_arrears", lines=[seats]),
        contract("C-E", contract_end_date="2027-06-30"),
        contract("C-2", contract_start_date="2026-02-10", contract_end_date="2027-02-09"),
    ]
    import_document(store, document(*contracts))
    run_billing(store, date(2026, 1, 1))
    revenue.close(store, "us", date(2026, 1, 1))  # January's rows are kept as they are from here on
    import_document(store, document(dict(YEAR, lines=[dict(seats, quantity="30")], effective_date="2026-01-01")))
    run_billing(store, date(2026, 3, 1))

    def rows() -> list[tuple[object, ...]]:
        with store.read() as session:
            return [
                (r.contract_id, r.line_ref, r.booked_month, r.month, r.billed, r.recognised, r.catch_up)
                for r in schedule_rows(session)
            ]

    ahead = revenue.rebuild(store, date(2026, 3, 31), full=True, chunk=2, workers=1)  # 3 chunks: 2 built ahead
    built_ahead = rows()
    assert (ahead.contracts, ahead.rebuilt, ahead.failed) == (6, 6, [])
    here = revenue.rebuild(store, date(2026, 3, 31), full=True, chunk=2, workers=0)
    assert (here.rebuilt, rows()) == (6, built_ahead)
    report = months(revenue.schedule_report(store, "C-Y") or {})
    # C-Y's January stays as closed (101.92 of the year's 1,200); the amendment to 30 seats at 45 a month
    # (16,200 for the year) is a catch-up in February
    assert report["2026-01"]["recognised"] == "101.92" and report["2026-02"]["catch_up"] != "0.00"


def test_a_month_to_month_contract_is_stored_as_one_obligation_a_line_with_its_periods_money(store: Store) -> None:
    """An evergreen monthly contract from 2026-01-15 (100.00 a month, anchored on the 1st: a first period of
    17 of January's 31 days, 54.84), built through 2026-03-10: each billing period is its own obligation
    (month-to-month), stored as one from the first period's start to the last one's end, its allocation the
    periods' sum (54.84 + 100.00 + 100.00); the months recognise each period's own amount."""
    evergreen = contract(
        "C-E",
        contract_start_date="2026-01-15",
        cycle_start_date="2026-02-01",
        lines=[{"line_ref": "platform", "product_ref": "platform", "pricing": {"model": "flat", "amount": "100"}}],
    )
    import_document(store, document(evergreen))
    run_billing(store, date(2026, 1, 15))
    assert revenue.rebuild(store, date(2026, 3, 10)).rebuilt == 1
    report = revenue.schedule_report(store, "C-E")
    assert report is not None
    [ob] = report["obligations"]
    assert (ob["start_date"], ob["end_date"], ob["allocated"], ob["price"], ob["ssp"]) == (
        "2026-01-15",
        "2026-03-31",
        "254.84",
        "254.84",
        "254.84",
    )
    assert [(m["month"], m["recognised"]) for m in report["months"]] == [
        ("2026-01", "54.84"),
        ("2026-02", "100.00"),
        ("2026-03", "100.00"),
    ]


def test_a_rebuild_finds_exactly_the_contracts_whose_inputs_changed(store: Store) -> None:
    """What makes a schedule stale, each on its own: an amendment (a new version), a new document, a
    change to a document, a contract never built, and for an evergreen contract alone the term moving
    into a new month. Nothing else is rebuilt, and a rerun rebuilds nothing."""
    evergreen = contract("C-E", contract_start_date="2026-01-15", cycle_start_date="2026-02-01")
    monthly = contract("C-M", contract_end_date="2026-12-31")
    import_document(store, document(YEAR, evergreen, monthly))
    run_billing(store, date(2026, 1, 15))
    jan = date(2026, 1, 31)

    def stale(through: date = jan) -> set[str]:
        with store.read() as session:
            ids = {cid for cid, _ in stale_contracts(session, through)}
            refs = session.execute(select(Contract.id, Contract.contract_ref).where(Contract.id.in_(ids))).all()
        return {ref for _, ref in refs}

    assert stale() == {"C-Y", "C-E", "C-M"}  # never built
    assert revenue.rebuild(store, jan).rebuilt == 3
    assert stale() == set() and revenue.rebuild(store, jan).rebuilt == 0
    assert stale(date(2026, 1, 1)) == set()  # the same month: nothing moves
    assert stale(date(2026, 2, 1)) == {"C-E"}  # a new month: the evergreen term alone moves

    import_document(
        store, document(dict(YEAR, effective_date="2026-01-20", lines=[{**YEAR["lines"][0], "quantity": "2"}]))
    )
    assert stale() == {"C-Y"}  # amended
    revenue.rebuild(store, jan)

    run_billing(store, date(2026, 2, 1))  # C-E and C-M bill February (C-Y's correction waits for its next year)
    assert stale() == {"C-E", "C-M"}
    revenue.rebuild(store, jan)
    assert stale() == set()

    with store.write() as session:  # a document changes (e.g. issued): its contract alone
        session.execute(
            update(Invoice)
            .where(Invoice.contract_id == select(Contract.id).where(Contract.contract_ref == "C-M").scalar_subquery())
            .values(status="issued", updated_at=datetime(2030, 1, 1, tzinfo=UTC))
        )
    assert stale() == {"C-M"}

    import_document(store, document(contract("C-N", contract_end_date="2026-06-30")))
    assert stale() == {"C-M", "C-N"}
    assert revenue.rebuild(store, jan, full=True).rebuilt == 4
    assert stale() == set()


def test_usage_is_recognised_as_consumed_from_the_store_before_its_invoice(store: Store) -> None:
    """Usage read from the store per month (per day for a contract whose periods split months) is
    recognised in the months consumed, a contract asset until the invoice (Lago docs, "Revenue
    recognition: usage-based charges"; ASC 606-10-32-40), and a new usage event alone makes the schedule
    stale. C-Q: 0.002 a call, billed quarterly in arrears: 50,000 January calls (100.00) and 25,000 in
    February (50.00), billed on April 1 (150.00). C-H: periods from the 15th; 10,000 calls on January 20
    (20.00) and 5,000 on February 10 (10.00), one period, billed on February 15 (30.00)."""

    api = [{"line_ref": "api", "product_ref": "api", "charge": "usage"}]
    quarterly = contract("C-Q", cycle_length=3, contract_end_date="2026-12-31", lines=api)
    half = contract("C-H", "initech", contract_start_date="2026-01-15", contract_end_date="2026-12-14", lines=api)
    import_document(store, document(quarterly, half))

    def use(ref: str, customer: str, stamp: str, quantity: str) -> None:
        use_api(store, ref, customer, stamp, quantity)

    use("q1", "globex", "2026-01-10T10:00:00+00:00", "30000")
    use("q2", "globex", "2026-01-31T23:59:00+00:00", "20000")
    use("h1", "initech", "2026-01-20T10:00:00+00:00", "10000")
    assert revenue.rebuild(store, date(2026, 1, 31)).rebuilt == 2
    q = months(revenue.schedule_report(store, "C-Q") or {})
    assert (q["2026-01"]["recognised"], q["2026-01"]["billed"], q["2026-01"]["contract_asset"]) == (
        "100.00",
        "0.00",
        "100.00",
    )
    # the journal names the product of usage not yet invoiced (from the contract: no invoice line yet)
    [period] = revenue.period_revenues(store, "us", date(2026, 1, 1))
    assert dict(period.revenue) == {("api", "usage"): Decimal("120.00")}
    assert period.to_contract_asset == Decimal("120.00")
    use("q3", "globex", "2026-02-15T10:00:00+00:00", "25000")
    use("h2", "initech", "2026-02-10T10:00:00+00:00", "5000")
    assert revenue.rebuild(store, date(2026, 2, 28)).rebuilt == 2  # new usage, nothing billed: stale
    assert revenue.rebuild(store, date(2026, 2, 28)).rebuilt == 0
    q = months(revenue.schedule_report(store, "C-Q") or {})
    assert (q["2026-02"]["recognised"], q["2026-02"]["contract_asset"]) == ("50.00", "150.00")
    h = months(revenue.schedule_report(store, "C-H") or {})
    assert (h["2026-01"]["recognised"], h["2026-02"]["recognised"], h["2026-02"]["contract_asset"]) == (
        "20.00",
        "10.00",
        "30.00",  # no billing run yet
    )
    run_billing(store, date(2026, 4, 1))
    revenue.rebuild(store, date(2026, 4, 1))
    q = months(revenue.schedule_report(store, "C-Q") or {})
    assert [(m, q[m]["recognised"]) for m in ("2026-01", "2026-02")] == [("2026-01", "100.00"), ("2026-02", "50.00")]
    assert (q["2026-04"]["billed"], q["2026-04"]["deferred"], q["2026-04"]["contract_asset"]) == (
        "150.00",
        "0.00",
        "0.00",
    )
    h = months(revenue.schedule_report(store, "C-H") or {})
    assert (h["2026-01"]["recognised"], h["2026-02"]["recognised"], h["2026-02"]["billed"]) == (
        "20.00",
        "10.00",
        "30.00",
    )
    last = h[max(h)]
    assert last["deferred"] == last["contract_asset"] == "0.00"


def test_a_minimum_commitment_posts_to_the_account_of_the_usage_it_commits_to(store: Store) -> None:
    """C-MIN commits to 300.00 of API calls a month (0.002 a call, billed monthly in arrears with its
    true-up). January: 50,000 calls (100.00) fill the floor, which recognises 300.00. February: 200,000
    calls (400.00), 100.00 above the floor. All of it is revenue for API calls: it posts to the api
    product's account (else usage's), not to the subscriptions' ``ratable`` account, so usage revenue
    stays in one account whether the customer uses less than the minimum or more."""
    from billbridge.mapping.journal import AccountMapping, journal_entry_payload

    api = [{"line_ref": "api", "product_ref": "api", "charge": "usage"}]
    committed = contract("C-MIN", minimum_commitment="300.00", billing_timing="in_arrears", lines=api)
    import_document(store, document(committed))

    def use(ref: str, stamp: str, quantity: str) -> None:
        use_api(store, ref, "globex", stamp, quantity)

    use("j1", "2026-01-10T10:00:00+00:00", "50000")
    use("f1", "2026-02-10T10:00:00+00:00", "200000")
    run_billing(store, date(2026, 3, 1))
    revenue.rebuild(store, date(2026, 2, 28))
    [january] = revenue.period_revenues(store, "us", date(2026, 1, 1))
    [february] = revenue.period_revenues(store, "us", date(2026, 2, 1))
    assert dict(january.revenue) == {("api", "usage"): Decimal("300.00")}  # the floor (usage absorbed)
    assert dict(february.revenue) == {("api", "usage"): Decimal("400.00")}  # the floor and 100.00 above it

    def credits(accounts: AccountMapping) -> dict[str, str]:
        payload = journal_entry_payload(january, accounts)
        assert payload is not None
        lines = [line for line in payload["Line"] if line["Description"] == "Revenue recognised"]
        return {line["JournalEntryLineDetail"]["AccountRef"]["value"]: line["Amount"] for line in lines}

    kinds = {"ratable": "41", "usage": "42"}
    base = {"revenue": "1", "deferred_revenue": "2", "contract_asset": "3", "revenue_by_recognition": kinds}
    assert credits(AccountMapping(**base, revenue_by_product={"api": "40"})) == {"40": "300.00"}
    assert credits(AccountMapping(**base)) == {"42": "300.00"}
