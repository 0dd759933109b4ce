"""The shared connector pieces on worked examples: the paging strategies, the lag window and the one
vendor call (counted, paced, retried through the classifier, refreshed, logged without payloads)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billbridge.connectors.client import VendorClient
from billbridge.connectors.cursor import LagWindow, epoch_window
from billbridge.connectors.errors import Classified, ErrorKind, RetryPolicy, VendorError
from billbridge.connectors.paging import (
    AfterCursor,
    AfterCursorEach,
    ChangedSince,
    NextUrl,
    StartingAfter,
    StartPosition,
)


def test_next_url_follows_until_done() -> None:
    answers = {
        None: {"records": [1, 2], "done": False, "nextRecordsUrl": "/q/2"},
        "/q/2": {"records": [3], "done": False, "nextRecordsUrl": "/q/3"},
        "/q/3": {"records": [4], "done": True},
    }
    asked: list[str | None] = []

    def fetch(url: str | None) -> dict[str, Any]:
        asked.append(url)
        return answers[url]

    assert [r for page in NextUrl().pages(fetch) for r in page["records"]] == [1, 2, 3, 4]
    assert asked == [None, "/q/2", "/q/3"]


def test_after_cursor_stops_at_an_empty_page_only_when_told() -> None:
    answers = {
        None: {"results": [1], "paging": {"next": {"after": "1"}}},
        "1": {"results": [], "paging": {"next": {"after": "2"}}},
        "2": {"results": [3]},
    }
    assert len(list(AfterCursor(stop_when_empty=True).pages(answers.__getitem__))) == 2
    assert len(list(AfterCursor().pages(answers.__getitem__))) == 3


def test_start_position_stops_at_a_short_page() -> None:
    rows = list(range(1, 8))  # 7 rows, pages of 3: starts 1, 4, 7
    starts: list[int | None] = []
    paging = StartPosition(3)

    def fetch(start: int | None) -> list[int]:
        starts.append(start)
        first = (start or 1) - 1
        return rows[first : first + 3]

    assert [r for page in paging.pages(fetch) for r in page] == rows
    assert starts == [None, 4, 7] and paging.clause(None) == "STARTPOSITION 1 MAXRESULTS 3"


def test_a_full_last_page_costs_one_empty_read_as_before() -> None:
    pages = list(StartPosition(3).pages(lambda start: [1, 2, 3] if start is None else []))
    assert pages == [[1, 2, 3], []]


def test_starting_after_the_last_id_while_has_more() -> None:
    data = [{"id": f"ch_{i}"} for i in range(5)]
    asked: list[str | None] = []

    def fetch(after: str | None) -> tuple[list[dict[str, Any]], bool]:
        asked.append(after)
        start = 0 if after is None else next(i for i, o in enumerate(data) if o["id"] == after) + 1
        return data[start : start + 2], start + 2 < len(data)

    assert [o["id"] for items, _ in StartingAfter().pages(fetch) for o in items] == [o["id"] for o in data]
    assert asked == [None, "ch_1", "ch_3"]


def test_a_caller_that_stops_early_costs_no_further_call() -> None:
    asked: list[str | None] = []

    def fetch(after: str | None) -> dict[str, Any]:
        asked.append(after)
        return {"results": [after], "paging": {"next": {"after": f"{len(asked)}"}}}

    for _page in AfterCursor().pages(fetch):
        break
    assert asked == [None]


def test_association_rounds_ask_again_only_the_inputs_with_more_links() -> None:
    """HubSpot's v4 batch: a has 3 links (2 per page), b has 1; the second round asks only a, after its cursor."""
    links = {"a": ["1", "2", "3"], "b": ["4"]}
    asked: list[list[dict[str, str]] | None] = []

    def fetch(inputs: list[dict[str, str]] | None) -> list[dict[str, object]]:
        asked.append(inputs)
        results: list[dict[str, object]] = []
        for one in inputs or [{"id": "a"}, {"id": "b"}]:
            start = int(one.get("after", 0))
            more = {"paging": {"next": {"after": str(start + 2)}}} if start + 2 < len(links[one["id"]]) else {}
            results.append({"from": {"id": one["id"]}, "to": links[one["id"]][start : start + 2], **more})
        return results

    got = [(r["from"], r["to"]) for page in AfterCursorEach().pages(fetch) for r in page]
    assert got == [({"id": "a"}, ["1", "2"]), ({"id": "b"}, ["4"]), ({"id": "a"}, ["3"])]
    assert asked == [None, [{"id": "a", "after": "2"}]]


def _change(at: str | None) -> dict[str, object]:
    return {"MetaData": {"LastUpdatedTime": at}} if at else {}


def test_a_full_change_answer_is_asked_again_from_its_newest_change() -> None:
    paging = ChangedSince(2, lambda row: row["MetaData"]["LastUpdatedTime"] if row.get("MetaData") else None)
    answers = {
        "2026-01-01T00:00:00+00:00": [_change("2026-01-01T00:00:05+00:00"), _change("2026-01-01T01:00:00+01:00")],
        "2026-01-01T00:00:05+00:00": [_change("2026-01-01T00:00:07+00:00")],
    }
    asked: list[str | None] = []

    def fetch(since: str | None) -> list[dict[str, object]]:
        asked.append(since)
        assert since is not None
        return answers[since]

    assert sum(len(p) for p in paging.pages(fetch, first="2026-01-01T00:00:00+00:00")) == 3
    # the newest of the first answer is 00:00:05 UTC (01:00+01:00 is 00:00 UTC): compared as times, not text
    assert asked == ["2026-01-01T00:00:00+00:00", "2026-01-01T00:00:05+00:00"]
    # a full answer all within its own start instant, or with no stamps, is the last: nothing narrower to ask
    stuck = [_change("2026-01-01T00:00:00+00:00"), _change("2026-01-01T00:00:00Z")]
    assert paging.next_token(stuck, "2026-01-01T00:00:00+00:00") is None
    assert paging.next_token([_change(None), _change(None)], "2026-01-01T00:00:00+00:00") is None


def test_the_lag_window_skips_what_it_delivered_and_forgets_what_fell_out() -> None:
    window: LagWindow[int] = LagWindow(60_000)
    assert window.start() is None
    window.deliver("a", 1_000)
    window.deliver("b", 50_000)
    assert window.delivered("a", 1_000) and not window.delivered("a", 2_000)
    window.deliver("c", 100_000)  # "a" (1,000) is now more than a minute before the newest
    assert window.start() == 40_000 and window.recent() == {"b": 50_000, "c": 100_000}
    assert "a" not in window.seen


def test_the_lag_window_over_datetimes() -> None:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    window: LagWindow[datetime] = LagWindow(timedelta(minutes=5), newest=t0)
    assert window.start() == t0 - timedelta(minutes=5)
    window.deliver("x", t0 - timedelta(minutes=1))  # an older record read again: the newest stays
    assert window.newest == t0 and window.recent() == {"x": t0 - timedelta(minutes=1)}


def test_an_epoch_second_cursor_reads_the_lag_again_never_before_zero_and_only_moves_forward() -> None:
    window = epoch_window(timedelta(minutes=5), "1800000000")  # Stripe's cursor: the newest ``created``
    assert window.start_from(0) == 1_800_000_000 - 300
    window.advance(1_800_000_100)
    window.advance(1_799_999_900)  # an older object read again in the window: the cursor stays
    assert window.newest == 1_800_000_100 and window.seen == {}
    assert epoch_window(timedelta(minutes=5), "120").start_from(0) == 0  # not -180
    for empty in (None, ""):
        fresh = epoch_window(timedelta(minutes=5), empty)
        assert fresh.newest is None and fresh.start_from(0) is None  # no cursor: read from the start


class Flaky(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(body)
        self.status = status


class Toy(VendorClient):
    """A vendor client over a scripted transport: each attempt answers the next script item."""

    vendor = "toy"

    def __init__(self, script: list[Any], *, refreshable: bool = False) -> None:
        super().__init__(policy=RetryPolicy(attempts=3, base_delay=0.0), sleep=lambda _s: None)
        self.script, self.refreshable, self.refreshes = script, refreshable, 0

    def classify(self, exc: BaseException) -> Classified | None:
        if isinstance(exc, Flaky):
            kind = {429: ErrorKind.RETRIABLE, 401: ErrorKind.AUTH}.get(exc.status, ErrorKind.FATAL)
            return Classified(kind, f"HTTP {exc.status}")
        return None

    @property
    def can_refresh(self) -> bool:
        return self.refreshable

    def refresh(self) -> None:
        self.refreshes += 1

    def send(self) -> str:
        answer = self.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return str(answer)


def test_a_call_is_counted_per_attempt_and_retried_through_the_classifier(caplog: pytest.LogCaptureFixture) -> None:
    client = Toy([Flaky(429, "card 4242 4242 4242 4242"), "ok"])
    with caplog.at_level(logging.INFO, logger="billbridge.connectors"):
        assert client.call(client.send, what="list invoices") == "ok"
    assert client.calls == 2
    [record] = caplog.records
    assert "toy list invoices: attempt 1 failed (HTTP 429)" in record.getMessage()
    assert "4242" not in caplog.text  # the answer's body is never logged


def test_an_expired_credential_is_refreshed_once_and_a_fatal_error_is_not_retried() -> None:
    client = Toy([Flaky(401, "expired"), "ok"], refreshable=True)
    assert client.call(client.send) == "ok" and (client.calls, client.refreshes) == (2, 1)
    refused = Toy([Flaky(400, "bad")])
    with pytest.raises(VendorError) as caught:
        refused.call(refused.send)
    assert (caught.value.classified.kind, caught.value.attempts, refused.calls) == (ErrorKind.FATAL, 1, 1)
