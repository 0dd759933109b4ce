"""Record the connector cassettes again from the strict sandboxes: ``python -m tests.connectors.record_cassettes``.

Each scenario of ``tests/connectors/scenarios.py`` runs against a fresh sandbox on a fixed clock (so
a re-recording changes only what the connector or the sandbox changed) with vcrpy recording every
exchange into ``tests/connectors/cassettes/<vendor>/<scenario>.yaml``. Commit the cassettes with the
change that altered them; the replay tests (fast tier) then check the connector against them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from billbridge.sandbox.hubspot import HubSpotSandbox
from billbridge.sandbox.quickbooks.company import QboCompany
from billbridge.sandbox.quickbooks.running import start_quickbooks
from billbridge.sandbox.salesforce import SalesforceSandbox
from billbridge.sandbox.server import SandboxServer
from billbridge.sandbox.stripe import StripeSandbox
from tests.connectors.cassettes import HERE, cassette_path, cassette_vcr
from tests.connectors.scenarios import (
    HUBSPOT_SCENARIOS,
    QUICKBOOKS_SCENARIOS,
    RECORDING_CLOCK,
    SALESFORCE_SCENARIOS,
    STRIPE_KEY,
    STRIPE_SCENARIOS,
    CrmSide,
    QuickBooksSide,
    SandboxClock,
    StripeSide,
    hubspot_contacts,
    hubspot_source,
    hubspot_world,
    quickbooks_connector,
    salesforce_source,
    salesforce_world,
    stripe_connector,
)


def record_stripe() -> list[Path]:
    """Every Stripe scenario against its own fresh sandbox."""
    written = []
    for name, scenario in STRIPE_SCENARIOS.items():
        path = HERE / cassette_path("stripe", name)
        path.unlink(missing_ok=True)
        clock = SandboxClock(RECORDING_CLOCK)
        sandbox = StripeSandbox((STRIPE_KEY,), clock=clock)
        with (
            SandboxServer(sandbox.app, name="stripe") as server,
            cassette_vcr("all").use_cassette(cassette_path("stripe", name)),
        ):
            scenario(stripe_connector(server.url), StripeSide(sandbox, clock))
        written.append(path)
    return written


def record_hubspot() -> list[Path]:
    """Every HubSpot scenario against its own sandbox seeded with the same small world."""
    written = []
    for name, scenario in HUBSPOT_SCENARIOS.items():
        path = HERE / cassette_path("hubspot", name)
        path.unlink(missing_ok=True)
        with (
            HubSpotSandbox(hubspot_world()) as sandbox,
            cassette_vcr("all").use_cassette(cassette_path("hubspot", name)),
        ):
            hubspot_contacts(sandbox.data, sandbox.world)
            scenario(hubspot_source(sandbox.url, sandbox.credentials.access_token), CrmSide(sandbox, sandbox.world))
        written.append(path)
    return written


def record_salesforce() -> list[Path]:
    """Every Salesforce scenario against its own sandbox (over TLS) seeded with the same small world."""
    written = []
    for name, scenario in SALESFORCE_SCENARIOS.items():
        path = HERE / cassette_path("salesforce", name)
        path.unlink(missing_ok=True)
        world = salesforce_world()
        with (
            SalesforceSandbox(world) as sandbox,
            cassette_vcr("all").use_cassette(cassette_path("salesforce", name)),
        ):
            scenario(salesforce_source(sandbox.url, sandbox.credentials, str(sandbox.ca)), CrmSide(sandbox, world))
        written.append(path)
    return written


def record_quickbooks() -> list[Path]:
    """Every QuickBooks scenario against its own fresh company (over TLS) on a fixed clock."""
    written = []
    for name, scenario in QUICKBOOKS_SCENARIOS.items():
        path = HERE / cassette_path("quickbooks", name)
        path.unlink(missing_ok=True)
        qb = start_quickbooks(company=QboCompany(clock=SandboxClock(RECORDING_CLOCK)), limits=None)
        try:
            with cassette_vcr("all").use_cassette(cassette_path("quickbooks", name)):
                conn = quickbooks_connector(
                    qb.api_url_v3,
                    qb.discovery_url,
                    str(qb.ca_bundle),
                    client=(qb.client_id, qb.client_secret),
                    refresh_token=qb.refresh_token,
                    realm_id=qb.realm_id,
                )
                scenario(conn, QuickBooksSide(qb.company))
        finally:
            qb.stop()
        written.append(path)
    return written


RECORDERS: dict[str, Callable[[], list[Path]]] = {
    "stripe": record_stripe,
    "hubspot": record_hubspot,
    "salesforce": record_salesforce,
    "quickbooks": record_quickbooks,
}


def main(argv: list[str]) -> int:
    """Record every vendor's scenarios, or those of the vendors named (``... record_cassettes stripe``)."""
    unknown = [v for v in argv if v not in RECORDERS]
    if unknown:
        print(f"unknown vendor {', '.join(unknown)} (expected some of {', '.join(RECORDERS)})", file=sys.stderr)
        return 2
    for vendor in argv or list(RECORDERS):
        for path in RECORDERS[vendor]():
            print(f"recorded {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
