"""Work done ahead in planning processes: chunks handed to spawned processes, each opening the store
by its URL, their results taken in order while the calling process writes the one before.

The billing run plans invoices this way; the revenue rebuild builds schedules this way. A worker is
given a module-level function (picklable) called as ``work(store, chunk, *args)``."""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from billbridge.store.db import Store, open_store

C = TypeVar("C")
R = TypeVar("R")

_store: Store | None = None  # one per planning process, opened by its initializer


def end_with_parent() -> None:
    """In a planning process: end as soon as the run that started it ends, however it ends. A run
    killed with SIGKILL shuts no pool down, and its planners (and multiprocessing's resource tracker,
    kept alive by them) would wait for work forever. The parent's sentinel becomes readable when
    the parent is gone."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


PLANNER_GC_THRESHOLD = (50_000, 20, 10)
"""Allocations between the cyclic garbage collector's young collections in a planning process (Python's
default: 700, 10, 10). Planning a billing chunk of 1,000 contracts allocates objects by the hundred
thousand (parsed contracts, drafts, rows), nearly all freed by reference counting; at the default the
collector ran 56 young and 5 middle collections a chunk and a full one (the whole heap: SQLAlchemy,
pydantic's schemas) every other chunk, a fifth of a planning process's CPU (250-320 ms a chunk
against 330-380 ms, measured alternately)."""


@contextmanager
def fewer_collections() -> Iterator[None]:
    """For the length of a run that writes what planning processes send (rows by the hundred thousand,
    unpickled and freed chunk after chunk): the collector's young threshold as a planning process has
    it, then the caller's again."""
    before = gc.get_threshold()
    gc.set_threshold(*PLANNER_GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _open_store(url: str) -> None:
    global _store
    end_with_parent()
    _store = open_store(url, run_migrations=False)
    # What is loaded by now (modules, the store, schemas) lives as long as the process: out of the
    # collector's sight, and young collections far fewer (PLANNER_GC_THRESHOLD).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*PLANNER_GC_THRESHOLD)


def _run(work: Callable[..., R], chunk: Any, args: tuple[Any, ...]) -> R:
    assert _store is not None, "not in a planning process"
    return work(_store, chunk, *args)


PRELOAD = ("billbridge.store.db", "billbridge.billing.engine", "billbridge.billing.model")
"""What every planning process imports, preloaded once in the fork server."""


def _context(work: Callable[..., Any]) -> multiprocessing.context.BaseContext:
    """Where planning processes come from: never a fork of the calling process, which holds open
    connections. Where the platform has it, a fork server: started once per run's process (itself
    started fresh, holding nothing), it imports the main module, the store, the billing model and
    ``work``'s module once, and forks each planning process from there ready to work; spawned
    processes each import all of it again (1.5 to 2 s of CPU per process on 2 shared cores, a
    tenth of a 100,000-contract billing run's planning). Elsewhere, spawned processes."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # Read when the server starts (the first pool of the process); "__main__" as multiprocessing's default.
    context.set_forkserver_preload(["__main__", *PRELOAD, work.__module__])
    return context


def _up() -> None:
    """In a planning process: nothing; answered once the process is up (its initializer ran)."""


def done_ahead(
    store: Store, chunks: Sequence[C], work: Callable[..., R], args: tuple[Any, ...], workers: int
) -> Iterator[R | None]:
    """For each chunk, in order, ``work(store, chunk, *args)`` as done by one of ``workers`` processes,
    at most two chunks per worker in flight; None for every chunk when there are no workers, fewer than
    three chunks (starting processes costs more) or a store other processes cannot open.

    None also for the chunks the caller takes while the processes start (a fork server importing, each
    process opening the store: about a second, which it would otherwise wait for, idle): always the
    first, then each next one until a process answers, at most the first half of the chunks (so that
    processes plan the rest, whatever the timing). Chunks are handed to the pool only from then on,
    from a thread, as starting a process waits for the fork server; the caller never waits for a
    chunk nobody has started."""
    if workers < 1 or len(chunks) < 3 or not store.shared:
        yield from (None for _ in chunks)
        return
    with ProcessPoolExecutor(
        workers, mp_context=_context(work), initializer=_open_store, initargs=(store.url,)
    ) as pool:
        lock = threading.Lock()
        futures: dict[int, Future[R]] = {}
        handed = 1  # the chunks before it are the caller's or the pool's; the first is the caller's
        failed: list[BaseException] = []

        def hand(upto: int) -> None:
            """Under ``lock``: the chunks from ``handed`` to ``upto`` (excluded) to the pool."""
            nonlocal handed
            while handed < min(upto, len(chunks)):
                futures[handed] = pool.submit(_run, work, chunks[handed], args)
                handed += 1

        def start() -> None:
            try:
                answered = [pool.submit(_up) for _ in range(workers)]  # one process started each
                answered[0].result()
                with lock:
                    hand(handed + 2 * workers)
            except BaseException as exc:  # raised in the caller's thread
                failed.append(exc)

        starter = threading.Thread(target=start, name="start-planners", daemon=True)
        starter.start()
        try:
            for at in range(len(chunks)):
                if failed:
                    raise failed[0]
                with lock:
                    mine = at == 0 or handed <= at < len(chunks) // 2
                    if mine:
                        handed = at + 1
                if mine:
                    yield None
                    continue
                if at not in futures:  # the processes are not up yet, and the rest is theirs
                    starter.join()
                    if failed:
                        raise failed[0]
                result = futures.pop(at).result()
                with lock:
                    hand(at + 1 + 2 * workers)
                yield result
        finally:
            starter.join()
