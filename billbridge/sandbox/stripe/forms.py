"""Stripe's form encoding, decoded: ``metadata[k]=v``, ``lines[0][amount]=5``, ``expand[0]=x`` -> nested data.

The stripe SDK encodes every request body and list query this way (stripe/_encode.py ``_api_encode``:
dicts as ``key[sub]``, lists always with an index), so the sandbox reads it back into dicts and lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_PART = re.compile(r"\[([^\]]*)\]")


def decode(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Nested dicts from bracketed keys; dicts whose keys are all digits become lists (in index order)."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head = key.split("[", 1)[0]
        parts = [head, *_PART.findall(key[len(head) :])]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part or str(len(node)), {})
        last = parts[-1]
        if last == "" and isinstance(node, dict):  # ``expand[]=x``: append
            last = str(len(node))
        node[last] = value
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {k: _listify(v) for k, v in node.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items
