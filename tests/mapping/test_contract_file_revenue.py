"""The contract file format carries revenue recognition (issue 14): ``recognition`` on products and lines,
``ssp`` on price-book prices and lines. A file using them validates against the published JSON Schema
(``billbridge contracts schema``) and parses; a wrong value is refused by both, naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from billbridge.mapping.contract_file import json_schema, parse_document
from tests.docs import REFERENCE, contract, document

SSP_RANGE = {"kind": "range", "low": "900.00", "high": "1100.00"}


def revenue_file() -> dict[str, Any]:
    doc = copy.deepcopy(
        document(
            contract(
                "C-R",
                contract_end_date="2026-12-31",
                lines=[
                    {"line_ref": "platform", "product_ref": "platform", "ssp": SSP_RANGE},
                    {"line_ref": "setup", "product_ref": "seats", "charge": "one_time", "recognition": "point_in_time"},
                    {"line_ref": "fee", "product_ref": "seats", "recognition": "none", "ssp": {"kind": "list"}},
                ],
            )
        )
    )
    seats = next(p for p in doc["products"] if p["product_ref"] == "seats")
    seats["recognition"] = "ratable"
    seats["prices"][0]["ssp"] = {"kind": "fixed", "amount": "50.00"}
    return doc


def schema_errors(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """Each refusal at its most precise place (an optional field is an anyOf of its schema and null)."""
    validator = Draft202012Validator(json_schema())
    found = [best_match([e]) for e in validator.iter_errors(doc)]
    return sorted((e.json_path, e.message) for e in found if e is not None)


def test_a_contract_file_with_recognition_and_ssp_validates_and_parses() -> None:
    doc = revenue_file()
    assert schema_errors(doc) == []
    parsed = parse_document(doc)
    assert parsed.errors == []
    [record] = [r.record for r in parsed.section("contracts")]
    platform, setup, fee = record.lines  # type: ignore[attr-defined]
    assert (platform.ssp.kind, str(platform.ssp.low), str(platform.ssp.high)) == ("range", "900.00", "1100.00")
    assert (setup.recognition, fee.recognition, fee.ssp.kind) == ("point_in_time", "none", "list")
    schema = json_schema()
    assert {"recognition", "ssp"} <= set(schema["$defs"]["ContractLine"]["properties"])
    assert "ssp" in schema["$defs"]["ProductPrice"]["properties"]
    assert "recognition" in schema["$defs"]["Product"]["properties"]
    assert REFERENCE["products"][0].get("recognition") is None  # the shared fixture is left as it was


@pytest.mark.parametrize(
    ("where", "value", "path"),
    [
        (("contracts", 0, "lines", 1, "recognition"), "monthly", "contracts[0].lines[1].recognition"),
        (("contracts", 0, "lines", 0, "ssp", "kind"), "median", "contracts[0].lines[0].ssp.kind"),
        (("products", 1, "recognition"), "daily", "products[1].recognition"),
        (("products", 1, "prices", 0, "ssp", "kind"), "guess", "products[1].prices[0].ssp.kind"),
    ],
)
def test_a_wrong_recognition_or_ssp_is_refused_naming_the_field(where: tuple[Any, ...], value: str, path: str) -> None:
    doc = revenue_file()
    target: Any = doc
    for step in where[:-1]:
        target = target[step]
    target[where[-1]] = value
    [(json_path, message)] = schema_errors(doc)
    assert json_path == f"$.{path}" and repr(value) in message
    section, index = where[0], where[1]
    [error] = parse_document(doc).errors
    assert (error.section, error.index) == (section, index)
    assert f"{section}[{index}].{error.field}" == path  # the parser names the same field, in its record
