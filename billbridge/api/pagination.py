"""Pages of results: ``{"data": [...], "has_more": bool, "next_cursor": str | null}``.

A cursor is opaque to clients: the last id seen (keyset paging) or an offset (grouped reports).
"""

from __future__ import annotations

import base64
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from billbridge.api.errors import refuse
from billbridge.api.query import DIGITS

T = TypeVar("T")
MAX_LIMIT = 1000


class Page(BaseModel, Generic[T]):
    data: list[T]
    has_more: bool
    next_cursor: str | None


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page"), DIGITS]
Cursor = Annotated[str | None, Query(max_length=64, description="next_cursor of the previous page")]


def encode(position: int) -> str:
    return base64.urlsafe_b64encode(f"p{position}".encode()).decode().rstrip("=")


def decode(cursor: str | None) -> int:
    """The position a cursor stands for (0 without one); 422 for a cursor we did not make."""
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if text[:1] == "p" and text[1:].isdigit() and len(text) < 20:
            return int(text[1:])
    except ValueError:
        pass
    raise refuse(422, "bad_cursor", "not a cursor this API returned", "cursor")


def page_of(rows: list[T], limit: int, position_of_last: int) -> Page[T]:
    """``rows`` holds up to limit + 1 items: the extra one only says there is more."""
    more = len(rows) > limit
    return Page[T](data=rows[:limit], has_more=more, next_cursor=encode(position_of_last) if more else None)
