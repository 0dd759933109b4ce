"""A CRM sync's pages stored by a writer process while the sync process fetches and maps the next.

Fetching, mapping and storing are all Python: on one interpreter they take turns on one lock, and
a full sync costs the sum of the three. With the writer, page k is stored while page k+1 is mapped
(the fetch thread runs ahead of both), so a sync costs about the largest of them.

Exactly once and in order, as in process: each page carries its sequence number, and the writer
stores page n only right after page n-1. A page it cannot store yet (an earlier one failed, or
must come again with its raw payloads) is answered "skipped" with nothing stored, and the sync
process sends it again. So the cursor only ever moves past pages that are stored, and a failed
page stops the pages after it. A page is mapped without the raw vendor records (they would cost
as much to send as to map); if the store refuses one of its records, the writer rolls the page
back and asks for it again with them, so the quarantine keeps the record as received.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import subprocess
import sys
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from billbridge.flows.crm_pages import (
    MappedPage,
    NeedsPayloads,
    PageToStore,
    SourceSpec,
    store_mapped,
    with_payloads,
)
from billbridge.flows.heap import tune_for_bulk
from billbridge.flows.importing import ImportSummary
from billbridge.records import DealBundle, RecordPage
from billbridge.store.db import Store, open_store

SKIPPED = "skipped"  # an earlier page is not stored yet: nothing stored, send it again
NEEDS_PAYLOADS = "needs_payloads"  # a record was refused: nothing stored, send it with the payloads
Answer = ImportSummary | str


@dataclass(frozen=True)
class _Job:
    seq: int
    page: PageToStore
    mapped: MappedPage


@dataclass
class _Writer:
    store: Store
    spec: SourceSpec
    today: date
    next_seq: int = 0


_writer: _Writer | None = None  # the writer process's state, made by its initializer


def _start(url: str, spec: SourceSpec, today: date) -> bool:
    global _writer
    _writer = _Writer(open_store(url, run_migrations=False), spec, today)
    tune_for_bulk()  # the process does nothing else
    return True


def _store(job: _Job) -> Answer:
    writer = _writer
    assert writer is not None, "_start runs first"
    if job.seq != writer.next_seq:
        return SKIPPED
    try:
        imported = store_mapped(writer.store, writer.spec, job.page, job.mapped, today=writer.today)
    except NeedsPayloads:
        return NEEDS_PAYLOADS
    writer.next_seq += 1
    return imported


class PageWriter:
    """The writer process of one sync: ``python -m billbridge.flows.page_writer``, talking pickles
    over its stdin and stdout. Not multiprocessing's spawn: that imports the parent's main module
    again (a CLI or a benchmark script, about a second), this imports only what storing needs."""

    def __init__(self, store: Store, spec: SourceSpec, today: date) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._to, self._from = self._process.stdin, self._process.stdout
        self._waiting: deque[Future[Any]] = deque()  # in the order sent, which is the order answered
        self._outbox: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._seq = 0
        # Writing a page into the pipe waits while the process stores the one before: a thread writes
        # (the sync pickles: pickling in a thread would contend for the GIL), another reads the answers.
        threading.Thread(target=self._send_all, name="page-writer-send", daemon=True).start()
        threading.Thread(target=self._answers, name="page-writer-answers", daemon=True).start()
        self._started: Future[Any] = self._call((store.url, spec, today))

    def _call(self, message: object) -> Future[Any]:
        """Send one message; its answer resolves the future (answers come in the order sent)."""
        future: Future[Any] = Future()
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)  # here: a thread would contend for the GIL
        with self._lock:
            self._waiting.append(future)
            self._outbox.put(data)
        return future

    def _send_all(self) -> None:
        while data := self._outbox.get():  # an empty one (never a pickle) closes the pipe
            try:
                self._to.write(data)
                self._to.flush()
            except OSError:  # the process is gone: the answer thread fails what waits
                break
        with contextlib.suppress(OSError):
            self._to.close()  # the process finishes what it has, then ends

    def _answers(self) -> None:
        while True:
            try:
                failed, answer = pickle.load(self._from)
            except (EOFError, OSError, pickle.UnpicklingError) as exc:
                with self._lock:
                    waiting, self._waiting = self._waiting, deque()
                for future in waiting:
                    future.set_exception(RuntimeError(f"the page writer process ended: {exc!r}"))
                return
            with self._lock:
                future = self._waiting.popleft()
            if failed:
                future.set_exception(answer)
            else:
                future.set_result(answer)

    def ready(self, *, wait: bool = False) -> bool:
        """Whether the process is up (a moment after the sync asks for it; one that failed to start
        never is, and the sync stores in its own process as without a writer). ``wait``: wait for
        it, and raise why it could not start."""
        if wait:
            self._started.result(timeout=120)
        return self._started.done() and self._started.exception() is None

    @property
    def idle(self) -> bool:
        """Whether no page has been handed to it yet (till then the sync may still store pages itself)."""
        return self._seq == 0

    def submit(self, page: RecordPage[DealBundle], mapped: MappedPage) -> StoreTicket:
        """Hand a mapped page to the writer; the ticket's ``result`` says when it is stored."""
        job = _Job(self._seq, PageToStore(page.deleted_ids, page.cursor), mapped)
        self._seq += 1
        return StoreTicket(self, job, page)

    def close(self) -> None:
        """Let the process finish the pages handed over, then wait for it to end."""
        self._outbox.put(b"")
        self._process.wait()


def _serve() -> None:
    """The writer process: the first message starts it, each next one is a page to store; every
    message is answered with (failed, result or exception), in order."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, not into the answers
    source = sys.stdin.buffer
    first = True
    while True:
        try:
            message = pickle.load(source)
        except EOFError:
            return
        try:
            result: Any = _start(*message) if first else _store(message)
            answer: tuple[bool, Any] = (False, result)
        except Exception as exc:
            answer = (True, exc)
        first = False
        try:
            data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # an exception that does not pickle: its text still goes back
            data = pickle.dumps((True, RuntimeError(repr(answer[1]))), protocol=pickle.HIGHEST_PROTOCOL)
        out.write(data)
        out.flush()


class StoreTicket:
    """One page handed to the writer."""

    def __init__(self, writer: PageWriter, job: _Job, page: RecordPage[DealBundle]) -> None:
        self._writer, self._job, self._page = writer, job, page
        self._future: Future[Answer] | None = writer._call(job)

    def result(self) -> ImportSummary:
        """Wait until the page is stored (sending it again when the writer skipped it or needs its
        payloads) and return what was stored. A failure is raised; calling again (a retry) sends
        the page again."""
        for _ in range(3):  # skipped once at most (the page before it was sent again), then payloads
            if self._future is None:
                self._future = self._writer._call(self._job)
            try:
                answer = self._future.result()
            except BaseException:
                self._future = None
                raise
            if isinstance(answer, ImportSummary):
                return answer
            self._future = None
            if answer == NEEDS_PAYLOADS:
                self._job = replace(self._job, mapped=with_payloads(self._job.mapped, self._page))
        raise RuntimeError(f"the writer did not store page {self._job.seq} ({answer})")


if __name__ == "__main__":  # run under its own name, so pickled jobs and these functions share one module
    from billbridge.flows import page_writer

    page_writer._serve()
