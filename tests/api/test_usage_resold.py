"""The usage API on usage sold through a reseller (issue 17 review): the reseller's one invoice a cycle
names its first contract on its header, so a resold usage contract further down is billed on lines of
a document it does not head. An event for a period already billed there is late, names that invoice
(its number and its own document ref) and the correction to come."""

from __future__ import annotations

from datetime import date

from billbridge.billing.usage_billing_dates import document_ref
from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from tests.api.conftest import Api, event
from tests.docs import REFERENCE, contract

EVENT = "/api/usage/event"
USAGE = {"line_ref": "api", "product_ref": "api", "charge": "usage"}
RESELLER = {
    "partner_ref": "channel-one",
    "name": "Channel One",
    "kind": "reseller",
    "entity_ref": "us",
    "currency": "USD",
    "discount_percent": "25",
}


def test_usage_billed_on_a_resellers_invoice_it_does_not_head_is_late_there(api: Api) -> None:
    """Globex's platform (R-globex) and Initech's API calls (R-initech) are sold through channel-one:
    its invoice of 1 February heads R-globex (Globex comes first) and bills Initech's January calls on
    its lines. An Initech call of January sent after that run is late: its parent is that invoice, its
    correction goes on the reseller's invoice of 1 March, named by that invoice's ref once it exists."""
    doc = {
        **REFERENCE,
        "partners": [RESELLER],
        "contracts": [
            contract("R-globex", reseller_ref="channel-one"),
            contract("R-initech", customer="initech", reseller_ref="channel-one", lines=[USAGE]),
        ],
    }
    assert not import_document(api.store, doc).errors
    calls = {"customer_ref": "initech", "customer_name": "Initech"}
    assert api.post(EVENT, event(**calls, quantity=1000, event_id="jan-1")).status_code == 201
    run_billing(api.store, date(2026, 2, 1))
    resold = [i for i in api.get("/api/invoices").json()["data"] if i["customer_ref"] == "channel-one"]
    february = next(i for i in resold if i["billing_date"] == "2026-02-01")
    assert february["contract_ref"] == "R-globex"
    assert february["document_ref"] == document_ref("R-globex", date(2026, 2, 1))

    late = api.post(EVENT, event(**calls, timestamp="2026-01-20T10:00:00Z", quantity=500, event_id="jan-late"))
    assert late.status_code == 201, late.text
    body = late.json()
    assert body["late"] is True
    assert body["related_parent_document_numbers"] == february["number"]
    assert body["related_parent_document_ref"] == february["document_ref"]
    assert body["related_document_billing_date"] == "2026-03-01" and body["related_document_numbers"] is None

    # The first event, sent before the run, names the invoice that billed it (not late).
    replay = api.post(EVENT, event(**calls, quantity=1000, event_id="jan-1")).json()
    assert (replay["late"], replay["related_document_numbers"]) == (False, february["number"])
    assert replay["related_document_ref"] == february["document_ref"]

    run_billing(api.store, date(2026, 3, 1))
    resold = [i for i in api.get("/api/invoices").json()["data"] if i["customer_ref"] == "channel-one"]
    march = next(i for i in resold if i["billing_date"] == "2026-03-01")
    replay = api.post(EVENT, event(**calls, timestamp="2026-01-20T10:00:00Z", quantity=500, event_id="jan-late"))
    answer = replay.json()
    assert (answer["late"], answer["related_document_numbers"]) == (True, march["number"])
    assert answer["related_document_ref"] == march["document_ref"] == document_ref("R-globex", date(2026, 3, 1))
    lines = api.get(f"/api/invoices/{march['number']}").json()["lines"]
    january = sorted(
        line["billed_amount"] for line in lines if line["kind"] == "usage" and "2026-01" in line["start_date"]
    )
    # January re-rated on March's reseller invoice: 1,500 calls at 0.002 less 25% = 2.25 for the 1.50 billed.
    assert january == ["-1.50", "2.25"]
