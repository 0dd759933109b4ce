"""The QuickBooks connector against recorded exchanges with the strict sandbox (fast tier, no server):
OpenID discovery, the token refresh, look-ups and batches (with their deterministic requestids) must
be asked as recorded; four invoices are created, then found again. Re-record with
``python -m tests.connectors.record_cassettes``."""

from __future__ import annotations

from tests.connectors.cassettes import REPLAY_URL, replaying
from tests.connectors.scenarios import quickbooks_connector, quickbooks_documents, quickbooks_push_twice


def test_a_push_and_its_repeat_replay_from_the_cassette() -> None:
    https = REPLAY_URL.replace("http:", "https:")
    with replaying("quickbooks", "push_twice") as cassette:
        first, again = quickbooks_push_twice(
            quickbooks_connector(f"{https}/v3", f"{https}/.well-known/openid_configuration")
        )
        assert cassette.all_played
    numbers = [d.number for d in quickbooks_documents()]
    assert [(r.number, r.status) for r in first] == [(n, "created") for n in numbers]
    assert [(r.number, r.status) for r in again] == [(n, "existing") for n in numbers]
    assert [r.external_id for r in again] == [r.external_id for r in first] and all(r.external_id for r in first)
