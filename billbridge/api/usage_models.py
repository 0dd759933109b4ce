"""Request and response bodies of the usage event API (the seed's shape, plus idempotency)."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from billbridge.api.errors import Problem
from billbridge.api.idempotency import KEY_PATTERN, MAX_KEY_LENGTH
from billbridge.billing.usage_periods import MICROS

MAX_BATCH = 1000
MAX_QUANTITY = Decimal("1e9")
"""Per event: an event's micro-units fit a BIGINT with room to spare. A day's sum has no such bound
(the rollups carry whole millions of units into a second column: ``store.usage.SPLIT``)."""
MAX_PLACES = MICROS
FUTURE_SLACK = timedelta(days=1)  # clocks differ; usage stamped further ahead is refused
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
"""Usage stamped before this is refused: no billing period reaches back that far, and a bounded range
keeps every stamp convertible to UTC (``0001-01-01T00:00:00+01:00`` is not)."""

# Only the documented spellings. Character classes, not \\d: Python's \\d and Decimal() read any
# script's digits ("\u0663" is 3), and Decimal() also takes "1_000" and surrounding spaces.
_NUMERIC_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
QUANTITY_TEXT = r"^0*[0-9]{1,9}(\.[0-9]{1,6})?$"  # what _exact_quantity accepts of a numeric string
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
QUANTITY_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0, "exclusiveMaximum": 1_000_000_000},
        {"type": "string", "pattern": QUANTITY_TEXT},
    ],
    "description": "Not negative, at most 6 decimal places and below 10^9: a JSON number or a string of digits "
    'with an optional "." and decimals, e.g. "12.5"',
}

Ref = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
Name = Annotated[str, StringConstraints(max_length=300, pattern=r"^[^\x00]*$")]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_KEY_LENGTH, pattern=KEY_PATTERN)]


class Validations(BaseModel):
    """What the sender believes: checked against the API key's legal entity."""

    model_config = ConfigDict(extra="forbid")
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = Field(examples=["USD"])
    entity_ref: Ref


class UsageEventIn(BaseModel):
    """One usage event. ``quantity`` is a JSON number or a numeric string, read exactly as a decimal."""

    model_config = ConfigDict(extra="forbid")
    timestamp: AwareDatetime = Field(
        description="ISO 8601 with a time zone, e.g. 2024-02-05T08:55:32.160Z; from 2000-01-01T00:00:00Z to a day "
        "ahead of the server's clock"
    )
    customer_ref: Ref
    customer_name: Name | None = Field(default=None, description="Informational; not checked")
    usage_product_ref: Ref
    usage_product_name: Name | None = Field(default=None, description="Informational; not checked")
    quantity: Annotated[Decimal, WithJsonSchema(QUANTITY_SCHEMA)]
    additional_report_data: dict[str, Any] | None = None
    validations: Validations
    event_id: EventId | None = Field(
        default=None,
        description="Idempotency key of this event (printable ASCII): the same event_id from the same "
        "legal entity is stored once and always answered with the first event_ref",
    )

    @field_validator("timestamp")
    @classmethod
    def _in_range(cls, value: datetime) -> datetime:
        # Compared before converting: aware comparisons never overflow, astimezone at the calendar's edge does.
        if value < EARLIEST:
            raise PydanticCustomError("timestamp_out_of_range", "timestamp is before 2000-01-01T00:00:00Z")
        if value > datetime.now(timezone.utc) + FUTURE_SLACK:
            raise PydanticCustomError("timestamp_out_of_range", "timestamp is more than a day in the future")
        return value.astimezone(timezone.utc)

    @field_validator("timestamp", mode="wrap")
    @classmethod
    def _rfc3339(cls, value: Any, parse: ValidatorFunctionWrapHandler) -> datetime:
        """RFC 3339 (ISO 8601 with seconds and an offset) only; pydantic alone also reads Unix times
        in strings and stamps without seconds. Parsed first, for pydantic's own messages."""
        if not isinstance(value, str):
            raise ValueError("timestamp must be an ISO 8601 string with a time zone")
        parsed: datetime = parse(value)
        if not _RFC3339.fullmatch(value):
            raise PydanticCustomError(
                "datetime_format", "timestamp must be ISO 8601 with seconds and a time zone, e.g. 2024-02-05T08:55:32Z"
            )
        return parsed

    @field_validator("quantity", mode="before")
    @classmethod
    def _exact_quantity(cls, value: Any) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
            raise ValueError("quantity must be a number or a numeric string")
        if isinstance(value, str) and not _NUMERIC_TEXT.fullmatch(value):
            raise PydanticCustomError(
                "quantity_format",
                'quantity must be a number or a numeric string of digits 0-9 with an optional "." and decimals, '
                'e.g. "12.5"',
            )
        number = Decimal(value)
        if not number.is_finite():
            raise ValueError("quantity must be a finite number")
        if number < 0 or isinstance(value, str) and value.startswith("-"):
            raise ValueError("quantity must not be negative")
        if number >= MAX_QUANTITY:
            raise ValueError("quantity must be below 10^9")
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -MAX_PLACES:
            raise PydanticCustomError("too_many_decimal_places", f"quantity has more than {MAX_PLACES} decimal places")
        return number


class BatchIn(BaseModel):
    """Up to 1,000 events; each is validated and answered on its own, so any JSON value is a valid
    item of the request (published schema only)."""

    model_config = ConfigDict(extra="forbid")
    events: list[UsageEventIn | Any] = Field(
        max_length=MAX_BATCH,
        description="Each item is read as a UsageEventIn; one that is not (not even an object) is refused in its "
        "result, and the others go on",
    )


class UsageEventOut(BaseModel):
    """Where the event is billed. ``related_document_*`` is the invoice the usage appears on (its
    number is null until billing generates it); ``related_parent_document_*`` is the invoice that
    already billed the event's period, when the event came late and is charged as a correction."""

    event_ref: str
    related_document_ref: str | None
    related_document_numbers: str | None
    related_parent_document_ref: str | None
    related_parent_document_numbers: str | None
    related_document_billing_date: date | None = None
    late: bool = False
    replayed: bool = Field(default=False, description="True when this answers an event stored before")


class BatchResult(BaseModel):
    index: int
    status: Literal["accepted", "duplicate", "refused"]
    event: UsageEventOut | None = None
    errors: list[Problem] | None = None


class BatchOut(BaseModel):
    accepted: int
    duplicates: int
    refused: int
    results: list[BatchResult]
