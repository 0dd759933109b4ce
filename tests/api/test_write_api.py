"""The write API on each backend: customers, products and contracts created and updated with the
contract files' validation (a 422 naming the field, nothing quarantined), once per idempotency key,
only from the version they were read at, within the key's legal entity; invoices approved, put
under review and voided as `invoices mark` does it, queueing the same pushes."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import func, select, update

from billbridge.flows.importing import import_document
from billbridge.flows.invoice_generation import run_billing
from billbridge.store import outbox
from billbridge.store import quarantine as quarantine_repo
from billbridge.store.invoices import list_invoices
from billbridge.store.models import Contract, Customer, Invoice
from tests.api.conftest import Api
from tests.docs import contract, document

NEW_CONTRACT: dict[str, Any] = {
    "contract_ref": "C-API",
    "customer_ref": "initech",
    "currency": "USD",
    "contract_start_date": "2026-01-01",
    "lines": [{"line_ref": "seats", "product_ref": "seats", "quantity": "10"}],  # 45.00 each, from the price book
}


def fields(response: Any) -> list[str | None]:
    return [problem.get("field") for problem in response.json()["detail"]]


def count(api: Api, model: Any) -> int:
    with api.store.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_customer_is_created_once_per_idempotency_key(api: Api) -> None:
    body = {"customer_ref": "acme", "name": "Acme", "email": "ap@acme.test"}
    first = api.post("/api/customers", body, **{"Idempotency-Key": "new-acme"})
    assert first.status_code == 201, first.text
    assert first.json() == {"customer_ref": "acme", "name": "Acme", "email": "ap@acme.test"}
    assert first.headers["Location"] == "/api/customers/acme" and first.headers["ETag"]
    customers = count(api, Customer)

    again = api.post("/api/customers", body, **{"Idempotency-Key": "new-acme"})  # a retry after a lost answer
    assert (again.status_code, again.json(), again.headers["ETag"]) == (201, first.json(), first.headers["ETag"])
    assert again.headers["Idempotent-Replayed"] == "true" and count(api, Customer) == customers

    other = api.post("/api/customers", {**body, "name": "Acme Ltd"}, **{"Idempotency-Key": "new-acme"})
    assert other.status_code == 409 and fields(other) == ["Idempotency-Key"]
    taken = api.post("/api/customers", body)  # no key: a second create of the same ref
    assert taken.status_code == 409 and fields(taken) == ["customer_ref"]
    kw = api.post(
        "/api/customers", {**body, "customer_ref": "acme-kw"}, token=api.kw_token, **{"Idempotency-Key": "new-acme"}
    )
    assert kw.status_code == 201  # the same key from another legal entity is another key
    assert api.get("/api/customers/acme").json()["name"] == "Acme"


def test_bad_records_are_refused_with_their_field_and_kept_nowhere(api: Api) -> None:
    refusals = {
        "/api/customers": [
            ({"customer_ref": "x", "name": "N" * 301}, 422, ["name"]),
            ({"customer_ref": "x", "name": "N", "entity_ref": "kw"}, 403, ["entity_ref"]),
            ({"customer_ref": "x", "name": "N", "phone": "1"}, 422, ["phone"]),
            ({"customer_ref": "x", "name": "N\u0000"}, 422, ["name"]),
        ],
        "/api/products": [
            (
                {
                    "product_ref": "p",
                    "name": "P",
                    "prices": [{"price_ref": "p-kwd", "currency": "KWD", "pricing": {"model": "flat", "amount": "1"}}],
                },
                403,
                ["prices[0].currency"],
            ),
            (
                {
                    "product_ref": "p",
                    "name": "P",
                    "prices": [
                        {"price_ref": "platform-usd", "currency": "USD", "pricing": {"model": "flat", "amount": "1"}}
                    ],
                },
                422,
                ["prices.price_ref"],
            ),
            (
                {
                    "product_ref": "p",
                    "name": "P",
                    "prices": [
                        {"price_ref": "p-usd", "currency": "USD", "pricing": {"model": "flat", "amount": "1e15"}}
                    ],
                },
                422,
                ["prices[0].pricing.flat.amount"],
            ),
        ],
        "/api/contracts": [
            (
                {**NEW_CONTRACT, "lines": [{"line_ref": "seats", "product_ref": "seats", "quantity": "-1"}]},
                422,
                ["lines[0].quantity"],
            ),
            ({**NEW_CONTRACT, "lines": [{"line_ref": "seats", "product_ref": "nope"}]}, 422, ["lines[0].product_ref"]),
            ({**NEW_CONTRACT, "customer_ref": "gulf"}, 422, ["customer_ref"]),  # another entity's customer
            ({**NEW_CONTRACT, "contract_start_date": "2026-02-30"}, 422, ["contract_start_date"]),
            ({**NEW_CONTRACT, "contract_ref": "C-USAGE"}, 409, ["contract_ref"]),
        ],
    }
    for path, cases in refusals.items():
        for body, status, where in cases:
            answer = api.post(path, body)
            assert (answer.status_code, fields(answer)) == (status, where), (path, body, answer.text)
    assert api.client.post("/api/contracts", content=b"{", headers=api.headers()).status_code == 400
    assert api.post("/api/contracts", [NEW_CONTRACT]).status_code == 422
    with api.store.read() as session:
        assert quarantine_repo.list_open(session) == []
    assert count(api, Customer) == 3 and count(api, Contract) == 1


def test_an_update_needs_the_version_it_was_made_from(api: Api) -> None:
    read = api.get("/api/customers/globex")
    version = read.headers["ETag"]
    assert api.put("/api/customers/globex", {"name": "Globex Corp"}).status_code == 428
    assert api.put("/api/customers/globex", {"name": "Globex Corp"}, **{"If-Match": '"old"'}).status_code == 412

    changed = api.put("/api/customers/globex", {"name": "Globex Corp"}, **{"If-Match": version})
    assert changed.status_code == 200 and changed.json()["name"] == "Globex Corp"
    assert changed.headers["ETag"] != version
    lost = api.put("/api/customers/globex", {"name": "Globex Inc"}, **{"If-Match": version})  # read before that change
    assert lost.status_code == 412 and fields(lost) == ["If-Match"]
    patched = api.patch("/api/customers/globex", {"email": "ap@globex.test"}, **{"If-Match": changed.headers["ETag"]})
    assert patched.json() == {"customer_ref": "globex", "name": "Globex Corp", "email": "ap@globex.test"}
    assert api.get("/api/customers/globex").headers["ETag"] == patched.headers["ETag"]
    moved = api.put(
        "/api/customers/globex", {"customer_ref": "globex2", "name": "G"}, **{"If-Match": patched.headers["ETag"]}
    )
    assert moved.status_code == 422 and fields(moved) == ["customer_ref"]

    # A change made elsewhere (a contract file) is a new version too.
    import_document(api.store, {"customers": [{"customer_ref": "globex", "name": "Globex (file)", "entity_ref": "us"}]})
    assert (
        api.patch("/api/customers/globex", {"email": None}, **{"If-Match": patched.headers["ETag"]}).status_code == 412
    )


def test_products_are_priced_in_the_keys_currency_and_keep_other_prices(api: Api) -> None:
    created = api.post(
        "/api/products",
        {
            "product_ref": "widget",
            "name": "Widget",
            "prices": [
                {"price_ref": "widget-usd", "currency": "USD", "pricing": {"model": "per_unit", "unit_price": 2.5}}
            ],
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["prices"] == [
        {"price_ref": "widget-usd", "currency": "USD", "pricing": {"model": "per_unit", "unit_price": "2.5"}}
    ]
    assert api.get("/api/products/widget", token=api.kw_token).status_code == 404  # not sold by kw
    version = api.get("/api/products/widget").headers["ETag"]
    more = {
        "prices": [{"price_ref": "widget-usd-volume", "currency": "USD", "pricing": {"model": "flat", "amount": "100"}}]
    }
    changed = api.patch("/api/products/widget", more, **{"If-Match": version})
    assert changed.status_code == 200, changed.text
    assert [p["price_ref"] for p in changed.json()["prices"]] == [
        "widget-usd",
        "widget-usd-volume",
    ]  # prices are never deleted
    platform = api.get("/api/products/platform", token=api.kw_token)
    renamed = api.patch(
        "/api/products/platform",
        {"description": "The platform"},
        token=api.kw_token,
        **{"If-Match": platform.headers["ETag"]},
    )
    assert renamed.status_code == 200 and [p["currency"] for p in renamed.json()["prices"]] == ["KWD"]
    assert [p["currency"] for p in api.get("/api/products/platform").json()["prices"]] == ["USD"]  # us' price kept


def test_a_contract_is_created_and_amended_by_versions_that_billing_follows(api: Api) -> None:
    created = api.post("/api/contracts", NEW_CONTRACT, **{"Idempotency-Key": "c-api"})
    assert created.status_code == 201, created.text
    assert (created.headers["ETag"], created.json()["version_no"], created.json()["lines"][0]["quantity"]) == (
        '"v1"',
        1,
        "10",
    )
    run_billing(api.store, date(2026, 1, 1), contract_refs=["C-API"])

    amended = {**NEW_CONTRACT, "lines": [{"line_ref": "seats", "product_ref": "seats", "quantity": "12"}]}
    refused = api.put("/api/contracts/C-API", amended, **{"If-Match": '"v1"'})
    assert refused.status_code == 422 and fields(refused) == ["effective_date"]
    assert (
        api.put("/api/contracts/C-API", {**amended, "effective_date": "2026-01-16"}, **{"If-Match": '"v0"'}).status_code
        == 412
    )
    changed = api.put("/api/contracts/C-API", {**amended, "effective_date": "2026-01-16"}, **{"If-Match": '"v1"'})
    assert changed.status_code == 200 and changed.headers["ETag"] == '"v2"'
    assert (changed.json()["effective_date"], changed.json()["lines"][0]["quantity"]) == ("2026-01-16", "12")
    same = api.put("/api/contracts/C-API", {**amended, "effective_date": "2026-01-16"}, **{"If-Match": '"v2"'})
    assert same.status_code == 200 and same.headers["ETag"] == '"v2"'  # nothing changed: no new version
    terms = api.patch(
        "/api/contracts/C-API", {"effective_date": "2026-02-01", "payment_terms_days": 15}, **{"If-Match": '"v2"'}
    )
    assert terms.headers["ETag"] == '"v3"' and terms.json()["payment_terms_days"] == 15
    assert terms.json()["lines"][0]["quantity"] == "12"  # kept: a merge patch changes what it names

    # February's invoice: 2 more seats for January 16-31 (16/31 of 90.00 = 46.45) and 12 seats for February.
    run_billing(api.store, date(2026, 2, 1), contract_refs=["C-API"])
    invoices = api.get("/api/invoices", contract_ref="C-API").json()["data"]
    assert [(i["billing_date"], i["invoice_total"], i["due_date"]) for i in invoices] == [
        ("2026-01-01", "450.00", "2026-01-31"),
        ("2026-02-01", "586.45", "2026-02-16"),
    ]


def test_another_entitys_records_are_not_found(api: Api) -> None:
    import_document(api.store, document(contract("C-KW", customer="gulf", entity="kw", currency="KWD")))
    run_billing(api.store, date(2026, 1, 1))
    version = api.get("/api/customers/gulf", token=api.kw_token).headers["ETag"]
    assert api.get("/api/customers/gulf").status_code == 404
    assert api.put("/api/customers/gulf", {"name": "Mine"}, **{"If-Match": version}).status_code == 404
    assert api.patch("/api/contracts/C-KW", {"payment_terms_days": 1}, **{"If-Match": '"v1"'}).status_code == 404
    assert api.post("/api/invoices/KW-INV-1/approve", {}).status_code == 404
    with api.store.read() as session:
        assert {d["number"]: d["status"] for d in list_invoices(session)}["KW-INV-1"] == "draft"


def test_invoices_move_along_their_lifecycle_as_the_cli_moves_them(api: Api) -> None:
    import_document(api.store, document(contract("C-AUTO", auto_charge=True)))
    run_billing(api.store, date(2026, 1, 1))
    auto = next(i["number"] for i in api.get("/api/invoices", contract_ref="C-AUTO").json()["data"])

    approved = api.post(f"/api/invoices/{auto}/approve", None, **{"Idempotency-Key": "approve-1"})
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert (body["previous_status"], body["status"], body["invoice"]["status"]) == ("draft", "approved", "approved")
    assert body["queued"] == {"push.quickbooks": 1, "push.stripe": 1}  # the push_targets, as a billing run queues them
    replay = api.post(f"/api/invoices/{auto}/approve", None, **{"Idempotency-Key": "approve-1"})
    assert replay.json() == body and replay.headers["Idempotent-Replayed"] == "true"
    again = api.post(f"/api/invoices/{auto}/approve", None).json()
    assert (again["previous_status"], again["queued"]) == ("approved", {})
    with api.store.read() as session:
        assert len(outbox.pending(session)) == 2  # once

    back = api.post(f"/api/invoices/{auto}/review", None).json()
    assert (back["status"], back["withdrawn"]) == ("under_review", 2)
    voided = api.post(f"/api/invoices/{auto}/void", None).json()
    assert voided["status"] == "void"
    refused = api.post(f"/api/invoices/{auto}/approve", None)
    assert (
        refused.status_code == 409
        and "cannot go from void to approved (allowed: none)" in refused.json()["detail"][0]["message"]
    )
    with api.store.read() as session:
        assert outbox.pending(session) == []

    [usage] = api.get("/api/invoices", contract_ref="C-USAGE").json()["data"]
    with api.store.write() as session:  # the ERP push delivered it
        session.execute(update(Invoice).where(Invoice.number == usage["number"]).values(status="sent"))
    sent = api.post(f"/api/invoices/{usage['number']}/void", None)
    assert sent.status_code == 409 and "corrected by a credit note" in sent.json()["detail"][0]["message"]
    assert api.get(f"/api/invoices/{usage['number']}").json()["status"] == "sent"


def test_the_same_request_sent_twice_at_once_creates_one_record(api: Api) -> None:
    """Two deliveries of one POST racing each other: the second waits for the first's key (PostgreSQL:
    the unique index; SQLite: the write lock), then replays its answer."""
    from concurrent.futures import ThreadPoolExecutor

    body = {"customer_ref": "twice", "name": "Twice"}
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: api.post("/api/customers", body, **{"Idempotency-Key": "race"}), range(2)))
    assert sorted((a.status_code, a.headers.get("Idempotent-Replayed", "no")) for a in answers) == [
        (201, "no"),
        (201, "true"),
    ]
    with api.store.read() as session:
        assert session.scalar(select(func.count()).select_from(Customer).where(Customer.customer_ref == "twice")) == 1
