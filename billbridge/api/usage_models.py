"""Request and response bodies of the usage event API (the seed's shape, plus idempotency)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic_core import PydanticCustomError

from billbridge.api.errors import Problem
from billbridge.billing.usage import MICROS

MAX_BATCH = 1000
MAX_KEY_LENGTH = 150
MAX_QUANTITY = Decimal("1e9")
"""Per event. Quantities are kept in integer micro-units and per-day rollups are BIGINT sums: this
leaves room for over 9,000 maximal events per customer, product and day (9.2 x 10^12 units)."""
MAX_PLACES = MICROS
FUTURE_SLACK = timedelta(days=1)  # clocks differ; usage stamped further ahead is refused
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
"""Usage stamped before this is refused: no billing period reaches back that far, and a bounded range
keeps every stamp convertible to UTC (``0001-01-01T00:00:00+01:00`` is not)."""

Ref = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
Name = Annotated[str, StringConstraints(max_length=300, pattern=r"^[^\x00]*$")]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_KEY_LENGTH, pattern=r"^[\x21-\x7e]+$")]


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
    quantity: Decimal = Field(description="Not negative, at most 6 decimal places and below 10^9")
    additional_report_data: dict[str, Any] | None = None
    validations: Validations
    event_id: EventId | None = Field(
        default=None,
        description="Idempotency key of this event (printable ASCII): the same event_id from the same "
        "legal entity is stored once and always answered with the first event_ref",
    )

    @field_validator("timestamp", mode="before")
    @classmethod
    def _text_stamp(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("timestamp must be an ISO 8601 string with a time zone")
        return value

    @field_validator("timestamp")
    @classmethod
    def _in_range(cls, value: datetime) -> datetime:
        # Compared before converting: aware comparisons never overflow, astimezone at the calendar's edge does.
        if value < EARLIEST:
            raise PydanticCustomError("timestamp_out_of_range", "timestamp is before 2000-01-01T00:00:00Z")
        if value > datetime.now(timezone.utc) + FUTURE_SLACK:
            raise PydanticCustomError("timestamp_out_of_range", "timestamp is more than a day in the future")
        return value.astimezone(timezone.utc)

    @field_validator("quantity", mode="before")
    @classmethod
    def _exact_quantity(cls, value: Any) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
            raise ValueError("quantity must be a number or a numeric string")
        try:
            number = Decimal(value) if not isinstance(value, str) else Decimal(value.strip())
        except InvalidOperation:
            raise ValueError("quantity must be a number or a numeric string") from None
        if not number.is_finite():
            raise ValueError("quantity must be a finite number")
        if number < 0:
            raise ValueError("quantity must not be negative")
        if number >= MAX_QUANTITY:
            raise ValueError("quantity must be below 10^9")
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -MAX_PLACES:
            raise ValueError(f"quantity has more than {MAX_PLACES} decimal places")
        return number


class BatchIn(BaseModel):
    """Up to 1,000 events; each is validated and answered on its own (published schema only)."""

    events: list[UsageEventIn] = Field(max_length=MAX_BATCH)


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
