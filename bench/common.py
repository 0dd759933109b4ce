"""What the benchmark scripts share: code version stamp, logging, throwaway databases, timing."""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

import billbridge
from billbridge.sandbox.faults import FaultInjector
from billbridge.store.db import normalise_url


def code_version() -> str:
    """git HEAD of this checkout plus a hash of the billbridge sources actually imported (the tree
    may have local changes, or PYTHONPATH may point at a snapshot of it)."""
    package = Path(billbridge.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head = "?"
    return f"{head}+src:{digest.hexdigest()[:12]} ({package})"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Databases
# ---------------------------------------------------------------------------------------------


class Backend:
    """Creates the benchmark's databases (billing and floor) and removes them afterwards."""

    name = ""

    def new_url(self, label: str) -> str:
        raise NotImplementedError

    def cleanup(self) -> None:
        raise NotImplementedError


class SQLiteBackend(Backend):
    name = "sqlite"

    def __init__(self, workdir: str, keep: bool) -> None:
        os.makedirs(workdir, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="billbridge-bench-", dir=workdir)
        self.keep = keep

    def new_url(self, label: str) -> str:
        return f"sqlite:///{os.path.join(self.dir, label + '.db')}"

    def cleanup(self) -> None:
        if self.keep:
            log(f"[sqlite] kept databases in {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


class PostgresBackend(Backend):
    name = "postgresql"

    def __init__(self, admin_url: str, keep: bool) -> None:
        self.admin_url = normalise_url(admin_url)
        self.admin: Engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        self.run_id = uuid.uuid4().hex[:10]
        self.created: list[str] = []
        self.keep = keep

    def new_url(self, label: str) -> str:
        name = f"bb_bench_{self.run_id}_{label}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def cleanup(self) -> None:
        if self.keep:
            log(f"[postgresql] kept databases {', '.join(self.created)}")
        else:
            with self.admin.connect() as conn:
                for name in self.created:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


@contextmanager
def timer(*, freeze: bool = False) -> Iterator[list[float]]:
    """Wall time of the block. ``freeze`` first moves every object alive (the benchmark's own
    contracts and rows) out of the garbage collector's sight, so the timed code does not pay for
    scanning them."""
    if freeze:
        gc.collect()
        gc.freeze()
    box = [0.0]
    started = time.perf_counter()
    try:
        yield box
    finally:
        box[0] = time.perf_counter() - started
        if freeze:
            gc.unfreeze()


# ---------------------------------------------------------------------------------------------
# Vendor sandboxes in their own process
# ---------------------------------------------------------------------------------------------


class Hosted(Protocol):
    """What a sandbox served by ``SandboxProcess`` offers: its call counter, the details a client
    needs to reach it, and a stop. Any other public method can be called through ``ask``."""

    faults: FaultInjector

    def info(self) -> Any: ...

    def stop(self) -> None: ...


def _host(factory: Callable[..., Hosted], args: tuple[Any, ...], conn: Connection) -> None:
    """The sandbox process: build the sandbox, send its details, then answer commands until "stop"."""
    hosted = factory(*args)
    conn.send(("ok", hosted.info()))
    while True:
        command, cargs = conn.recv()
        try:
            if command == "calls":
                result: Any = hosted.faults.total_calls(*cargs)
            elif command == "calls_by_route":
                result = dict(hosted.faults.calls)
            elif command == "reset_calls":
                result = hosted.faults.reset_calls()
            elif command == "stop":
                hosted.stop()
                conn.send(("ok", None))
                return
            else:
                result = getattr(hosted, command)(*cargs)
        except Exception as exc:  # sent back and raised in the benchmark's process
            conn.send(("error", f"{command}: {exc!r}"))
            continue
        conn.send(("ok", result))


class SandboxProcess:
    """A vendor sandbox built by ``factory(*args)`` in a spawned process, so that serving the API does
    not share the benchmark's interpreter (its CPU would count against the client being measured).
    ``info`` holds what the factory's ``info()`` returned (URLs, credentials); ``ask`` calls any other
    method of the hosted object; ``calls`` is the number of API calls it answered since the last reset."""

    def __init__(self, factory: Callable[..., Hosted], *args: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_host, args=(factory, args, child), daemon=True)
        self._process.start()
        self.info: Any = self._answer("start")

    def _answer(self, command: str) -> Any:
        if not self._conn.poll(120):
            raise RuntimeError(f"sandbox process gave no answer to {command!r}")
        status, value = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"sandbox process: {value}")
        return value

    def ask(self, command: str, *args: Any) -> Any:
        self._conn.send((command, args))
        return self._answer(command)

    def calls(self, pattern: str = ".*") -> int:
        return int(self.ask("calls", pattern))

    def calls_by_route(self) -> dict[str, int]:
        return dict(self.ask("calls_by_route"))

    def reset_calls(self) -> None:
        self.ask("reset_calls")

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self.ask("stop")
            finally:
                self._process.join(timeout=10)
                if self._process.is_alive():
                    self._process.kill()

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
