"""Readable paths to a field inside a record, from pydantic's error locations."""

from __future__ import annotations

from collections.abc import Sequence


def dotted_path(loc: Sequence[int | str]) -> str:
    """``("lines", 0, "pricing")`` -> ``lines[0].pricing``; empty for the record itself."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
