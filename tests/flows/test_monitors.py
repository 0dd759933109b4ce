"""Monitors through the store: values per customer and day kept idempotently, late data corrected,
alerts raised once per crossing and delivered once (signed webhooks to a local receiver, Prefect
events to a Prefect server)."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select, update

from billbridge.billing.monitors import MonitorDefinition
from billbridge.connectors.monitor_webhook import DELIVERY_HEADER, SIGNATURE_HEADER, verify
from billbridge.flows import monitors as flow
from billbridge.flows.importing import import_document
from billbridge.flows.outbox_relay import relay
from billbridge.secrets import Sealer
from billbridge.store import monitors as sql
from billbridge.store.db import Store
from billbridge.store.models import Customer, OutboxMessage, Product
from billbridge.store.usage import insert_events

D = Decimal


def world(store: Store, *contracts: dict[str, Any]) -> None:
    document = {
        "entities": [{"entity_ref": "us", "name": "US Inc", "currency": "USD", "invoice_prefix": "US-INV-"}],
        "customers": [
            {"customer_ref": "acme", "name": "Acme", "entity_ref": "us"},
            {"customer_ref": "globex", "name": "Globex", "entity_ref": "us"},
        ],
        "products": [{"product_ref": "platform", "name": "Platform"}, {"product_ref": "api", "name": "API calls"}],
        "contracts": list(contracts),
    }
    summary = import_document(store, document)
    assert not summary.errors, summary.errors


def contract(ref: str, customer: str, amount: str, **terms: Any) -> dict[str, Any]:
    lines = terms.pop("lines", None) or [
        {"line_ref": "fee", "product_ref": "platform", "pricing": {"model": "flat", "amount": amount}}
    ]
    return {
        "contract_ref": ref,
        "customer_ref": customer,
        "entity_ref": "us",
        "currency": "USD",
        "contract_start_date": "2026-01-01",
        "lines": lines,
        **terms,
    }


def add(store: Store, **definition: Any) -> MonitorDefinition:
    parsed = MonitorDefinition.model_validate({"entity_ref": "us", **definition})
    with store.write() as session:
        flow.add_monitor(session, parsed)
    return parsed


def stored(store: Store, name: str) -> dict[str, dict[date, str]]:
    with store.read() as session:
        [monitor] = sql.list_monitors(session, name=name)
        values = sql.values_on(session, monitor.id, date(2000, 1, 1), date(2100, 1, 1))
        refs = {cid: ref for cid, (ref, _) in sql.customers(session, values).items()}
    return {refs[cid]: days for cid, days in values.items()}


def test_an_amended_flat_fee_per_day_and_a_rerun_writes_nothing(store: Store) -> None:
    world(store, contract("C-1", "acme", "310.00"))
    add(
        store,
        name="fee",
        source="contract",
        contract={"contract_ref": "C-1", "item": "billed_amount", "line_ref": "fee"},
    )
    first = flow.snapshot(store, date(2026, 1, 15), date(2026, 1, 16))
    assert (first.values, first.written) == (2, 2)
    world(store, contract("C-1", "acme", "620.00", effective_date="2026-01-17"))  # imported on its day
    flow.snapshot(store, date(2026, 1, 17))
    assert stored(store, "fee")["acme"] == {
        date(2026, 1, 15): "310.00",
        date(2026, 1, 16): "310.00",
        date(2026, 1, 17): "460.00",  # 16 days at 310 + 15 days at 620, of 31
    }
    again = flow.snapshot(store, date(2026, 1, 15), date(2026, 1, 17))
    assert (again.values, again.written, again.alerts) == (3, 0, [])
    # a 90-day backfill gives the same numbers as the daily runs did
    backfill = flow.snapshot(store, date(2026, 1, 1), date(2026, 3, 31), alerts=False)
    assert backfill.written == 90 - 3
    assert stored(store, "fee")["acme"][date(2026, 1, 17)] == "460.00"
    assert stored(store, "fee")["acme"][date(2026, 2, 1)] == "620.00"


def test_portfolio_monitors_show_each_customer_and_refuse_items_a_line_lacks(store: Store) -> None:
    world(store, contract("C-1", "acme", "100.00"), contract("C-2", "acme", "50.00"), contract("C-3", "globex", "7.00"))
    add(store, name="fees", source="contract", contract={"item": "amount", "product_ref": "platform"})
    flow.snapshot(store, date(2026, 2, 3))
    values = stored(store, "fees")
    assert (values["acme"][date(2026, 2, 3)], values["globex"][date(2026, 2, 3)]) == ("150.00", "7.00")
    with pytest.raises(flow.MonitorRefused) as refused:
        add(
            store,
            name="bad",
            source="contract",
            contract={"contract_ref": "C-1", "item": "quantity", "line_ref": "fee"},
        )
    assert refused.value.field == "contract.item"
    assert str(refused.value).endswith("its items are amount, billed_amount, billed_days")
    with pytest.raises(flow.MonitorRefused) as refused:
        add(store, name="fees", source="contract", contract={"item": "end_date"})
    assert refused.value.field == "name"


_EVENT_REFS = itertools.count()


def _events(store: Store, customer: str, *stamps_quantities: tuple[str, str]) -> None:
    with store.write() as session:
        cid, entity = session.execute(
            select(Customer.id, Customer.entity_id).where(Customer.customer_ref == customer)
        ).one()
        product = session.scalar(select(Product.id).where(Product.product_ref == "api"))
        insert_events(
            session,
            [
                {
                    "event_ref": f"e{next(_EVENT_REFS)}",
                    "entity_id": entity,
                    "customer_id": cid,
                    "product_id": product,
                    "timestamp": datetime.fromisoformat(stamp),
                    "quantity": D(quantity),
                }
                for stamp, quantity in stamps_quantities
            ],
        )


def test_a_usage_monitor_across_a_period_boundary_and_a_late_event(store: Store) -> None:
    usage_line = {
        "line_ref": "api",
        "product_ref": "api",
        "charge": "usage",
        "pricing": {"model": "per_unit", "unit_price": "0.10"},
    }
    world(store, contract("C-1", "acme", "0", lines=[usage_line]))
    add(store, name="api", source="usage_aggregate", usage={"product_ref": "api"})
    _events(store, "acme", ("2026-01-30T10:00:00+00:00", "5"), ("2026-01-31T10:00:00+00:00", "7"))
    _events(store, "acme", ("2026-02-01T10:00:00+00:00", "2"))
    flow.snapshot(store, date(2026, 1, 30), date(2026, 2, 1))
    assert stored(store, "api")["acme"] == {date(2026, 1, 30): "5", date(2026, 1, 31): "12", date(2026, 2, 1): "2"}
    assert stored(store, "api")["globex"][date(2026, 2, 1)] == "0"  # no contract, no usage: a calendar month of none
    _events(store, "acme", ("2026-01-31T23:00:00+00:00", "3"))  # arrives late
    rerun = flow.snapshot(store, date(2026, 1, 30), date(2026, 2, 1))
    assert rerun.written == 1
    assert stored(store, "api")["acme"][date(2026, 1, 31)] == "15"


class Receiver:
    """A local webhook endpoint that checks signatures and keeps what it received."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = verify(outer.secret, self.headers[SIGNATURE_HEADER], body)
                if ok and outer.status == 200:
                    outer.received.append((self.headers[DELIVERY_HEADER], json.loads(body)))
                self.send_response(outer.status if ok else 400)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/billbridge"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def sealer(tmp_path: Any) -> Sealer:
    return Sealer.from_settings(None, tmp_path)


@pytest.fixture
def receiver(sealer: Sealer) -> Iterator[Receiver]:
    running = Receiver(flow.webhook_secret(sealer, "us", "renewals"))
    yield running
    running.server.shutdown()


def _send_webhooks(store: Store, sealer: Sealer) -> dict[str, int]:
    import httpx

    with httpx.Client() as client:
        return dict(relay(store, flow.WEBHOOK_TOPIC, flow.webhook_sender(sealer, client)).outcomes)


def test_a_renewal_alert_fires_once_and_its_webhook_is_delivered_once(
    store: Store, sealer: Sealer, receiver: Receiver
) -> None:
    world(store, contract("C-1", "acme", "1200.00", cycle_unit="year", contract_end_date="2026-12-31"))
    add(
        store,
        name="renewals",
        source="contract",
        contract={"item": "end_date"},
        conditions=[{"when": "within_days", "value": 30}],
        webhook_url=receiver.url,
    )
    before = flow.snapshot(store, date(2026, 11, 25), date(2026, 11, 30))
    assert before.alerts == []
    crossing = flow.snapshot(store, date(2026, 12, 1))
    assert [(a["customer_ref"], a["day"], a["value"]) for a in crossing.alerts] == [
        ("acme", "2026-12-01", "2026-12-31")
    ]
    # rerun the day, and the days around it: no second alert
    assert flow.snapshot(store, date(2026, 12, 1)).alerts == []
    assert flow.snapshot(store, date(2026, 11, 28), date(2026, 12, 10)).alerts == []
    receiver.status = 503  # the receiver is down: retried later, not lost
    assert _send_webhooks(store, sealer) == {"retrying": 1}
    receiver.status = 200
    with store.write() as session:
        session.execute(update(OutboxMessage).values(available_at=datetime(2000, 1, 1)))
    assert _send_webhooks(store, sealer) == {"webhook delivered": 1}
    assert _send_webhooks(store, sealer) == {}
    [(delivery, body)] = receiver.received
    assert body["type"] == "billbridge.monitor.triggered" and delivery == body["id"]
    assert body["data"]["customer_ref"] == "acme" and body["data"]["condition"] == {
        "when": "within_days",
        "value": "30",
    }
    with store.read() as session:
        [monitor] = sql.list_monitors(session, name="renewals")
        assert [a["day"] for a in sql.alerts(session, monitor.id)] == ["2026-12-01"]


def test_a_relay_killed_after_sending_repeats_the_same_delivery_id(
    store: Store, sealer: Sealer, receiver: Receiver
) -> None:
    world(store, contract("C-1", "acme", "1200.00", cycle_unit="year", contract_end_date="2026-12-31"))
    add(
        store,
        name="renewals",
        source="contract",
        contract={"item": "end_date"},
        conditions=[{"when": "within_days", "value": 30}],
        webhook_url=receiver.url,
    )
    flow.snapshot(store, date(2026, 12, 1))
    _send_webhooks(store, sealer)
    with store.write() as session:  # as if the relay died between the receiver's 200 and its commit
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.topic == flow.WEBHOOK_TOPIC)
            .values(delivered_at=None, leased_until=None, available_at=datetime(2000, 1, 1))
        )
    _send_webhooks(store, sealer)
    ids = [delivery for delivery, _ in receiver.received]
    assert len(ids) == 2 and len(set(ids)) == 1  # at least once, with one id the receiver dedupes by


@pytest.mark.usefixtures("prefect_api")
def test_alerts_become_one_prefect_event_each_even_when_emitted_twice(store: Store) -> None:
    from prefect.client.orchestration import get_client

    world(store, contract("C-1", "acme", "1200.00", cycle_unit="year", contract_end_date="2026-12-31"))
    add(
        store,
        name="renewals",
        source="contract",
        contract={"item": "end_date"},
        conditions=[{"when": "within_days", "value": 30}],
    )
    flow.snapshot(store, date(2026, 12, 1))
    assert dict(relay(store, flow.EVENT_TOPIC, flow.emit_events).outcomes) == {"event emitted": 1}
    with store.write() as session:
        session.execute(
            update(OutboxMessage).values(delivered_at=None, leased_until=None, available_at=datetime(2000, 1, 1))
        )
    assert dict(relay(store, flow.EVENT_TOPIC, flow.emit_events).outcomes) == {"event emitted": 1}
    with store.read() as session:
        payload = session.scalars(select(OutboxMessage.payload)).one()
    query = {
        "filter": {
            "event": {"name": [flow.EVENT]},
            "id": {"id": [payload["id"]]},
            "occurred": {"since": "2026-11-01T00:00:00Z", "until": "2027-01-01T00:00:00Z"},
        }
    }
    deadline = time.monotonic() + 60
    found: list[dict[str, Any]] = []
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            found = client.request("POST", "/events/filter", json=query).json()["events"]
            if found:
                break
            time.sleep(0.5)
        time.sleep(2)  # the repeated one would have been persisted by now
        found = client.request("POST", "/events/filter", json=query).json()["events"]
    assert len(found) == 1
    event = found[0]
    assert event["payload"]["customer_ref"] == "acme" and event["payload"]["value"] == "2026-12-31"
    assert event["related"][0]["prefect.resource.id"] == "billbridge.customer.acme"
    assert event["related"][0]["prefect.resource.role"] == "customer"


def test_a_day_outside_the_contract_removes_a_value_kept_before(store: Store) -> None:
    world(store, contract("C-1", "acme", "300.00"))
    add(store, name="fee", source="contract", contract={"contract_ref": "C-1", "item": "amount", "line_ref": "fee"})
    flow.snapshot(store, date(2026, 4, 8))
    world(store, contract("C-1", "acme", "300.00", effective_date="2026-04-05", contract_end_date="2026-04-06"))
    assert flow.snapshot(store, date(2026, 4, 8)).written == 1  # a backdated end: the day has no value now
    assert date(2026, 4, 8) not in stored(store, "fee").get("acme", {})


def test_a_new_monitor_alerts_a_condition_holding_already_once_on_its_first_day(store: Store) -> None:
    world(store, contract("C-1", "acme", "1200.00", cycle_unit="year", contract_end_date="2026-12-31"))
    add(
        store,
        name="renewals",
        source="contract",
        contract={"item": "contract_end_date"},
        conditions=[{"when": "within_days", "value": 30}],
    )
    first = flow.snapshot(store, date(2026, 12, 20))  # 11 days before its end: news to this monitor
    assert [(a["customer_ref"], a["day"]) for a in first.alerts] == [("acme", "2026-12-20")]
    assert flow.snapshot(store, date(2026, 12, 20)).alerts == []  # a rerun of that day
    assert flow.snapshot(store, date(2026, 12, 21)).alerts == []  # the next day: still the same crossing


@pytest.mark.usefixtures("prefect_api")
def test_the_example_automation_routes_monitor_events_to_a_notification() -> None:
    from prefect.client.orchestration import get_client

    flow.create_example_automation("https://hooks.example.com/billbridge")
    flow.create_example_automation("https://hooks.example.com/billbridge")  # run again: replaced, not doubled
    with get_client(sync_client=True) as client:
        [automation] = client.read_automations_by_name(name=flow.AUTOMATION_NAME)
    assert automation.trigger.expect == {flow.EVENT}  # type: ignore[union-attr]
    [action] = automation.actions
    assert action.type == "send-notification" and "event.payload.customer_ref" in action.body  # type: ignore[union-attr]


def _snapshot_in_a_child(url: str) -> None:
    """A snapshot a customer per transaction, in its own process (killed by the test)."""
    from billbridge.store.db import open_store

    flow.snapshot(open_store(url), date(2026, 12, 1), chunk=1)


def test_a_snapshot_killed_halfway_and_rerun_raises_each_alert_once(store: Store) -> None:
    import multiprocessing
    import signal

    from billbridge.store.monitor_models import MonitorAlert

    customers = 300
    document = {
        "entities": [{"entity_ref": "us", "name": "US Inc", "currency": "USD", "invoice_prefix": "US-INV-"}],
        "customers": [{"customer_ref": f"c{n:03d}", "name": f"C {n}", "entity_ref": "us"} for n in range(customers)],
        "products": [{"product_ref": "platform", "name": "Platform"}],
        "contracts": [
            contract(f"C-{n:03d}", f"c{n:03d}", "10.00", cycle_unit="year", contract_end_date="2026-12-31")
            for n in range(customers)
        ],
    }
    assert not import_document(store, document).errors
    add(
        store,
        name="renewals",
        source="contract",
        contract={"item": "end_date"},
        conditions=[{"when": "within_days", "value": 30}],
        webhook_url="http://127.0.0.1:9/never-called",
    )

    def alerts() -> int:
        with store.read() as session:
            return len(session.scalars(select(MonitorAlert.id)).all())

    child = multiprocessing.get_context("spawn").Process(target=_snapshot_in_a_child, args=(store.url,))
    child.start()
    deadline = time.monotonic() + 120
    while alerts() == 0:
        assert time.monotonic() < deadline and child.is_alive(), "the child raised no alert"
        time.sleep(0.005)
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    halfway = alerts()
    assert 0 < halfway < customers  # killed between two committed chunks' transactions
    rerun = flow.snapshot(store, date(2026, 12, 1))
    assert len(rerun.alerts) == customers - halfway
    flow.snapshot(store, date(2026, 12, 1))  # and once more: nothing
    with store.read() as session:
        topics = Counter(session.scalars(select(OutboxMessage.topic)).all())
    assert alerts() == customers
    assert topics == {flow.EVENT_TOPIC: customers, flow.WEBHOOK_TOPIC: customers}


def _nz_world(store: Store) -> None:
    """An entity on Auckland's calendar (UTC+13 in summer) beside the UTC one, each with a usage contract."""
    world(store)
    usage_line = {
        "line_ref": "api",
        "product_ref": "api",
        "charge": "usage",
        "pricing": {"model": "per_unit", "unit_price": "0.10"},
    }
    nz = {"entity_ref": "nz", "name": "NZ Ltd", "currency": "NZD", "invoice_prefix": "NZ-INV-"}
    document = {
        "entities": [{**nz, "timezone": "Pacific/Auckland"}],
        "customers": [{"customer_ref": "kiwi", "name": "Kiwi Ltd", "entity_ref": "nz"}],
        "contracts": [
            {**contract("N-1", "kiwi", "0", lines=[usage_line]), "entity_ref": "nz", "currency": "NZD"},
            contract("C-1", "acme", "0", lines=[usage_line]),
        ],
    }
    summary = import_document(store, document)
    assert not summary.errors, summary.errors
    for entity in ("nz", "us"):
        add(store, name="api", source="usage_aggregate", usage={"product_ref": "api"}, entity_ref=entity)


def kept(store: Store, entity_ref: str, customer_ref: str) -> dict[date, str]:
    """The values the entity's ``api`` monitor keeps for one customer."""
    with store.read() as session:
        [monitor] = [m for m in sql.list_monitors(session, name="api") if m.entity_ref == entity_ref]
        customer = sql.customer_id(session, monitor.entity_id, customer_ref)
        assert customer is not None
        return sql.values_on(session, monitor.id, date(2026, 1, 1), date(2026, 12, 31)).get(customer, {})


def test_a_day_is_the_entitys_calendar_day_in_its_time_zone(store: Store) -> None:
    _nz_world(store)
    # 23:30 UTC on 31 January is 12:30 on 1 February in Auckland (NZDT, UTC+13)
    late_evening = (("2026-01-30T10:00:00+00:00", "5"), ("2026-01-31T23:30:00+00:00", "3"))
    _events(store, "kiwi", *late_evening)
    _events(store, "acme", *late_evening)
    flow.snapshot(store, date(2026, 1, 31), date(2026, 2, 1))
    # Auckland: the event opens February's period; UTC: it still belongs to January's
    assert kept(store, "nz", "kiwi") == {date(2026, 1, 31): "5", date(2026, 2, 1): "3"}
    assert kept(store, "us", "acme") == {date(2026, 1, 31): "8", date(2026, 2, 1): "0"}


def test_the_daily_run_evaluates_each_entitys_own_today(store: Store) -> None:
    _nz_world(store)
    _events(store, "kiwi", ("2026-01-31T23:30:00+00:00", "3"))
    summary = flow.snapshot_today(store, now=datetime.fromisoformat("2026-01-31T23:45:00+00:00"))
    assert (summary.first, summary.last, summary.monitors) == (date(2026, 1, 31), date(2026, 2, 1), 2)
    assert kept(store, "nz", "kiwi") == {date(2026, 2, 1): "3"}  # already 1 February in Auckland
    assert kept(store, "us", "acme") == {date(2026, 1, 31): "0"}  # still 31 January in UTC
    assert flow.today_in("Pacific/Auckland", datetime.fromisoformat("2026-01-31T10:59:00+00:00")) == date(2026, 1, 31)
    assert flow.today_in("Pacific/Auckland", datetime.fromisoformat("2026-01-31T11:00:00+00:00")) == date(2026, 2, 1)


def test_an_unknown_time_zone_is_the_entitys_error_naming_the_field(store: Store) -> None:
    odd = {"entity_ref": "mars", "name": "Mars", "currency": "USD", "invoice_prefix": "M-", "timezone": "Mars/Olympus"}
    summary = import_document(store, {"entities": [odd]})
    assert [(e.key, e.field) for e in summary.errors] == [("mars", "timezone")]
    assert "unknown time zone 'Mars/Olympus'" in summary.errors[0].message
