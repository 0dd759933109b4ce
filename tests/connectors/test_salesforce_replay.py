"""The Salesforce connector against recorded exchanges with the strict sandbox (fast tier, no server):
the token request and every SOQL page of a full pull must be asked as recorded, and the bundles must
carry the seeded world's opportunities. Re-record with ``python -m tests.connectors.record_cassettes``."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from tests.connectors.cassettes import REPLAY_URL, replaying
from tests.connectors.scenarios import salesforce_full_pull, salesforce_source, salesforce_world

CREDENTIALS = {"client_id": "replayed-id", "client_secret": "replayed-secret"}  # filtered out of the cassette


def test_a_full_pull_replays_from_the_cassette_with_every_live_opportunity_once() -> None:
    world = salesforce_world()
    with replaying("salesforce", "full_pull") as cassette:
        pages = salesforce_full_pull(salesforce_source(REPLAY_URL.replace("http:", "https:"), CREDENTIALS))
        assert cassette.all_played
    bundles = [b for page in pages for b in page.records]
    assert len({b.deal["Id"] for b in bundles}) == len(bundles) == len(world.live_deals)
    assert Counter(Decimal(str(b.deal["Amount"])) for b in bundles) == Counter(d.amount for d in world.live_deals)
    assert Counter(len(b.lines) for b in bundles) == Counter(len(d.lines) for d in world.live_deals)
    assert all(b.company is not None for b in bundles) and pages[-1].cursor is not None
