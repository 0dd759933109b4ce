"""Reading vendor values: the one place a value from outside is parsed, so that no value, however
malformed (too large for a date, not a number, a list where text belongs, a character no store
keeps), raises anything but a ``MappingError`` naming the field. A mapping quarantines that record
and the others go on.

Two ways in, one mechanism: ``read(record, "a.b.c", parser)`` reads a field (by its dotted path)
of a vendor record and parses it; ``@field_parser`` makes a parser whose second argument is the
field's name (``_date(value, "billing_start_date")``) raise only ``MappingError``. The parsers
below are the shared ones; a mapping declares its own for its vendor's shapes.

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import wraps
from typing import Any, Concatenate, ParamSpec, TypeVar

from pydantic import BaseModel, ValidationError

from billbridge.mapping.paths import dotted_path

T = TypeVar("T")
P = ParamSpec("P")
M = TypeVar("M", bound=BaseModel)

PARSE_FAILURES: tuple[type[Exception], ...] = (
    ArithmeticError,  # OverflowError (dates, timestamps), decimal.InvalidOperation, ZeroDivisionError
    AttributeError,
    LookupError,  # KeyError, IndexError
    OSError,  # datetime.fromtimestamp beyond what the platform's C library takes
    RecursionError,  # deeply nested JSON
    TypeError,  # None, a dict or a list where a scalar belongs
    ValueError,  # UnicodeError, json.JSONDecodeError, pydantic's ValidationError
)
"""What a parser of outside data can raise because of the data."""

REQUIRED: Any = object()  # ``read``'s default: a missing or null value is an error
DIGITS_MAX = 15  # a number read from a vendor has at most this many digits before the point...
PLACES_MAX = 12  # ...and this many after (Stripe's *_decimal prices have 12)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
plain_number = re.compile(rf"[+-]?[0-9]{{1,{DIGITS_MAX}}}(?:\.[0-9]{{1,{PLACES_MAX}}})?").fullmatch
"""Whether a text is a number ``number`` takes as it is (at most DIGITS_MAX digits and PLACES_MAX decimals)."""
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")  # ASCII digits only: no "1_000", no "٣"
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class MappingError(ValueError):
    """A record that cannot be mapped: which field (the vendor's name for it) and why; ``missing``, as
    (record type, ref), when what it names is not in the store yet (a sync retries it once it is)."""

    def __init__(self, field: str, message: str, missing: tuple[str, str] | None = None) -> None:
        self.field, self.message, self.missing = field, message, missing
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class Refused:
    """A vendor record its mapping could not read: kept as received, with the field and why, for the
    quarantine (its key is the vendor's id, as far as it can be read)."""

    key: str
    field: str
    reason: str
    record: Any


R = TypeVar("R")


def map_each(records: Iterable[R], mapper: Callable[[R], T], key: Callable[[R], str]) -> tuple[list[T], list[Refused]]:
    """``mapper`` over vendor records: what it maps, and the records it refused (never an exception
    that would stop the others)."""
    mapped: list[T] = []
    refused: list[Refused] = []
    for record in records:
        try:
            mapped.append(mapper(record))
        except MappingError as exc:
            refused.append(Refused(key(record), exc.field, exc.message, record))
    return mapped, refused


def record_id(record: Any, field: str = "id") -> str:
    """A vendor record's id as a quarantine key, whatever the record holds."""
    value = record.get(field) if isinstance(record, Mapping) else None
    return value if isinstance(value, str) and value else f"(no readable {field}: {shown(value, 40)})"


def shown(value: Any, limit: int = 60) -> str:
    """A value as an error message shows it: its repr (ASCII-safe), cut to ``limit`` characters."""
    text = ascii(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def parse(field: str, parser: Callable[..., T], value: Any, *args: Any, **kwargs: Any) -> T:
    """``parser(value, *args, **kwargs)``; whatever it raises because of the value becomes a
    MappingError naming ``field``."""
    try:
        return parser(value, *args, **kwargs)
    except MappingError:
        raise
    except PARSE_FAILURES as exc:
        raise MappingError(field, f"cannot read {shown(value)}: {_reason(exc)}") from exc


def _reason(exc: Exception) -> str:
    text = ascii(str(exc))[1:-1] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def field_parser(parser: Callable[Concatenate[Any, str, P], T]) -> Callable[Concatenate[Any, str, P], T]:
    """A parser taking ``(value, field_name, ...)`` that raises only MappingError (naming the field):
    ``parse``, inlined (a sync reads millions of values)."""

    @wraps(parser)
    def reader(value: Any, field: str, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return parser(value, field, *args, **kwargs)
        except MappingError:
            raise
        except PARSE_FAILURES as exc:
            raise MappingError(field, f"cannot read {shown(value)}: {_reason(exc)}") from exc

    return reader


def read(
    record: Any,
    path: str,
    parser: Callable[[Any], T] | None = None,
    *,
    default: Any = REQUIRED,
    name: str | None = None,
) -> T:
    """The value at the dotted ``path`` of a vendor record (``"CustomerRef.value"``), parsed by
    ``parser``. Missing or null: ``default``, or a MappingError when there is none. ``name`` is the
    field as errors name it (default: ``path``)."""
    value = record
    for part in path.split(".") if "." in path else (path,):
        if value is None:
            break
        if type(value) is not dict and not isinstance(value, Mapping):
            raise MappingError(name or path, f"expected an object with {part!r}, got {kind(value)}")
        value = value.get(part)
    if value is None:
        if default is REQUIRED:
            raise MappingError(name or path, "missing")
        out: T = default
        return out
    if parser is None:
        return value
    try:  # ``parse``, inlined (a sync reads millions of values)
        return parser(value)
    except MappingError:
        raise
    except PARSE_FAILURES as exc:
        raise MappingError(name or path, f"cannot read {shown(value)}: {_reason(exc)}") from exc


def kind(value: Any) -> str:
    """What a JSON value is, in words."""
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, bool):
        return "true or false"
    if value is None:
        return "null"
    return f"{type(value).__name__} {shown(value)}"


def build(model: type[M], where: str = "", names: Mapping[str, str] | None = None, **values: Any) -> M:
    """A canonical model from mapped values; a value it refuses is a MappingError naming the field:
    the vendor's name for it where ``names`` (model field -> vendor field) has one, else its path in
    the model (prefixed by ``where``)."""
    try:
        return model(**values)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = first["loc"]
        if names and loc and loc[0] in names:
            field = dotted_path((names[str(loc[0])], *loc[1:]))
        else:
            path = dotted_path(loc)
            field = f"{where}.{path}" if where and path else where or path or f"({model.__name__.lower()})"
        raise MappingError(field, first["msg"]) from exc


# -- shared parsers: plain functions of one value, raising whatever (``parse`` names the field) ------


def string(value: Any) -> str:
    """A value as text, as it is. Numbers read as their text. Refused: objects, lists, true/false,
    and characters no store keeps (NUL, unpaired surrogates)."""
    if type(value) is str:
        out = value
    elif isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise TypeError(f"expected text, got {kind(value)}")
    else:
        out = str(value)
    if not out.isascii():
        out.encode("utf-8")  # an unpaired surrogate raises UnicodeEncodeError
    if "\x00" in out:
        raise ValueError("contains a NUL character")
    return out


def text(value: Any) -> str | None:
    """``string``, stripped; None when blank."""
    return plain_text(value) or string(value).strip() or None


def plain_text(value: Any) -> str | None:
    """The usual case of ``text`` at no cost: an ASCII string without NUL, stripped; None for
    anything else (blank included)."""
    if type(value) is str and value.isascii() and "\x00" not in value:
        return value.strip() or None
    return None


def required_text(value: Any) -> str:
    out = text(value)
    if out is None:
        raise ValueError("blank")
    return out


def number(value: Any) -> Decimal:
    """An exact decimal from a string, an integer or a JSON float (through its shortest repr, never
    its binary value). Refused: true/false, objects, non-finite values, and numbers no amount or
    quantity has (more than DIGITS_MAX digits before the point or PLACES_MAX after)."""
    if type(value) is str and plain_number(value):  # the usual case: within range by its form
        return Decimal(value)
    if isinstance(value, bool):
        raise TypeError("expected a number, got true or false")
    if isinstance(value, float):
        value = repr(value)
    source = value if isinstance(value, Decimal | int) else required_text(value)
    if isinstance(source, str) and not _NUMBER.fullmatch(source):
        raise ValueError("not a number")
    try:
        out = Decimal(source)
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not out.is_finite():
        raise ValueError("not a finite number")
    if out and (out.adjusted() >= DIGITS_MAX or out.as_tuple().exponent < -PLACES_MAX):  # type: ignore[operator]
        raise ValueError(f"out of range (at most {DIGITS_MAX} digits before the point and {PLACES_MAX} after)")
    return out


def whole(value: Any) -> int:
    """A whole number (``"30"``, ``30``, ``30.0``), within ``number``'s range."""
    out = number(value)
    if out != out.to_integral_value():
        raise ValueError("not a whole number")
    return int(out)


def epoch_seconds(value: Any) -> datetime:
    """A Unix time in seconds (Stripe's timestamps), in UTC."""
    return EPOCH + timedelta(seconds=whole(value))


def epoch_day(value: Any) -> date:
    """The UTC day of a Unix time in seconds."""
    return epoch_seconds(value).date()


def iso_date(value: Any) -> date:
    """A calendar date from ``YYYY-MM-DD`` (a time after it is ignored)."""
    day = required_text(value)[:10]
    if not _DAY.fullmatch(day):
        raise ValueError("not a date (YYYY-MM-DD)")
    return date.fromisoformat(day)


def mapping(value: Any) -> Mapping[str, Any]:
    """An object (a nested vendor record)."""
    if not isinstance(value, Mapping):
        raise TypeError(f"expected an object, got {kind(value)}")
    return value


def objects(value: Any) -> Sequence[Mapping[str, Any]]:
    """A list of objects."""
    if not isinstance(value, list | tuple):
        raise TypeError(f"expected a list, got {kind(value)}")
    for item in value:
        mapping(item)
    return value
