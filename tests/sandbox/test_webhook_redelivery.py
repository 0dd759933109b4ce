"""The sandboxes retry a webhook their endpoint did not take, as Stripe and Intuit do: with backoff, on
a timeout, a connection error or a non-2xx answer, the same event each time (one shared mechanism)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request, Response

from billbridge.sandbox.quickbooks import QboCompany
from billbridge.sandbox.server import SandboxServer
from billbridge.sandbox.stripe import StripeSandbox, catalog
from billbridge.sandbox.webhooks import Redelivery

QUICK = Redelivery(attempts=3, first_delay=0.05, timeout=0.5)


class Flaky:
    """A receiver that refuses the first ``refusals`` attempts of each event (500, or too slow to
    answer), then takes it; it counts what it took by the event's id."""

    def __init__(self, refusals: int = 1, *, slow: bool = False) -> None:
        self.refusals, self.slow = refusals, slow
        self.seen: Counter[str] = Counter()
        self.taken: Counter[str] = Counter()
        self.app = FastAPI()

        @self.app.post("/hook")
        async def hook(request: Request) -> Response:
            key = event_key(await request.body())
            self.seen[key] += 1
            if self.seen[key] <= self.refusals:
                if self.slow:
                    await asyncio.sleep(QUICK.timeout * 3)  # past the sender's timeout
                    return Response(status_code=200)  # too late: the sender gave this attempt up
                return Response(status_code=500)
            self.taken[key] += 1
            return Response(status_code=200)


def event_key(body: bytes) -> str:
    """A Stripe event's id, or a QuickBooks CloudEvent notification's entity and type."""
    data = json.loads(body)
    if isinstance(data, list):
        return f"{data[0]['intuitentityid']}:{data[0]['type']}"
    return str(data["id"])


@pytest.fixture
def flaky() -> Iterator[tuple[Flaky, str]]:
    receiver = Flaky()
    with SandboxServer(receiver.app, name="hook") as server:
        yield receiver, f"{server.url}/hook"


def test_the_default_backoff_doubles_from_half_a_second() -> None:
    assert Redelivery().delays() == [0.5, 1.0, 2.0]
    assert Redelivery(attempts=6, first_delay=1).delays() == [1, 2, 4, 8, 16]
    assert Redelivery(attempts=1).delays() == []


def test_a_stripe_event_refused_once_is_delivered_on_the_retry_once(flaky: tuple[Flaky, str]) -> None:
    receiver, url = flaky
    sandbox = StripeSandbox()
    sender = sandbox.send_webhooks_to(url, "whsec_test", policy=QUICK)
    customer = catalog.create_customer(sandbox.state, {"name": "Globex"})
    sender.flush()
    [event] = sender.delivered
    assert customer["id"] and sender.failed == []
    assert receiver.seen == {event: 2} and receiver.taken == {event: 1}  # refused, then taken: the same id
    assert [(a.key, a.status) for a in sender.queue.attempts] == [(event, 500), (event, 200)]


def test_a_stripe_event_whose_endpoint_times_out_is_sent_again() -> None:
    receiver = Flaky(slow=True)
    with SandboxServer(receiver.app, name="hook") as server:
        sandbox = StripeSandbox()
        sender = sandbox.send_webhooks_to(f"{server.url}/hook", "whsec_test", policy=QUICK)
        catalog.create_customer(sandbox.state, {"name": "Initech"})
        sender.flush()
    [event] = sender.delivered
    assert [a.status for a in sender.queue.attempts] == [None, 200]  # the first timed out
    assert receiver.taken == {event: 1}


def test_an_endpoint_that_never_answers_gets_every_attempt_then_the_event_fails() -> None:
    sandbox = StripeSandbox()
    sender = sandbox.send_webhooks_to("http://127.0.0.1:9/never", "whsec_test", policy=QUICK)
    catalog.create_customer(sandbox.state, {"name": "Hooli"})
    sender.flush()
    [event] = sender.failed
    assert sender.delivered == [] and [(a.key, a.status) for a in sender.queue.attempts] == [(event, None)] * 3


def test_a_quickbooks_notification_refused_once_is_delivered_on_the_retry_once(flaky: tuple[Flaky, str]) -> None:
    receiver, url = flaky
    company = QboCompany()
    company.webhook.url, company.webhook.redelivery = url, QUICK
    company.notify([("Invoice", "7", "Create", "2026-12-01T10:00:00+00:00")])
    company.webhook.flush()
    assert [status for status, _ in company.webhook.delivered] == [200]
    assert receiver.seen == {"7:qbo.invoice.created.v1": 2} and receiver.taken == {"7:qbo.invoice.created.v1": 1}
    assert [a.status for a in company.webhook.attempts] == [500, 200]
