"""Query parameters read only as documented: ``limit=1_000``, ``limit= 5`` or ``to=0`` (a Unix
time to pydantic) are refused, not guessed at."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from pydantic import BeforeValidator


def written_as(pattern: str, what: str) -> BeforeValidator:
    """A validator that lets a query value through only if it is text matching ``pattern`` whole;
    otherwise the 422 says it must be ``what``."""
    compiled = re.compile(pattern)

    def check(value: Any) -> Any:
        if not isinstance(value, str) or not compiled.fullmatch(value):
            raise ValueError(f"must be {what}")
        return value

    return BeforeValidator(check)


DIGITS = written_as(r"[0-9]+", "written in digits 0-9")
IsoDate = Annotated[date, written_as(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", "a date written YYYY-MM-DD")]
