"""What the benchmark scripts share: code version stamp, logging, throwaway databases, timing."""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

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
# Repeated runs: every benchmark reports the median and range of at least RUNS runs, with the load
# average, never its best run (the machine is shared; a ratio's floor is measured in the same run).
# ---------------------------------------------------------------------------------------------

RUNS = 3
T = TypeVar("T")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as uptime prints them."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass(frozen=True)
class Spread:
    """One figure over the runs: median, lowest and highest."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return float(statistics.median(self.values))

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def show(self, spec: str = ".2f", unit: str = "") -> str:
        """``median (low-high)`` with ``unit`` after each, e.g. ``1.42x (1.38x-1.51x)``."""
        if len(self.values) == 1:
            return f"{self.median:{spec}}{unit} (1 run)"
        return f"{self.median:{spec}}{unit} ({self.low:{spec}}{unit}-{self.high:{spec}}{unit})"


class Runs(Generic[T]):
    """A measurement repeated: each run's result and the 1-minute load average before it."""

    def __init__(self, results: Sequence[T], loads: Sequence[float]) -> None:
        self.results, self.loads = list(results), tuple(loads)

    def spread(self, figure: Callable[[T], float]) -> Spread:
        """A figure of each run (a ratio is taken per run, against that run's own floor)."""
        return Spread(tuple(float(figure(r)) for r in self.results))

    @property
    def load(self) -> Spread:
        return Spread(self.loads)

    @property
    def first(self) -> T:
        return self.results[0]


def repeat(measure: Callable[[], T], runs: int, label: str) -> Runs[T]:
    """``measure()`` ``runs`` times, logging each run with the load average it started under."""
    results, loads = [], []
    for i in range(runs):
        loads.append(os.getloadavg()[0])
        log(f"[{label}] run {i + 1} of {runs}, load average {load_average()}")
        results.append(measure())
    return Runs(results, loads)


def add_runs_argument(parser: Any) -> None:
    parser.add_argument(
        "--runs", type=int, default=RUNS, help=f"runs per configuration; median and range reported (default {RUNS})"
    )


def stamp() -> str:
    """What a result table starts with: the code measured and the load average as it is printed."""
    return f"{code_version()}\nload average at the end: {load_average()} (2 cores; shared machines: compare ratios)"


# ---------------------------------------------------------------------------------------------
# Databases
# ---------------------------------------------------------------------------------------------


class Backend:
    """Creates the benchmark's databases (billing and floor) and removes them afterwards."""

    name = ""
    _labels: dict[str, int]

    def new_url(self, label: str) -> str:
        raise NotImplementedError

    def unique(self, label: str) -> str:
        """``label``, then ``label_2``, ``label_3``...: each run of a repeated benchmark gets a fresh database."""
        labels = self.__dict__.setdefault("_labels", {})
        labels[label] = labels.get(label, 0) + 1
        return label if labels[label] == 1 else f"{label}_{labels[label]}"

    def cleanup(self) -> None:
        raise NotImplementedError


class SQLiteBackend(Backend):
    name = "sqlite"

    def __init__(self, workdir: str, keep: bool) -> None:
        os.makedirs(workdir, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="billbridge-bench-", dir=workdir)
        self.keep = keep

    def new_url(self, label: str) -> str:
        return f"sqlite:///{os.path.join(self.dir, self.unique(label) + '.db')}"

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
        name = f"bb_bench_{self.run_id}_{self.unique(label)}"
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
                hosted.faults.reset_calls()
                result = None
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
