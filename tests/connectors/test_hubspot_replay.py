"""The HubSpot connector against recorded exchanges with the strict sandbox (fast tier, no server):
a full pull's search pages, association and batch reads and archived list must be asked exactly as
recorded, and the bundles must carry the seeded world's deals. Re-record with
``python -m tests.connectors.record_cassettes``."""

from __future__ import annotations

from collections import Counter

from tests.connectors.cassettes import REPLAY_URL, replaying
from tests.connectors.scenarios import hubspot_full_pull, hubspot_source, hubspot_world


def test_a_full_pull_replays_from_the_cassette_with_every_live_deal_once() -> None:
    world = hubspot_world()
    with replaying("hubspot", "full_pull") as cassette:
        pages = hubspot_full_pull(hubspot_source(REPLAY_URL))
        assert cassette.all_played
    bundles = [b for page in pages for b in page.records]
    assert len({str(b.deal["id"]) for b in bundles}) == len(bundles) == len(world.live_deals)
    assert Counter(b.deal["properties"]["amount"] for b in bundles) == Counter(str(d.amount) for d in world.live_deals)
    assert Counter(len(b.lines) for b in bundles) == Counter(len(d.lines) for d in world.live_deals)
    assert all(b.company is not None for b in bundles)
    assert pages[-1].cursor is not None and sum(p.api_calls for p in pages) == len(cassette.requests)
    # the recorded portal's billing contacts (scenarios.hubspot_contacts): only those under the label
    named = Counter(tuple(c["properties"]["email"] for c in b.contacts or []) for b in bundles)
    assert named[("ap@first.example",)] == 1  # the first deal's own; its unlabelled contact is left out
    assert named[("controller@second.example",)] >= 1  # every deal of the second deal's company
    assert set(named) == {(), ("ap@first.example",), ("controller@second.example",)}
