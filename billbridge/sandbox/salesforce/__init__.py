"""A local Salesforce REST API over a seeded demo world, served over TLS on loopback.

``SalesforceSandbox(world).start()`` (or ``with SalesforceSandbox(world) as sf:``) gives ``sf.url``,
``sf.ca`` (the CA certificate to trust), ``sf.credentials`` (client id/secret and username/password
the token endpoint accepts), ``sf.injector`` (faults and call counts), ``sf.org`` (the data) and
``sf.apply(later_world)`` to turn a later state of the world into edits and deletions, and
``sf.env()``: the BILLBRIDGE_SALESFORCE__* variables that point ``connectors.salesforce.connect`` at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from billbridge.sandbox.demo_world import DemoWorld
from billbridge.sandbox.faults import FaultInjector
from billbridge.sandbox.salesforce.app import SalesforceErrors, create_app
from billbridge.sandbox.salesforce.org import Org
from billbridge.sandbox.salesforce.world import WorldRenderer, account_id, opportunity_id, partner_account_id
from billbridge.sandbox.server import SandboxServer
from billbridge.sandbox.tls import throwaway_tls

SANDBOX_CREDENTIALS = {
    "client_id": "3MVG9sandbox-billbridge",
    "client_secret": "sandbox-secret",
    "username": "billing@billbridge.example",
    "password": "sandbox-password",
}


@dataclass(frozen=True)
class SandboxAccess:
    url: str
    ca: Path
    credentials: dict[str, str]


class SalesforceSandbox:
    """One seeded Salesforce org behind a TLS sandbox server."""

    def __init__(
        self,
        world: DemoWorld,
        *,
        api_version: str = "62.0",
        daily_api_limit: int = 5_000_000,
        session_seconds: float = 7200.0,
    ) -> None:
        self.org = Org(api_version=api_version, daily_api_limit=daily_api_limit, session_seconds=session_seconds)
        self.renderer = WorldRenderer(self.org)
        self.renderer.seed(world)
        self.injector = FaultInjector()
        self.credentials = dict(SANDBOX_CREDENTIALS)
        tls = throwaway_tls()
        self.ca = tls.ca
        self.server = SandboxServer(create_app(self.org, self.credentials, self.injector), tls=tls, name="salesforce")

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def access(self) -> SandboxAccess:
        return SandboxAccess(self.url, self.ca, dict(self.credentials))

    def env(self) -> dict[str, str]:
        """BILLBRIDGE_SALESFORCE__* variables that point ``connectors.salesforce.connect`` at this sandbox."""
        return {
            "BILLBRIDGE_SALESFORCE__INSTANCE_URL": self.url,
            "BILLBRIDGE_SALESFORCE__CLIENT_ID": self.credentials["client_id"],
            "BILLBRIDGE_SALESFORCE__CLIENT_SECRET": self.credentials["client_secret"],
            "BILLBRIDGE_SALESFORCE__CA_BUNDLE": str(self.ca),
            "BILLBRIDGE_SALESFORCE__API_VERSION": self.org.api_version,
        }

    @property
    def deal_ids(self) -> dict[str, str]:
        """World deal key -> Opportunity Id, for every deal the world has had."""
        world = self.renderer.world
        return {key: opportunity_id(key) for key in (world.deals if world else {})}

    @property
    def faults(self) -> FaultInjector:
        """The fault injector (named as on the other sandboxes)."""
        return self.injector

    def apply(self, world: DemoWorld) -> int:
        """Edits, closes and deletions of ``world`` (a later state) with new SystemModstamps; returns
        how many deals changed."""
        return self.renderer.apply(world)

    def start(self) -> SalesforceSandbox:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> SalesforceSandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_sandbox(world: DemoWorld) -> tuple[SalesforceSandbox, SandboxAccess]:
    """Start a seeded sandbox; returns it (stop it when done) and its (url, CA path, credentials)."""
    sandbox = SalesforceSandbox(world).start()
    return sandbox, sandbox.access


__all__ = [
    "SANDBOX_CREDENTIALS",
    "SalesforceErrors",
    "SalesforceSandbox",
    "SandboxAccess",
    "account_id",
    "opportunity_id",
    "partner_account_id",
    "start_sandbox",
]
