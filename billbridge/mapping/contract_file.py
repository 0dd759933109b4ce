"""Contract files -> canonical records, one record at a time, with errors that name record and field.

Pure: it takes the parsed document (from JSON or YAML); reading the file is the caller's job.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from billbridge.billing.model import RECORD_KINDS, ContractFile
from billbridge.mapping.paths import dotted_path


@dataclass(frozen=True)
class RecordError:
    """Why one record of a file was refused."""

    section: str
    index: int
    key: str | None
    field: str
    message: str
    payload: Any
    missing: tuple[str, str] | None = None  # what the store lacked (record type, ref), if that was why

    @property
    def record(self) -> str:
        return f"{self.section}[{self.index}]" + (f" ({self.key})" if self.key else "")

    def __str__(self) -> str:
        return f"{self.record}: {self.field}: {self.message}"


@dataclass(frozen=True)
class ParsedRecord:
    section: str
    index: int
    key: str
    record: BaseModel
    payload: Any


@dataclass
class ParsedFile:
    records: list[ParsedRecord] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)

    def section(self, name: str) -> Iterator[ParsedRecord]:
        return (r for r in self.records if r.section == name)


def field_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's error location as a readable path: lines[0].pricing.tiers[1].up_to."""
    return dotted_path(loc) or "(record)"


def parse_document(document: Any) -> ParsedFile:
    """Validate every record of a contract file on its own; bad ones become RecordErrors."""
    parsed = ParsedFile()
    if not isinstance(document, dict):
        parsed.errors.append(
            RecordError(
                "file",
                0,
                None,
                "(file)",
                "expected a mapping with entities, customers, products, contracts, partners or referral_agreements",
                document,
            )
        )
        return parsed
    for section in document:
        if section not in RECORD_KINDS:
            known = ", ".join(RECORD_KINDS)
            parsed.errors.append(
                RecordError("file", 0, None, str(section), f"unknown section (expected {known})", None)
            )
    for section, (model, key_field) in RECORD_KINDS.items():
        items = document.get(section) or []
        if not isinstance(items, list):
            parsed.errors.append(RecordError(section, 0, None, section, "expected a list of records", items))
            continue
        for index, raw in enumerate(items):
            key = raw.get(key_field) if isinstance(raw, dict) else None
            key = str(key) if key is not None else None
            record: BaseModel | None
            try:
                record = model.model_validate(raw)
            except ValidationError as exc:
                found = exc.errors(include_url=False)
                record = _without_bad_contacts(model, raw, found) if section == "customers" else None
                for error in found:
                    message = error["msg"] + (CONTACT_DROPPED if record is not None else "")
                    parsed.errors.append(RecordError(section, index, key, field_path(error["loc"]), message, raw))
                if record is None:
                    continue
            parsed.records.append(ParsedRecord(section, index, str(getattr(record, key_field)), record, raw))
    return parsed


CONTACT_DROPPED = " (the contact is left out; the customer is imported without it)"


def _without_bad_contacts(model: type[BaseModel], raw: Any, errors: list[Any]) -> BaseModel | None:
    """A customer whose only faults are malformed contact addresses, validated without those contacts
    (billing does not stop for an e-mail address: the error stays reported, and a customer left
    without a contact waits visibly under ``waiting_contact``); None when anything else is wrong."""
    bad = set()
    for error in errors:
        loc = tuple(error["loc"])
        if len(loc) != 3 or loc[0] != "contacts" or not isinstance(loc[1], int) or loc[2] != "email":
            return None
        bad.add(loc[1])
    contacts = raw.get("contacts") if isinstance(raw, dict) else None
    if not bad or not isinstance(contacts, list):
        return None
    try:
        return model.model_validate({**raw, "contacts": [c for i, c in enumerate(contacts) if i not in bad]})
    except ValidationError:
        return None


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the contract file format, generated from the canonical models."""
    schema = ContractFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
