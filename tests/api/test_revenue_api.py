"""``/api/revenue/...`` through FastAPI's TestClient over a real store: scoped to the key's entity, paged."""

from __future__ import annotations

from datetime import date

from billbridge.flows import revenue
from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from tests.api.conftest import Api
from tests.docs import contract, document


def test_schedule_waterfall_and_rollforward_of_the_keys_entity(api: Api) -> None:
    year = contract("C-Y", cycle_unit="year", contract_end_date="2026-12-31")
    assert not import_document(api.store, document(year, with_reference=False)).errors
    run_billing(api.store, date(2026, 1, 1))
    revenue.rebuild(api.store, date(2026, 1, 31))

    first = api.get("/api/revenue/schedule", contract_ref="C-Y", limit=5)
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["currency"], body["has_more"], len(body["data"])) == ("USD", True, 5)
    assert body["obligations"][0]["allocated"] == "1200.00"
    assert body["data"][0] == {
        "month": "2026-01",
        "billed": "1200.00",
        "recognised": "101.92",
        "catch_up": "0.00",
        "deferred": "1098.08",
        "contract_asset": "0.00",
    }
    rest = api.get("/api/revenue/schedule", contract_ref="C-Y", limit=100, cursor=body["next_cursor"]).json()
    assert [m["month"] for m in rest["data"]][-1] == "2026-12" and rest["has_more"] is False
    assert api.get("/api/revenue/schedule", token=api.kw_token, contract_ref="C-Y").status_code == 404
    assert api.get("/api/revenue/schedule", contract_ref="nope").status_code == 404

    # January's bookings: C-Y's year (1,200) and the fixture's monthly C-USAGE's January (1,200, all in January)
    rows = api.get("/api/revenue/waterfall", **{"from": "2026-01-01", "to": "2026-02-28"}).json()["data"]
    assert rows == [
        {
            "booked_month": "2026-01",
            "currency": "USD",
            "booked": "2400.00",
            "recognised": {"2026-01": "1301.92", "2026-02": "92.05"},
            "recognised_to_date": "1393.97",
            "remaining": "1006.03",
        }
    ]
    assert api.get("/api/revenue/waterfall", token=api.kw_token, **{"from": "2026-01-01"}).json()["data"] == []
    [roll] = api.get("/api/revenue/rollforward", period="2026-02-10").json()["data"]
    assert roll["deferred_revenue"] == {
        "opening": "1098.08",
        "billed": "0.00",
        "recognised": "92.05",
        "closing": "1006.03",
    }
    assert (roll["billed"], roll["billed_in_documents"], roll["balanced"], roll["mismatches"]) == (
        "0.00",
        "0.00",
        True,
        [],
    )
    assert api.get("/api/revenue/rollforward", period="1999-01-01").status_code == 422

    # February's invoice of C-USAGE is made and the schedule not rebuilt: the API names the contract, as the CLI
    run_billing(api.store, date(2026, 2, 1))
    [roll] = api.get("/api/revenue/rollforward", period="2026-02-10").json()["data"]
    assert (roll["billed"], roll["billed_in_documents"], roll["balanced"]) == ("0.00", "1200.00", False)
    [mismatch] = roll["mismatches"]
    assert (mismatch["contract_ref"], mismatch["billed_in_documents"], mismatch["billed_in_schedule"]) == (
        "C-USAGE",
        "1200.00",
        "0.00",
    )
    assert mismatch["difference"] == "1200.00"
    assert api.get("/api/revenue/waterfall", **{"from": "2026-03-01", "to": "2026-01-01"}).status_code == 422


def test_the_months_journal_entry_of_the_keys_entity(api: Api) -> None:
    year = contract("C-Y", cycle_unit="year", contract_end_date="2026-12-31")
    assert not import_document(api.store, document(year, with_reference=False)).errors
    run_billing(api.store, date(2026, 1, 1))
    revenue.rebuild(api.store, date(2026, 1, 31))
    [entry] = api.get("/api/revenue/journal", period="2026-01-15").json()["data"]
    assert (entry["doc_number"], entry["posting"], entry["closed"], entry["error"]) == (
        "REV202601-USD-US",
        "not queued",
        False,
        None,
    )
    # C-Y's 101.92 and the fixture's monthly C-USAGE (1,200 in January), all billed upfront: from deferred revenue
    assert entry["lines"] == [
        {
            "posting": "Debit",
            "account": "deferred_revenue",
            "description": "Deferred revenue recognised",
            "amount": "1301.92",
        },
        {"posting": "Credit", "account": "revenue", "description": "Revenue recognised", "amount": "1301.92"},
    ]
    assert api.get("/api/revenue/journal", token=api.kw_token, period="2026-01-15").json()["data"] == []
