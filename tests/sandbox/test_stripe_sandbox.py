"""The Stripe sandbox against the real stripe SDK (and raw HTTP where headers matter): object shapes as
in Stripe's published fixtures, Idempotency-Key semantics, paging, declines, fees and error bodies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from billbridge.sandbox.faults import Fault
from billbridge.sandbox.server import SandboxServer
from billbridge.sandbox.stripe import StripeSandbox, catalog
from billbridge.sandbox.stripe.payments import processing_fee
from billbridge.sandbox.stripe.state import TEMPLATES
from tests.conftest import require_contracts, vendor_spec

KEY = "sk_test_one"
OTHER_KEY = "sk_test_two"
FREE_FORM = {"metadata"}  # keys chosen by the user, not by Stripe
# Optional fields the fixtures leave out but the API reference documents (docs.stripe.com/api/invoice-payment)
OPTIONAL = {"invoice_payment.payment": {"payment_intent", "charge"}}


@pytest.fixture
def sandbox() -> Iterator[tuple[StripeSandbox, str]]:
    sb = StripeSandbox((KEY, OTHER_KEY))
    with SandboxServer(sb.app, name="stripe") as server:
        yield sb, server.url


def _client(url: str, key: str = KEY) -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": url}, max_network_retries=0)


def _shape_errors(ours: Any, theirs: Any, path: str) -> list[str]:
    """Differences in keys and JSON types between our object and Stripe's fixture (nulls match anything)."""
    if ours is None or theirs is None:
        return []
    if isinstance(theirs, bool) or isinstance(ours, bool):
        return [] if type(ours) is type(theirs) else [f"{path}: {type(ours).__name__} vs {type(theirs).__name__}"]
    if isinstance(theirs, dict):
        if not isinstance(ours, dict):
            return [f"{path}: {type(ours).__name__} vs object"]
        if path.rsplit(".", 1)[-1] in FREE_FORM:
            return []
        if path == "event.data.object":  # any object: it has the shape of its own type
            return _shape_errors(ours, TEMPLATES[ours["object"]], ours["object"])
        errors = [f"{path}: missing {k}" for k in theirs.keys() - ours.keys()]
        errors += [f"{path}: extra {k}" for k in ours.keys() - theirs.keys() - OPTIONAL.get(path, set())]
        for k in theirs.keys() & ours.keys():
            errors += _shape_errors(ours[k], theirs[k], f"{path}.{k}")
        return errors
    if isinstance(theirs, list):
        if not isinstance(ours, list):
            return [f"{path}: {type(ours).__name__} vs list"]
        return _shape_errors(ours[0], theirs[0], f"{path}[0]") if ours and theirs else []
    same = isinstance(ours, (int, float)) == isinstance(theirs, (int, float)) and isinstance(ours, str) == isinstance(
        theirs, str
    )
    return [] if same else [f"{path}: {type(ours).__name__} vs {type(theirs).__name__}"]


def test_templates_are_stripes_fixtures_verbatim() -> None:
    """Read from ../shared/vendor-specs beside the checkout; skipped when absent, a failure under CI=true."""
    published = json.loads(vendor_spec("stripe/fixtures3.json").read_text())["resources"]
    for kind, template in TEMPLATES.items():
        assert template == published[kind], kind


def _raw(response: Any) -> dict[str, Any]:
    return json.loads(response.last_response.body)  # type: ignore[no-any-return]


def test_every_object_has_stripes_shape(sandbox: tuple[StripeSandbox, str]) -> None:
    sb, url = sandbox
    client = _client(url)
    customer = client.v1.customers.create({"name": "Globex", "email": "a@globex.test", "metadata": {"ref": "c1"}})
    pm = client.v1.payment_methods.attach("pm_card_visa", {"customer": customer.id})
    client.v1.customers.update(customer.id, {"invoice_settings": {"default_payment_method": pm.id}})
    product = client.v1.products.create({"name": "Seats"})
    price = client.v1.prices.create(
        {"product": product.id, "currency": "usd", "unit_amount": 4500, "recurring": {"interval": "month"}}
    )
    sub = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id, "quantity": 3}]})
    invoice = client.v1.invoices.create({"customer": customer.id, "currency": "usd"})
    item = client.v1.invoice_items.create({"customer": customer.id, "invoice": invoice.id, "amount": 13500})
    client.v1.invoices.finalize_invoice(invoice.id)
    paid = client.v1.invoices.pay(invoice.id)
    charge = client.v1.charges.list().data[0]
    refund = client.v1.refunds.create({"charge": charge.id, "amount": 500})
    objects = {
        "customer": _raw(client.v1.customers.retrieve(customer.id)),
        "payment_method": _raw(pm),
        "product": _raw(product),
        "price": _raw(price),
        "subscription": _raw(sub),
        "subscription_item": _raw(sub)["items"]["data"][0],
        "invoiceitem": _raw(item),
        "invoice": _raw(paid),
        "line_item": _raw(paid)["lines"]["data"][0],
        "charge": _raw(client.v1.charges.retrieve(charge.id)),
        "payment_intent": _raw(client.v1.payment_intents.retrieve(charge.payment_intent)),
        "balance_transaction": _raw(client.v1.balance_transactions.retrieve(charge.balance_transaction)),
        "invoice_payment": _raw(client.v1.invoice_payments.list({"invoice": invoice.id}))["data"][0],
        "refund": _raw(refund),
        "event": _raw(client.v1.events.list({"limit": 1}))["data"][0],
    }
    errors = [e for kind, obj in objects.items() for e in _shape_errors(obj, TEMPLATES[kind], kind)]
    assert errors == []
    assert [obj["object"] for obj in objects.values()] == list(objects)
    assert objects["invoice"]["status"] == "paid" and objects["invoice"]["amount_paid"] == 13500


def _post(url: str, path: str, data: dict[str, str], key: str = KEY, idem: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if idem:
        headers["Idempotency-Key"] = idem
    return httpx.post(url + path, data=data, headers=headers)


def test_same_key_same_params_replays_the_first_answer(sandbox: tuple[StripeSandbox, str]) -> None:
    sb, url = sandbox
    first = _post(url, "/v1/customers", {"name": "Globex"}, idem="k1")
    again = _post(url, "/v1/customers", {"name": "Globex"}, idem="k1")
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert len(sb.state.all("customer")) == 1


def test_same_key_different_params_is_an_idempotency_error(sandbox: tuple[StripeSandbox, str]) -> None:
    sb, url = sandbox
    client = _client(url)
    client.v1.customers.create({"name": "Globex"}, {"idempotency_key": "k2"})
    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create({"name": "Initech"}, {"idempotency_key": "k2"})
    raw = _post(url, "/v1/customers", {"name": "Initech"}, idem="k2")
    assert raw.status_code == 400 and raw.json()["error"]["type"] == "idempotency_error"
    assert len(sb.state.all("customer")) == 1


def test_keys_are_scoped_per_api_key(sandbox: tuple[StripeSandbox, str]) -> None:
    sb, url = sandbox
    one = _post(url, "/v1/customers", {"name": "Globex"}, KEY, idem="shared")
    two = _post(url, "/v1/customers", {"name": "Initech"}, OTHER_KEY, idem="shared")
    assert two.status_code == 200 and two.json()["id"] != one.json()["id"]


def test_failed_validation_is_not_remembered_but_a_decline_is(sandbox: tuple[StripeSandbox, str]) -> None:
    sb, url = sandbox
    assert _post(url, "/v1/products", {}, idem="k3").status_code == 400
    assert _post(url, "/v1/products", {"name": "Seats"}, idem="k3").status_code == 200
    customer = catalog.create_customer(sb.state, {"name": "Broke", "payment_method": "pm_card_chargeDeclined"})
    invoice = _post(url, "/v1/invoices", {"customer": customer["id"], "currency": "usd"}).json()
    _post(url, f"/v1/invoices/{invoice['id']}/add_lines", {"lines[0][amount]": "1000"})
    _post(url, f"/v1/invoices/{invoice['id']}/finalize", {})
    declined = _post(url, f"/v1/invoices/{invoice['id']}/pay", {}, idem="pay-1")
    replay = _post(url, f"/v1/invoices/{invoice['id']}/pay", {}, idem="pay-1")
    assert declined.status_code == replay.status_code == 402
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert len(sb.state.all("charge")) == 1


def test_declined_card_answers_card_error_and_leaves_the_invoice_open(sandbox: tuple[StripeSandbox, str]) -> None:
    sb, url = sandbox
    client = _client(url)
    customer = client.v1.customers.create(
        {"name": "Broke", "payment_method": "pm_card_chargeDeclinedInsufficientFunds"}
    )
    invoice = client.v1.invoices.create({"customer": customer.id, "currency": "usd"})
    client.v1.invoices.add_lines(invoice.id, {"lines": [{"amount": 2500, "description": "Seats"}]})
    client.v1.invoices.finalize_invoice(invoice.id)
    with pytest.raises(stripe.CardError) as caught:
        client.v1.invoices.pay(invoice.id)
    error = caught.value
    assert error.http_status == 402 and error.code == "card_declined"
    assert error.error is not None and error.error.decline_code == "insufficient_funds"
    assert error.user_message == "Your card has insufficient funds."
    after = client.v1.invoices.retrieve(invoice.id)
    assert (after.status, after.amount_remaining, after.attempt_count) == ("open", 2500, 1)
    failed = client.v1.charges.retrieve(error.error.charge)
    assert (failed.status, failed.failure_code, failed.balance_transaction) == ("failed", "card_declined", None)


def test_fees_and_net_on_balance_transactions() -> None:
    assert processing_fee(13500, "usd") == 422  # 2.9% of 135.00 = 3.915 -> 3.92, + 0.30
    assert processing_fee(15000, "jpy") == 435  # no fixed part in a zero-decimal currency
    assert processing_fee(10000, "kwd") == 590  # 290 + 0.300 KWD


def test_lists_page_at_100_with_starting_after(sandbox: tuple[StripeSandbox, str]) -> None:
    sb, url = sandbox
    for n in range(205):
        catalog.create_product(sb.state, {"name": f"P{n}"})
    client = _client(url)
    first = client.v1.products.list({"limit": 100})
    assert len(first.data) == 100 and first.has_more
    seen = [p.id for p in first.data]
    page = first
    while page.has_more:
        page = client.v1.products.list({"limit": 100, "starting_after": page.data[-1].id})
        seen += [p.id for p in page.data]
    assert len(seen) == len(set(seen)) == 205
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.products.list({"limit": 101})


def test_created_filters_on_events(sandbox: tuple[StripeSandbox, str]) -> None:
    now = [1_800_000_000.0]
    sb = StripeSandbox((KEY,), clock=lambda: now[0])
    catalog.create_product(sb.state, {"name": "old"})
    now[0] += 1000
    catalog.create_product(sb.state, {"name": "new"})
    with SandboxServer(sb.app) as server:
        events = _client(server.url).v1.events.list({"created": {"gte": 1_800_000_500}, "type": "product.created"})
    assert [e.data.object["name"] for e in events.data] == ["new"]


def test_stripe_error_bodies_for_faults_and_bad_keys(sandbox: tuple[StripeSandbox, str]) -> None:
    sb, url = sandbox
    sb.faults.add(Fault(kind="rate_limit", path="/v1/customers", retry_after=2))
    with pytest.raises(stripe.RateLimitError) as limited:
        _client(url).v1.customers.list()
    assert limited.value.json_body["error"]["code"] == "rate_limit" and limited.value.headers["Retry-After"] == "2"
    sb.faults.add(Fault(kind="server_error", path="/v1/customers"))
    with pytest.raises(stripe.APIError) as failed:
        _client(url).v1.customers.list()
    assert failed.value.http_status == 500 and failed.value.json_body["error"]["type"] == "api_error"
    with pytest.raises(stripe.AuthenticationError):
        _client(url, "sk_test_wrong").v1.customers.list()


def test_lost_response_commits_and_a_keyed_retry_replays(sandbox: tuple[StripeSandbox, str]) -> None:
    sb, url = sandbox
    sb.faults.add(Fault(kind="lost_response", path="^/v1/invoices$", method="POST"))
    customer = catalog.create_customer(sb.state, {"name": "Globex"})
    client = _client(url)
    params = {"customer": customer["id"], "currency": "usd", "metadata": {"billbridge_number": "US-INV-1"}}
    with pytest.raises(stripe.APIConnectionError):
        client.v1.invoices.create(params, {"idempotency_key": "create-1"})
    assert len(sb.state.all("invoice")) == 1  # the server did the work
    again = client.v1.invoices.create(params, {"idempotency_key": "create-1"})
    assert again.id == sb.state.all("invoice")[0]["id"] and len(sb.state.all("invoice")) == 1


def test_tiers_only_when_expanded_and_expansion_depth(sandbox: tuple[StripeSandbox, str]) -> None:
    sb, url = sandbox
    product = catalog.create_product(sb.state, {"name": "Seats"})
    tiers = [{"up_to": "10", "unit_amount": "5000"}, {"up_to": "inf", "unit_amount": "4000", "flat_amount": "100"}]
    price = catalog.create_price(
        sb.state,
        {
            "product": product["id"],
            "currency": "usd",
            "billing_scheme": "tiered",
            "tiers_mode": "graduated",
            "tiers": tiers,
        },
    )
    client = _client(url)
    assert "tiers" not in _raw(client.v1.prices.retrieve(price["id"]))
    expanded = _raw(client.v1.prices.retrieve(price["id"], {"expand": ["tiers"]}))
    assert [t["up_to"] for t in expanded["tiers"]] == [10, None]
    assert expanded["tiers"][1]["flat_amount"] == 100
    with pytest.raises(stripe.InvalidRequestError, match="more than 4 levels"):
        client.v1.subscriptions.list({"expand": ["data.items.data.price.tiers"]})


def test_form_decoding_as_the_sdk_encodes() -> None:
    from billbridge.sandbox.stripe.forms import decode

    pairs = [
        ("lines[0][amount]", "100"),
        ("lines[0][metadata][billbridge_line]", "L1"),
        ("lines[1][amount]", "-5"),
        ("expand[0]", "data.invoice"),
        ("expand[]", "data.customer"),
        ("metadata[k]", ""),
        ("created[gte]", "10"),
    ]
    assert decode(pairs) == {
        "lines": [{"amount": "100", "metadata": {"billbridge_line": "L1"}}, {"amount": "-5"}],
        "expand": ["data.invoice", "data.customer"],
        "metadata": {"k": ""},
        "created": {"gte": "10"},
    }


def test_vendor_specs_are_found_beside_the_checkout_and_missing_ones_fail_under_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Issue 19 item 14: no absolute path; a missing spec is a failure (not a skip) under CI=true."""
    from billbridge.sandbox import specs
    from tests import conftest

    monkeypatch.delenv("BILLBRIDGE_VENDOR_SPECS", raising=False)
    assert specs.spec_dirs()[0] == specs.REPO_ROOT.parent / "shared" / "vendor-specs"
    monkeypatch.setenv("BILLBRIDGE_VENDOR_SPECS", str(tmp_path))
    monkeypatch.setattr(conftest, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        vendor_spec("stripe/fixtures3.json")


def test_parameters_the_sdk_does_not_define_are_refused_as_stripe_does(sandbox: tuple[StripeSandbox, str]) -> None:
    """Issue 19: requests are checked against the pinned SDK's parameter types (generated from Stripe's spec)."""
    require_contracts()
    sb, url = sandbox
    client = _client(url)
    customer = client.v1.customers.create({"name": "Globex"})
    with pytest.raises(stripe.InvalidRequestError) as top:
        client.v1.invoices.create({"customer": customer.id, "colour": "blue"})  # type: ignore[typeddict-unknown-key]
    assert (top.value.code, top.value.param) == ("parameter_unknown", "colour")
    with pytest.raises(stripe.InvalidRequestError) as nested:
        client.v1.invoices.create(
            {"customer": customer.id, "automatic_tax": {"enabled": False, "mode": "x"}}  # type: ignore[typeddict-unknown-key]
        )
    assert nested.value.param == "automatic_tax[mode]"
    assert nested.value.user_message == "Received unknown parameter: automatic_tax[mode]"
    assert client.v1.invoices.create({"customer": customer.id, "automatic_tax": {"enabled": False}}).id


def test_paying_a_paid_invoice_is_refused_without_an_undocumented_code(sandbox: tuple[StripeSandbox, str]) -> None:
    """Issue 19 item 13: Stripe has no ``invoice_not_open`` code; the refusal is a plain invalid request."""
    sb, url = sandbox
    client = _client(url)
    customer = client.v1.customers.create({"name": "Globex"})
    pm = client.v1.payment_methods.attach("pm_card_visa", {"customer": customer.id})
    client.v1.customers.update(customer.id, {"invoice_settings": {"default_payment_method": pm.id}})
    invoice = client.v1.invoices.create({"customer": customer.id})
    client.v1.invoices.add_lines(invoice.id, {"lines": [{"amount": 500, "description": "seats"}]})
    client.v1.invoices.finalize_invoice(invoice.id)
    assert client.v1.invoices.pay(invoice.id).status == "paid"
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.invoices.pay(invoice.id)
    assert again.value.http_status == 400 and again.value.code is None
    assert again.value.user_message == "Invoice is already paid"


def test_event_types_match_exactly_and_the_wildcard_belongs_to_type(sandbox: tuple[StripeSandbox, str]) -> None:
    """Issue 19 item 12: ``types[]`` takes exact event names; only ``type`` takes ``customer.subscription.*``."""
    sb, url = sandbox
    client = _client(url)
    customer = client.v1.customers.create({"name": "Globex"})
    product = client.v1.products.create({"name": "Seats"})
    price = client.v1.prices.create(
        {"product": product.id, "currency": "usd", "unit_amount": 500, "recurring": {"interval": "month"}}
    )
    client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})
    assert client.v1.events.list({"types": ["customer.subscription.*"]}).data == []
    exact = client.v1.events.list({"types": ["customer.subscription.created"]}).data
    wildcard = client.v1.events.list({"type": "customer.subscription.*"}).data
    assert [e.type for e in exact] == [e.type for e in wildcard] == ["customer.subscription.created"]
