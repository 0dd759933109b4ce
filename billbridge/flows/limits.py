"""Per-vendor concurrency: at most one flow run talks to a vendor at a time, so the connector's
pacing (per process) is the whole installation's pacing and parallel runs never exceed a vendor's
rate limit. The limits are Prefect global concurrency limits named ``vendor-<name>`` (create them
once: ``prefect gcl create vendor-salesforce --limit 1``, ...); where none exists the run proceeds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect.concurrency.sync import concurrency


@contextmanager
def vendor_slot(vendor: str) -> Iterator[None]:
    with concurrency(f"vendor-{vendor}", occupy=1, strict=False):
        yield


@contextmanager
def no_slot(_vendor: str) -> Iterator[None]:
    """Outside a flow run (the CLI, a test): nothing to share, nothing held."""
    yield
