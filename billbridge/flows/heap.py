"""The garbage collector tuned for a long bulk run (a full CRM sync of many thousand deals).

CPython's cyclic collector runs every 700 allocations and now and then walks every tracked object
of the process, Prefect's, SQLAlchemy's and pydantic's included. A bulk run allocates millions
of short-lived objects (vendor dicts, canonical models, rows), so those walks cost about a quarter
of a full sync's CPU. During the run, everything alive before it is frozen (never walked again
until the run ends) and the youngest generation is collected less often; what the run drops is
still collected, as reference counting frees nearly all of it anyway.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

BULK_THRESHOLDS = (200_000, 50, 1_000)  # CPython's defaults: (700, 10, 10)
"""A young collection every 200,000 allocations, a middle one every 50 of those. A full sync keeps its
pages and their canonical models alive for a while (pulled, mapped, handed to the writer), so what
survives a young collection is walked again in the middle one: at (20,000, 20) that was 4% of the
Salesforce sync's wall time (bench_crm_sync.py, 50,000 deals, in turn on a quiet machine: 1.56x-1.57x
the floor against 1.43x-1.52x; (1,000,000, 100) gained nothing more). Cyclic garbage still goes at the
first young collection after it is made."""

_lock = threading.Lock()
_active = 0
_saved: tuple[int, int, int] | None = None


def tune_for_bulk() -> None:
    """For good, in a process that only does bulk work (a sync's writer): what it has imported is
    frozen and collections are rarer, as within ``bulk_gc``."""
    gc.freeze()
    gc.set_threshold(*BULK_THRESHOLDS)


@contextmanager
def bulk_gc() -> Iterator[None]:
    """Within the block: objects alive at its start are frozen and collections are rarer. Nests and
    may be used from several threads: the last block to end restores the collector."""
    global _active, _saved
    with _lock:
        if _active == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(*BULK_THRESHOLDS)
        _active += 1
        gc.freeze()
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                gc.unfreeze()
                if _saved is not None:
                    gc.set_threshold(*_saved)
                _saved = None
