"""The HubSpot connector against recorded exchanges with the strict sandbox (fast tier, no server):
a full pull's search pages, association and batch reads and archived list must be asked exactly as
recorded, and the bundles must carry the seeded world's deals. Re-record with
``python -m tests.connectors.record_cassettes``."""

from __future__ import annotations

from collections import Counter

from tests.connectors.cassettes import REPLAY_URL, replaying
from tests.connectors.scenarios import (
    crm_later,
    hubspot_full_pull,
    hubspot_full_then_incremental,
    hubspot_source,
    hubspot_world,
)


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


def test_an_incremental_pull_replays_only_the_changes_and_archivals() -> None:
    world = hubspot_world()
    later = crm_later(world)
    with replaying("hubspot", "full_then_incremental") as cassette:
        full, changes, nothing = hubspot_full_then_incremental(hubspot_source(REPLAY_URL))
        assert cassette.all_played
    assert len([b for p in full for b in p.records]) == len(world.live_deals)
    edited = [d for d in later.live_deals if d.modified_at == later.now]
    deleted = [d for d in later.deals.values() if d.deleted and not world.deals[d.key].deleted]
    assert edited and deleted
    pulled = [b for p in changes for b in p.records]
    assert Counter(b.deal["properties"]["dealname"] for b in pulled) == Counter(d.name for d in edited)
    assert Counter(b.deal["properties"]["amount"] for b in pulled) == Counter(str(d.amount) for d in edited)
    assert len({i for p in changes for i in p.deleted_ids}) == len(deleted)
    assert [b for p in nothing for b in p.records] == [] and [i for p in nothing for i in p.deleted_ids] == []
