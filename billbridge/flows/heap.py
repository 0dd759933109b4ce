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

BULK_THRESHOLDS = (20_000, 20, 1_000)  # CPython's defaults: (700, 10, 10)

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
