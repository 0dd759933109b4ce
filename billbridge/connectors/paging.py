"""Pagination as strategy objects: how a vendor's list says where the next page starts.

Each strategy turns ``fetch(token)`` (one call; ``None`` asks for the first page) into the pages of a
list, fetching the next page only when the previous one has been consumed, so a caller that stops
early (a cap reached, an empty page) costs no extra call. These cover our vendors:

- ``NextUrl``: Salesforce's ``nextRecordsUrl`` while ``done`` is false;
- ``AfterCursor``: HubSpot's ``paging.next.after``;
- ``StartPosition``: QuickBooks' ``STARTPOSITION`` / ``MAXRESULTS`` (a short page is the last);
- ``StartingAfter``: Stripe's ``starting_after`` the last id, while ``has_more``;
- ``AfterCursorEach``: HubSpot's v4 association batch reads, many lists advanced together (each
  input id its own ``paging.next.after``);
- ``ChangedSince``: QuickBooks' change data capture, capped per answer: asked again from its newest change.

A vendor-specific walk can subclass ``Paginator`` where it is (HubSpot's search windows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

P = TypeVar("P")
K = TypeVar("K")


class Paginator(Generic[P, K]):
    """A pagination strategy: where the page after ``page`` starts (``token`` fetched it), or None
    after the last."""

    def next_token(self, page: P, token: K | None) -> K | None:
        raise NotImplementedError

    def pages(self, fetch: Callable[[K | None], P], first: K | None = None) -> Iterator[P]:
        """Every page of one list, ``fetch``-ed lazily as the caller consumes them, from ``first``
        (None: the list's first page)."""
        token: K | None = first
        while True:
            page = fetch(token)
            yield page
            token = self.next_token(page, token)
            if token is None:
                return


@dataclass(frozen=True)
class NextUrl(Paginator[Any, str]):
    """Salesforce query results: ``nextRecordsUrl`` until ``done``."""

    def next_token(self, page: Any, token: str | None) -> str | None:
        if page.get("done", True) or not page.get("nextRecordsUrl"):
            return None
        return str(page["nextRecordsUrl"])


@dataclass(frozen=True)
class AfterCursor(Paginator[Any, str]):
    """HubSpot lists and searches: ``paging.next.after``; an empty page ends the list when
    ``stop_when_empty`` (a search past its results answers an empty page with a cursor)."""

    results: str = "results"
    stop_when_empty: bool = False

    def next_token(self, page: Any, token: str | None) -> str | None:
        after = page.get("paging", {}).get("next", {}).get("after")
        if not after or (self.stop_when_empty and not page[self.results]):
            return None
        return str(after)


@dataclass(frozen=True)
class StartPosition(Paginator[Sequence[Any], int]):
    """QuickBooks queries: rows from a 1-based start position; a page shorter than ``size`` is the last.
    Pages are the rows themselves (the caller's ``fetch`` picks them out of the answer)."""

    size: int

    def clause(self, start: int | None) -> str:
        return f"STARTPOSITION {start or 1} MAXRESULTS {self.size}"

    def next_token(self, page: Sequence[Any], token: int | None) -> int | None:
        if len(page) < self.size:
            return None
        return (token or 1) + self.size


@dataclass(frozen=True)
class StartingAfter(Paginator[tuple[list[dict[str, Any]], bool], str]):
    """Stripe lists, as (objects, has_more) pages: ``starting_after`` the last object's id while ``has_more``."""

    def next_token(self, page: tuple[list[dict[str, Any]], bool], token: str | None) -> str | None:
        items, has_more = page
        if not has_more or not items:
            return None
        return str(items[-1]["id"])


AFTER = AfterCursor()


@dataclass(frozen=True)
class AfterCursorEach(Paginator[Sequence[Any], list[dict[str, str]]]):
    """HubSpot's v4 association batch reads: one list per input id, read together. A page is one
    round's results (every input asked, in the vendor's batches, by the caller's ``fetch``); the next
    round asks again only the inputs whose result carries a ``paging.next.after``, from there. The
    token is that round's inputs (``{"id"}`` or ``{"id", "after"}``); None: the caller's ids."""

    def next_token(self, page: Sequence[Any], token: list[dict[str, str]] | None) -> list[dict[str, str]] | None:
        later = [
            {"id": str(result["from"]["id"]), "after": after}
            for result in page
            if (after := AFTER.next_token(result, None)) is not None
        ]
        return later or None


@dataclass(frozen=True)
class ChangedSince(Paginator[Sequence[Any], str]):
    """A change feed answering at most ``size`` changes from a time (QuickBooks' change data capture:
    1,000 per entity), a token being that time (ISO 8601). A full answer may be cut short, so it is
    asked again from its newest change (``stamp`` of a row; None: the row has none); a short answer,
    or a full one that did not get past its own start (``size`` changes within one instant: nothing
    narrower can be asked), is the last. Pages are the rows (the caller's ``fetch`` picks them out)."""

    size: int
    stamp: Callable[[Any], str | None]

    def next_token(self, page: Sequence[Any], token: str | None) -> str | None:
        stamps = [datetime.fromisoformat(s) for row in page if (s := self.stamp(row)) is not None]
        if len(page) < self.size or not stamps or token is None:
            return None
        newest = max(stamps)
        return newest.isoformat() if newest > datetime.fromisoformat(token) else None
