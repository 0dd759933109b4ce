"""``/api/resellers`` through FastAPI's TestClient over a real store: each reseller's end customers and
what it was invoiced, scoped to the key's legal entity, paged."""

from __future__ import annotations

from datetime import date

from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.store.invoices import list_invoices
from billbridge.store.outbound_documents import mark_sent, set_status
from tests.api.conftest import Api
from tests.docs import contract


def test_reseller_data_of_the_keys_entity(api: Api) -> None:
    partners = [
        {"partner_ref": p, "name": p.title(), "kind": "reseller", "entity_ref": "us", "currency": "USD", **terms}
        for p, terms in (("alpha", {"discount_percent": "25"}), ("beta", {"discount_percent": "10"}))
    ]
    doc = {
        "partners": partners,
        "contracts": [
            contract("A-1", reseller_ref="alpha"),
            contract("A-2", customer="initech", reseller_ref="alpha"),
            contract("B-1", reseller_ref="beta"),
        ],
    }
    assert not import_document(api.store, doc).errors
    run_billing(api.store, date(2026, 1, 1))
    assert api.get("/api/resellers").json()["data"] == []  # drafts: nothing invoiced yet
    with api.store.write() as session:
        for invoice in list_invoices(session):  # issued, as a push does
            set_status(session, str(invoice["number"]), "approved", lambda _doc: [])
            mark_sent(session, [int(str(invoice["id"]))])
    run_billing(api.store, date(2026, 2, 1))  # February's drafts are not counted
    first = api.get("/api/resellers", limit=1)
    assert first.status_code == 200, first.text
    body = first.json()
    # alpha: two Platform lines at 1,200.00 less 25% = 1,800.00
    assert body["data"] == [
        {"partner_ref": "alpha", "end_customers": ["globex", "initech"], "contracts": 2, "revenue": {"USD": "1800.00"}}
    ]
    rest = api.get("/api/resellers", cursor=body["next_cursor"]).json()
    assert rest["data"] == [  # beta: 1,200.00 less 10%
        {"partner_ref": "beta", "end_customers": ["globex"], "contracts": 1, "revenue": {"USD": "1080.00"}}
    ]
    assert rest["has_more"] is False
    assert api.get("/api/resellers", token=api.kw_token).json()["data"] == []  # another entity sees none
