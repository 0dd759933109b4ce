"""QuickBooks JSON payloads checked against Intuit's XML Schemas (``tests/vendor_specs/quickbooks/xsd``).

The JSON the API speaks uses the XSD's element names; this writes a payload as the XML document the
schema describes (children in the order of the type's sequence, base types first; a ``ReferenceType``
as its text with ``name``/``type`` attributes) and validates it with lxml. An element the type does not
have is an error here, before the schema sees it."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from lxml import etree

XSD_DIR = Path(__file__).parent / "vendor_specs" / "quickbooks" / "xsd"
NS = "http://schema.intuit.com/finance/v3"
XS = "{http://www.w3.org/2001/XMLSchema}"


@cache
def _schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD_DIR / "IntuitRestServiceDef.xsd")))


@cache
def _types() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for path in XSD_DIR.glob("*.xsd"):
        for node in etree.parse(str(path)).getroot():
            if node.tag in (f"{XS}complexType", f"{XS}simpleType") and node.get("name"):
                found[node.get("name")] = node
    return found


def _local(type_name: str | None) -> str | None:
    return type_name.split(":", 1)[1] if type_name and ":" in type_name else type_name


def _children(type_name: str) -> list[tuple[str, str | None]]:
    """(element name, type) of a complex type's content, base types first, in sequence order."""
    node = _types().get(type_name)
    if node is None or node.tag != f"{XS}complexType":
        return []
    out: list[tuple[str, str | None]] = []
    extension = node.find(f"{XS}complexContent/{XS}extension")
    container = node
    if extension is not None:
        out += _children(_local(extension.get("base")) or "")
        container = extension
    for element in container.iter(f"{XS}element"):
        out.append((element.get("name"), _local(element.get("type"))))
    return out


def _simple_content(type_name: str | None) -> bool:
    node = _types().get(type_name or "")
    return node is not None and node.find(f"{XS}simpleContent") is not None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fill(parent: Any, type_name: str, data: dict[str, Any], where: str) -> None:
    children = _children(type_name)
    known = {name for name, _ in children}
    unknown = sorted(set(data) - known)
    if unknown:
        raise AssertionError(f"{where}: {type_name} has no element {', '.join(unknown)}")
    for name, child_type in children:
        if name not in data:
            continue
        values = data[name] if isinstance(data[name], list) else [data[name]]
        for i, value in enumerate(values):
            element = etree.SubElement(parent, f"{{{NS}}}{name}")
            path = f"{where}.{name}" + (f"[{i}]" if isinstance(data[name], list) else "")
            if _simple_content(child_type):
                element.text = _text(value["value"])
                for attribute, text in value.items():
                    if attribute != "value":
                        element.set(attribute, _text(text))
            elif isinstance(value, dict):
                _fill(element, child_type or "", value, path)
            else:
                element.text = _text(value)


def assert_valid(entity: str, payload: dict[str, Any]) -> None:
    """Raise with the schema's own message when ``payload`` is not a valid ``entity``."""
    root = etree.Element(f"{{{NS}}}{entity}", nsmap={None: NS})
    _fill(root, entity, payload, entity)
    schema = _schema()
    if not schema.validate(root):
        raise AssertionError(f"{entity} does not match Intuit's XSD: {schema.error_log.last_error}")


def _elements(type_name: str) -> list[Any]:
    """The element nodes of a complex type's content, base types first."""
    node = _types().get(type_name)
    if node is None or node.tag != f"{XS}complexType":
        return []
    extension = node.find(f"{XS}complexContent/{XS}extension")
    out = _elements(_local(extension.get("base")) or "") if extension is not None else []
    return out + list((extension if extension is not None else node).iter(f"{XS}element"))


def filterable_in_qbo(type_name: str) -> set[str]:
    """Properties of a type (its ``MetaData``'s one level down) whose XSD annotation says
    "Filterable: ALL" or "Filterable: QBO"."""
    found: set[str] = set()
    for element in _elements(type_name):
        marked = re.search(r"Filterable:\s*(\w*)", " ".join(element.itertext()))
        if marked and marked.group(1) in ("ALL", "QBO"):
            found.add(element.get("name"))
        if element.get("name") == "MetaData":
            found |= {f"MetaData.{n}" for n in filterable_in_qbo(_local(element.get("type")) or "")}
    return found
