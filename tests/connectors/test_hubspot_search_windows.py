"""HubSpot's capped deals search as one paginator, on worked examples: each transition from a page
to the next query (no HTTP; the sandbox test ``test_a_search_cap_is_handled_by_new_windows`` runs it
against a capped search)."""

from __future__ import annotations

from typing import Any

from billbridge.connectors.hubspot.source import CappedSearch, SearchWindow


def _page(*deals: tuple[str, int], after: str | None = None) -> dict[str, Any]:
    results = [{"id": i, "properties": {"hs_lastmodifieddate": str(ms)}} for i, ms in deals]
    return {"results": results} | ({"paging": {"next": {"after": after}}} if after else {})


def test_a_capped_search_starts_new_windows_and_walks_a_crowded_millisecond_by_id() -> None:
    search = CappedSearch(cap=4)  # pages of 2
    first = SearchWindow(None)
    assert first.filters() == [] and first.sort() == "hs_lastmodifieddate"
    # within the cap: the next page of the same query
    assert search.next_token(_page(("1", 3), ("2", 5), after="2"), first) == SearchWindow(None, after="2")
    # the next page would cross the cap: a new query from the last timestamp read
    crossing = _page(("3", 6), ("4", 7), after="4")
    assert search.next_token(crossing, SearchWindow(None, after="2")) == SearchWindow(7)
    assert SearchWindow(7).filters() == [{"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": "7"}]
    # that query crosses the cap still at its own start: millisecond 7 is walked by id
    crowded = _page(("9", 7), ("10", 7), after="4")
    assert search.next_token(crowded, SearchWindow(7, after="2")) == SearchWindow(7, same=7)
    walk = SearchWindow(7, same=7)
    assert walk.sort() == "hs_object_id" and walk.filters() == [
        {"propertyName": "hs_lastmodifieddate", "operator": "EQ", "value": "7"},
        {"propertyName": "hs_object_id", "operator": "GT", "value": "0"},
    ]
    assert search.next_token(_page(("11", 7), ("12", 7), after="4"), walk) == SearchWindow(7, same=7, last_id="12")
    # the millisecond read to its end: on from the next one; that query read to its end: done
    assert search.next_token(_page(("13", 7)), SearchWindow(7, same=7, last_id="12")) == SearchWindow(8)
    assert search.next_token(_page(("14", 8)), SearchWindow(8)) is None
    # a page past the results comes back empty with a cursor: the end
    assert search.next_token(_page(after="2"), SearchWindow(8)) is None
