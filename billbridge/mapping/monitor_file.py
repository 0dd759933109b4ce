"""Monitor files (YAML or JSON) -> monitor definitions, each validated on its own, with errors naming
the monitor and the field. A file holds ``monitors: [...]``, a list, or one monitor."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from billbridge.billing.monitors import MonitorDefinition
from billbridge.mapping.contract_file import RecordError, field_path


@dataclass
class ParsedMonitors:
    definitions: list[MonitorDefinition] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)


def parse_monitors(document: Any) -> ParsedMonitors:
    """Validate every monitor of a parsed file; bad ones become RecordErrors (``monitors[1] (name): field: why``)."""
    parsed = ParsedMonitors()
    if isinstance(document, dict) and set(document) == {"monitors"}:
        document = document["monitors"]
    items = document if isinstance(document, list) else [document]
    for index, raw in enumerate(items):
        key = raw.get("name") if isinstance(raw, dict) else None
        try:
            parsed.definitions.append(MonitorDefinition.model_validate(raw))
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                parsed.errors.append(
                    RecordError(
                        "monitors", index, str(key) if key else None, field_path(error["loc"]), error["msg"], raw
                    )
                )
    return parsed


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a monitor definition, generated from its model."""
    return MonitorDefinition.model_json_schema()


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2)
