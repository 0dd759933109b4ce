"""The metric reports over a real store (SQLite and PostgreSQL): the summaries give what the pure
metrics give on the raw rows, stay fresh after every kind of change, and keep to their entities."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import delete, func, select, update

from billbridge.billing.metrics.collections import DocumentGroup, aging
from billbridge.billing.metrics.recurring import customer_mrr, totals_by
from billbridge.flows import metrics
from billbridge.flows.importing import import_document, import_file
from billbridge.flows.invoice_generation import run_billing
from billbridge.store import metrics as sql
from billbridge.store.contracts import contract_ids, load_timelines
from billbridge.store.db import Store
from billbridge.store.invoices import list_invoices
from billbridge.store.metric_models import MetricState
from billbridge.store.models import Contract, Invoice
from billbridge.store.outbound_documents import set_status
from billbridge.store.payments import record_payment
from tests.docs import contract, document

ROOT = Path(__file__).resolve().parents[2]
DAY = date(2026, 11, 22)


def examples(store: Store) -> None:
    for path in sorted((ROOT / "examples" / "contracts").glob("*.yaml")):
        import_file(store, path)
    run_billing(store, DAY)


def send(store: Store, *numbers: str) -> None:
    with store.write() as session:
        for number in numbers:
            for status in ("approved", "sent"):
                set_status(session, number, status, lambda _: ())  # pushed nowhere


def row_of(report: metrics.Report, **match: str) -> dict[str, object]:
    [found] = [r for r in report.rows if all(r[k] == v for k, v in match.items())]
    return found


def test_summaries_give_what_the_metrics_give_on_the_raw_rows(store: Store) -> None:
    examples(store)
    with store.read() as session:
        documents = list_invoices(session)
    send(store, *(d["number"] for d in documents[::2]))
    with store.write() as session:
        paid = documents[0]
        record_payment(
            session,
            payment_ref="test:1",
            currency=paid["currency"],
            amount=paid["invoice_total"] - Decimal("0.01"),
            received_on=DAY,
            allocations=[(paid["number"], paid["invoice_total"] - Decimal("0.01"))],
        )
    everything = metrics.scope(store)
    with store.read() as session:
        raw = [
            DocumentGroup(
                d["entity_ref"],
                d["currency"],
                d["doc_type"],
                d["status"],
                d["billing_date"],
                d["due_date"],
                1,
                d["invoice_total"],
                d["amount_paid"],
            )
            for d in list_invoices(session)
        ]
        timelines = load_timelines(session, contract_ids(session)).values()
    expected_aging = {(a.entity_ref, a.currency): a for a in aging(raw, DAY)}
    report = metrics.aging_report(store, everything, DAY)
    assert {(r["entity_ref"], r["currency"]) for r in report.rows} == set(expected_aging)
    for row in report.rows:
        a = expected_aging[(row["entity_ref"], row["currency"])]
        assert Decimal(row["receivable"]) == a.receivable and Decimal(row["1-30"]) == a.buckets["1-30"]
    assert sum(Decimal(r["receivable"]) for r in report.rows) > 0  # the example has money open

    per_customer = customer_mrr([t.versions for t in timelines], DAY)
    expected_mrr = totals_by(per_customer, lambda key: (key[0], key[1]))
    assert {
        (r["entity_ref"], r["currency"]): Decimal(r["mrr"]) for r in metrics.mrr_report(store, everything, DAY).rows
    } == expected_mrr


def test_a_change_outside_the_flows_shows_at_the_next_read(store: Store) -> None:
    examples(store)
    everything = metrics.scope(store)
    before = metrics.aging_report(store, everything, DAY)
    assert all(Decimal(r["receivable"]) == 0 for r in before.rows)  # drafts are not receivable
    with store.read() as session:
        first = list_invoices(session, limit=1)[0]
    send(store, first["number"])  # by hand, as `billbridge invoices mark` does: no refresh called
    after = row_of(
        metrics.aging_report(store, everything, DAY), entity_ref=first["entity_ref"], currency=first["currency"]
    )
    assert Decimal(str(after["receivable"])) == first["invoice_total"]

    with store.write() as session:
        record_payment(
            session,
            payment_ref="test:late",
            currency=first["currency"],
            amount=first["invoice_total"],
            received_on=DAY,
            allocations=[(first["number"], first["invoice_total"])],
        )
    month = DAY.strftime("%Y-%m")
    flows = metrics.collections_report(store, everything, DAY, DAY)
    assert (
        Decimal(str(row_of(flows, entity_ref=first["entity_ref"], month=month)["collected"])) == first["invoice_total"]
    )
    assert (
        Decimal(str(row_of(metrics.aging_report(store, everything, DAY), entity_ref=first["entity_ref"])["receivable"]))
        == 0
    )


def test_an_amendment_moves_mrr_from_its_day(store: Store) -> None:
    base = contract("C-1", lines=[{"line_ref": "platform", "product_ref": "platform"}])
    import_document(store, document(base))
    everything = metrics.scope(store, ["us"])
    assert row_of(metrics.mrr_report(store, everything, date(2026, 3, 1)), currency="USD")["mrr"] == "1200.00"
    upgraded = {
        **base,
        "effective_date": "2026-03-15",
        "lines": [*base["lines"], {"line_ref": "seats", "product_ref": "seats", "quantity": "10"}],
    }
    import_document(store, document(upgraded, with_reference=False))
    assert row_of(metrics.mrr_report(store, everything, date(2026, 3, 14)), currency="USD")["mrr"] == "1200.00"
    assert row_of(metrics.mrr_report(store, everything, date(2026, 3, 15)), currency="USD")["mrr"] == "1650.00"
    march = row_of(metrics.movements_report(store, everything, date(2026, 3, 1), date(2026, 3, 31)), month="2026-03")
    assert (march["start_mrr"], march["expansion"], march["end_mrr"]) == ("1200.00", "450.00", "1650.00")


def test_mrr_counts_the_resellers_price(store: Store) -> None:
    """The platform at 1,200 a month list, sold through a reseller at 25% off: MRR is what the reseller
    is invoiced, 900.00, not the list price."""
    reseller = {"partner_ref": "resel", "name": "Resel", "kind": "reseller", "entity_ref": "us", "currency": "USD"}
    resold = contract("C-1", reseller_ref="resel")
    assert not import_document(store, {**document(resold), "partners": [reseller | {"discount_percent": "25"}]}).errors
    everything = metrics.scope(store, ["us"])
    assert row_of(metrics.mrr_report(store, everything, date(2026, 3, 1)), currency="USD")["mrr"] == "900.00"


def test_reports_keep_to_their_entities(store: Store) -> None:
    import_document(
        store,
        document(
            contract("C-US"),
            contract("C-KW", customer="gulf", entity="kw", currency="KWD"),
        ),
    )
    run_billing(store, date(2026, 2, 1))
    kuwait = metrics.scope(store, ["kw"])
    assert {r["entity_ref"] for r in metrics.mrr_report(store, kuwait, date(2026, 2, 1)).rows} == {"kw"}
    assert row_of(metrics.mrr_report(store, kuwait, date(2026, 2, 1)), currency="KWD")["mrr"] == "365.125"
    assert {
        r["entity_ref"] for r in metrics.collections_report(store, kuwait, date(2026, 1, 1), date(2026, 2, 28)).rows
    } == {"kw"}


def test_the_forecast_projects_what_the_engine_plans_and_refreshes_each_day(store: Store) -> None:
    import_document(store, document(contract("C-1", payment_terms_days=10)))  # 1,200 a month in advance
    run_billing(store, date(2026, 1, 1))
    everything = metrics.scope(store, ["us"])
    weeks = metrics.forecast_report(store, everything, date(2026, 1, 1)).rows
    projected = {r["from"]: r["projected"] for r in weeks if r["projected"] != "0.00"}
    # February's invoice (billed 1 Feb, due 11 Feb) and March's (due 11 March): April's is due after 13 weeks
    assert projected == {"2026-02-05": "1200.00", "2026-03-05": "1200.00"}
    later = metrics.forecast_report(
        store, everything, date(2026, 2, 2)
    ).rows  # the next day's plan: February not billed yet
    assert sum(Decimal(r["projected"]) for r in later) == Decimal("3600.00")
    assert (
        min(r["from"] for r in later if r["projected"] != "0.00") == "2026-02-09"
    )  # due 11 Feb, in the week from 9 Feb
    assert metrics.refresh(store, date(2026, 2, 2)) == {}  # nothing changed since


def test_exact_sums_on_both_backends(store: Store) -> None:
    tenth = {"line_ref": "x", "product_ref": "api", "pricing": {"model": "flat", "amount": "0.10"}}
    fifth = {"line_ref": "x", "product_ref": "api", "pricing": {"model": "flat", "amount": "0.20"}}
    import_document(store, document(contract("C-A", lines=[tenth]), contract("C-B", customer="initech", lines=[fifth])))
    run_billing(store, date(2026, 1, 1))
    row = row_of(
        metrics.collections_report(store, metrics.scope(store, ["us"]), date(2026, 1, 1), date(2026, 1, 31)),
        month="2026-01",
    )
    assert row["billed"] == "0.30"  # 0.1 + 0.2 as decimals, never 0.30000000000000004
    assert metrics.mrr_report(store, metrics.scope(store, ["us"]), date(2026, 1, 1)).rows[0]["arpa"] == "0.15"


def test_two_refreshes_at_once_build_each_summary_once(store: Store) -> None:
    examples(store)
    start = threading.Barrier(2)

    def refresh(_: int) -> set[str]:
        start.wait()
        return set(metrics.refresh(store, DAY))

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(refresh, range(2))
    assert first | second == {"mrr", "documents", "projection"}
    assert not first & second  # the other found each summary built from the same sources
    assert row_of(metrics.mrr_report(store, metrics.scope(store, ["us-inc"]), DAY), currency="USD")["mrr"] == "5025.00"


def _from_scratch(store: Store, day: date) -> list[dict[str, object]]:
    """The forecast with its projection planned again for every contract."""
    with store.write() as session:
        session.execute(delete(MetricState).where(MetricState.name == "projection"))
    return metrics.forecast_report(store, metrics.scope(store), day, "month").rows


def test_the_projection_plans_again_only_what_changed_and_matches_a_full_plan(store: Store) -> None:
    import_document(
        store,
        document(
            contract("C-1"),
            contract("C-2", customer="initech", cycle_unit="year"),
            contract("C-KW", customer="gulf", entity="kw", currency="KWD"),
        ),
    )
    run_billing(store, date(2026, 1, 1))
    with store.write() as session:  # imported long ago: only what billing touches is planned again
        session.execute(update(Contract).values(updated_at=datetime(2025, 12, 1, tzinfo=UTC)))
    everything = metrics.scope(store)
    metrics.forecast_report(store, everything, date(2026, 1, 1), "month")
    with store.read() as session:
        february = int(session.scalar(select(func.max(Invoice.id))) or 0)
    run_billing(store, date(2026, 2, 1))  # C-1 and C-KW billed again; C-2 (yearly) not
    with store.read() as session:
        refs = dict(session.execute(select(Contract.id, Contract.contract_ref)).all())
        since = sql.states(session)["projection"].refreshed_at - metrics.CHANGE_LAG  # as refresh asks
        planned = sql.contracts_to_plan(session, since, february, date(2027, 1, 31))
        assert [refs[c] for c in planned or []] == ["C-1", "C-KW"]
    incremental = metrics.forecast_report(store, everything, date(2026, 2, 2), "month")
    assert incremental.rows == _from_scratch(store, date(2026, 2, 2))
    amended = contract(
        "C-2",
        customer="initech",
        cycle_unit="year",
        effective_date="2026-03-01",
        lines=[
            {"line_ref": "platform", "product_ref": "platform"},
            {"line_ref": "seats", "product_ref": "seats", "quantity": "10"},  # from March: 450 more a year
        ],
    )
    import_document(store, document(amended, with_reference=False))
    after = metrics.forecast_report(store, everything, date(2026, 2, 2), "month").rows
    assert after != incremental.rows and after == _from_scratch(store, date(2026, 2, 2))
