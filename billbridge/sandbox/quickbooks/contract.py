"""Intuit's XML Schemas of the QuickBooks Online v3 entities, held against what the sandbox accepts and returns.

The JSON the API speaks uses the XSD's element and attribute names (a reference's text content is
its ``value``), so a property the entity's type does not declare, at any depth, is one QuickBooks
refuses: error 2010 "Request has invalid or unsupported property". The schemas load once (xmlschema,
``vendor-specs/quickbooks/xsd/IntuitRestServiceDef.xsd``, a few seconds).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import xmlschema

from billbridge.sandbox import specs


@cache
def _schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(specs.spec_path("quickbooks/xsd/IntuitRestServiceDef.xsd")))


def _children(xsd_type: Any) -> dict[str, Any] | None:
    """Property name -> child element (None for attributes and simple content); None for a simple type."""
    if xsd_type.is_simple():
        return None
    names: dict[str, Any] = {}
    if xsd_type.has_simple_content():
        names["value"] = None
    else:
        names.update({e.local_name: e for e in xsd_type.content.iter_elements()})
    names.update(dict.fromkeys(a.local_name for a in xsd_type.attributes.values() if a.local_name))
    return names


def unknown_properties(entity: str, body: dict[str, Any]) -> list[str]:
    """Dotted paths of the properties of ``body`` that Intuit's ``entity`` type does not declare."""
    return _walk(_schema().elements[entity].type, body, entity)


def _walk(xsd_type: Any, value: Any, path: str) -> list[str]:
    if isinstance(value, list):
        return [bad for n, item in enumerate(value) for bad in _walk(xsd_type, item, f"{path}[{n}]")]
    if not isinstance(value, dict):
        return []
    allowed = _children(xsd_type)
    if allowed is None:
        return [path]  # an object where the schema has a simple value
    bad: list[str] = []
    for key, item in value.items():
        if key not in allowed:
            bad.append(f"{path}.{key}")
        elif allowed[key] is not None:
            bad += _walk(allowed[key].type, item, f"{path}.{key}")
    return bad
