"""A local emulator of the Stripe API parts billbridge uses; see ``app.StripeSandbox`` and ``start_seeded``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from billbridge.sandbox.demo_world import DemoWorld, generate
from billbridge.sandbox.server import SandboxServer
from billbridge.sandbox.stripe.app import StripeErrors, StripeSandbox, WebhookSender, sign
from billbridge.sandbox.stripe.seed import SeededIds, seed

DEFAULT_API_KEY = "sk_test_billbridge"
DEFAULT_WEBHOOK_SECRET = "whsec_billbridge_sandbox"

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_WEBHOOK_SECRET",
    "RunningStripe",
    "SeededIds",
    "StripeErrors",
    "StripeSandbox",
    "WebhookSender",
    "seed",
    "sign",
    "start_seeded",
]


@dataclass
class RunningStripe:
    url: str
    api_key: str
    webhook_secret: str
    sandbox: StripeSandbox
    ids: SeededIds
    server: SandboxServer


@contextmanager
def start_seeded(
    world: DemoWorld | None = None,
    *,
    subscriptions: int | None = None,
    webhook_url: str | None = None,
    api_key: str = DEFAULT_API_KEY,
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
    clock: Callable[[], float] = time.time,
) -> Iterator[RunningStripe]:
    """A seeded Stripe sandbox on an ephemeral loopback port, for flow tests and the demo.

    ``url``, ``api_key`` and ``webhook_secret`` are what the connector and the webhook endpoint need.
    """
    sandbox = StripeSandbox((api_key,), clock=clock)
    ids = seed(sandbox.state, world or generate(30), subscriptions=subscriptions)
    if webhook_url:
        sandbox.send_webhooks_to(webhook_url, webhook_secret)
    with SandboxServer(sandbox.app, name="stripe") as server:
        yield RunningStripe(server.url, api_key, webhook_secret, sandbox, ids, server)
