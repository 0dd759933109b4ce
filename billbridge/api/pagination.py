"""Pages of results: ``{"data": [...], "has_more": bool, "next_cursor": str | null}``.

A cursor is a position written in digits: the last id seen (keyset paging) or an offset (grouped
reports). Clients pass back ``next_cursor`` as it came; every cursor the schema allows (1 to 18
digits) is a position, so it is answered with a page (an empty one past the end), never refused.
"""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from billbridge.api.query import DIGITS

T = TypeVar("T")
MAX_LIMIT = 1000


class Page(BaseModel, Generic[T]):
    data: list[T]
    has_more: bool
    next_cursor: str | None


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page"), DIGITS]
CURSOR_PATTERN = r"^[0-9]{1,18}$"  # below 2^63: a BIGINT id on every backend
Cursor = Annotated[str | None, Query(pattern=CURSOR_PATTERN, description="next_cursor of the previous page")]


def encode(position: int) -> str:
    return str(position)


def decode(cursor: str | None) -> int:
    """The position a cursor stands for (0 without one); the Cursor parameter checked its digits."""
    return int(cursor) if cursor else 0


def page_of(rows: list[T], limit: int, position_of_last: int) -> Page[T]:
    """``rows`` holds up to limit + 1 items: the extra one only says there is more."""
    more = len(rows) > limit
    return Page[T](data=rows[:limit], has_more=more, next_cursor=encode(position_of_last) if more else None)
