"""Start a QuickBooks sandbox over TLS and hand back everything a connector needs to talk to it."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from billbridge.sandbox.demo_world import DemoWorld
from billbridge.sandbox.faults import FaultInjector
from billbridge.sandbox.quickbooks.app import build_app
from billbridge.sandbox.quickbooks.company import QboCompany, TokenPolicy
from billbridge.sandbox.quickbooks.limits import INTUIT_LIMITS, QboLimits, Throttle
from billbridge.sandbox.server import SandboxServer
from billbridge.sandbox.tls import throwaway_tls


@dataclass
class RunningQuickBooks:
    """A started sandbox: its URLs and credentials (what an installation would configure) and its state."""

    server: SandboxServer
    company: QboCompany
    faults: FaultInjector
    ca_bundle: Path  # the throwaway CA the client must trust
    throttle: Throttle | None = None  # Intuit's rate limits, unless the sandbox was started without

    @property
    def base_url(self) -> str:
        return self.server.url

    @property
    def api_url_v3(self) -> str:
        return f"{self.server.url}/v3"

    @property
    def discovery_url(self) -> str:
        return f"{self.server.url}/.well-known/openid_configuration"

    @property
    def client_id(self) -> str:
        return self.company.client_id

    @property
    def client_secret(self) -> str:
        return self.company.client_secret

    @property
    def realm_id(self) -> str:
        return self.company.realm_id

    @property
    def refresh_token(self) -> str:
        return self.company.initial_refresh_token

    @property
    def webhook_verifier(self) -> str:
        return self.company.webhook.verifier_token

    def stop(self) -> None:
        self.server.stop()


def start_quickbooks(
    *,
    company: QboCompany | None = None,
    tokens: TokenPolicy | None = None,
    webhook_url: str | None = None,
    world: DemoWorld | None = None,
    limits: QboLimits | None = INTUIT_LIMITS,
) -> RunningQuickBooks:
    """Serve a QuickBooks company on an ephemeral loopback port over TLS; stop it with ``.stop()``.
    ``limits``: the rate limits it enforces (Intuit's by default; None: none, for a test that is not
    about throttling and calls faster than a realm may)."""
    company = company or QboCompany(tokens=tokens)
    company.webhook.url = webhook_url
    if world is not None:
        seed_items(company, world)
    faults = FaultInjector()
    tls = throwaway_tls()
    throttle = Throttle(limits) if limits is not None else None
    server = SandboxServer(build_app(company, faults, throttle), tls=tls, name="quickbooks").start()
    return RunningQuickBooks(server, company, faults, tls.ca, throttle)


def seed_items(company: QboCompany, world: DemoWorld) -> None:
    """Service items for the demo price book (Name = SKU), as a bookkeeper would have set them up."""
    account = company.all("Account")[0]["Id"]
    for product in world.products.values():
        price = product.list_price.get(company.home_currency, Decimal(0))
        company.create(
            "Item",
            {
                "Name": product.sku,
                "Description": product.name,
                "Type": "Service",
                "UnitPrice": price,
                "IncomeAccountRef": {"value": account},
            },
        )
