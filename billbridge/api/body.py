"""Reading a JSON body exactly: size-capped, numbers as Decimal, strings a database can hold."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from fastapi import Request

from billbridge.api.errors import ApiError, Problem, refuse
from billbridge.store.types import storable_text


def _no_constants(token: str) -> Any:
    raise ValueError(f"{token} is not a number JSON allows")


async def read_raw(request: Request, limit: int) -> bytes:
    """The body's bytes as sent; 413 past ``limit`` bytes (by Content-Length or as it streams)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise refuse(413, "body_too_large", f"the body is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise refuse(413, "body_too_large", f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class LongInt(Decimal):
    """An integer of more digits than Python converts from text (4,300): too large for anything we
    store, so it is refused by the field it is in (422 naming it), not by the JSON reader (400)."""


def _integer(token: str) -> int | Decimal:
    try:
        return int(token)
    except ValueError:  # "Exceeds the limit (4300 digits) for integer string conversion"
        return LongInt(token)


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_int=_integer, parse_constant=_no_constants)
"""Made once: ``json.loads`` with these options builds a new decoder on every call."""


async def read_json(request: Request, limit: int) -> Any:
    """The parsed body; 413 past ``limit`` bytes (by Content-Length or as it streams), 400 if not JSON.

    Fractions parse as Decimal (``0.1`` stays exactly 0.1); NaN and Infinity are refused.
    """
    raw = await read_raw(request, limit)
    try:
        # As json.loads reads bytes: UTF-8, -16 or -32 by the first bytes.
        return _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise refuse(400, "malformed_json", f"the body is not valid JSON: {exc}"[:300]) from None


MAX_DEPTH = 32
"""Nesting levels of free-form report data (the JSON column's serializer stops at 255)."""
INT_RANGE = (-(2**63), 2**63 - 1)
"""Integers in free-form report data: what a JSON column holds on every backend (a signed 64-bit integer)."""


def storable(value: Any, field: str, index: int | None = None, depth: int = 1) -> Any:
    """Check a JSON value can be stored (strings without NUL or unpaired surrogates, integers in
    64 bits, at most MAX_DEPTH levels) and turn Decimals into floats (strings when out of float
    range): for free-form report data, not money. Raises ApiError (422) naming the field."""
    try:
        return _storable(value, depth)
    except _Unstorable as exc:
        raise _problem(field + "".join(reversed(exc.path)), index, exc.code, exc.message) from None


class _Unstorable(Exception):
    """What :func:`_storable` found, with the path to it (innermost first), which is only built
    when something is wrong: on the usage API's hot path, a path string per value had cost more
    than the checks."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.path: list[str] = []


_BAD_TEXT = ("bad_text", "text must not contain NUL or unpaired surrogates")


def _storable(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        if not storable_text(value):
            raise _Unstorable(*_BAD_TEXT)
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not INT_RANGE[0] <= value <= INT_RANGE[1]:
            raise _Unstorable("number_out_of_range", "integers must fit in 64 bits (-2^63 to 2^63-1)")
        return value
    if isinstance(value, LongInt):
        raise _Unstorable("number_out_of_range", "integers must fit in 64 bits (-2^63 to 2^63-1)")
    if isinstance(value, Decimal):
        number = float(value)
        return number if math.isfinite(number) else str(value)
    if isinstance(value, (dict, list)) and depth > MAX_DEPTH:
        raise _Unstorable("too_deep", f"nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not storable_text(key):
                raise _Unstorable(*_BAD_TEXT)
            try:
                out[key] = _storable(item, depth + 1)
            except _Unstorable as exc:
                exc.path.append(f".{key}")
                raise
        return out
    if isinstance(value, list):
        items = []
        for i, item in enumerate(value):
            try:
                items.append(_storable(item, depth + 1))
            except _Unstorable as exc:
                exc.path.append(f"[{i}]")
                raise
        return items
    return value


def comparable(value: Any) -> Any:
    """A stored JSON value in a form that is equal for equal JSON however the store gives it back:
    numbers as Decimals (PostgreSQL's JSONB returns 1e300 as a 301-digit integer)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {key: comparable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [comparable(item) for item in value]
    return value


def check_texts(value: Any, field: str = "") -> None:
    """Check every string in a JSON value (keys too) can be stored: no NUL, no lone surrogate. Raises
    ApiError (422) naming the field, as ``lines[0].description``."""
    if isinstance(value, str):
        _check_text(value, field or "(body)", None)
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{field}.{key}" if field else str(key)
            _check_text(key, where, None)
            check_texts(item, where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_texts(item, f"{field}[{i}]")


def _check_text(text: str, field: str, index: int | None) -> None:
    if not storable_text(text):
        raise _problem(field, index, "bad_text", "text must not contain NUL or unpaired surrogates")


def _problem(field: str, index: int | None, code: str, message: str) -> ApiError:
    return ApiError(422, [Problem(field=field, message=message, code=code, index=index)])
