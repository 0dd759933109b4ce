"""What the benchmark scripts share: code version stamp, logging, throwaway databases, timing."""

from __future__ import annotations

import gc
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

import billbridge
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
