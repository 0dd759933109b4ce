"""Every mapping test runs in three time zones: UTC, one west of it and one far east of it. A vendor's
date or timestamp read in the machine's zone instead of UTC moves a day in one of them."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

ZONES = ("UTC", "America/Los_Angeles", "Pacific/Kiritimati")  # UTC, UTC-8/-7, UTC+14


@pytest.fixture(autouse=True, params=ZONES)
def machine_time_zone(request: pytest.FixtureRequest) -> Iterator[str]:
    saved = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    try:
        yield request.param
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()
